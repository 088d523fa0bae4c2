"""Checking a policy set before it may serve: its catalog, its compilation on
an engine, and one probe decision per tool (a reload, replay and the
playground all check a set this way)."""

from __future__ import annotations

from typing import Any

from interlock.contracts import Catalog
from interlock.errors import InterlockError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import CompiledPolicy, PolicyEngine
from interlock.trust import TrustParams


def probe_inputs(catalog: Catalog) -> list[dict[str, Any]]:
    """One input per tool, used to check that a new set decides well-formed."""
    return [
        {
            "tool": name,
            "contract": tool.policy_view(),
            "agent": {"id": "interlock-probe", "permissions": list(tool.required_permissions)},
            "confidence": 0.9,
            "arguments": {},
            "counts": {"live_in_flight": 0},
            "switches": {},
        }
        for name, tool in sorted(catalog.tools.items())
    ]


async def prepare_set(
    engine: PolicyEngine, policy_set: PolicySet
) -> tuple[Catalog, CompiledPolicy]:
    """Check and compile a set on ``engine`` without making it live; a set a
    reload would refuse raises PolicyLoadError (and nothing stays compiled)."""
    catalog = Catalog.from_data(policy_set.data)
    try:  # the trust rules' numbers (docs/trust.md)
        TrustParams.from_data(policy_set.data)
    except ValueError as exc:
        raise PolicyLoadError(str(exc)) from None
    compiled = await engine.compile(policy_set)
    try:
        for probe in probe_inputs(catalog):
            try:
                await compiled.evaluate(probe)
            except InterlockError as exc:
                raise PolicyLoadError(
                    f"the decision rule fails for tool {probe['tool']}: {exc.message}"
                ) from None
    except BaseException:
        await compiled.release()
        raise
    return catalog, compiled


__all__ = ["prepare_set", "probe_inputs"]
