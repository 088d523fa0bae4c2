"""Plans survive a crash: ``interlock serve`` killed with SIGKILL, then started again.

What must hold: plans, steps and events live in SQLite (WAL); a server killed
with SIGKILL and restarted on the same data directory resumes every in-flight
plan, loses no accepted plan or event, and never repeats a LIVE step. A LIVE
step that was out with a worker at the crash is never offered again: the new
server waits for the worker's report (same work id) until the step's deadline,
then marks it AMBIGUOUS. A DRY_RUN or MOCK step that was out is offered again.

Each test runs the real console script as a subprocess (tests/helpers/process.py),
kills it with SIGKILL, and starts it again on the same port and data directory.
Scripted agent workers (tests/helpers/workers.py) talk to it over gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, observe_pb2, plans_pb2, types_pb2

from tests.helpers.process import ServerProcess
from tests.helpers.workers import Worker, wait_plan, wait_step
from tests.test_plans_api import FINISHED, modes, spec, states, step

LIVE = types_pb2.EXECUTION_MODE_LIVE
DRY_RUN = types_pb2.EXECUTION_MODE_DRY_RUN
SUCCEEDED = types_pb2.TOOL_OUTCOME_SUCCEEDED
NOT_OFFERED_SECONDS = 1.0
"""How long a reconnected worker is watched for an item it must never get."""


@pytest.fixture
async def serve(tmp_path: Path, policy_dir: Path) -> AsyncIterator[ServerProcess]:
    """``interlock serve`` on the test's own port, data and policy folders; killed at the end."""
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    try:
        yield server
    finally:
        await server.close()


def control(channel: grpc.aio.Channel) -> control_plane_pb2_grpc.ControlPlaneStub:
    return control_plane_pb2_grpc.ControlPlaneStub(channel)


def hold(item: plans_pb2.WorkItem) -> None:
    """A worker outcome: keep the item, report nothing."""
    return None


async def get_plan(cp: control_plane_pb2_grpc.ControlPlaneStub, plan_id: str) -> plans_pb2.Plan:
    return (await cp.GetPlan(pb.GetPlanRequest(plan_id=plan_id))).plan


async def report(
    cp: control_plane_pb2_grpc.ControlPlaneStub,
    item: plans_pb2.WorkItem,
    agent_id: str,
    output: dict[str, str],
) -> pb.ReportToolResultResponse:
    """What a worker that ran ``item`` sends, on whatever channel it has now."""
    request = pb.ReportToolResultRequest(
        decision_id=item.decision_id,
        agent_id=agent_id,
        work_id=item.work_id,
        outcome=SUCCEEDED,
    )
    request.output.update(output)
    return await cp.ReportToolResult(request, timeout=10)


def seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def describe(event: observe_pb2.Event) -> tuple[int, str, str, str, str]:
    """What must not change about a stored event: seq, kind, plan, step, message."""
    kind = observe_pb2.EventKind.Name(event.kind).removeprefix("EVENT_KIND_")
    return event.seq, kind, event.plan_id, event.step_id, event.message


async def read_events(
    cp: control_plane_pb2_grpc.ControlPlaneStub,
    request: pb.WatchEventsRequest,
    *,
    until: Callable[[list[observe_pb2.Event]], bool] = lambda events: True,
    quiet: float = 0.5,
    within: float = 15.0,
) -> list[observe_pb2.Event]:
    """WatchEvents until ``until`` holds and no event came for ``quiet`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    call = cp.WatchEvents(request)
    events: list[observe_pb2.Event] = []
    try:
        while True:
            done = until(events)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"WatchEvents({request}) still streaming after {within:g}s"
                    if done
                    else f"WatchEvents({request}) never delivered what was awaited; got "
                    f"{[describe(e) for e in events]}"
                )
            try:
                response = await asyncio.wait_for(
                    call.read(), min(quiet, remaining) if done else remaining
                )
            except TimeoutError:
                if done:
                    return events
                continue
            assert response is not grpc.aio.EOF, "WatchEvents ended while the server runs"
            events.append(response.event)
    finally:
        call.cancel()


async def collect_events(
    cp: control_plane_pb2_grpc.ControlPlaneStub, into: list[observe_pb2.Event]
) -> None:
    """Record every event WatchEvents delivers until the stream breaks."""
    async for response in cp.WatchEvents(pb.WatchEventsRequest(after_seq=0)):
        into.append(response.event)


async def wait_finished(
    cp: control_plane_pb2_grpc.ControlPlaneStub, plan_ids: list[str], within: float = 20
) -> dict[str, plans_pb2.Plan]:
    """Every plan once it is finished; names each unfinished plan's steps if one hangs."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        plans = {plan_id: await get_plan(cp, plan_id) for plan_id in plan_ids}
        hanging = {i: p for i, p in plans.items() if p.state not in FINISHED}
        if not hanging:
            return plans
        if asyncio.get_running_loop().time() > deadline:
            lines = [
                f"  {i}: {plans_pb2.PlanState.Name(p.state)}; steps "
                + ", ".join(f"{s}={state}/{modes(p)[s]}" for s, state in states(p).items())
                for i, p in hanging.items()
            ]
            raise AssertionError(
                f"{len(hanging)} plan(s) in flight at the crash never finished after the "
                f"restart (within {within:g}s):\n" + "\n".join(lines)
            )
        await asyncio.sleep(0.1)


