"""Refused approval misuse is on the record (issue 11, finding 7).

Against a real server with bearer-token principals: presenting an approval
that was used, denied, expired or withdrawn, or one for other arguments, tool
or agent; approving twice or an approval already resolved; approving one's
own call or without an approver role. Each is refused exactly as before, and
each leaves one access_denials.jsonl line with its reason code, one
ACCESS_DENIED event on WatchEvents, and an audit chain that still verifies.
A store that cannot write does not change the refusal or hold it up.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import grpc
import jsonschema
import pytest
from interlock.audit import ACCESS_DENIALS
from interlock.decisions import sha256_hex
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2

from tests.conftest import STORE, MakeTeam
from tests.helpers.denials import denial_events, denial_lines, wait_for_denial_lines
from tests.helpers.security import Team
from tests.helpers.workers import FINISHED, Worker, wait_plan
from tests.helpers.workers import TRANSFER as PLAN_TRANSFER
from tests.test_approvals import (
    APPROVE,
    DENY,
    EMAIL,
    TRANSFER,
    reason_of,
    request,
    resolve,
    rpc_error,
    set_approval_rules,
)
from tests.test_approvals_plans import held_approval, transfer_plan
from tests.test_audit import schema, verify

LOOKUP = {"record_id": "CU-12345"}


async def approved_and_used(team: Team) -> str:
    """A send_email approval for mailer, approved by alice and used up."""
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id)
    return held.approval_id


async def refused(
    call: Any, code: grpc.StatusCode, reason: str, text: str = ""
) -> grpc.aio.AioRpcError:
    """The refusal the caller gets, as it was before misuse was recorded."""
    err = await rpc_error(call)
    assert err.code() == code, err.details()
    assert reason_of(err) == reason, err.details()
    assert text in (err.details() or "")
    return err


async def on_record(team: Team, expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each expected denial (a subset of a line's fields) is one line and one
    ACCESS_DENIED event, in order; the lines match their schema and the audit
    chain verifies. Returns the lines."""
    data = team.running.data_dir
    found = await wait_for_denial_lines(data, len(expected))
    assert len(found) == len(expected), found
    for line, want in zip(found, expected, strict=True):
        assert {k: line[k] for k in want} == want, line
    events = await denial_events(team["alice"].cp, len(expected))
    assert [e.payload["code"] for e in events] == [w["code"] for w in expected]
    for event, line in zip(events, found, strict=True):
        assert event.seq == line["seq"]
        assert event.payload["approval_id"] == line["approval_id"]
        assert event.payload["principal"] == line["principal"]
    validator = jsonschema.Draft202012Validator(schema(ACCESS_DENIALS))
    for line in found:
        assert not [e.message for e in validator.iter_errors(line)], line
    await team.running.server.stop(grace=0.5)
    rc, report = await verify(data)
    assert rc == 0, report
    return found


