"""WatchEvents: the ordered, resumable event stream, against a real server.

Every wait is bounded in time (asyncio.wait_for). Streams are read through the
generated stub, most through :class:`Stream`, which reads as fast as events
come so a test can also wait for their absence; cancelling a grpc.aio read
would cancel the whole call. The CLI tests run ``interlock watch`` as a
subprocess so this event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
import pytest
from interlock.events import EventFilter
from interlock.journal import Batch, EventRecord
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2
from interlock.v1.control_plane_pb2_grpc import ControlPlaneStub

from tests.conftest import Running, StartServer
from tests.helpers.calls import details, tool_call
from tests.helpers.signals import signal_a_thread
from tests.test_cli import INTERLOCK, clean_env, run

DECISION = observe_pb2.EVENT_KIND_DECISION
RESULT = observe_pb2.EVENT_KIND_RESULT
SIGNAL = observe_pb2.EVENT_KIND_SIGNAL
LIMIT = 30.0
"""Seconds any single wait of these tests may take."""

_T = TypeVar("_T")


async def bounded(aw: Awaitable[_T], seconds: float = LIMIT) -> _T:
    return await asyncio.wait_for(aw, seconds)


# Streams ------------------------------------------------------------------------


def address(running: Running) -> str:
    return f"127.0.0.1:{running.server.port}"


def watch(running: Running, after_seq: int = 0, **filters: Any) -> Any:
    """An open WatchEvents call (a grpc.aio UnaryStreamCall)."""
    return running.cp.WatchEvents(pb.WatchEventsRequest(after_seq=after_seq, **filters))


async def read(call: Any, n: int) -> list[observe_pb2.Event]:
    """The next ``n`` events of a call read directly (for the slow watcher)."""

    async def take() -> list[observe_pb2.Event]:
        out = []
        while len(out) < n:
            response = await call.read()
            assert response is not grpc.aio.EOF, f"the stream ended after {len(out)} events"
            out.append(response.event)
        return out

    return await bounded(take())


class Stream:
    """A WatchEvents call read into a queue as fast as events come."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._items: asyncio.Queue[observe_pb2.Event | grpc.aio.AioRpcError | None] = (
            asyncio.Queue()
        )
        self._pump = asyncio.create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            async for response in self.call:
                self._items.put_nowait(response.event)
            self._items.put_nowait(None)
        except grpc.aio.AioRpcError as exc:
            self._items.put_nowait(exc)

    async def take(self, n: int) -> list[observe_pb2.Event]:
        out = []
        for _ in range(n):
            item = await bounded(self._items.get())
            assert isinstance(item, observe_pb2.Event), f"after {len(out)} events: {item!r}"
            out.append(item)
        return out

    async def error(self) -> grpc.aio.AioRpcError:
        item = await bounded(self._items.get(), 5)
        assert isinstance(item, grpc.aio.AioRpcError), f"expected the stream to fail: {item!r}"
        return item

    async def nothing_more(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self._items.empty(), f"unexpected: {self._items.get_nowait()!r}"

    async def close(self) -> None:
        self.call.cancel()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


@contextlib.asynccontextmanager
async def watching(running: Running, after_seq: int = 0, **filters: Any) -> AsyncIterator[Stream]:
    stream = Stream(watch(running, after_seq, **filters))
    try:
        yield stream
    finally:
        await stream.close()


async def wait_for_watchers(running: Running, n: int) -> None:
    """Until the hub has ``n`` watchers (the streams are open server-side)."""
    for _ in range(1000):
        if running.server.events.watchers == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{running.server.events.watchers} watchers, not {n}")


def lags(running: Running) -> float:
    registry = running.server.metrics.registry
    return registry.get_sample_value("interlock_event_watcher_lags_total") or 0.0


def assert_consecutive(events: list[observe_pb2.Event]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap or a duplicate: {seqs}"


# Making events ------------------------------------------------------------------


async def highest_seq(running: Running) -> int:
    return await running.server.journal.events.highest()


async def decide(running: Running, n: int = 1, **call: Any) -> list[types_pb2.Decision]:
    """``n`` decisions one after the other: their events come in this order."""
    decisions = []
    for _ in range(n):
        response = await bounded(running.cp.RequestToolCall(tool_call(**call)))
        decisions.append(response.decision)
    return decisions


async def decide_in_batches(running: Running, total: int, batch: int = 250) -> set[str]:
    """``total`` decisions, ``batch`` at a time concurrently (in the store's order)."""
    ids: list[str] = []
    for start in range(0, total, batch):
        calls = (
            running.cp.RequestToolCall(tool_call(confidence=0.6))
            for _ in range(min(batch, total - start))
        )
        responses = await bounded(asyncio.gather(*calls))
        ids += [r.decision.decision_id for r in responses]
    assert len(set(ids)) == total
    return set(ids)


async def report(running: Running, decision: types_pb2.Decision) -> types_pb2.ToolResult:
    request = pb.ReportToolResultRequest(
        decision_id=decision.decision_id,
        agent_id=decision.agent_id,
        outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
    )
    return (await bounded(running.cp.ReportToolResult(request))).result


# Live delivery ------------------------------------------------------------------


async def test_watcher_sees_decisions_and_results_in_order(server: Running) -> None:
    async with watching(server, await highest_seq(server)) as stream:
        await wait_for_watchers(server, 1)
        before = time.time()
        first = (await decide(server))[0]
        await report(server, first)
        second = (await decide(server, agent_id="agent2"))[0]
        events = await stream.take(3)
        await stream.nothing_more()

    assert [e.kind for e in events] == [DECISION, RESULT, DECISION]
    assert_consecutive(events)
    decided, reported, decided2 = events
    assert decided.decision_id == first.decision_id
    assert decided.agent_id == "agent1"
    assert decided.tool == "vision_inspect"
    assert decided.message == "ALLOW LIVE for vision_inspect by agent1"
    assert decided.payload["verdict"] == "ALLOW"
    assert decided.payload["mode"] == "LIVE"
    assert decided.payload["policy_revision"] == first.policy_revision
    assert before - 1 <= decided.time.ToNanoseconds() / 1e9 <= time.time() + 1
    assert reported.decision_id == first.decision_id
    assert reported.payload["outcome"] == "SUCCEEDED"
    assert reported.message == "vision_inspect SUCCEEDED (LIVE) for agent1"
    assert decided2.decision_id == second.decision_id
    assert decided2.agent_id == "agent2"


async def test_history_then_live_from_zero(server: Running) -> None:
    made = await decide(server, 3)
    async with watching(server) as stream:
        history = await stream.take(3)
        made += await decide(server, 2)
        live = await stream.take(2)

    events = history + live
    assert_consecutive(events)
    assert [e.decision_id for e in events] == [d.decision_id for d in made]


# Resuming -----------------------------------------------------------------------


async def test_resume_after_seq_gets_exactly_the_rest(server: Running) -> None:
    base = await highest_seq(server)
    made = await decide(server, 5)
    async with watching(server, base) as stream:
        seen = await stream.take(3)
    await wait_for_watchers(server, 0)
    made += await decide(server, 4)

    async with watching(server, seen[-1].seq) as resumed:
        rest = await resumed.take(6)
        await resumed.nothing_more()
        last = (await decide(server))[0]
        (after,) = await resumed.take(1)

    events = seen + rest
    assert_consecutive(events)
    assert [e.decision_id for e in events] == [d.decision_id for d in made]
    assert after.decision_id == last.decision_id
    assert after.seq == events[-1].seq + 1


async def test_resume_across_a_restart(start_server: StartServer) -> None:
    first = await start_server()
    made = await decide(first, 5)
    async with watching(first) as stream:
        before = await stream.take(5)
    await bounded(first.server.stop())

    second = await start_server(data_dir=str(first.data_dir))
    async with watching(second, before[1].seq) as resumed:
        rest = await resumed.take(3)
        await resumed.nothing_more()
        new = await decide(second, 2)
        live = await resumed.take(2)

    assert [(e.seq, e.decision_id) for e in rest] == [(e.seq, e.decision_id) for e in before[2:]]
    assert [e.decision_id for e in rest] == [d.decision_id for d in made[2:]]
    assert [e.decision_id for e in live] == [d.decision_id for d in new]
    assert_consecutive(before[:2] + rest + live)


@pytest.mark.parametrize("beyond", [1, 1000, 2**63, 2**64 - 1])
async def test_after_seq_beyond_the_highest_seq_is_refused_naming_it(
    server: Running, beyond: int
) -> None:
    """No server handed out such a seq: honouring it would skip every event up to it."""
    await decide(server, 2)
    highest = await highest_seq(server)
    async with watching(server, highest + beyond if beyond < 2**63 else beyond) as stream:
        err = await stream.error()
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert f"the highest event seq, {highest}:" in (err.details() or "")
    assert details(err)[0] == "OUT_OF_RANGE"
    assert server.server.events.watchers == 0


async def test_after_the_highest_seq_gets_only_new_events(server: Running) -> None:
    await decide(server, 2)
    async with watching(server, await highest_seq(server)) as stream:
        await wait_for_watchers(server, 1)
        await stream.nothing_more()
        new = await decide(server, 2)
        live = await stream.take(2)
    assert [e.decision_id for e in live] == [d.decision_id for d in new]


# Filters ------------------------------------------------------------------------


async def test_filter_by_agent(server: Running) -> None:
    async with watching(server, await highest_seq(server), agent_id="agent2") as stream:
        await wait_for_watchers(server, 1)
        await decide(server, 2, agent_id="agent1")
        theirs = await decide(server, 2, agent_id="agent2")
        await decide(server, 1, agent_id="agent1")
        events = await stream.take(2)
        await stream.nothing_more()

    assert {e.agent_id for e in events} == {"agent2"}
    assert [e.decision_id for e in events] == [d.decision_id for d in theirs]


async def test_filter_by_kind(server: Running) -> None:
    base = await highest_seq(server)
    decisions = await decide(server, 3)
    results = [await report(server, d) for d in decisions[:2]]

    async with watching(server, base, kinds=[RESULT]) as stream:
        events = await stream.take(2)
        await report(server, decisions[2])
        (live,) = await stream.take(1)
        await stream.nothing_more()
    assert [e.kind for e in events] == [RESULT, RESULT]
    assert [e.decision_id for e in events] == [r.decision_id for r in results]
    assert live.kind == RESULT and live.decision_id == decisions[2].decision_id

    async with watching(server, base, kinds=[RESULT, DECISION]) as both:
        assert len(await both.take(6)) == 6
        await both.nothing_more()


async def test_filter_by_plan(server: Running) -> None:
    base = await highest_seq(server)
    await decide(server, 2)
    in_plan = await decide(server, 2, plan_id="p1", step_id="s1")
    await decide(server, 1, plan_id="p2", step_id="s1")

    async with watching(server, base, plan_id="p1") as stream:
        events = await stream.take(2)
        await stream.nothing_more()
    assert [e.decision_id for e in events] == [d.decision_id for d in in_plan]
    assert {(e.plan_id, e.step_id) for e in events} == {("p1", "s1")}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"plan_id": "bad plan!"}, "plan_id"),
        ({"agent_id": " agent1"}, "agent_id"),
        ({"kinds": [observe_pb2.EVENT_KIND_UNSPECIFIED]}, "kinds[0]"),
        ({"kinds": [RESULT, 99]}, "kinds[1]"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    server: Running, request_fields: dict[str, Any], field: str
) -> None:
    call = server.cp.WatchEvents(pb.WatchEventsRequest(**request_fields))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bounded(call.read())

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    _, violations = details(caught.value)
    assert [f for f, _ in violations] == [field]


