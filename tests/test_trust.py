"""Trust that adapts (issue 16, item 2), through a real server: bad outcomes
demote an (agent, tool) pair to DRY_RUN with the reason, the cool-down holds
and doubles, clean DRY_RUN runs promote it back, a human's reset does too,
and the state is in GetTrust, TRUST events, trust.jsonl and the metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import trust_pb2, trust_pb2_grpc, types_pb2

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
