"""The batch run's small languages: ``--approve`` rules and ``--fail`` specs.

An approval rule is ``all``, ``none``, or comparisons joined by ``and``::

    confidence>0.8
    risk!=HIGH and tool==send_email
    confidence >= 0.9 and agent_id == ops

Each comparison is ``FIELD OP VALUE``: FIELD is ``tool``, ``risk``,
``agent_id`` (strings: ``==`` and ``!=``) or ``confidence`` (a number: ``==
!= < <= > >=``). Values may be quoted (``tool=="send_email"``). The rule is
parsed once, by hand (a tokenizer and a loop, no ``eval``), and a mistake is
a :class:`RuleError` naming what was expected.

A fail spec is ``TOOL`` (every call of the tool fails) or ``TOOL:N`` (its
N-th call, counted from 1 over the calls the batch run's workers receive).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class RuleError(ValueError):
    """An approval rule or fail spec that cannot be read; the message says why."""


@dataclass(frozen=True)
class ApprovalRequest:
    """A held call, as the batch run's approver sees it."""

    approval_id: str
    tool: str
    risk: str
    """LOW, MEDIUM or HIGH, from the tool's contract."""
    confidence: float
    agent_id: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    plan_id: str = ""
    step_id: str = ""
    approvals_required: int = 1


Approver = Callable[[ApprovalRequest], "bool | None"]
"""Approve (True), deny (False) or leave unanswered (None: it expires on its timer)."""

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op><=|>=|==|!=|<|>)
      | (?P<quoted>"[^"]*"|'[^']*')
      | (?P<word>[A-Za-z0-9_.:@+\-]+)
    )""",
    re.VERBOSE,
)
_STRING_FIELDS = ("tool", "risk", "agent_id")
_NUMBER_FIELDS = ("confidence",)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise RuleError(f"cannot read {text[pos:].strip()!r} (at character {pos + 1})")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "quoted":
            kind, value = "word", value[1:-1]
        out.append((kind, value))
        pos = m.end()
    return out


@dataclass(frozen=True)
class _Comparison:
    name: str
    op: str
    value: str | float

    def holds(self, request: ApprovalRequest) -> bool:
        actual: Any = getattr(request, self.name)
        return _COMPARE[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class ApprovalRule:
    """A parsed ``--approve`` value; call it with an :class:`ApprovalRequest`."""

    text: str
    comparisons: tuple[_Comparison, ...] = ()
    constant: bool | None = None
    """True for ``all``, False for ``none``; None for a rule of comparisons."""

    def __call__(self, request: ApprovalRequest) -> bool:
        if self.constant is not None:
            return self.constant
        return all(c.holds(request) for c in self.comparisons)

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str) -> ApprovalRule:
    """``all``, ``none``, or ``FIELD OP VALUE [and FIELD OP VALUE ...]``."""
    stripped = text.strip()
    if stripped.lower() in ("all", "none"):
        return ApprovalRule(stripped.lower(), constant=stripped.lower() == "all")
    tokens = _tokens(stripped)
    if not tokens:
        raise RuleError("an approval rule is all, none, or comparisons like confidence>0.8")
    comparisons: list[_Comparison] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            got = " ".join(v for _, v in tokens[i:]) or "the end of the rule"
            raise RuleError(f"expected FIELD OP VALUE (e.g. confidence>0.8), not {got!r}")
        (k1, name), (k2, op), (k3, raw) = tokens[i : i + 3]
        if k1 != "word" or name not in (*_STRING_FIELDS, *_NUMBER_FIELDS):
            fields = ", ".join((*_STRING_FIELDS, *_NUMBER_FIELDS))
            raise RuleError(f"unknown field {name!r}: a rule compares {fields}")
        if k2 != "op":
            raise RuleError(f"expected an operator (== != < <= > >=) after {name}, not {op!r}")
        if k3 != "word":
            raise RuleError(f"expected a value after {name}{op}, not {raw!r}")
        value: str | float
        if name in _NUMBER_FIELDS:
            try:
                value = float(raw)
            except ValueError:
                raise RuleError(f"{name} compares with a number, not {raw!r}") from None
            if not math.isfinite(value):
                raise RuleError(f"{name} compares with a finite number, not {raw!r}")
        else:
            if op not in ("==", "!="):
                raise RuleError(f"{name} is compared with == or !=, not {op}")
            value = raw.upper() if name == "risk" else raw
        comparisons.append(_Comparison(name, op, value))
        i += 3
        if i == len(tokens):
            break
        if tokens[i][0] != "word" or tokens[i][1].lower() != "and":
            raise RuleError(f"expected 'and' between comparisons, not {tokens[i][1]!r}")
        i += 1
    return ApprovalRule(stripped, tuple(comparisons))


@dataclass(frozen=True)
class FailSpec:
    """Which calls of a tool the batch run's simulated worker fails."""

    tool: str
    call: int | None = None
    """The 1-based call that fails; None: every call."""

    def fails(self, tool: str, count: int) -> bool:
        return tool == self.tool and (self.call is None or count == self.call)

    def __str__(self) -> str:
        return self.tool if self.call is None else f"{self.tool}:{self.call}"


def parse_fail(text: str) -> FailSpec:
    """``TOOL`` or ``TOOL:N`` (N >= 1)."""
    tool, sep, number = text.strip().partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", tool):
        raise RuleError(f"--fail takes TOOL or TOOL:N, not {text!r}")
    if not sep:
        return FailSpec(tool)
    if not number.isdigit() or int(number) < 1:
        raise RuleError(f"--fail {text!r}: N must be a whole number from 1")
    return FailSpec(tool, int(number))


__all__ = [
    "ApprovalRequest",
    "ApprovalRule",
    "Approver",
    "FailSpec",
    "RuleError",
    "parse_fail",
    "parse_rule",
]