# Slow watchers ------------------------------------------------------------------


async def test_a_slow_watcher_gets_everything_and_slows_nobody(server: Running) -> None:
    await server.server.signals.close()  # every event must be a decision: no learning signals
    # Without BDP probing the slow client's HTTP/2 window stays at 64 KiB: its
    # stream blocks after ~100 events, so its 1,000-event queue overflows.
    slow_channel = grpc.aio.insecure_channel(address(server), options=[("grpc.http2.bdp_probe", 0)])
    total = 3200
    base = await highest_seq(server)
    try:
        slow = ControlPlaneStub(slow_channel).WatchEvents(pb.WatchEventsRequest(after_seq=base))
        async with watching(server, base) as fast:
            await wait_for_watchers(server, 2)
            ids = await bounded(decide_in_batches(server, total), 60)  # none blocked
            fast_events = await fast.take(total)
            assert lags(server) >= 1, "the slow watcher never fell behind"
            slow_events = await read(slow, total)  # the first read in a long while
            await fast.nothing_more(0.1)
    finally:
        await slow_channel.close()

    for events in (fast_events, slow_events):
        assert_consecutive(events)
        assert events[0].seq == base + 1
        assert {e.decision_id for e in events} == ids
    assert [e.decision_id for e in slow_events] == [e.decision_id for e in fast_events]