# A LIVE step out with a worker -------------------------------------------------------


async def test_a_live_step_out_at_the_crash_waits_for_its_report_and_is_never_offered_again(
    serve: ServerProcess,
) -> None:
    cp = control(await serve.start())
    request = spec(
        "live_at_crash",
        step("a", "vision_inspect", "agent1", 0.9, {"target": "x"}),
        step("b", "vision_inspect", "agent1", 0.6, {"target": "y"}, ("a",)),
    )
    async with Worker(serve.channel, "agent1", hold) as first:
        await cp.SubmitPlan(request)
        (a_item,) = await first.wait_for(1)
        assert (a_item.step_id, a_item.mode, a_item.attempt) == ("a", LIVE, 1)
        await serve.kill()

    cp = control(await serve.start())
    async with Worker(serve.channel, "agent1", hold) as second:
        await asyncio.sleep(NOT_OFFERED_SECONDS)
        assert [(i.step_id, i.attempt) for i in second.items] == [], (
            "the LIVE step the first worker holds was offered again after the restart"
        )
        plan = await get_plan(cp, "live_at_crash")
        assert plan.state == plans_pb2.PLAN_STATE_RUNNING, plan.message
        assert states(plan) == {"a": "DISPATCHED", "b": "PENDING"}

        # The first worker finished `a` meanwhile; it reports on a new channel.
        answer = await report(cp, a_item, "agent1", {"seen": "a green button"})
        assert answer.result.outcome == SUCCEEDED

        (b_item,) = await second.wait_for(1)
        assert (b_item.step_id, b_item.mode, b_item.attempt) == ("b", DRY_RUN, 1)
        await report(cp, b_item, "agent1", {"seen": "nothing"})
        plan = await wait_plan(cp, "live_at_crash", FINISHED)

    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
    assert states(plan) == {"a": "SUCCEEDED", "b": "SUCCEEDED"}
    a = next(s for s in plan.steps if s.step_id == "a")
    assert json_format.MessageToDict(a.result.output) == {"seen": "a green button"}
    dispatches = await read_events(
        cp,
        pb.WatchEventsRequest(plan_id="live_at_crash", kinds=[observe_pb2.EVENT_KIND_DISPATCH]),
        until=lambda events: len(events) >= 2,
    )
    assert [(e.step_id, e.payload["attempt"]) for e in dispatches] == [("a", 1), ("b", 1)], (
        "each step is dispatched once, across both lives of the server"
    )


# A DRY_RUN step out with a worker ----------------------------------------------------------


async def test_a_dry_run_step_out_at_the_crash_is_offered_again(serve: ServerProcess) -> None:
    cp = control(await serve.start())
    request = spec(
        "dry_run_at_crash",
        step("a", "vision_inspect", "agent1", 0.6, {"target": "x"}),
        step("b", "vision_inspect", "agent1", 0.6, {"target": "y"}, ("a",)),
    )
    async with Worker(serve.channel, "agent1", hold) as first:
        await cp.SubmitPlan(request)
        (before,) = await first.wait_for(1)
        assert (before.step_id, before.mode, before.attempt) == ("a", DRY_RUN, 1)
        await serve.kill()

    cp = control(await serve.start())
    async with Worker(serve.channel, "agent1") as second:  # runs and reports what it gets
        items = await second.wait_for(2)
        plan = await wait_plan(cp, "dry_run_at_crash", FINISHED)

    assert [(i.step_id, i.attempt) for i in items] == [("a", 2), ("b", 1)]
    assert items[0].mode == DRY_RUN and items[0].work_id != before.work_id
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
    assert states(plan) == {"a": "SUCCEEDED", "b": "SUCCEEDED"}


# Nothing accepted is lost ------------------------------------------------------------------


def mock_plan(plan_id: str, length: int) -> pb.SubmitPlanRequest:
    """A chain of MOCK steps (confidence 0.1): Interlock completes it without a worker."""
    return spec(
        plan_id,
        *(
            step(
                f"s{i}",
                "vision_inspect",
                "agent1",
                0.1,
                {"target": f"{plan_id}-{i}"},
                (f"s{i - 1}",) if i else (),
            )
            for i in range(length)
        ),
    )


