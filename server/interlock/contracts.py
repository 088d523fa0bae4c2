"""Tool contracts and agent grants, read from the policy bundle's data.

The catalog is ``data.interlock.catalog.tools`` and the grants are
``data.interlock.agents``, so both reload with the policies. A catalog that
does not check (unknown risk, a broken JSON Schema, a compensating tool that
does not exist) refuses the whole policy set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema import Draft202012Validator

from interlock.errors import FieldViolation, InvalidArgument, NotFound, PolicyLoadError

RISKS = ("LOW", "MEDIUM", "HIGH")
HUMAN_APPROVAL = ("optional", "required")
MAX_VIOLATIONS = 20


@dataclass(frozen=True)
class ToolContract:
    name: str
    description: str
    risk: str
    reversible: bool
    compensating_tool: str | None
    required_permissions: tuple[str, ...]
    max_concurrency: int
    rate_limit_per_minute: int
    timeout_seconds: float
    arguments_schema: Mapping[str, Any]
    grantable: bool = True
    """False: no grant covers a call of it, whatever the grant says (docs/grants.md)."""
    human_approval: str = "optional"
    """"required": a held call waits for a human; the policy never approves it
    itself (docs/trust.md, policy-made approvals)."""

    def policy_view(self) -> dict[str, Any]:
        """The contract as the policy input carries it."""
        return {
            "name": self.name,
            "risk": self.risk,
            "reversible": self.reversible,
            "compensating_tool": self.compensating_tool,
            "required_permissions": list(self.required_permissions),
            "max_concurrency": self.max_concurrency,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "timeout_seconds": self.timeout_seconds,
            "grantable": self.grantable,
            "human_approval": self.human_approval,
        }


AGENTS_FILE = "policies/interlock/agents/data.yaml"
"""Where agents are registered (data.interlock.agents); unknown-agent errors name it."""


@dataclass(frozen=True)
class Agent:
    id: str
    description: str
    permissions: tuple[str, ...]


class Catalog:
    """The tool contracts and agent grants of one policy set."""

    def __init__(self, tools: Mapping[str, ToolContract], agents: Mapping[str, Agent]) -> None:
        self.tools = dict(tools)
        self.agents = dict(agents)
        # Two validators per tool, both JSON Schema 2020-12: jsonschema-rs
        # (compiled, ~0.3 us) accepts valid arguments; python-jsonschema
        # (~25-60 us) explains invalid ones, naming every offending field.
        self._fast = {}
        for name, t in self.tools.items():
            try:
                self._fast[name] = jsonschema_rs.validator_for(
                    dict(t.arguments_schema), validate_formats=True
                )
            except Exception as exc:  # a schema jsonschema-rs cannot compile
                raise PolicyLoadError(
                    f"interlock/catalog: {name}: arguments_schema does not compile: {exc}"
                ) from None
        self._validators = {
            name: Draft202012Validator(
                dict(t.arguments_schema), format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            for name, t in self.tools.items()
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Catalog:
        root = _mapping(data.get("interlock", {}), "interlock")
        raw_tools = _mapping(root.get("catalog", {}), "interlock/catalog").get("tools", {})
        raw_tools = _mapping(raw_tools, "interlock/catalog: tools")
        if not raw_tools:
            raise PolicyLoadError("interlock/catalog: the catalog lists no tools")
        tools = {name: _contract(name, spec) for name, spec in raw_tools.items()}
        for t in tools.values():
            if t.compensating_tool is not None and t.compensating_tool not in tools:
                raise PolicyLoadError(
                    f"interlock/catalog: {t.name}: compensating_tool "
                    f"{t.compensating_tool!r} is not in the catalog"
                )
        raw_agents = _mapping(root.get("agents", {}), "interlock/agents")
        agents = {aid: _agent(aid, spec) for aid, spec in raw_agents.items()}
        return cls(tools, agents)

    def tool(self, name: str) -> ToolContract:
        try:
            return self.tools[name]
        except KeyError:
            raise NotFound(f"unknown tool {name!r}", reason="UNKNOWN_TOOL") from None

    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise NotFound(
                f"unknown agent {agent_id!r}: agents are registered in {AGENTS_FILE}",
                reason="UNKNOWN_AGENT",
            ) from None

    def check_arguments(
        self, tool: str, arguments: Mapping[str, Any], *, prefix: str = "arguments"
    ) -> None:
        """Raise InvalidArgument naming every field that breaks the tool's schema."""
        if self._fast[tool].is_valid(arguments):
            return
        validator = self._validators[tool]
        errors = sorted(
            validator.iter_errors(arguments), key=lambda e: list(map(str, e.absolute_path))
        )
        if not errors:
            return
        violations: list[FieldViolation] = []
        if not errors:  # the two libraries disagree: refuse, with the compiled one's reasons
            violations = [
                FieldViolation(prefix, e.message) for e in self._fast[tool].iter_errors(arguments)
            ] or [FieldViolation(prefix, "does not match the tool's schema")]
        for err in errors:
            for violation in _violations(prefix, err):
                if violation not in violations:
                    violations.append(violation)
        raise InvalidArgument.of(violations[:MAX_VIOLATIONS], reason="ARGUMENTS_SCHEMA")


