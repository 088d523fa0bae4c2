"""The decision cache during an engine outage (issue 11, finding 6).

The rule: a cached answer is the engine's answer for the same input under the
same revision, so it is served while the engine answers. From the first failed
evaluation (or probe) until a probe answers again, nothing comes from the
cache: every call goes to the engine and fails closed, and health says so at
once, not at the next probe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import types_pb2

from tests.conftest import StartServer
from tests.helpers.calls import tool_call
from tests.helpers.health import NOT_SERVING, SERVING, wait_for_health
from tests.helpers.opa import OpaProcess

pytestmark = pytest.mark.opa


@pytest.fixture
def resumable_opa(opa: OpaProcess) -> Iterator[OpaProcess]:
    """The test's OPA, never left stopped (SIGSTOP) at the end."""
    yield opa
    if opa.proc is not None and opa.proc.poll() is None:
        os.kill(opa.proc.pid, signal.SIGCONT)


def kill(opa: OpaProcess) -> None:
    opa.stop()


def hang(opa: OpaProcess) -> None:
    """SIGSTOP OPA, and return once every one of its threads is stopped (on a
    loaded machine the stop reaches each thread when it is next scheduled)."""
    assert opa.proc is not None
    pid = opa.proc.pid
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while not all(_stopped(t) for t in Path(f"/proc/{pid}/task").iterdir()):
        assert time.monotonic() < deadline, "OPA did not stop"
        time.sleep(0.01)


def _stopped(task: Path) -> bool:
    """A thread's state in /proc: T (stopped) or t (traced)."""
    try:
        stat = (task / "stat").read_text()
    except OSError:  # the thread has gone
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


@pytest.mark.parametrize("outage", [kill, hang], ids=["killed", "hung"])
async def test_no_cached_answer_after_the_first_failure(
    start_server: StartServer, resumable_opa: OpaProcess, outage: object
) -> None:
    opa = resumable_opa
    s = await start_server(engine="opa", opa_url=opa.url, opa_timeout_seconds=0.3)
    health = health_pb2_grpc.HealthStub(s.channel)
    cached = tool_call()
    for _ in range(2):  # the second answer comes from the cache (same input: 0 LIVE in flight)
        d = (await s.cp.RequestToolCall(cached)).decision
        assert d.mode == types_pb2.EXECUTION_MODE_LIVE
        await s.cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=d.decision_id,
                agent_id="agent1",
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            )
        )
    assert s.server.metrics.decision_cache_hits._value.get() == 1
    assert s.server.decisions.engine_available

    outage(opa)  # type: ignore[operator]
    new = (await s.cp.RequestToolCall(tool_call(confidence=0.99))).decision
    assert new.verdict == types_pb2.VERDICT_DENY and new.fail_closed

    # Noticed at that failure, not at the next probe: health and the cache agree at once.
    assert not s.server.decisions.engine_available
    await asyncio.sleep(0)  # the health servicer follows in a task
    status = (await health.Check(health_pb2.HealthCheckRequest(service=""))).status
    assert status == NOT_SERVING
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    assert not h.engine_available
    live_answers = 0
    for _ in range(5):
        d = (await s.cp.RequestToolCall(cached)).decision
        live_answers += d.mode == types_pb2.EXECUTION_MODE_LIVE
        assert d.verdict == types_pb2.VERDICT_DENY and d.fail_closed, list(d.reasons)
    assert live_answers == 0

    # Back: the probe marks the engine up, and the cache serves again.
    if opa.proc is not None and opa.proc.poll() is None:
        os.kill(opa.proc.pid, signal.SIGCONT)
    else:
        await asyncio.to_thread(opa.start)  # the bundle server runs on this loop
    await wait_for_health(s.channel, SERVING, within=15)
    back = (await s.cp.RequestToolCall(cached)).decision
    assert back.verdict == types_pb2.VERDICT_ALLOW and back.mode == types_pb2.EXECUTION_MODE_LIVE
