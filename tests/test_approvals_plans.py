"""Plan steps held for approval, end to end over gRPC with authenticated principals.

A HIGH-risk LIVE step waits in AWAITING_APPROVAL; operators approve it and the
agent's worker receives it LIVE; a denial fails the step with its reason and
the plan rolls back; an expiry shows EXPIRED; a restart loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2, types_pb2

from tests.conftest import StartServer
from tests.helpers.security import Stubs, channel, write_principals
from tests.helpers.workers import FINISHED, TRANSFER, Worker, wait_plan, wait_step
from tests.test_approvals import APPROVE, DENY, resolve, set_approval_rules
from tests.test_plans_api import spec, step

LOOKUP = {"record_id": "CU-12345"}


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


async def test_an_approved_step_reaches_the_worker_live(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    address = f"127.0.0.1:{s.server.port}"
    async with (
        channel(address, tokens["planner"]) as planner_ch,
        channel(address, tokens["ops"]) as ops_ch,
        channel(address, tokens["alice"]) as alice_ch,
        channel(address, tokens["bob"]) as bob_ch,
    ):
        planner, alice, bob = Stubs(planner_ch), Stubs(alice_ch), Stubs(bob_ch)
        async with Worker(ops_ch, "ops") as worker:
            await planner.cp.SubmitPlan(transfer_plan("pay1"))
            approval = await held_approval(alice, "pay1")
            assert approval.requested_by == "planner" and approval.step_id == "pay"
            assert approval.approvals_required == 2
            assert [i.tool for i in await worker.wait_for(1)] == ["crm_lookup"]
            await resolve(alice, approval.approval_id, APPROVE)
            assert (await resolve(bob, approval.approval_id, APPROVE)).state == (
                observe_pb2.APPROVAL_STATE_APPROVED
            )
            items = await worker.wait_for(2)
            assert items[1].tool == "transfer_funds"
            assert items[1].mode == types_pb2.EXECUTION_MODE_LIVE
            plan = await wait_plan(planner.cp, "pay1", FINISHED)
        assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
        pay = next(x for x in plan.steps if x.step_id == "pay")
        assert pay.decision.mode == types_pb2.EXECUTION_MODE_LIVE
        used = await alice.cp.ListApprovals(
            pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_USED], plan_id="pay1")
        )
        assert [a.used_by_decision_id for a in used.approvals] == [pay.decision.decision_id]
        assert pay.decision.decision_id != approval.decision_id


async def test_a_denied_step_fails_with_the_reason_and_rolls_back(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    address = f"127.0.0.1:{s.server.port}"
    async with (
        channel(address, tokens["root"]) as root_ch,
        channel(address, tokens["ops"]) as ops_ch,
        channel(address, tokens["alice"]) as alice_ch,
    ):
        root, alice = Stubs(root_ch), Stubs(alice_ch)
        async with Worker(ops_ch, "ops"):
            await root.cp.SubmitPlan(transfer_plan("pay2"))
            approval = await held_approval(alice, "pay2")
            await resolve(alice, approval.approval_id, DENY, "not this account")
            plan = await wait_plan(root.cp, "pay2", FINISHED)
        pay = next(x for x in plan.steps if x.step_id == "pay")
        assert pay.state == plans_pb2.STEP_STATE_FAILED
        assert "denied by alice: not this account" in pay.message
        # The lookup ran LIVE but is reversible without a compensation: nothing to undo.
        assert plan.state in (plans_pb2.PLAN_STATE_FAILED, plans_pb2.PLAN_STATE_ROLLED_BACK)


async def test_an_expired_step_shows_expired(
    start_server: StartServer, tmp_path: Path, policy_dir: Path
) -> None:
    set_approval_rules(policy_dir, transfer_funds={"ttl_seconds": 1, "escalation": []})
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    address = f"127.0.0.1:{s.server.port}"
    async with (
        channel(address, tokens["root"]) as root_ch,
        channel(address, tokens["ops"]) as ops_ch,
    ):
        root = Stubs(root_ch)
        async with Worker(ops_ch, "ops"):
            await root.cp.SubmitPlan(transfer_plan("pay3"))
            plan = await wait_plan(root.cp, "pay3", FINISHED)
        pay = next(x for x in plan.steps if x.step_id == "pay")
        assert pay.state == plans_pb2.STEP_STATE_FAILED and "EXPIRED" in pay.message
        expired = await root.cp.ListApprovals(
            pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_EXPIRED])
        )
        assert [a.step_id for a in expired.approvals] == ["pay"]


async def test_a_restart_while_waiting_loses_nothing(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    data = str(tmp_path / "kept")
    options: dict[str, Any] = {"principals_file": str(tmp_path / "p.yaml"), "data_dir": data}
    first = await start_server(**options)
    address = f"127.0.0.1:{first.server.port}"
    async with (
        channel(address, tokens["root"]) as root_ch,
        channel(address, tokens["ops"]) as ops_ch,
        channel(address, tokens["alice"]) as alice_ch,
    ):
        async with Worker(ops_ch, "ops"):
            await Stubs(root_ch).cp.SubmitPlan(transfer_plan("pay4"))
            approval = await held_approval(Stubs(alice_ch), "pay4")
            await resolve(Stubs(alice_ch), approval.approval_id, APPROVE)  # 1 of 2
    await first.server.stop(grace=0.5)

    second = await start_server(**options)
    address = f"127.0.0.1:{second.server.port}"
    async with (
        channel(address, tokens["root"]) as root_ch,
        channel(address, tokens["ops"]) as ops_ch,
        channel(address, tokens["bob"]) as bob_ch,
    ):
        root, bob = Stubs(root_ch), Stubs(bob_ch)
        again = await held_approval(root, "pay4")
        assert again.approval_id == approval.approval_id
        assert list(again.approved_by) == ["alice"]
        assert again.expires_at == approval.expires_at
        async with Worker(ops_ch, "ops") as worker:
            assert (await resolve(bob, approval.approval_id, APPROVE)).state == (
                observe_pb2.APPROVAL_STATE_APPROVED
            )
            items = await worker.wait_for(1)
            assert items[0].tool == "transfer_funds"
            assert items[0].mode == types_pb2.EXECUTION_MODE_LIVE
            plan = await wait_plan(root.cp, "pay4", FINISHED)
        assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