async def test_a_stalled_watcher_catches_up_from_the_store(server: Running) -> None:
    """The hub itself, default queue size: a watcher that stops reading falls back to the store."""
    await server.server.signals.close()  # every event must be a decision: no learning signals
    hub = server.server.events
    base = await highest_seq(server)
    with hub.watch(base, EventFilter(kinds=frozenset({"DECISION"}))) as watcher:
        events = aiter(watcher)
        first = (await decide(server))[0]
        assert (await bounded(anext(events))).decision_id == first.decision_id
        # The watcher is live now; it does not read while 3,000 decisions go by.
        ids = await bounded(decide_in_batches(server, 3000), 60)
        assert watcher.lagging and lags(server) == 1

        got = [await bounded(anext(events)) for _ in ids]
        last = (await decide(server))[0]
        after = await bounded(anext(events))
        assert not watcher.lagging
    assert hub.watchers == 0
    assert {e.decision_id for e in got} == ids
    assert [e.seq for e in got] == list(range(base + 2, base + 2 + len(ids)))
    assert (after.decision_id, after.seq) == (last.decision_id, base + 2 + len(ids))


async def test_events_committed_without_being_published_still_come(server: Running) -> None:
    """A writer cancelled while its batch commits: the store does not publish the batch."""
    server.server.events.check_interval = 0.05

    async def commit_and_cancel(message: str) -> None:
        batch = Batch(events=[EventRecord(kind="SIGNAL", message=message)])
        task = asyncio.create_task(server.server.journal.commit(batch))
        await asyncio.sleep(0)  # queued to the writer thread, awaiting its answer
        task.cancel()

    async with watching(server, await highest_seq(server)) as stream:
        await wait_for_watchers(server, 1)
        # Idle server: the hub's periodic check finds it.
        await commit_and_cancel("unpublished 1")
        (found,) = await stream.take(1)
        # Busy server: the next published batch reveals the hole.
        await commit_and_cancel("unpublished 2")
        made = (await decide(server))[0]
        hole, after = await stream.take(2)
        await stream.nothing_more()

    assert (found.kind, found.message) == (SIGNAL, "unpublished 1")
    assert (hole.message, after.decision_id) == ("unpublished 2", made.decision_id)
    assert_consecutive([found, hole, after])


