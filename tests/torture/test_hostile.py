"""Scenario 4: hostile requests while another client makes ordinary decisions.

``interlock serve`` as a subprocess. First an idle baseline: a client's
RequestToolCall latencies with nothing else going on. Then, each in its own
batch while the same client keeps deciding: ~4 MB requests whose repeated
enum filter holds ~4 million values (ListSignals, WatchEvents, ListPlans; sent
by another process), and two EvaluatePolicy playground queries at once whose
inline policy loops for millions of steps.

Guarantee: no hostile request stalls the others. A batch stalls them when the
deciding client's median latency during it is more than 5x its idle median
(measured in the same run); each request of such a batch counts as one that
stalled others. Must be 0. The 4 MB requests are refused RESOURCE_EXHAUSTED,
the heavy queries DEADLINE_EXCEEDED at the evaluation time limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from interlock.policy.bundle import PolicySet
from interlock.v1 import policy_service_pb2 as ppb
from interlock.v1 import policy_service_pb2_grpc

from tests.conftest import POLICIES
from tests.helpers.hostile import (
    Latencies,
    decision_latencies,
    flood_from_another_process,
    heavy_policy_files,
)
from tests.helpers.process import ServerProcess
from tests.torture.figures import Figures

pytestmark = pytest.mark.torture

SCENARIO = "hostile input"
STALL_RATIO = 5.0
C = grpc.StatusCode


async def while_deciding(
    channel: grpc.aio.Channel, hostile: Callable[[asyncio.Event], Awaitable[Any]]
) -> tuple[Any, Latencies]:
    """Run ``hostile`` (it sets the event once it has begun) while a client decides."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def probe() -> Latencies:
        await started.wait()
        return await decision_latencies(channel, until=stop)

    probing = asyncio.create_task(probe())
    try:
        outcome = await hostile(started)
    finally:
        started.set()
        stop.set()
    return outcome, await probing


def stalled(figures: Figures, name: str, sent: int, idle: Latencies, busy: Latencies) -> int:
    """Record a batch's figures; the number of its requests that stalled others."""
    ratio = busy.median / idle.median
    count = sent if ratio > STALL_RATIO else 0
    figures.add(SCENARIO, "hostile requests sent", sent)
    figures.add(SCENARIO, "requests that stalled others", count, "= 0")
    figures.record(
        SCENARIO, f"{name}: decision p50 / idle p50", round(ratio, 2), f"<= {STALL_RATIO:g}"
    )
    figures.record(
        SCENARIO,
        f"{name}: decision p50 idle / during, ms",
        f"{idle.median * 1e3:.2f} / {busy.median * 1e3:.2f}",
    )
    return count


async def idle_baseline(channel: grpc.aio.Channel) -> Latencies:
    await decision_latencies(channel, count=50)  # warm up
    return await decision_latencies(channel, count=300)


@pytest.mark.xfail(
    strict=False,
    reason="issue 11 finding 4, what remains: each ~4 MB request costs the server ~10 ms "
    "to receive before its size is checked, so a back-to-back flood raises a concurrent "
    "client's decision p50 6-20x on a 2-core machine (the 30 s stall is gone); reported "
    "to the lead",
)
async def test_4mb_repeated_enum_requests_stall_no_one(
    serve: ServerProcess, figures: Figures
) -> None:
    channel = await serve.start()
    idle = await idle_baseline(channel)

    async def enum_flood(started: asyncio.Event) -> Any:
        return await flood_from_another_process(serve.address, 3, started=started)

    refusals, busy = await while_deciding(channel, enum_flood)
    slowest = max(o.seconds for _, o in refusals)
    figures.record(SCENARIO, "slowest 4 MB refusal, ms", round(slowest * 1e3, 1))
    count = stalled(figures, "4 MB repeated enums", len(refusals), idle, busy)

    assert {o.code for _, o in refusals} == {C.RESOURCE_EXHAUSTED}, refusals
    assert count == 0, (
        f"{count} 4 MB request(s) stalled the deciding client: p50 {busy.median * 1e3:.2f} ms "
        f"against {idle.median * 1e3:.2f} ms idle"
    )


async def test_heavy_evaluate_policy_stalls_no_one(serve: ServerProcess, figures: Figures) -> None:
    channel = await serve.start()
    idle = await idle_baseline(channel)
    heavy = ppb.EvaluatePolicyRequest()
    heavy.tool_call.agent_id, heavy.tool_call.tool = "agent1", "vision_inspect"
    heavy.tool_call.confidence = 0.9
    heavy.tool_call.arguments.update({"target": "login button"})
    for path, content in heavy_policy_files(dict(PolicySet.from_dir(POLICIES).files)).items():
        heavy.policy_set.files[path] = content
    policy = policy_service_pb2_grpc.PolicyServiceStub(channel)

    async def playground(started: asyncio.Event) -> list[grpc.StatusCode]:
        async def one() -> grpc.StatusCode:
            try:
                await policy.EvaluatePolicy(heavy, timeout=15)
            except grpc.aio.AioRpcError as err:
                return err.code()
            return C.OK

        calls = [asyncio.create_task(one()) for _ in range(2)]
        await asyncio.sleep(0.1)  # both are in the server by now
        started.set()
        return list(await asyncio.gather(*calls))

    codes, busy = await while_deciding(channel, playground)
    count = stalled(figures, "heavy EvaluatePolicy", len(codes), idle, busy)

    assert codes == [C.DEADLINE_EXCEEDED] * 2, codes
    assert count == 0, (
        f"the heavy queries stalled the deciding client: p50 {busy.median * 1e3:.2f} ms "
        f"against {idle.median * 1e3:.2f} ms idle"
    )