def _violations(prefix: str, err: jsonschema.ValidationError) -> list[FieldViolation]:
    path = prefix
    for part in err.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    # A missing required property is reported on its parent; name each field itself.
    required = err.validator_value
    if (
        err.validator == "required"
        and isinstance(err.instance, Mapping)
        and isinstance(required, list)
    ):
        missing = [p for p in required if p not in err.instance]
        return [
            FieldViolation(f"{path}.{name}", f"{name!r} is a required property") for name in missing
        ]
    return [FieldViolation(path, err.message)]


def _remote_ref(schema: Any) -> str:
    """The first $ref/$dynamicRef/$schema-free reference that is not local ("#..."), or ""."""
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                if not value.startswith("#"):
                    return value
            found = _remote_ref(value)
            if found:
                return found
    elif isinstance(schema, list):
        for item in schema:
            found = _remote_ref(item)
            if found:
                return found
    return ""


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyLoadError(f"{where}: must be a mapping")
    return value


def _contract(name: str, spec: Any) -> ToolContract:
    where = f"interlock/catalog: {name}"
    spec = _mapping(spec, where)

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in spec:
            raise PolicyLoadError(f"{where}: {key} is required")
        value = spec[key]
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise PolicyLoadError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        return value

    risk = need("risk", str)
    if risk not in RISKS:
        raise PolicyLoadError(f"{where}: risk must be one of {', '.join(RISKS)}, not {risk!r}")
    reversible = need("reversible", bool)
    compensating = spec.get("compensating_tool")
    if compensating is not None and not isinstance(compensating, str):
        raise PolicyLoadError(f"{where}: compensating_tool must be a tool name or null")
    perms = need("required_permissions", list)
    if not all(isinstance(p, str) and p for p in perms):
        raise PolicyLoadError(f"{where}: required_permissions must be non-empty strings")
    max_concurrency = need("max_concurrency", int)
    rate = need("rate_limit_per_minute", int)
    timeout = need("timeout_seconds", (int, float))
    if max_concurrency < 1 or rate < 1 or timeout <= 0:
        raise PolicyLoadError(
            f"{where}: max_concurrency, rate_limit_per_minute and timeout_seconds must be positive"
        )
    schema = need("arguments_schema", Mapping)
    grantable = spec.get("grantable", True)
    if not isinstance(grantable, bool):
        raise PolicyLoadError(f"{where}: grantable must be true or false")
    human_approval = spec.get("human_approval", "optional")
    if human_approval not in HUMAN_APPROVAL:
        raise PolicyLoadError(
            f"{where}: human_approval must be one of {', '.join(HUMAN_APPROVAL)}, "
            f"not {human_approval!r}"
        )
    remote = _remote_ref(schema)
    if remote:
        raise PolicyLoadError(
            f"{where}: arguments_schema refers to {remote!r}; only local references "
            '("#/...") are allowed: Interlock never fetches schemas'
        )
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise PolicyLoadError(
            f"{where}: arguments_schema is not a valid JSON Schema: {exc.message}"
        ) from None
    return ToolContract(
        name=name,
        description=str(spec.get("description", "")),
        risk=risk,
        reversible=reversible,
        compensating_tool=compensating,
        required_permissions=tuple(perms),
        max_concurrency=max_concurrency,
        rate_limit_per_minute=rate,
        timeout_seconds=float(timeout),
        arguments_schema=schema,
        grantable=grantable,
        human_approval=human_approval,
    )


def _agent(agent_id: str, spec: Any) -> Agent:
    where = f"interlock/agents: {agent_id}"
    spec = _mapping(spec, where)
    perms = spec.get("permissions", [])
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise PolicyLoadError(f"{where}: permissions must be a list of strings")
    return Agent(agent_id, str(spec.get("description", "")), tuple(perms))


__all__ = ["AGENTS_FILE", "RISKS", "Agent", "Catalog", "ToolContract"]
