"""Trust that adapts (issue 16, item 2), through a real server: bad outcomes
demote an (agent, tool) pair to DRY_RUN with the reason, the cool-down holds
and doubles, clean DRY_RUN runs promote it back, a human's reset does too,
and the state is in GetTrust, TRUST events, trust.jsonl and the metrics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, trust_pb2, trust_pb2_grpc, types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import details, tool_call

pytestmark = pytest.mark.api

FORM = {"form_id": "signup", "fields": {"name": "Ada"}}
LIVE = types_pb2.EXECUTION_MODE_LIVE
DRY_RUN = types_pb2.EXECUTION_MODE_DRY_RUN
FAILED = types_pb2.TOOL_OUTCOME_FAILED
SUCCEEDED = types_pb2.TOOL_OUTCOME_SUCCEEDED


def set_trust(policy_dir: Path, **values: Any) -> None:
    """Edit data.interlock.config.trust of the test's copy of the policies."""
    path = policy_dir / "interlock" / "config" / "data.yaml"
    data = yaml.safe_load(path.read_text())
    data["trust"].update(values)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def quick(policy_dir: Path) -> Path:
    """3 failures in 10 min demote for 3 s (then 6 s); 2 clean runs promote."""
    set_trust(policy_dir, cooldown_seconds=3, promote_after=2)
    return policy_dir


async def call(s: Running, agent: str = "agent1", tool: str = "form_fill") -> Any:
    args = FORM if tool == "form_fill" else None
    return (await s.cp.RequestToolCall(tool_call(agent, tool, args, confidence=0.95))).decision


async def report(s: Running, decision: Any, outcome: int, agent: str = "agent1") -> None:
    await s.cp.ReportToolResult(
        pb.ReportToolResultRequest(
            decision_id=decision.decision_id, agent_id=agent, outcome=outcome
        )
    )


async def fail_times(s: Running, n: int, agent: str = "agent1") -> Any:
    """``n`` decisions of form_fill, each reported FAILED; the last decision."""
    d = None
    for _ in range(n):
        d = await call(s, agent)
        await report(s, d, FAILED, agent)
    return d


