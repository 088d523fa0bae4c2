"""Plan steps held for approval, end to end over gRPC with authenticated principals.

A HIGH-risk LIVE step waits in AWAITING_APPROVAL; operators approve it and the
agent's worker receives it LIVE; a denial fails the step with its reason and
the plan rolls back; an expiry shows EXPIRED; a restart loses nothing.
"""

from __future__ import annotations

from pathlib import Path

from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2, types_pb2

from tests.conftest import MakeTeam
from tests.helpers.security import Stubs
from tests.helpers.workers import FINISHED, TRANSFER, Worker, wait_plan, wait_step
from tests.test_approvals import APPROVE, DENY, resolve, set_approval_rules
from tests.test_plans_api import spec, step

LOOKUP = {"record_id": "CU-12345"}
APPROVED = observe_pb2.APPROVAL_STATE_APPROVED


def transfer_plan(plan_id: str) -> pb.SubmitPlanRequest:
    """A LIVE lookup, then a HIGH-risk transfer that needs two approvers."""
    return spec(
        plan_id,
        step("look", "crm_lookup", "ops", 0.9, LOOKUP),
        step("pay", "transfer_funds", "ops", 0.9, TRANSFER, ("look",)),
    )


async def held_approval(stubs: Stubs, plan_id: str) -> observe_pb2.Approval:
    await wait_step(stubs.cp, plan_id, "pay", plans_pb2.STEP_STATE_AWAITING_APPROVAL)
    listed = await stubs.cp.ListApprovals(pb.ListApprovalsRequest(plan_id=plan_id))
    (approval,) = listed.approvals
    return approval


def step_of(plan: plans_pb2.Plan, step_id: str) -> plans_pb2.Step:
    return next(x for x in plan.steps if x.step_id == step_id)


async def test_an_approved_step_reaches_the_worker_live(make_team: MakeTeam) -> None:
    team = await make_team()
    async with Worker(team["ops"].channel, "ops") as worker:
        await team["planner"].cp.SubmitPlan(transfer_plan("pay1"))
        approval = await held_approval(team["alice"], "pay1")
        assert approval.requested_by == "planner" and approval.step_id == "pay"
        assert approval.approvals_required == 2
        assert [i.tool for i in await worker.wait_for(1)] == ["crm_lookup"]
        await resolve(team["alice"], approval.approval_id, APPROVE)
        assert (await resolve(team["bob"], approval.approval_id, APPROVE)).state == APPROVED
        items = await worker.wait_for(2)
        assert items[1].tool == "transfer_funds"
        assert items[1].mode == types_pb2.EXECUTION_MODE_LIVE
        plan = await wait_plan(team["planner"].cp, "pay1", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
    pay = step_of(plan, "pay")
    assert pay.decision.mode == types_pb2.EXECUTION_MODE_LIVE
    used = await team["alice"].cp.ListApprovals(
        pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_USED], plan_id="pay1")
    )
    assert [a.used_by_decision_id for a in used.approvals] == [pay.decision.decision_id]
    assert pay.decision.decision_id != approval.decision_id


async def test_a_denied_step_fails_with_the_reason_and_rolls_back(make_team: MakeTeam) -> None:
    team = await make_team()
    async with Worker(team["ops"].channel, "ops"):
        await team["root"].cp.SubmitPlan(transfer_plan("pay2"))
        approval = await held_approval(team["alice"], "pay2")
        await resolve(team["alice"], approval.approval_id, DENY, "not this account")
        plan = await wait_plan(team["root"].cp, "pay2", FINISHED)
    pay = step_of(plan, "pay")
    assert pay.state == plans_pb2.STEP_STATE_FAILED
    assert "denied by alice: not this account" in pay.message
    # The lookup ran LIVE but changes nothing: there is nothing to undo.
    assert plan.state == plans_pb2.PLAN_STATE_FAILED, plan.message


async def test_an_expired_step_shows_expired(make_team: MakeTeam, policy_dir: Path) -> None:
    set_approval_rules(policy_dir, transfer_funds={"ttl_seconds": 1, "escalation": []})
    team = await make_team()
    async with Worker(team["ops"].channel, "ops"):
        await team["root"].cp.SubmitPlan(transfer_plan("pay3"))
        plan = await wait_plan(team["root"].cp, "pay3", FINISHED)
    pay = step_of(plan, "pay")
    assert pay.state == plans_pb2.STEP_STATE_FAILED and "EXPIRED" in pay.message
    expired = await team["root"].cp.ListApprovals(
        pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_EXPIRED])
    )
    assert [a.step_id for a in expired.approvals] == ["pay"]


async def test_a_restart_while_waiting_loses_nothing(make_team: MakeTeam, tmp_path: Path) -> None:
    data = str(tmp_path / "kept")
    first = await make_team(data_dir=data)
    async with Worker(first["ops"].channel, "ops"):
        await first["root"].cp.SubmitPlan(transfer_plan("pay4"))
        approval = await held_approval(first["alice"], "pay4")
        await resolve(first["alice"], approval.approval_id, APPROVE)  # 1 of 2
    await first.close()
    await first.running.server.stop(grace=0.5)

    second = await make_team(first.tokens, data_dir=data)
    again = await held_approval(second["root"], "pay4")
    assert again.approval_id == approval.approval_id
    assert list(again.approved_by) == ["alice"]
    assert again.expires_at == approval.expires_at
    async with Worker(second["ops"].channel, "ops") as worker:
        assert (await resolve(second["bob"], approval.approval_id, APPROVE)).state == APPROVED
        items = await worker.wait_for(1)
        assert items[0].tool == "transfer_funds"
        assert items[0].mode == types_pb2.EXECUTION_MODE_LIVE
        plan = await wait_plan(second["root"].cp, "pay4", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message


async def test_cancelling_a_plan_withdraws_its_approval(make_team: MakeTeam) -> None:
    team = await make_team()
    async with Worker(team["ops"].channel, "ops"):
        await team["root"].cp.SubmitPlan(transfer_plan("pay5"))
        approval = await held_approval(team["alice"], "pay5")
        await team["root"].cp.CancelPlan(
            pb.CancelPlanRequest(plan_id="pay5", reason="changed mind")
        )
        plan = await wait_plan(team["root"].cp, "pay5", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_CANCELLED
    (withdrawn,) = (
        await team["alice"].cp.ListApprovals(
            pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_CANCELLED])
        )
    ).approvals
    assert withdrawn.approval_id == approval.approval_id and "pay5 cancelled" in withdrawn.reason
    assert not (await team["alice"].cp.ListApprovals(pb.ListApprovalsRequest())).approvals