# Stopping -----------------------------------------------------------------------


async def test_server_stop_ends_open_streams_promptly(server: Running) -> None:
    made = (await decide(server))[0]
    highest = await highest_seq(server)
    async with watching(server) as busy, watching(server, highest) as idle:
        (event,) = await busy.take(1)
        await wait_for_watchers(server, 2)

        # An hour's grace: the streams end while the server is stopping (the hub
        # closes them), not when the grace runs out, and so stop() returns.
        stopping = asyncio.create_task(server.server.stop(grace=3600))
        try:
            errors = [await busy.error(), await idle.error()]
            await bounded(stopping)
        finally:
            stopping.cancel()

    assert event.decision_id == made.decision_id
    for error in errors:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert details(error)[0] == "SERVER_STOPPING"
    assert f"resume with after_seq={event.seq}" in (errors[0].details() or "")


# The CLI ------------------------------------------------------------------------


async def test_cli_watch_limit_json(server: Running) -> None:
    made = await decide(server, 3)
    result = await run("watch", "--limit", "2", "--json", "--server", address(server))

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 2
    events = [json.loads(line) for line in lines]
    assert [e["decision_id"] for e in events] == [d.decision_id for d in made[:2]]
    assert [e["kind"] for e in events] == ["EVENT_KIND_DECISION"] * 2
    assert int(events[0]["seq"]) < int(events[1]["seq"])
    assert events[0]["payload"]["verdict"] == "ALLOW"


async def test_cli_watch_text_with_filters_and_resume(server: Running) -> None:
    for decision in await decide(server, 2, plan_id="p1", step_id="s1"):
        await report(server, decision)
    target = address(server)

    first = await run(
        "watch", "--server", target, "--kind", "result", "--plan", "p1", "--limit", "1"
    )
    assert first.code == 0, first.err
    seq, stamp, kind, *rest = first.out.split()
    assert kind == "RESULT"
    assert stamp.endswith("Z")
    assert (
        " ".join(rest) == "plan=p1 step=s1 agent=agent1 vision_inspect SUCCEEDED (LIVE) for agent1"
    )

    second = await run(
        "watch", "--server", target, "--kind", "RESULT", "--after", seq, "--limit", "1"
    )
    assert second.code == 0, second.err
    assert len(second.out.splitlines()) == 1
    assert int(second.out.split()[0]) > int(seq)
    assert second.out.split()[2] == "RESULT"


async def test_cli_watch_bad_plan_fails(server: Running) -> None:
    result = await run("watch", "--server", address(server), "--plan", "no good")

    assert result.code == 1
    assert "INVALID_ARGUMENT" in result.err
    assert "plan_id" in result.err


@pytest.mark.parametrize("target", ["process", "another thread"])
async def test_cli_watch_stops_on_ctrl_c(server: Running, target: str) -> None:
    # A SIGINT sent to the process may be delivered to one of gRPC's threads
    # ("another thread", sent there with tgkill): the watch must still stop at
    # once on a quiet stream, not at the next event.
    proc = await asyncio.create_subprocess_exec(
        str(INTERLOCK),
        "watch",
        "--server",
        address(server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=clean_env(),
    )
    assert proc.stdout is not None
    try:
        await decide(server)
        line = (await bounded(proc.stdout.readline())).decode()
        await wait_for_watchers(server, 1)
        if target == "process":
            proc.send_signal(signal.SIGINT)
        else:
            assert signal_a_thread(proc.pid, signal.SIGINT), "the watch runs no other thread"
        _, err = await bounded(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert "DECISION" in line and "agent=agent1" in line
    assert proc.returncode == 0, err.decode()
    assert err.decode() == ""
