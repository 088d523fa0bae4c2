"""Human approvals over gRPC, against a real server with bearer-token principals.

A held call gets an approval bound to its agent, tool, arguments hash and
policy revision; operators resolve it; the approved call presents it once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import duration_pb2
from interlock.decisions import sha256_hex
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import MakeTeam, StartServer
from tests.helpers.security import Stubs, channel, write_principals

EMAIL = {"to": ["a@example.com"], "subject": "Your refund", "body": "Done."}
TRANSFER = {"from_account": "ACCT0001", "to_account": "ACCT0002", "amount": 10, "currency": "EUR"}
PENDING, APPROVED = observe_pb2.APPROVAL_STATE_PENDING, observe_pb2.APPROVAL_STATE_APPROVED
APPROVE, DENY = observe_pb2.APPROVAL_RESOLUTION_APPROVE, observe_pb2.APPROVAL_RESOLUTION_DENY


def set_approval_rules(policy_dir: Path, **tools: dict[str, Any]) -> None:
    """Edit the approvals data of the policy copy: tools.<name> overrides."""
    path = policy_dir / "interlock" / "config" / "data.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["approvals"]["tools"].update(tools)
    path.write_text(yaml.safe_dump(doc))


async def request(
    stubs: Stubs, agent: str, tool: str, arguments: dict[str, Any], confidence: float, **kw: Any
) -> types_pb2.Decision:
    req = pb.RequestToolCallRequest(agent_id=agent, tool=tool, confidence=confidence, **kw)
    req.arguments.update(arguments)
    return (await stubs.cp.RequestToolCall(req)).decision


async def resolve(
    stubs: Stubs, approval_id: str, resolution: int, reason: str = "ok"
) -> observe_pb2.Approval:
    response = await stubs.cp.ResolveApproval(
        pb.ResolveApprovalRequest(approval_id=approval_id, resolution=resolution, reason=reason)
    )
    return response.approval


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def reason_of(err: grpc.aio.AioRpcError) -> str:
    from interlock_client import InterlockError

    return InterlockError.from_rpc_error(err).reason


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def test_a_held_call_is_approved_once_and_runs_live(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    assert held.verdict == types_pb2.VERDICT_PENDING_APPROVAL and held.approval_id

    listed = (await team["alice"].cp.ListApprovals(pb.ListApprovalsRequest())).approvals
    assert [a.approval_id for a in listed] == [held.approval_id]
    a = listed[0]
    assert a.state == PENDING and a.decision_id == held.decision_id
    assert a.requested_by == "mailer" and a.agent_id == "mailer" and a.tool == "send_email"
    assert a.arguments_hash == sha256_hex(EMAIL)
    assert a.policy_revision == held.policy_revision
    assert list(a.approver_roles) == ["approver"] and a.approvals_required == 1
    assert a.expires_at.seconds - a.created_at.seconds == 900

    # The agent waits on AwaitApproval while an operator approves.
    waiting = asyncio.ensure_future(
        team["mailer"].cp.AwaitApproval(
            pb.AwaitApprovalRequest(
                approval_id=held.approval_id, timeout=duration_pb2.Duration(seconds=10)
            )
        )
    )
    await asyncio.sleep(0.1)
    assert not waiting.done()
    approved = await resolve(team["alice"], held.approval_id, APPROVE, "looks right")
    assert approved.state == APPROVED and list(approved.approved_by) == ["alice"]
    assert approved.resolved_by == "alice"
    assert (await asyncio.wait_for(waiting, 5)).approval.state == APPROVED

    run = await request(
        team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id
    )
    assert run.verdict == types_pb2.VERDICT_ALLOW and run.mode == types_pb2.EXECUTION_MODE_LIVE
    assert run.approval_id == held.approval_id
    assert f"approved by alice (approval {held.approval_id})" in run.reasons

    # Single use: a second call with it is refused, and the approval says USED.
    err = await rpc_error(
        request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err) == "APPROVAL_NOT_USABLE"
    used = (
        await team["alice"].cp.ListApprovals(
            pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_USED])
        )
    ).approvals
    assert [u.used_by_decision_id for u in used] == [run.decision_id]

    await team.running.server.stop(grace=0.5)
    actions = [line["action"] for line in lines(team.running.data_dir / "approvals.jsonl")]
    assert actions == ["REQUESTED", "APPROVED", "USED"]


async def test_an_approval_covers_only_its_exact_call(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    other = dict(EMAIL, body="Something else entirely.")
    err = await rpc_error(
        request(team["mailer"], "mailer", "send_email", other, 0.85, approval_id=held.approval_id)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err) == "APPROVAL_MISMATCH" and "arguments" in (err.details() or "")
    # Not used up by the refused call: the exact call still runs with it.
    run = await request(
        team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id
    )
    assert run.verdict == types_pb2.VERDICT_ALLOW


async def test_nobody_approves_their_own_call_or_without_the_role(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    for who, expected in (
        ("mailer", "mailer asked for this call"),
        ("mallory", "mallory acts as agent mailer"),
        ("olga", "olga holds none of the roles"),
        ("root", "root holds none of the roles"),
    ):
        err = await rpc_error(resolve(team[who], held.approval_id, APPROVE))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, who
        assert expected in (err.details() or ""), (who, err.details())
    still = (await team["alice"].cp.ListApprovals(pb.ListApprovalsRequest())).approvals
    assert still[0].state == PENDING and not still[0].approved_by

    await team.running.server.stop(grace=0.5)
    denials = lines(team.running.data_dir / "access_denials.jsonl")
    assert [d["principal"] for d in denials] == ["mailer", "mallory", "olga", "root"]
    assert {d["method"] for d in denials} == {"ResolveApproval"}


async def test_resolving_twice_and_quorum_of_distinct_approvers(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.9)
    assert held.verdict == types_pb2.VERDICT_PENDING_APPROVAL
    first = await resolve(team["alice"], held.approval_id, APPROVE)
    assert first.state == PENDING and first.approvals_required == 2
    assert list(first.approved_by) == ["alice"]
    err = await rpc_error(resolve(team["alice"], held.approval_id, APPROVE))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(err) == "ALREADY_APPROVED_BY_YOU"
    # Not usable until the quorum is met.
    err = await rpc_error(
        request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.9, approval_id=held.approval_id)
    )
    assert reason_of(err) == "APPROVAL_PENDING"
    second = await resolve(team["bob"], held.approval_id, APPROVE)
    assert second.state == APPROVED and list(second.approved_by) == ["alice", "bob"]
    for resolution in (APPROVE, DENY):
        err = await rpc_error(resolve(team["bob"], held.approval_id, resolution, "late"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(err) == "APPROVAL_APPROVED"


async def test_a_denial_needs_a_reason_and_is_final(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.95)
    err = await rpc_error(resolve(team["alice"], held.approval_id, DENY, reason=" "))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    denied = await resolve(team["alice"], held.approval_id, DENY, "wrong account")
    assert denied.state == observe_pb2.APPROVAL_STATE_DENIED
    assert denied.reason == "wrong account" and denied.resolved_by == "alice"
    err = await rpc_error(
        request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.95, approval_id=held.approval_id)
    )
    assert reason_of(err) == "APPROVAL_NOT_USABLE"
    # Denied at confidence 0.95: a learning signal says the human and the agent disagree.
    signals = team.running.server.signals
    await asyncio.wait_for(signals.drain(), 5)
    found = await team["alice"].cp.ListSignals(
        pb.ListSignalsRequest(kinds=[observe_pb2.SIGNAL_KIND_APPROVAL_MISMATCH])
    )
    assert [s.evidence["rule"] for s in found.signals] == ["denied_at_high_confidence"]


async def test_expiry_is_its_own_outcome(make_team: MakeTeam, policy_dir: Path) -> None:
    set_approval_rules(policy_dir, send_email={"ttl_seconds": 1, "escalation": []})
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    waited = await team["mailer"].cp.AwaitApproval(
        pb.AwaitApprovalRequest(
            approval_id=held.approval_id, timeout=duration_pb2.Duration(seconds=5)
        )
    )
    a = waited.approval
    assert a.state == observe_pb2.APPROVAL_STATE_EXPIRED
    assert "denied by default" in a.reason
    err = await rpc_error(resolve(team["alice"], held.approval_id, APPROVE))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err) == "APPROVAL_EXPIRED"
    events = team["alice"].cp.WatchEvents(
        pb.WatchEventsRequest(kinds=[observe_pb2.EVENT_KIND_APPROVAL])
    )
    seen = []
    async for response in events:
        seen.append(response.event.payload["action"])
        if len(seen) == 2:
            break
    events.cancel()
    assert seen == ["REQUESTED", "EXPIRED"]


async def test_unanswered_requests_escalate(make_team: MakeTeam, policy_dir: Path) -> None:
    set_approval_rules(
        policy_dir,
        send_email={
            "ttl_seconds": 30,
            "escalation": [{"after_seconds": 0.5, "approver_roles": ["approval-lead"]}],
        },
    )
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    err = await rpc_error(resolve(team["carol"], held.approval_id, APPROVE))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    deadline = time.monotonic() + 5
    while True:
        (a,) = (await team["carol"].cp.ListApprovals(pb.ListApprovalsRequest())).approvals
        if a.escalation_level == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert list(a.approver_roles) == ["approver", "approval-lead"] and a.escalation_level == 1
    assert (await resolve(team["carol"], held.approval_id, APPROVE)).state == APPROVED


async def test_a_tightened_policy_voids_an_approval(make_team: MakeTeam, policy_dir: Path) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    set_approval_rules(policy_dir, send_email={"approvals_required": 2})
    reload = await team["root"].policy.ReloadPolicies(pb_reload())
    assert reload.changed
    err = await rpc_error(
        request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id)
    )
    assert reason_of(err) == "APPROVAL_POLICY_CHANGED"


async def test_a_policy_change_that_asks_no_more_keeps_an_approval(
    make_team: MakeTeam, policy_dir: Path
) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    set_approval_rules(policy_dir, send_email={"ttl_seconds": 600})
    assert (await team["root"].policy.ReloadPolicies(pb_reload())).changed
    run = await request(
        team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id
    )
    assert run.verdict == types_pb2.VERDICT_ALLOW and run.policy_revision != held.policy_revision


async def test_pending_approvals_survive_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "principals.yaml")
    data = str(tmp_path / "kept")
    first = await start_server(principals_file=str(tmp_path / "principals.yaml"), data_dir=data)
    async with channel(f"127.0.0.1:{first.server.port}", tokens["mailer"]) as ch:
        held = await request(Stubs(ch), "mailer", "send_email", EMAIL, 0.85)
    before = (await first.server.decisions.approvals.get(held.approval_id)).expires_at
    await first.server.stop(grace=0.5)

    second = await start_server(principals_file=str(tmp_path / "principals.yaml"), data_dir=data)
    async with channel(f"127.0.0.1:{second.server.port}", tokens["alice"]) as ch:
        (a,) = (await Stubs(ch).cp.ListApprovals(pb.ListApprovalsRequest())).approvals
        assert a.approval_id == held.approval_id and a.state == PENDING
        assert abs(a.expires_at.ToNanoseconds() / 1e9 - before) < 1e-3
        assert (await resolve(Stubs(ch), held.approval_id, APPROVE)).state == APPROVED


def pb_reload() -> Any:
    from interlock.v1 import policy_service_pb2

    return policy_service_pb2.ReloadPoliciesRequest()
