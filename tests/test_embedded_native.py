"""The embedded engine's two call paths give the same answers and the same errors.

The server hands inputs to rego-cpp through its C API directly (the fast
path); regopy's public API (regopy.Input, Output) is the fallback. Both must
agree on every value the policy can see, and on every error a caller sees.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from interlock.errors import PolicyEvaluationError
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import ENTRYPOINT, EmbeddedEngine, EmbeddedPolicy
from interlock.policy.engine import AUTHZ_ENTRYPOINT

from tests.conftest import POLICIES

VALID = {
    "tool": "vision_inspect",
    "contract": {
        "name": "vision_inspect",
        "risk": "LOW",
        "reversible": True,
        "compensating_tool": None,
        "required_permissions": ["screen.read"],
        "max_concurrency": 8,
        "rate_limit_per_minute": 600,
        "timeout_seconds": 30.0,
    },
    "agent": {"id": "agent1", "permissions": ["screen.read", "ui.write"]},
    "confidence": 0.6,
    "arguments": {"target": "login button"},
    "counts": {"live_in_flight": 0},
    "switches": {},
}

INPUTS: list[Any] = [
    VALID,
    {**VALID, "confidence": 0.95, "agent": {"id": "ops", "permissions": []}},
    {**VALID, "confidence": 1},
    {**VALID, "arguments": {"text": 'é ☃ \n\t"quoted" \\ back', "n": 2**62, "x": -1.5e-7}},
    {**VALID, "arguments": {"tuple": (1, "two", None), "set": {3}, "empty": [], "obj": {}}},
    OrderedDict(VALID),
    {**VALID, "confidence": True},
    {**VALID, "arguments": {"bytes": b"raw", "frozen": frozenset({"a"})}},
    {"tool": 5},
    {},
    [],
    "a string",
    None,
]


@pytest.fixture(scope="module")
def policies() -> tuple[EmbeddedPolicy, EmbeddedPolicy]:
    policy_set = PolicySet.from_dir(POLICIES)
    native = EmbeddedEngine(1, native=True).compile_sync(policy_set)
    public = EmbeddedEngine(1, native=False).compile_sync(policy_set)
    return native, public


def answer(policy: EmbeddedPolicy, entrypoint: str, value: Any) -> tuple[str, Any]:
    try:
        return "ok", policy.query_sync(entrypoint, value)
    except PolicyEvaluationError as exc:
        return "error", str(exc)


def test_the_c_api_is_there_when_asked_for() -> None:
    """A regopy release without the functions would fall back silently: this says so.
    The server asks for it with ``embedded_native`` (off by default)."""
    assert EmbeddedEngine(1, native=True).native is not None
    assert EmbeddedEngine(1).native is None


@pytest.mark.parametrize("entrypoint", [ENTRYPOINT, AUTHZ_ENTRYPOINT])
@pytest.mark.parametrize("value", INPUTS, ids=range(len(INPUTS)))
def test_same_answers(
    policies: tuple[EmbeddedPolicy, EmbeddedPolicy], entrypoint: str, value: Any
) -> None:
    native, public = policies
    assert answer(native, entrypoint, value) == answer(public, entrypoint, value)


@pytest.mark.parametrize(
    "entrypoint, value",
    [
        (ENTRYPOINT, {**VALID, "arguments": {"object": object()}}),  # not JSON
        ("interlock/not/an/entrypoint", VALID),
    ],
)
def test_same_errors(
    policies: tuple[EmbeddedPolicy, EmbeddedPolicy], entrypoint: str, value: Any
) -> None:
    native, public = policies
    got = answer(native, entrypoint, value)
    assert got[0] == "error"
    assert got == answer(public, entrypoint, value)
    # The interpreter stays usable after an error.
    assert answer(native, ENTRYPOINT, VALID) == answer(public, ENTRYPOINT, VALID)