async def test_presenting_a_used_or_denied_approval(make_team: MakeTeam) -> None:
    team = await make_team()
    used = await approved_and_used(team)
    denied = await request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.95)
    await resolve(team["alice"], denied.approval_id, DENY, "wrong account")
    await refused(
        request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=used),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_NOT_USABLE",
    )
    await refused(
        request(
            team["ops"], "ops", "transfer_funds", TRANSFER, 0.95, approval_id=denied.approval_id
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_NOT_USABLE",
    )
    lines = await on_record(
        team,
        [
            {
                "code": "APPROVAL_NOT_USABLE",
                "method": "RequestToolCall",
                "principal": "mailer",
                "kind": "agent",
                "via": "token",
                "approval_id": used,
                "agent_id": "mailer",
                "tool": "send_email",
            },
            {
                "code": "APPROVAL_NOT_USABLE",
                "principal": "ops",
                "approval_id": denied.approval_id,
                "tool": "transfer_funds",
            },
        ],
    )
    assert "not an approved, unused approval" in lines[0]["reason"]


async def test_presenting_an_expired_approval(make_team: MakeTeam, policy_dir: Any) -> None:
    set_approval_rules(policy_dir, send_email={"ttl_seconds": 0.5, "escalation": []})
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    waited = await team["mailer"].cp.AwaitApproval(
        pb.AwaitApprovalRequest(approval_id=held.approval_id)
    )
    assert waited.approval.state == observe_pb2.APPROVAL_STATE_EXPIRED
    await refused(
        request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_NOT_USABLE",
    )
    # Approving it now is refused too, and recorded with the state it is in.
    await refused(
        resolve(team["alice"], held.approval_id, APPROVE),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_EXPIRED",
    )
    await on_record(
        team,
        [
            {"code": "APPROVAL_NOT_USABLE", "approval_id": held.approval_id},
            {
                "code": "APPROVAL_EXPIRED",
                "method": "ResolveApproval",
                "principal": "alice",
                "kind": "operator",
                "approval_id": held.approval_id,
                "decision_id": held.decision_id,
                "agent_id": "mailer",
                "tool": "send_email",
            },
        ],
    )


async def test_presenting_a_withdrawn_approval(make_team: MakeTeam) -> None:
    team = await make_team()
    async with Worker(team["ops"].channel, "ops"):
        await team["root"].cp.SubmitPlan(transfer_plan("gone"))
        approval = await held_approval(team["alice"], "gone")
        await team["root"].cp.CancelPlan(pb.CancelPlanRequest(plan_id="gone", reason="no"))
        plan = await wait_plan(team["root"].cp, "gone", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_CANCELLED
    await refused(
        request(
            team["ops"],
            "ops",
            "transfer_funds",
            PLAN_TRANSFER,
            0.9,
            approval_id=approval.approval_id,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_NOT_USABLE",
    )
    await on_record(
        team,
        [{"code": "APPROVAL_NOT_USABLE", "principal": "ops", "approval_id": approval.approval_id}],
    )


async def test_presenting_an_approval_for_another_call(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    other = dict(EMAIL, body="Something else entirely.")
    presented = (
        ("mailer", "send_email", other, "the arguments hash"),
        ("mailer", "crm_lookup", LOOKUP, "the tool is 'crm_lookup'"),
        ("ops", "send_email", EMAIL, "the agent is 'ops'"),
    )
    for agent, tool, arguments, text in presented:
        await refused(
            request(team[agent], agent, tool, arguments, 0.85, approval_id=held.approval_id),
            grpc.StatusCode.FAILED_PRECONDITION,
            "APPROVAL_MISMATCH",
            text,
        )
    # Not used up by the refused calls: the exact call still runs with it.
    run = await request(
        team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id
    )
    assert run.approval_id == held.approval_id
    lines = await on_record(
        team,
        [
            {
                "code": "APPROVAL_MISMATCH",
                "principal": agent,
                "agent_id": agent,
                "tool": tool,
                "approval_id": held.approval_id,
                "decision_id": held.decision_id,
            }
            for agent, tool, _, _ in presented
        ],
    )
    assert all(text in line["reason"] for line, (*_, text) in zip(lines, presented, strict=True))
    assert [line["arguments_hash"] for line in lines] == [
        sha256_hex(other),
        sha256_hex(LOOKUP),
        sha256_hex(EMAIL),
    ]


async def test_approving_twice_or_after_the_quorum(make_team: MakeTeam) -> None:
    team = await make_team()
    held = await request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.9)
    await resolve(team["alice"], held.approval_id, APPROVE)
    await refused(
        resolve(team["alice"], held.approval_id, APPROVE),
        grpc.StatusCode.ALREADY_EXISTS,
        "ALREADY_APPROVED_BY_YOU",
    )
    await resolve(team["bob"], held.approval_id, APPROVE)
    await refused(
        resolve(team["bob"], held.approval_id, DENY, "late"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPROVAL_APPROVED",
    )
    common = {
        "method": "ResolveApproval",
        "approval_id": held.approval_id,
        "decision_id": held.decision_id,
        "agent_id": "ops",
        "tool": "transfer_funds",
        "policy_revision": "",
    }
    await on_record(
        team,
        [
            {"code": "ALREADY_APPROVED_BY_YOU", "principal": "alice", **common},
            {"code": "APPROVAL_APPROVED", "principal": "bob", **common},
        ],
    )


async def test_approving_ones_own_call_or_without_the_role(make_team: MakeTeam) -> None:
    # Refused by the authorization policy (the gate), in the same shape.
    team = await make_team()
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    for who in ("mailer", "olga"):
        await refused(
            resolve(team[who], held.approval_id, APPROVE),
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_AUTHORIZED",
        )
    revision = held.policy_revision
    await on_record(
        team,
        [
            {
                "code": "NOT_AUTHORIZED",
                "method": "ResolveApproval",
                "principal": who,
                "approval_id": held.approval_id,
                "policy_revision": revision,
            }
            for who in ("mailer", "olga")
        ],
    )


async def test_misuse_is_logged_and_counted(
    make_team: MakeTeam, caplog: pytest.LogCaptureFixture
) -> None:
    team = await make_team()
    used = await approved_and_used(team)
    with caplog.at_level(logging.INFO, logger="interlock"):
        await refused(
            request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=used),
            grpc.StatusCode.FAILED_PRECONDITION,
            "APPROVAL_NOT_USABLE",
        )
    logged = [r for r in caplog.records if "APPROVAL_NOT_USABLE" in r.getMessage()]
    assert logged and logged[0].levelno == logging.INFO
    assert f"RequestToolCall by mailer refused (APPROVAL_NOT_USABLE): approval {used!r}" in (
        logged[0].getMessage()
    )
    metrics = team.running.server.metrics
    counted = metrics.registry.get_sample_value(
        "interlock_approvals_refused_total", {"reason": "APPROVAL_NOT_USABLE"}
    )
    assert counted == 1.0


@pytest.mark.skipif(STORE != "sqlite", reason="holds SQLite's write lock by hand")
async def test_a_locked_store_changes_no_refusal(make_team: MakeTeam) -> None:
    """While another process holds the database's write lock, misuse and an
    authorization refusal are answered as ever, before their lines can be
    written; the lines land once the lock goes."""
    team = await make_team()
    used = await approved_and_used(team)
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    data = team.running.data_dir
    lock = sqlite3.connect(data / "interlock.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        await refused(
            team["mailer"].cp.RequestToolCall(
                tool_call(used, "mailer", "send_email", EMAIL), timeout=4
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "APPROVAL_NOT_USABLE",
        )
        await refused(
            team["mailer"].cp.ResolveApproval(
                pb.ResolveApprovalRequest(approval_id=held.approval_id, resolution=APPROVE),
                timeout=4,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_AUTHORIZED",
        )
        assert denial_lines(data) == []  # answered before the store could write
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await on_record(
        team,
        [
            {"code": "APPROVAL_NOT_USABLE", "approval_id": used},
            {"code": "NOT_AUTHORIZED", "approval_id": held.approval_id},
        ],
    )


def tool_call(
    approval_id: str, agent: str, tool: str, arguments: dict[str, Any]
) -> pb.RequestToolCallRequest:
    req = pb.RequestToolCallRequest(
        agent_id=agent, tool=tool, confidence=0.85, approval_id=approval_id
    )
    req.arguments.update(arguments)
    return req
