"""A grant's record and its argument constraint.

A grant lets one agent call one tool without a new approval each time,
while its arguments satisfy a constraint, until it expires and up to a
number of uses (docs/grants.md). The constraint has three parts, all of
which must hold, each optional:

- ``equals``: named argument fields and the exact (JSON) value each must have;
- ``patterns``: named string fields and a regular expression each must match
  as a whole (Python's ``re.fullmatch``);
- ``schema``: a JSON Schema (2020-12) the arguments must satisfy, limited to
  the keywords in :data:`SCHEMA_KEYWORDS` (a typo'd or unsupported keyword
  would otherwise be ignored by JSON Schema and widen the grant silently).

Everything is checked when the grant is created; matching a call is then a
dict lookup, a compiled regex and a compiled schema.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator

from interlock.errors import FieldViolation

STATES = ("ACTIVE", "EXHAUSTED", "EXPIRED", "REVOKED")
"""As the API shows them; EXHAUSTED is an ACTIVE row whose uses reached max_uses."""

SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "const",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "items",
        "properties",
        "required",
        "description",
    }
)
MAX_PATTERN_LENGTH = 1000


def new_grant_id() -> str:
    return f"grt_{os.urandom(12).hex()}"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: True is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


@dataclass(frozen=True)
class Constraint:
    """What a grant's arguments must satisfy (see the module docstring)."""

    equals: Mapping[str, Any] = field(default_factory=dict)
    patterns: Mapping[str, str] = field(default_factory=dict)
    schema: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "equals": dict(self.equals),
            "patterns": dict(self.patterns),
            "schema": dict(self.schema),
        }

    def as_json(self) -> str:
        """Canonical JSON: two grants with the same constraint store the same text."""
        return orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str) -> Constraint:
        raw = orjson.loads(text)
        return cls(raw.get("equals", {}), raw.get("patterns", {}), raw.get("schema", {}))

    def problems(self, fields: Mapping[str, Any] | None) -> list[FieldViolation]:
        """What is wrong with it; ``fields``: the tool schema's properties (or None)."""
        out: list[FieldViolation] = []
        for part, names in (("arguments_equal", self.equals), ("argument_patterns", self.patterns)):
            for name in names:
                if fields is not None and name not in fields:
                    out.append(
                        FieldViolation(f"{part}.{name}", "is not an argument the tool takes")
                    )
        for name, pattern in self.patterns.items():
            where = f"argument_patterns.{name}"
            if not isinstance(pattern, str) or not pattern:
                out.append(FieldViolation(where, "must be a non-empty regular expression"))
            elif len(pattern) > MAX_PATTERN_LENGTH:
                out.append(FieldViolation(where, f"is longer than {MAX_PATTERN_LENGTH} characters"))
            else:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    out.append(FieldViolation(where, f"is not a regular expression: {exc}"))
        if self.schema:
            unknown = sorted(_unknown_keywords(self.schema))
            if unknown:
                out.append(
                    FieldViolation(
                        "arguments_schema",
                        f"uses {', '.join(unknown)}; a grant's schema may use only "
                        f"{', '.join(sorted(SCHEMA_KEYWORDS))}",
                    )
                )
            else:
                try:
                    Draft202012Validator.check_schema(dict(self.schema))
                    jsonschema_rs.validator_for(dict(self.schema))
                except jsonschema.SchemaError as exc:
                    out.append(
                        FieldViolation("arguments_schema", f"is not a JSON Schema: {exc.message}")
                    )
                except Exception as exc:  # jsonschema-rs refuses what python-jsonschema took
                    out.append(FieldViolation("arguments_schema", f"does not compile: {exc}"))
        return out

    def matcher(self) -> Matcher:
        return Matcher(self)


def _unknown_keywords(schema: Any) -> set[str]:
    if not isinstance(schema, Mapping):
        return set()
    found = {k for k in schema if k not in SCHEMA_KEYWORDS}
    for name in ("items",):
        found |= _unknown_keywords(schema.get(name))
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for sub in props.values():
            found |= _unknown_keywords(sub)
    return found


class Matcher:
    """A constraint, compiled."""

    def __init__(self, constraint: Constraint) -> None:
        self.equals = dict(constraint.equals)
        self.patterns = {k: re.compile(p) for k, p in constraint.patterns.items()}
        self.schema = (
            jsonschema_rs.validator_for(dict(constraint.schema)) if constraint.schema else None
        )

    def matches(self, arguments: Mapping[str, Any]) -> bool:
        for name, value in self.equals.items():
            if name not in arguments or not _same(arguments[name], value):
                return False
        for name, pattern in self.patterns.items():
            value = arguments.get(name)
            if not isinstance(value, str) or pattern.fullmatch(value) is None:
                return False
        return self.schema is None or bool(self.schema.is_valid(dict(arguments)))


@dataclass
class Grant:
    grant_id: str
    agent_id: str
    tool: str
    constraint: Constraint
    plan_id: str
    expires_at: float
    max_uses: int
    """0: no limit until it expires."""
    created_by: str
    created_at: float
    reason: str = ""
    approval_id: str = ""
    state: str = "ACTIVE"
    """As stored: ACTIVE, EXPIRED or REVOKED."""
    uses: int = 0
    revoked_by: str = ""
    revoked_at: float = 0.0
    revoke_reason: str = ""

    def state_at(self, now: float) -> str:
        """The state as the API shows it at ``now``."""
        if self.state != "ACTIVE":
            return self.state
        if self.expires_at <= now:
            return "EXPIRED"
        if self.max_uses and self.uses >= self.max_uses:
            return "EXHAUSTED"
        return "ACTIVE"

    def policy_view(self) -> dict[str, Any]:
        """The grant as input.grants carries it. Its count of uses is left out
        (the server passes only grants with uses left, and the use's guard
        counts them), so calls under one grant share one cached decision."""
        return {
            "id": self.grant_id,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "plan_id": self.plan_id,
            "expires_at": self.expires_at,
            "max_uses": self.max_uses,
        }

    def values(self) -> dict[str, Any]:
        """The grant's row, by column."""
        return {
            "grant_id": self.grant_id,
            "state": self.state,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "plan_id": self.plan_id,
            "constraint_json": self.constraint.as_json(),
            "expires_at": self.expires_at,
            "max_uses": self.max_uses,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "reason": self.reason,
            "approval_id": self.approval_id,
            "revoked_by": self.revoked_by,
            "revoked_at": self.revoked_at,
            "revoke_reason": self.revoke_reason,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Grant:
        return cls(
            grant_id=row["grant_id"],
            agent_id=row["agent_id"],
            tool=row["tool"],
            constraint=Constraint.from_json(row["constraint_json"]),
            plan_id=row["plan_id"],
            expires_at=float(row["expires_at"]),
            max_uses=int(row["max_uses"]),
            created_by=row["created_by"],
            created_at=float(row["created_at"]),
            reason=row["reason"],
            approval_id=row["approval_id"],
            state=row["state"],
            uses=int(row.get("uses", 0) or 0),
            revoked_by=row["revoked_by"],
            revoked_at=float(row["revoked_at"]),
            revoke_reason=row["revoke_reason"],
        )


__all__ = [
    "SCHEMA_KEYWORDS",
    "STATES",
    "Constraint",
    "Grant",
    "Matcher",
    "new_grant_id",
]