async def test_a_crash_loses_no_accepted_plan_or_event(serve: ServerProcess) -> None:
    cp = control(await serve.start())
    seen: list[observe_pb2.Event] = []
    watcher = asyncio.create_task(collect_events(cp, seen))
    try:
        done_ids = [f"done_{i}" for i in range(3)]
        for plan_id in done_ids:
            await cp.SubmitPlan(mock_plan(plan_id, 3))
        finished = await wait_finished(cp, done_ids)
        for plan_id, plan in finished.items():
            assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, f"{plan_id}: {plan.message}"

        # Then a burst, and SIGKILL as soon as the last one is accepted: the earlier plans
        # of the burst are mid-run, between the commits of their steps' changes.
        burst_ids = [f"burst_{i}" for i in range(8)]
        for plan_id in burst_ids:
            await cp.SubmitPlan(mock_plan(plan_id, 4))
        await serve.kill()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    assert seen, "WatchEvents delivered nothing before the crash"
    seen_seqs = [e.seq for e in seen]
    assert seen_seqs == list(range(1, len(seen) + 1)), "WatchEvents skipped a seq before the crash"
    last_seen = seen_seqs[-1]

    cp = control(await serve.start())
    for plan_id, before in finished.items():
        after = await get_plan(cp, plan_id)
        assert after == before, f"finished plan {plan_id} changed across the crash"
    plans = await wait_finished(cp, burst_ids, within=10)
    for plan_id, plan in plans.items():
        assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, f"{plan_id}: {plan.message}"
        assert [s.step_id for s in plan.steps] == ["s0", "s1", "s2", "s3"]

    every_plan = set(done_ids) | set(burst_ids)

    def all_finished(events: list[observe_pb2.Event]) -> bool:
        return every_plan <= {
            e.plan_id for e in events if e.kind == observe_pb2.EVENT_KIND_PLAN_FINISHED
        }

    history = await read_events(cp, pb.WatchEventsRequest(after_seq=0), until=all_finished)
    seqs = [e.seq for e in history]
    assert seqs == list(range(1, len(history) + 1)), "the event log has a gap or a repeat"
    stored = {e.seq: describe(e) for e in history}
    lost_or_changed = [describe(e) for e in seen if stored.get(e.seq) != describe(e)]
    assert lost_or_changed == [], "events delivered before the crash are gone or changed"
    finished_before = {e.plan_id for e in seen if e.kind == observe_pb2.EVENT_KIND_PLAN_FINISHED}
    finished_after = {
        e.plan_id
        for e in history
        if e.kind == observe_pb2.EVENT_KIND_PLAN_FINISHED and e.seq > last_seen
    }
    assert finished_after >= every_plan - finished_before, (
        "a plan that was in flight at the crash has no PLAN_FINISHED event after it"
    )


# A LIVE step whose worker never reports -----------------------------------------------


LIVE_TIMEOUT_SECONDS = 3


async def test_a_live_step_not_reported_after_the_restart_is_ambiguous_at_its_deadline(
    serve: ServerProcess, policy_dir: Path
) -> None:
    catalog = policy_dir / "interlock" / "catalog" / "data.yaml"
    head, tool, tail = catalog.read_text().partition("\n  vision_inspect:\n")
    assert tool and "\n    timeout_seconds: 30\n" in tail, "vision_inspect's timeout moved"
    tail = tail.replace(
        "\n    timeout_seconds: 30\n", f"\n    timeout_seconds: {LIVE_TIMEOUT_SECONDS}\n", 1
    )
    catalog.write_text(head + tool + tail)

    cp = control(await serve.start())
    request = spec(
        "live_never_reported",
        step("a", "vision_inspect", "agent1", 0.9, {"target": "x"}),
        step("b", "vision_inspect", "agent1", 0.6, {"target": "y"}, ("a",)),
    )
    async with Worker(serve.channel, "agent1", hold) as first:
        await cp.SubmitPlan(request)
        (a_item,) = await first.wait_for(1)
        assert (a_item.step_id, a_item.mode) == ("a", LIVE)
        await serve.kill()
    deadline = seconds(a_item.deadline)
    assert deadline > time.time(), "the step's deadline passed before the crash; raise the timeout"

    cp = control(await serve.start())
    async with Worker(serve.channel, "agent1", hold) as second:
        if time.time() < deadline - 0.5:
            plan = await get_plan(cp, "live_never_reported")
            assert states(plan)["a"] == "DISPATCHED", "AMBIGUOUS before the step's deadline"
        ambiguous = await wait_step(
            cp,
            "live_never_reported",
            "a",
            plans_pb2.STEP_STATE_AMBIGUOUS,
            within=LIVE_TIMEOUT_SECONDS + 5,
        )
        plan = await wait_plan(cp, "live_never_reported", FINISHED)
        assert second.items == [], "the LIVE step was offered again after the restart"

    assert seconds(ambiguous.updated_at) >= deadline - 0.01, "AMBIGUOUS before its deadline"
    assert "restart" in ambiguous.message
    assert plan.state == plans_pb2.PLAN_STATE_FAILED, plan.message
    assert states(plan) == {"a": "AMBIGUOUS", "b": "CANCELLED"}
    assert "AMBIGUOUS" in plan.message