def trust_lines(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "audit" / "trust.jsonl"
    if not path.exists():
        path = next(data_dir.rglob("trust.jsonl"))
    return [orjson.loads(line) for line in path.read_text().splitlines() if line]


async def get_trust(s: Running, agent: str = "agent1", tool: str = "form_fill") -> Any:
    stub = trust_pb2_grpc.TrustServiceStub(s.channel)
    [pair] = (await stub.GetTrust(trust_pb2.GetTrustRequest(agent_id=agent, tool=tool))).pairs
    return pair


async def until_probation(s: Running) -> Any:
    """Decisions until the cool-down has ended (bounded: proves no hang)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d = await call(s)
        if any("on probation" in r for r in d.reasons):
            return d
        await asyncio.sleep(0.2)
    raise AssertionError("the cool-down never ended")


async def test_three_failures_demote_cooldown_holds_and_doubles_clean_runs_promote(
    start_server: StartServer, quick: Path
) -> None:
    s = await start_server()
    assert (await call(s)).mode == LIVE
    await fail_times(s, 2)
    assert (await call(s)).mode == LIVE  # two failures: still trusted
    await fail_times(s, 1)

    demoted = await call(s)
    assert demoted.mode == DRY_RUN
    [why] = [r for r in demoted.reasons if "demoted" in r]
    assert why.startswith("form_fill demoted for agent1 until ")
    assert why.endswith(" after 3 failures in 10 min")
    # Another agent, and another tool of the same agent, keep their trust.
    assert (await call(s, agent="agent2")).mode == LIVE
    assert (await call(s, tool="vision_inspect")).mode == LIVE

    pair = await get_trust(s)
    assert pair.state in (trust_pb2.TRUST_STATE_DEMOTED, trust_pb2.TRUST_STATE_PROBATION)
    assert pair.demotions == 1
    assert pair.demoted_until.ToSeconds() - pair.demoted_at.ToSeconds() == 3

    # The cool-down holds: a DRY_RUN success while demoted earns nothing.
    if any("demoted for agent1 until" in r for r in demoted.reasons):
        await report(s, demoted, SUCCEEDED)
    first = await until_probation(s)
    assert first.mode == DRY_RUN
    assert any("0 of 2 clean DRY_RUN runs" in r for r in first.reasons), first.reasons

    # Two clean DRY_RUN runs promote the pair.
    await report(s, first, SUCCEEDED)
    second = await call(s)
    assert any("1 of 2 clean DRY_RUN runs" in r for r in second.reasons), second.reasons
    await report(s, second, SUCCEEDED)
    assert (await call(s)).mode == LIVE
    assert (await get_trust(s)).state == trust_pb2.TRUST_STATE_TRUSTED

    # The next demotion's cool-down is twice as long.
    await fail_times(s, 3)
    assert (await call(s)).mode == DRY_RUN
    pair = await get_trust(s)
    assert pair.demotions == 2
    assert pair.demoted_until.ToSeconds() - pair.demoted_at.ToSeconds() == 6

    lines = trust_lines(s.data_dir)
    assert [(x["action"], x["cooldown_seconds"]) for x in lines] == [
        ("demoted", 3.0),
        ("promoted", 0.0),
        ("demoted", 6.0),
    ]


async def test_a_failure_on_probation_restarts_the_count(
    start_server: StartServer, quick: Path
) -> None:
    s = await start_server()
    await fail_times(s, 3)
    first = await until_probation(s)
    await report(s, first, SUCCEEDED)
    second = await call(s)
    await report(s, second, FAILED)
    third = await call(s)
    assert third.mode == DRY_RUN
    assert any("0 of 2 clean DRY_RUN runs" in r for r in third.reasons), third.reasons


async def test_trust_reset_promotes_at_once_and_is_audited(
    start_server: StartServer, quick: Path
) -> None:
    s = await start_server()
    await fail_times(s, 3)
    assert (await call(s)).mode == DRY_RUN
    stub = trust_pb2_grpc.TrustServiceStub(s.channel)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResetTrust(trust_pb2.ResetTrustRequest(agent_id="agent1", tool="form_fill"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(err.value)[1] == [("reason", "is required: say why the pair is trusted again")]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResetTrust(
            trust_pb2.ResetTrustRequest(agent_id="agent1", tool="no_such_tool", reason="x")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    reply = await stub.ResetTrust(
        trust_pb2.ResetTrustRequest(agent_id="agent1", tool="form_fill", reason="fixed the form")
    )
    assert reply.trust.state == trust_pb2.TRUST_STATE_TRUSTED
    assert reply.trust.demotions == 0
    assert (await call(s)).mode == LIVE
    [*_, reset] = trust_lines(s.data_dir)
    assert reset["action"] == "reset"
    assert reset["why"] == "fixed the form"
    assert reset["principal"]


async def test_demotion_survives_sigkill(tmp_path: Path, quick: Path) -> None:
    from tests.helpers.process import ServerProcess

    set_trust(quick, cooldown_seconds=600)
    proc = ServerProcess(tmp_path / "data", quick, tmp_path / "logs")
    try:
        channel = await proc.start()
        s = _Stubs(channel)
        await fail_times(s, 3)  # type: ignore[arg-type]
        assert (await call(s)).mode == DRY_RUN  # type: ignore[arg-type]
        await proc.kill()
        channel = await proc.start()
        s = _Stubs(channel)
        after = await call(s)  # type: ignore[arg-type]
        assert after.mode == DRY_RUN
        assert any("form_fill demoted for agent1 until" in r for r in after.reasons)
        pair = await get_trust(s)  # type: ignore[arg-type]
        assert pair.state == trust_pb2.TRUST_STATE_DEMOTED
    finally:
        await proc.close()


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        from interlock.v1 import control_plane_pb2_grpc

        self.channel = channel
        self.cp = control_plane_pb2_grpc.ControlPlaneStub(channel)


async def test_trust_show_and_reset_from_the_cli_as_an_approver_only(
    start_server: StartServer, quick: Path, tmp_path: Path
) -> None:
    from tests.helpers.security import write_principals
    from tests.test_cli import run

    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    server = f"127.0.0.1:{s.server.port}"
    for name in ("alice", "agent1", "olga"):
        (tmp_path / f"{name}.token").write_text(tokens[name])
    as_agent = ("--server", server, "--token-file", str(tmp_path / "agent1.token"))
    as_alice = ("--server", server, "--token-file", str(tmp_path / "alice.token"))
    as_olga = ("--server", server, "--token-file", str(tmp_path / "olga.token"))
    from tests.helpers.security import Stubs, channel

    async with channel(server, tokens["agent1"]) as ch:
        await fail_times(Stubs(ch), 3)  # type: ignore[arg-type]

    shown = await run("trust", "show", *as_agent)  # anyone reads
    assert shown.code == 0, shown.err
    assert "agent1" in shown.out and "form_fill" in shown.out
    assert "DEMOTED" in shown.out or "PROBATION" in shown.out
    assert "after 3 failures in 10 min" in shown.out

    reset = ("trust", "reset", "--agent", "agent1", "--tool", "form_fill", "--reason", "fixed")
    own = await run(*reset, *as_agent)
    assert own.code == 1 and "PERMISSION_DENIED" in own.err
    olga = await run(*reset, *as_olga)
    assert olga.code == 1 and "may not ResetTrust" in olga.err
    done = await run(*reset, *as_alice, "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["state"] == "TRUST_STATE_TRUSTED"
    assert trust_lines(s.data_dir)[-1]["principal"] == "alice"


async def test_trust_events_are_streamed(start_server: StartServer, quick: Path) -> None:
    s = await start_server()
    await fail_times(s, 3)
    stream = s.cp.WatchEvents(pb.WatchEventsRequest(kinds=[observe_pb2.EVENT_KIND_TRUST]))
    event = (await asyncio.wait_for(stream.read(), 30)).event
    stream.cancel()
    assert event.agent_id == "agent1" and event.tool == "form_fill"
    assert event.message.startswith("form_fill demoted for agent1 until ")
    assert event.payload["action"] == "demoted"


@pytest.mark.integration
async def test_two_replicas_agree_on_a_demotion_made_of_failures_on_both(
    start_server: StartServer, cluster: Any, quick: Path, tmp_path: Path
) -> None:
    set_trust(quick, cooldown_seconds=600)
    url = cluster.create_database("trust")
    a = await start_server(store_url=url, data_dir=str(tmp_path / "a"), replica_id="a")
    b = await start_server(store_url=url, data_dir=str(tmp_path / "b"), replica_id="b")
    decided = [await call((a, b)[i % 2]) for i in range(4)]  # the LIVE cap is 5
    assert all(d.mode == LIVE for d in decided)
    # Four failures reported at once, two on each replica: each counts once.
    await asyncio.gather(*(report((a, b)[i % 2], d, FAILED) for i, d in enumerate(decided)))
    for replica in (a, b):
        after = await call(replica)
        assert after.mode == DRY_RUN
        assert any("form_fill demoted for agent1" in r for r in after.reasons)
        pair = await get_trust(replica)
        assert pair.state == trust_pb2.TRUST_STATE_DEMOTED
        assert pair.demotions == 1  # the one after the demotion does not demote again
        assert pair.failures == 1


async def test_an_ambiguous_live_step_counts_against_its_pair(
    start_server: StartServer, quick: Path
) -> None:
    from tests.helpers.workers import FINISHED, Worker, wait_plan
    from tests.test_plans_api import spec, step

    s = await start_server()
    await fail_times(s, 2)  # two failures of form_fill by agent1; the third is the vanished step
    req = spec("vanish", step("fill", "form_fill", "agent1", 0.95, FORM))
    async with Worker(s.channel, "agent1", lambda item: None) as worker:
        await s.cp.SubmitPlan(req)
        await worker.wait_for(1)
    await wait_plan(s.cp, "vanish", FINISHED)
    deadline = time.monotonic() + 30  # the change is recorded just after the step's
    while time.monotonic() < deadline:
        pair = await get_trust(s)
        if pair.demotions:
            break
        await asyncio.sleep(0.1)
    assert pair.demotions == 1
    assert pair.reason.endswith("after 1 ambiguous outcome and 2 failures in 10 min")
    assert (await call(s)).mode == DRY_RUN


async def test_demotions_and_resets_are_counted_in_metrics(
    start_server: StartServer, quick: Path
) -> None:
    from tests.test_metrics_conventions import scrape

    s = await start_server(metrics_listen="127.0.0.1:0")
    await fail_times(s, 3)
    samples = await asyncio.to_thread(scrape, s.server.metrics_port)
    assert samples["interlock_trust_demotions_total"] == [({"tool": "form_fill"}, 1.0)]
    assert samples["interlock_trust_demoted_pairs"] == [({}, 1.0)]
    stub = trust_pb2_grpc.TrustServiceStub(s.channel)
    await stub.ResetTrust(
        trust_pb2.ResetTrustRequest(agent_id="agent1", tool="form_fill", reason="fixed")
    )
    samples = await asyncio.to_thread(scrape, s.server.metrics_port)
    assert samples["interlock_trust_promotions_total"] == [
        ({"tool": "form_fill", "how": "reset"}, 1.0)
    ]
    assert samples["interlock_trust_demoted_pairs"] == [({}, 0.0)]


async def test_human_denials_of_held_calls_demote_the_pair(
    start_server: StartServer, quick: Path
) -> None:
    catalog = quick / "interlock" / "catalog" / "data.yaml"
    doc = yaml.safe_load(catalog.read_text())
    doc["tools"]["form_fill"]["risk"] = "HIGH"  # a LIVE call of it waits for a human
    catalog.write_text(yaml.safe_dump(doc))
    s = await start_server()
    for _ in range(3):
        held = await call(s)
        assert held.verdict == types_pb2.VERDICT_PENDING_APPROVAL
        await s.cp.ResolveApproval(
            pb.ResolveApprovalRequest(
                approval_id=held.approval_id,
                resolution=observe_pb2.APPROVAL_RESOLUTION_DENY,
                reason="wrong form",
            )
        )
    deadline = time.monotonic() + 30  # recorded just after the denial commits
    while time.monotonic() < deadline:
        pair = await get_trust(s)
        if pair.demotions:
            break
        await asyncio.sleep(0.1)
    assert pair.reason.endswith("after 3 denials in 10 min")
    after = await call(s)
    assert (after.verdict, after.mode) == (types_pb2.VERDICT_ALLOW, DRY_RUN)


async def test_a_reload_with_broken_trust_numbers_is_refused(
    start_server: StartServer, quick: Path
) -> None:
    from interlock.v1 import policy_service_pb2

    s = await start_server()
    set_trust(quick, failures=0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.policy.ReloadPolicies(policy_service_pb2.ReloadPoliciesRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "trust.failures must be a positive number" in (err.value.details() or "")
    await fail_times(s, 3)  # the old set's numbers still hold
    assert (await call(s)).mode == DRY_RUN
