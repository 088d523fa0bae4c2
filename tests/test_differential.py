"""Each in-process engine (regopy's embedded, and regorus) gives the decisions
(and RPC authorization answers) real OPA gives, on tables of generated inputs.

The table covers every tool in the catalog under every risk level and
reversibility, every agent's grants, confidences on and around each
threshold, each switch, LIVE-concurrency counts, and malformed inputs.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from interlock.contracts import Catalog
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import EmbeddedEngine
from interlock.policy.opa import OpaEngine
from interlock.policy.regorus_engine import RegorusEngine

from tests.conftest import POLICIES
from tests.helpers.opa import OpaProcess, opa_binary

pytestmark = pytest.mark.opa


@pytest.fixture(params=["embedded", "regorus"])
def local_engine(request: pytest.FixtureRequest) -> EmbeddedEngine | RegorusEngine:
    """The in-process engine under test."""
    if request.param == "regorus":
        return RegorusEngine(threads=1)
    return EmbeddedEngine(threads=1)


CONFIDENCES = (
    0.0,
    0.3,
    0.49,
    0.5,
    0.6,
    0.64,
    0.65,
    0.69,
    0.7,
    0.75,
    0.79,
    0.8,
    0.84,
    0.85,
    0.9,
    0.99,
    1.0,
)
SWITCHES: tuple[dict[str, Any], ...] = (
    {},
    {"dry_run_only": True},
    {"live_confidence_floor": 0.9},
    {"max_concurrent_live": 2},
    {"max_concurrent_live": 0},
    {"approval_required_for_high_risk": False},
    {"dry_run_only": True, "live_confidence_floor": 0.95, "max_concurrent_live": 1},
)
MALFORMED: tuple[dict[str, Any], ...] = (
    {},
    {"tool": "vision_inspect"},
    {
        "tool": "vision_inspect",
        "agent": {"id": "agent1", "permissions": []},
        "confidence": 1.5,
        "contract": {"risk": "LOW", "reversible": True, "required_permissions": []},
    },
    {
        "tool": "vision_inspect",
        "agent": {"id": "agent1", "permissions": []},
        "confidence": "high",
        "contract": {"risk": "LOW", "reversible": True, "required_permissions": []},
    },
    {
        "tool": "x",
        "agent": {"id": "a", "permissions": []},
        "confidence": 0.9,
        "contract": {"risk": "CRITICAL", "reversible": True, "required_permissions": []},
    },
    {
        "tool": "x",
        "agent": {"id": "a", "permissions": []},
        "confidence": 0.9,
        "contract": {"risk": "LOW", "required_permissions": []},
    },
    {
        "tool": "x",
        "agent": {"id": "a", "permissions": []},
        "confidence": 0.9,
        "contract": {"risk": "LOW", "reversible": False, "required_permissions": []},
        "switches": "off",
    },
    {
        "tool": "x",
        "agent": {"id": "a", "permissions": []},
        "confidence": 0.9,
        "contract": {"risk": "LOW", "reversible": False, "required_permissions": []},
        "switches": {"dry_run_only": "yes"},
    },
)


def generated_inputs(catalog: Catalog, n: int = 400, seed: int = 24) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    space = list(
        itertools.product(
            sorted(catalog.tools),
            sorted(catalog.agents),
            ("LOW", "MEDIUM", "HIGH", None),  # None: the catalog's own risk
            (True, False, None),  # None: the catalog's own reversibility
            CONFIDENCES,
            range(len(SWITCHES)),
            (0, 1, 2, 5, 9),
        )
    )
    picked = rng.sample(space, n)
    inputs = []
    for i, (tool, agent, risk, reversible, confidence, switches, live) in enumerate(picked):
        contract = catalog.tools[tool].policy_view()
        if risk is not None:
            contract["risk"] = risk
        if reversible is not None:
            contract["reversible"] = reversible
        inputs.append(
            {
                "tool": tool,
                "contract": contract,
                "agent": {"id": agent, "permissions": list(catalog.agents[agent].permissions)},
                "confidence": confidence,
                "arguments": {},
                "counts": {"live_in_flight": live},
                "switches": dict(SWITCHES[switches]),
                "plan": {"plan_id": "p1" if i % 2 else "", "step_id": ""},
            }
        )
        if i % 3 == 0:  # grants (docs/grants.md): matching, another agent's, another plan's
            inputs[-1]["grants"] = grants_for(rng, agent, tool)
        trust = TRUST_STATES[i % len(TRUST_STATES)]  # docs/trust.md
        if trust is not None:
            inputs[-1]["trust"] = dict(trust)
        if i % 2:  # the count policy-made approvals need (their rate)
            inputs[-1]["counts"]["policy_approvals"] = rng.choice((0, 19, 20))
    # Held calls the policy may approve itself: a reversible HIGH-risk tool at
    # and around its floor and rate, trusted or not, and one a human must approve.
    for tool, confidence, used, trust in itertools.product(
        ("form_fill", "transfer_funds"), (0.85, 0.9, 1.0), (0, 19, 20), TRUST_STATES[:3]
    ):
        agent = "agent1" if tool == "form_fill" else "ops"
        contract = catalog.tools[tool].policy_view() | {"risk": "HIGH"}
        held: dict[str, Any] = {
            "tool": tool,
            "contract": contract,
            "agent": {"id": agent, "permissions": list(catalog.agents[agent].permissions)},
            "confidence": confidence,
            "arguments": {},
            "counts": {"live_in_flight": 0, "policy_approvals": used},
            "switches": {},
            "plan": {"plan_id": "", "step_id": ""},
        }
        if trust is not None:
            held["trust"] = dict(trust)
        inputs.append(held)
    return inputs + [dict(m) for m in MALFORMED]


TRUST_STATES: tuple[dict[str, Any] | None, ...] = (
    None,
    {"state": "TRUSTED", "failures": 2},
    {
        "state": "DEMOTED",
        "failures": 0,
        "demoted_until": 1.9e9,
        "until": "12:04:00 UTC",
        "demotions": 2,
        "clean_runs": 0,
        "clean_runs_needed": 5,
        "reason": "form_fill demoted for agent1 until 12:04:00 UTC after 3 failures in 10 min",
    },
    {
        "state": "PROBATION",
        "failures": 1,
        "demoted_until": 1.0e9,
        "until": "01:46:40 UTC",
        "demotions": 1,
        "clean_runs": 3,
        "clean_runs_needed": 5,
        "reason": "crm_lookup demoted for agent2 until 01:46:40 UTC after 2 failures and 1 timeout in 10 min",
    },
)


def with_auto_approve(policy_set: PolicySet) -> PolicySet:
    """The shipped set with policy-made approvals switched on (docs/trust.md)."""
    path = "interlock/config/data.yaml"
    text = policy_set.files[path]
    on = text.replace("  auto_approve:\n    enabled: false", "  auto_approve:\n    enabled: true")
    assert on != text
    return PolicySet.from_files({**policy_set.files, path: on}, source="inline")


def grants_for(rng: random.Random, agent: str, tool: str) -> list[dict[str, Any]]:
    def grant(n: int, **over: Any) -> dict[str, Any]:
        g = {"id": f"grt_{n}", "agent_id": agent, "tool": tool, "plan_id": ""}
        return g | {"expires_at": 1.9e9 + rng.choice((0, 60.5, 3600)), "max_uses": 3} | over

    choices = [
        [grant(1)],
        [grant(1), grant(2)],
        [grant(1, agent_id="someone-else")],
        [grant(1, plan_id="p1"), grant(2, plan_id="p2")],
        [grant(1, tool="another-tool"), grant(2, expires_at=1.9e9)],
    ]
    return rng.choice(choices)


async def test_embedded_and_opa_decide_identically(
    opa: OpaProcess, local_engine: EmbeddedEngine | RegorusEngine
) -> None:
    policy_set = with_auto_approve(PolicySet.from_dir(POLICIES))
    catalog = Catalog.from_data(policy_set.data)
    inputs = generated_inputs(catalog)
    assert len(inputs) >= 200

    embedded = local_engine
    opa_engine = OpaEngine(opa.url, timeout=5, opa_bin=opa_binary())
    try:
        local = embedded.compile_sync(policy_set)
        remote = await opa_engine.compile(policy_set)
        mismatches = []
        outcomes = set()
        for policy_input in inputs:
            a = local.evaluate_sync(policy_input)
            b = await remote.evaluate(policy_input)
            outcomes.add((a.verdict, a.mode))
            if a.grant:
                outcomes.add((a.verdict, a.mode, "grant"))
            if a.approval is not None and a.approval.auto_approve:
                outcomes.add((a.verdict, a.mode, "policy-approved"))
            if any("demoted" in r for r in a.reasons) and a.mode == "DRY_RUN":
                outcomes.add((a.verdict, a.mode, "demoted"))
            if a != b:
                mismatches.append((policy_input, a, b))
        assert not mismatches, mismatches[:3]
        # The table is only worth something if it reaches every outcome.
        assert {
            ("ALLOW", "MOCK"),
            ("ALLOW", "DRY_RUN"),
            ("ALLOW", "LIVE"),
            ("PENDING_APPROVAL", "LIVE"),
            ("DENY", "MOCK"),
            ("ALLOW", "LIVE", "grant"),
            ("PENDING_APPROVAL", "LIVE", "policy-approved"),
            ("ALLOW", "DRY_RUN", "demoted"),
        } <= outcomes
    finally:
        await embedded.close()
        await opa_engine.close()


METHODS = (
    "ListTools",
    "RequestToolCall",
    "ReportToolResult",
    "PullWork",
    "SubmitPlan",
    "CancelPlan",
    "ResolveApproval",
    "ReloadPolicies",
    "EvaluatePolicy",
    "WatchEvents",
    "CreateGrant",
    "RevokeGrant",
    "ListGrants",
    "GetTrust",
    "ResetTrust",
    "Frobnicate",
)
PRINCIPALS: tuple[dict[str, Any], ...] = (
    {"id": "agent1", "kind": "agent", "roles": [], "agents": ["agent1"]},
    {"id": "planner", "kind": "agent", "roles": ["planner"], "agents": ["planner"]},
    {"id": "alice", "kind": "operator", "roles": ["approver"], "agents": []},
    {"id": "mallory", "kind": "operator", "roles": ["approver"], "agents": ["agent2"]},
    {"id": "root", "kind": "admin", "roles": [], "agents": []},
    {"id": "robot", "kind": "robot", "roles": [], "agents": []},
)


def authz_inputs() -> list[dict[str, Any]]:
    out = []
    for method, principal, agent, (roles, requester) in itertools.product(
        METHODS,
        PRINCIPALS,
        ("agent1", "agent2"),
        (
            (["approver"], "agent2"),
            (["approver", "approval-lead"], "alice"),
            (["data-steward"], "x"),
        ),
    ):
        out.append(
            {
                "method": method,
                "principal": principal,
                "request": {"agent_id": agent},
                "approval": {"approver_roles": roles, "requested_by": requester, "agent_id": agent},
            }
        )
    return out


async def test_embedded_and_opa_authorize_identically(
    opa: OpaProcess, local_engine: EmbeddedEngine | RegorusEngine
) -> None:
    from interlock.policy.engine import AUTHZ_ENTRYPOINT, parse_authz

    policy_set = PolicySet.from_dir(POLICIES)
    embedded = local_engine
    opa_engine = OpaEngine(opa.url, timeout=5, opa_bin=opa_binary())
    try:
        local = embedded.compile_sync(policy_set)
        remote = await opa_engine.compile(policy_set)
        answers = []
        for policy_input in authz_inputs():
            a = parse_authz(local.query_sync(AUTHZ_ENTRYPOINT, policy_input))
            b = parse_authz(await remote.query(AUTHZ_ENTRYPOINT, policy_input))
            assert a == b, (policy_input, a, b)
            answers.append(a)
        allowed = sum(1 for ok, _ in answers if ok)
        assert 0 < allowed < len(answers)  # both outcomes are reached
        assert any("holds none of the roles" in why for _, why in answers)
    finally:
        await embedded.close()
        await opa_engine.close()
