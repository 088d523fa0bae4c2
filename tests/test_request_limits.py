"""Every request's cost is bounded before the work starts (issue 11, finding 4).

A ~4 MB request whose repeated enum filter holds ~4 million values made
ListSignals block every client for 30 s (WatchEvents 29.6 s, ListPlans 7.7 s).
Now each RPC has its own size limit, checked before parsing, and every repeated
field has a maximum count, checked before anything else.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from interlock.api.limits import RequestLimits, request_types
from interlock.config import ServerConfig
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, observe_pb2, plans_pb2, policy_service_pb2

from tests.conftest import MakeTeam, StartServer
from tests.helpers.calls import details
from tests.helpers.hostile import (
    HOSTILE_ENUM_FIELDS,
    Latencies,
    decision_latencies,
    flood_from_another_process,
    repeated_enum_body,
    send_raw,
)

C = grpc.StatusCode
SERVICES = (
    pb.DESCRIPTOR.services_by_name["ControlPlane"],
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
)


async def test_a_4mb_repeated_enum_is_refused_at_once_while_decisions_stay_fast(
    make_team: MakeTeam,
) -> None:
    """Sent with the least-privileged agent token: each hostile request is refused
    RESOURCE_EXHAUSTED at once, and another agent's decisions meanwhile stay about
    as fast as when the server was idle (ratios to a baseline of this test)."""
    team = await make_team()
    victim = team["agent1"].channel
    await decision_latencies(victim, count=50)  # warm up
    idle = await decision_latencies(victim, count=300)

    started, stop = asyncio.Event(), asyncio.Event()

    async def probe() -> Latencies:
        await started.wait()
        return await decision_latencies(victim, until=stop)

    probing = asyncio.create_task(probe())
    refusals = await flood_from_another_process(
        team.address, 5, team.tokens["agent2"], started=started
    )
    stop.set()
    busy = await probing

    worst_refusal = max(o.seconds for _, o in refusals)
    print(
        f"\nidle decisions: median {idle.median * 1e3:.2f} ms, worst {idle.worst * 1e3:.2f} ms; "
        f"during {len(refusals)} hostile 4 MB requests: {len(busy.seconds)} decisions, "
        f"median {busy.median * 1e3:.2f} ms, worst {busy.worst * 1e3:.2f} ms; "
        f"slowest refusal {worst_refusal * 1e3:.1f} ms"
    )
    for method, outcome in refusals:
        assert outcome.code == C.RESOURCE_EXHAUSTED, (method, outcome)
        assert "at most" in outcome.details, outcome
        assert outcome.seconds < 1.0, (method, outcome)  # the issue asks 100 ms; generous
    assert len(refusals) == 30
    # Receiving 4 MB still costs the transport a little; stalling it cost 30 s.
    assert busy.median < 10 * idle.median, (busy.median, idle.median)
    assert busy.worst < 100 * idle.median, (busy.worst, idle.median)


def _known(enum: object) -> int:
    return sum(1 for v in enum.DESCRIPTOR.values if v.number)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "limit"),
    [
        ("/interlock.v1.ControlPlane/ListSignals", _known(observe_pb2.SignalKind)),
        ("/interlock.v1.ControlPlane/WatchEvents", _known(observe_pb2.EventKind)),
        ("/interlock.v1.ControlPlane/ListPlans", _known(plans_pb2.PlanState)),
    ],
)
async def test_a_filter_within_the_size_limit_but_over_its_count_names_field_and_limit(
    start_server: StartServer, method: str, limit: int
) -> None:
    running = await start_server()
    number, stream = HOSTILE_ENUM_FIELDS[method]
    outcome = await send_raw(
        running.channel, method, repeated_enum_body(number, 50_000), stream=stream
    )
    assert outcome.code == C.INVALID_ARGUMENT, outcome
    assert f"holds 50000 values; the limit is {limit}" in outcome.details, outcome
    # One past the limit is refused too; the limit itself is not.
    over = await send_raw(
        running.channel, method, repeated_enum_body(number, limit + 1), stream=stream
    )
    assert over.code == C.INVALID_ARGUMENT and f"the limit is {limit}" in over.details, over


async def test_every_kind_once_is_still_a_valid_filter(start_server: StartServer) -> None:
    running = await start_server()
    kinds = [v.number for v in observe_pb2.SignalKind.DESCRIPTOR.values if v.number]
    await running.cp.ListSignals(pb.ListSignalsRequest(kinds=kinds))
    states = [v.number for v in plans_pb2.PlanState.DESCRIPTOR.values if v.number]
    await running.cp.ListPlans(pb.ListPlansRequest(states=states))


async def test_the_field_violation_names_the_nested_field(start_server: StartServer) -> None:
    running = await start_server()
    spec = plans_pb2.PlanSpec(plan_id="p")
    spec.steps.add(step_id="s", tool="vision_inspect", agent_id="agent1", confidence=0.5)
    spec.steps[0].depends_on.extend(f"d{i}" for i in range(300))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.cp.SubmitPlan(pb.SubmitPlanRequest(spec=spec))
    assert info.value.code() == C.INVALID_ARGUMENT
    reason, violations = details(info.value)
    assert reason == "TOO_MANY_VALUES"
    assert violations == [("spec.steps[0].depends_on", "holds 300 values; the limit is 256")]


async def test_a_request_tool_call_larger_than_its_arguments_can_be_is_refused_unparsed(
    start_server: StartServer,
) -> None:
    running = await start_server()
    stub = control_plane_pb2_grpc.ControlPlaneStub(running.channel)
    request = pb.RequestToolCallRequest(agent_id="agent1", tool="vision_inspect", confidence=0.5)
    request.arguments.update({"blob": "x" * 1_000_000})  # < max_message_bytes
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RequestToolCall(request)
    assert info.value.code() == C.RESOURCE_EXHAUSTED
    assert details(info.value)[0] == "REQUEST_TOO_LARGE"
    assert "RequestToolCall accepts at most 606208" in (info.value.details() or "")


def test_every_repeated_request_field_has_a_limit() -> None:
    """Building the limits refuses a repeated field nobody gave a limit."""
    limits = RequestLimits(ServerConfig(), request_types(SERVICES))
    seen = set()
    for service in SERVICES:
        for method in service.methods:
            stack = [method.input_type]
            while stack:
                message = stack.pop()
                if message.full_name in seen or message.full_name.startswith("google.protobuf."):
                    continue
                seen.add(message.full_name)
                for f in message.fields:
                    if f.is_repeated and not (
                        f.message_type and f.message_type.full_name.startswith("google.protobuf.")
                    ):
                        assert limits.limit_of(f) >= 1, f.full_name
                    if f.message_type is not None:
                        stack.append(f.message_type)
    assert "interlock.v1.PolicySet" in seen and "interlock.v1.StepSpec" in seen
