"""Grants (issue 16, item 1), against a real server with bearer-token principals.

A grant lets its agent call its tool, with arguments its constraint covers,
LIVE without a new approval, until it expires or its uses run out; nothing
next to it (other arguments, another agent, after expiry, after revocation,
past its uses, a tool marked grantable: false) is covered. Agents never
grant, nor does anyone to a call it asked for. Uses are counted atomically:
across two `interlock serve` processes sharing PostgreSQL, exactly max_uses succeed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import timestamp_pb2
from interlock.auth import DEV
from interlock.grants import Constraint, GrantTaken
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, grants_pb2, grants_pb2_grpc, types_pb2

from tests.conftest import MakeTeam, Running, SharedStore
from tests.helpers.process import ServerProcess
from tests.helpers.security import Stubs, Team
from tests.test_approvals import EMAIL, TRANSFER, request, rpc_error

ALLOW, PENDING = types_pb2.VERDICT_ALLOW, types_pb2.VERDICT_PENDING_APPROVAL
LIVE = types_pb2.EXECUTION_MODE_LIVE


def lift_cap(policy_dir: Path) -> None:
    """Many LIVE calls stay in flight in these tests: lift the LIVE cap."""
    path = policy_dir / "interlock" / "config" / "data.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["switches"]["max_concurrent_live"] = 1000
    path.write_text(yaml.safe_dump(doc))


def stub(stubs: Stubs) -> grants_pb2_grpc.GrantServiceStub:
    return grants_pb2_grpc.GrantServiceStub(stubs.channel)


def at(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


async def create(
    stubs: Stubs,
    agent: str = "mailer",
    tool: str = "send_email",
    *,
    ttl: float | None = 3600,
    equal: dict[str, Any] | None = None,
    patterns: dict[str, str] | None = None,
    schema: dict[str, Any] | None = None,
    **kw: Any,
) -> grants_pb2.Grant:
    req = grants_pb2.CreateGrantRequest(agent_id=agent, tool=tool, **kw)
    if ttl is not None:
        req.expires_at.CopyFrom(at(time.time() + ttl))
    if equal:
        req.arguments_equal.update(equal)
    if patterns:
        req.argument_patterns.update(patterns)
    if schema:
        req.arguments_schema.update(schema)
    return (await stub(stubs).CreateGrant(req)).grant


async def call(
    stubs: Stubs, agent: str, tool: str, arguments: dict[str, Any], confidence: float = 0.85
) -> pb.RequestToolCallResponse:
    req = pb.RequestToolCallRequest(agent_id=agent, tool=tool, confidence=confidence)
    req.arguments.update(arguments)
    return await stubs.cp.RequestToolCall(req)


def audit(team: Team) -> list[dict[str, Any]]:
    path = Path(team.running.server.config.data_dir) / "grants.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def test_a_grant_covers_its_call_and_nothing_next_to_it(
    make_team: MakeTeam, policy_dir: Path
) -> None:
    lift_cap(policy_dir)
    team = await make_team()
    assert (await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)).verdict == PENDING

    g = await create(
        team["alice"], equal={"subject": "Your refund"}, patterns={"body": "Done\\.?"}, max_uses=2
    )
    assert g.state == grants_pb2.GRANT_STATE_ACTIVE and g.created_by == "alice"

    first = await call(team["mailer"], "mailer", "send_email", EMAIL)
    d = first.decision
    assert (d.verdict, d.mode, d.needs_approval) == (ALLOW, LIVE, False)
    assert first.grant_id == g.grant_id and not d.approval_id
    assert f"covered by grant {g.grant_id}: mailer may call send_email without a new approval" in (
        d.reasons
    )

    # Neighbours: other arguments (an exact value, then a pattern), another agent.
    other_subject = await call(team["mailer"], "mailer", "send_email", {**EMAIL, "subject": "Hi"})
    assert other_subject.decision.verdict == PENDING and not other_subject.grant_id
    other_body = await call(team["mailer"], "mailer", "send_email", {**EMAIL, "body": "Done!"})
    assert other_body.decision.verdict == PENDING
    other_agent = await call(team["ops"], "ops", "send_email", EMAIL)
    assert other_agent.decision.verdict == PENDING

    # Its second use, then past its uses.
    assert (await call(team["mailer"], "mailer", "send_email", EMAIL)).grant_id == g.grant_id
    past = await call(team["mailer"], "mailer", "send_email", EMAIL)
    assert past.decision.verdict == PENDING and not past.grant_id
    listed = (await stub(team["olga"]).ListGrants(grants_pb2.ListGrantsRequest())).grants
    assert [(x.grant_id, x.uses, x.state) for x in listed] == [
        (g.grant_id, 2, grants_pb2.GRANT_STATE_EXHAUSTED)
    ]

    lines = audit(team)
    assert [x["action"] for x in lines] == ["GRANT_CREATED", "GRANT_USED", "GRANT_USED"]
    assert lines[1]["decision_id"] == d.decision_id


async def test_revoked_and_expired_grants_cover_nothing(
    make_team: MakeTeam, policy_dir: Path
) -> None:
    lift_cap(policy_dir)
    team = await make_team()
    g = await create(team["alice"])
    assert (await call(team["mailer"], "mailer", "send_email", EMAIL)).grant_id == g.grant_id
    revoked = (
        await stub(team["bob"]).RevokeGrant(
            grants_pb2.RevokeGrantRequest(grant_id=g.grant_id, reason="done")
        )
    ).grant
    assert revoked.state == grants_pb2.GRANT_STATE_REVOKED and revoked.revoked_by == "bob"
    after = await call(team["mailer"], "mailer", "send_email", EMAIL)
    assert after.decision.verdict == PENDING and not after.grant_id

    # The same grant again is refused; revoking twice, or an unknown grant, too.
    err = await rpc_error(create(team["alice"]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"grant {g.grant_id}" in (err.details() or "") and "revoked by bob" in (
        err.details() or ""
    )
    err = await rpc_error(
        stub(team["bob"]).RevokeGrant(grants_pb2.RevokeGrantRequest(grant_id=g.grant_id))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = await rpc_error(
        stub(team["bob"]).RevokeGrant(grants_pb2.RevokeGrantRequest(grant_id="grt_nope"))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND

    short = await create(team["alice"], equal={"subject": "Your refund"}, ttl=1.5)
    assert (await call(team["mailer"], "mailer", "send_email", EMAIL)).grant_id == short.grant_id
    await asyncio.sleep(1.6)
    expired = await call(team["mailer"], "mailer", "send_email", EMAIL)
    assert expired.decision.verdict == PENDING and not expired.grant_id
    deadline = time.monotonic() + 30
    while "GRANT_EXPIRED" not in [x["action"] for x in audit(team)]:
        assert time.monotonic() < deadline, "the expiry was never recorded"
        await asyncio.sleep(0.1)
    states = {
        x.grant_id: x.state
        for x in (await stub(team["olga"]).ListGrants(grants_pb2.ListGrantsRequest())).grants
    }
    assert states == {
        g.grant_id: grants_pb2.GRANT_STATE_REVOKED,
        short.grant_id: grants_pb2.GRANT_STATE_EXPIRED,
    }
    assert [x["action"] for x in audit(team)] == [
        "GRANT_CREATED",
        "GRANT_USED",
        "GRANT_REVOKED",
        "GRANT_CREATED",
        "GRANT_USED",
        "GRANT_EXPIRED",
    ]


async def test_a_not_grantable_tool_still_needs_an_approval(make_team: MakeTeam) -> None:
    team = await make_team()
    g = await create(team["alice"], "ops", "transfer_funds")
    held = await call(team["ops"], "ops", "transfer_funds", TRANSFER, 0.9)
    assert held.decision.verdict == PENDING and held.decision.approval_id and not held.grant_id
    assert "grants never cover transfer_funds: its contract says grantable: false" in (
        held.decision.reasons
    )
    listed = (await stub(team["alice"]).ListGrants(grants_pb2.ListGrantsRequest())).grants
    assert [(x.grant_id, x.uses) for x in listed] == [(g.grant_id, 0)]


async def test_no_self_granting(make_team: MakeTeam) -> None:
    team = await make_team()
    for who in ("mailer", "planner"):  # agent principals, whatever their roles
        err = await rpc_error(create(team[who]))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(create(team["mallory"]))  # acts as mailer
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "mallory acts as agent mailer and may not grant to it" in (err.details() or "")
    err = await rpc_error(create(team["olga"]))  # no approver role
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # An approval root asked for (as the mailer): root may not grant it; alice may.
    held = await request(team["root"], "mailer", "send_email", EMAIL, 0.85)
    err = await rpc_error(create(team["root"], "", "", approval_id=held.approval_id))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "root asked for the call of this approval" in (err.details() or "")
    g = await create(team["alice"], "", "", approval_id=held.approval_id)
    assert (g.agent_id, g.tool, g.approval_id) == ("mailer", "send_email", held.approval_id)
    assert [
        x.grant_id
        for x in (await stub(team["olga"]).ListGrants(grants_pb2.ListGrantsRequest())).grants
    ] == [g.grant_id]


@pytest.mark.parametrize(
    ("kw", "code", "text"),
    [
        ({"ttl": None}, grpc.StatusCode.INVALID_ARGUMENT, "expires_at: is required"),
        ({"ttl": -5}, grpc.StatusCode.INVALID_ARGUMENT, "is in the past"),
        ({"ttl": 30 * 86400}, grpc.StatusCode.INVALID_ARGUMENT, "grant_max_seconds"),
        ({"tool": ""}, grpc.StatusCode.INVALID_ARGUMENT, "never every tool"),
        ({"agent": "ghost"}, grpc.StatusCode.NOT_FOUND, "unknown agent 'ghost'"),
        ({"tool": "teleport"}, grpc.StatusCode.NOT_FOUND, "unknown tool 'teleport'"),
        ({"max_uses": -1}, grpc.StatusCode.INVALID_ARGUMENT, "max_uses"),
        ({"equal": {"nope": 1}}, grpc.StatusCode.INVALID_ARGUMENT, "not an argument the tool"),
        ({"patterns": {"body": "("}}, grpc.StatusCode.INVALID_ARGUMENT, "not a regular expr"),
        (
            {"schema": {"properties": {"subject": {"format": "email"}}}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "uses format",
        ),
    ],
)
async def test_bad_grants_are_refused(
    make_team: MakeTeam, kw: dict[str, Any], code: grpc.StatusCode, text: str
) -> None:
    team = await make_team()
    err = await rpc_error(create(team["alice"], **kw))
    assert err.code() == code and text in (err.details() or ""), err.details()
    assert not (await stub(team["alice"]).ListGrants(grants_pb2.ListGrantsRequest())).grants


async def test_concurrent_uses_stop_at_max_uses(make_team: MakeTeam, policy_dir: Path) -> None:
    lift_cap(policy_dir)
    team = await make_team()
    g = await create(team["alice"], schema={"properties": {"to": {"maxItems": 1}}}, max_uses=3)
    answers = await asyncio.gather(
        *(call(team["mailer"], "mailer", "send_email", EMAIL) for _ in range(12))
    )
    assert sorted(a.grant_id for a in answers) == [""] * 9 + [g.grant_id] * 3
    assert sum(a.decision.verdict == ALLOW for a in answers) == 3


@pytest.mark.integration
async def test_two_replicas_never_exceed_max_uses(
    shared_store: SharedStore, policy_dir: Path, tmp_path: Path
) -> None:
    """Two ``interlock serve`` processes on one store (a PostgreSQL database, a
    shared SQLite file), 40 calls at once split between them, a grant of 5
    uses: exactly 5 are covered."""
    lift_cap(policy_dir)
    servers = [ServerProcess(tmp_path / f"d{i}", policy_dir, tmp_path / f"l{i}") for i in range(2)]
    try:
        channels = await asyncio.gather(
            *(s.start(*shared_store.argv, "--replica-id", f"r{i}") for i, s in enumerate(servers))
        )
        req = grants_pb2.CreateGrantRequest(agent_id="mailer", tool="send_email", max_uses=5)
        req.expires_at.CopyFrom(at(time.time() + 600))
        g = (await grants_pb2_grpc.GrantServiceStub(channels[0]).CreateGrant(req)).grant

        async def one(i: int) -> pb.RequestToolCallResponse:
            r = pb.RequestToolCallRequest(agent_id="mailer", tool="send_email", confidence=0.85)
            r.arguments.update(EMAIL)
            return await control_plane_pb2_grpc.ControlPlaneStub(channels[i % 2]).RequestToolCall(
                r, timeout=60
            )

        answers = await asyncio.gather(*(one(i) for i in range(40)))
        used = [x for x in answers if x.grant_id]
        assert len(used) == 5 and {x.grant_id for x in used} == {g.grant_id}
        assert all(x.decision.verdict == PENDING for x in answers if not x.grant_id)
        listed = (
            await grants_pb2_grpc.GrantServiceStub(channels[1]).ListGrants(
                grants_pb2.ListGrantsRequest()
            )
        ).grants
        assert [(x.uses, x.state) for x in listed] == [(5, grants_pb2.GRANT_STATE_EXHAUSTED)]
    finally:
        await asyncio.gather(*(s.close() for s in servers))


async def test_the_use_guard_refuses_stale_uses(server: Running) -> None:
    """Decisions that all read a grant before any of them used it: the guards
    let exactly max_uses of their uses commit, and none once it is revoked
    (atomic in the journal's transaction, whatever each decision read)."""
    grants, journal = server.server.decisions.grants, server.server.journal
    g = await grants.create(
        principal=DEV,
        catalog=server.server.policies.active.catalog,
        agent_id="mailer",
        tool="send_email",
        constraint=Constraint(),
        plan_id="",
        expires_at=time.time() + 600,
        max_uses=2,
        reason="",
    )
    stale = await grants.get(g.grant_id)  # uses 0, as every decision below read it
    await journal.commit(grants.use_batch(stale, "dec_1", time.time()))
    await journal.commit(grants.use_batch(stale, "dec_2", time.time()))
    with pytest.raises(GrantTaken):
        await journal.commit(grants.use_batch(stale, "dec_3", time.time()))
    assert (await grants.get(g.grant_id)).uses == 2

    unlimited = await grants.create(
        principal=DEV,
        catalog=server.server.policies.active.catalog,
        agent_id="mailer",
        tool="send_email",
        constraint=Constraint(equals={"subject": "x"}),
        plan_id="",
        expires_at=time.time() + 600,
        max_uses=0,
        reason="",
    )
    await grants.revoke(unlimited.grant_id, "alice", "")
    with pytest.raises(GrantTaken):
        await journal.commit(grants.use_batch(unlimited, "dec_4", time.time()))


async def test_grant_changes_are_counted_in_metrics(make_team: MakeTeam, policy_dir: Path) -> None:
    from tests.test_metrics_conventions import scrape

    lift_cap(policy_dir)
    team = await make_team(metrics_listen="127.0.0.1:0")
    port = team.running.server.metrics_port

    async def samples() -> dict[str, Any]:
        return await asyncio.to_thread(scrape, port)

    async def active_is(n: float) -> None:
        deadline = time.monotonic() + 10  # counted again right after the change commits
        while (await samples())["interlock_grants_active"] != [({}, n)]:
            assert time.monotonic() < deadline, (await samples())["interlock_grants_active"]
            await asyncio.sleep(0.05)

    await active_is(0.0)
    kept = await create(team["alice"], equal={"subject": "Your refund"})
    dropped = await create(team["alice"], "ops", "send_email")
    await active_is(2.0)
    for _ in range(2):
        used = await call(team["mailer"], "mailer", "send_email", EMAIL)
        assert used.grant_id == kept.grant_id
    await stub(team["bob"]).RevokeGrant(
        grants_pb2.RevokeGrantRequest(grant_id=dropped.grant_id, reason="not needed")
    )
    await active_is(1.0)
    counts = {
        labels["action"]: value
        for labels, value in (await samples())["interlock_grant_events_total"]
    }
    assert counts == {"CREATED": 2.0, "USED": 2.0, "REVOKED": 1.0}
