"""The ordered, resumable event stream behind WatchEvents: history, then live.

Guarantees
----------
Every event committed to the store has a strictly increasing ``seq`` (the
``events`` table's AUTOINCREMENT key: durable, never reused, continuing
across restarts). A watcher asks for the events after ``after_seq`` that
match its filter (``plan_id``, ``agent_id``, ``kinds``; empty means all) and
gets every one of them, in ``seq`` order, exactly once, with no gaps: from
the store first, then live. ``after_seq`` from a previous server's life works,
because the history comes from the durable store. An ``after_seq`` beyond the
highest committed ``seq`` is refused (OUT_OF_RANGE, naming the highest): no
server ever handed it out, so it comes from another store (a wiped data dir)
or was made up, and honouring it would silently skip the events up to it. To
follow only new events, resume after the highest ``seq`` (GetHealth does not
say it; the first event of a stream does).

How
---
The :class:`EventHub` is one of :attr:`Journal.listeners <interlock.journal.Journal.listeners>`: the store calls it on
the event loop with each committed batch, in commit order. It fans the events
out to its :class:`Watcher` objects, each with a bounded queue
(:data:`QUEUE_SIZE` events). Publishing never blocks and never waits for a
watcher: when a watcher's queue has no room the hub marks it *lagging* and
drops its queue, and it counts that (``interlock_event_watcher_lags_total``).

Each watcher keeps a cursor, the highest ``seq`` it has delivered or passed
over (filtered out); everything up to the cursor is done. A watcher starts
lagging, and whenever it is lagging it catches up the same way:

1. it stops lagging, so from now on the hub queues its live events again;
2. it reads the store after its cursor in pages (:data:`PAGE_SIZE`) until a
   page comes back short, delivering and advancing the cursor as it goes;
3. it takes events from its queue, dropping those at or below the cursor.

That handoff loses nothing: an event the hub publishes after step 1 is in
the queue, and one published before it was committed before it, so the read
of step 2 (which starts later) sees it. It duplicates nothing: the cursor
only moves forward and step 3 drops what step 2 already delivered. If the
queue overflows again (the consumer is slow), the watcher is lagging again
and repeats the catch-up from its cursor; it never skips ahead.

As a safety net for any batch that reaches the store but not the hub, the
hub notices a hole in the published ``seq``\\s (seqs are contiguous:
rolled-back inserts do not use up numbers) when the next batch arrives, and
on an idle server by checking the store's highest ``seq`` every
:data:`CHECK_INTERVAL_SECONDS`; either way every watcher catches up from the
store, so such an event is delivered late but never skipped.

:meth:`EventHub.close` ends every watcher promptly (the server calls it
before stopping gRPC, so idle streams do not hold up a graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from interlock.errors import OutOfRange
from interlock.journal import EventRecord, Journal
from interlock.journal.repos import Events
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Live events a watcher may have waiting before it falls back to the store."""
PAGE_SIZE = 500
"""Events per store read while streaming history or catching up."""
CHECK_INTERVAL_SECONDS = 2.0
"""How often the hub looks for committed events the store did not publish."""
MAX_SEQ = 2**63 - 1
"""The largest seq the store can hold."""


# Filters and stored rows --------------------------------------------------------
# (Their protobuf form, the kinds' enum values and WatchEvents' request
# validation, is the API's: :mod:`interlock.api.events`.)


@dataclass(frozen=True)
class EventFilter:
    """Which events a watcher wants; an empty field matches everything."""

    plan_id: str = ""
    agent_id: str = ""
    kinds: frozenset[str] = frozenset()

    def matches(self, event: EventRecord) -> bool:
        return (
            (not self.plan_id or event.plan_id == self.plan_id)
            and (not self.agent_id or event.agent_id == self.agent_id)
            and (not self.kinds or event.kind in self.kinds)
        )


def record_from_row(row: Mapping[str, Any]) -> EventRecord:
    return EventRecord(
        kind=row["kind"],
        message=row["message"],
        plan_id=row["plan_id"],
        step_id=row["step_id"],
        agent_id=row["agent_id"],
        decision_id=row["decision_id"],
        tool=row["tool"],
        payload=orjson.loads(row["payload"]),
        time=row["time"],
        seq=row["seq"],
        replica=row.get("replica", ""),
    )


# Watchers ---------------------------------------------------------------------


class Watcher:
    """One subscriber: a cursor, a bounded queue of live events, and whether it lags.

    Iterate it once to get its events; the iteration ends when it is closed.
    """

    def __init__(
        self, events: Events, after_seq: int, selection: EventFilter, queue_size: int
    ) -> None:
        self.cursor = min(after_seq, MAX_SEQ)
        """The highest seq delivered or passed over; everything up to it is done."""
        self.filter = selection
        self.lagging = True
        """True until it has caught up from the store (and again when its queue overflows)."""
        self.closed = False
        self._events = events
        self._queue_size = queue_size
        self._queue: deque[EventRecord] = deque()
        self._wake = asyncio.Event()

    def offer(self, events: Sequence[EventRecord]) -> bool:
        """Queue the live events it wants; False if they did not fit (it now lags)."""
        if self.lagging or self.closed:
            return True
        wanted = [e for e in events if self.filter.matches(e)]
        if not wanted:
            return True
        if len(self._queue) + len(wanted) > self._queue_size:
            self.fall_behind()
            return False
        self._queue.extend(wanted)
        self._wake.set()
        return True

    def fall_behind(self) -> None:
        """Drop the queue; the watcher catches up from the store at its cursor."""
        self.lagging = True
        self._queue.clear()
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._wake.set()

    async def __aiter__(self) -> AsyncIterator[EventRecord]:
        while not self.closed:
            if self.lagging:
                async with contextlib.aclosing(self._catch_up()) as history:
                    async for event in history:
                        yield event
                continue
            live = await self._next_live()
            if live is not None and live.seq > self.cursor:
                self.cursor = live.seq
                yield live

    async def _catch_up(self) -> AsyncGenerator[EventRecord, None]:
        """Queue live events again, then deliver what the store holds after the cursor."""
        self.lagging = False
        while not self.closed:
            rows = await self._events.after(self.cursor, PAGE_SIZE)
            for row in rows:
                if self.closed:
                    return
                event = record_from_row(row)
                self.cursor = event.seq
                if self.filter.matches(event):
                    yield event
            if len(rows) < PAGE_SIZE:
                return

    async def _next_live(self) -> EventRecord | None:
        """The next queued event; None once it lags or is closed."""
        while not self._queue:
            if self.lagging or self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()


# The hub ----------------------------------------------------------------------


class EventHub:
    """Fans committed events out to watchers; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        *,
        registry: CollectorRegistry | None = None,
        queue_size: int = QUEUE_SIZE,
        check_interval: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        self.journal = journal
        self.queue_size = queue_size
        """Each new watcher's queue bound."""
        self.check_interval = check_interval
        self._watchers: set[Watcher] = set()
        self._published: int | None = None  # the highest seq published so far
        self._closed = False
        self._checker: asyncio.Task[None] | None = None
        self._open = Gauge(
            "interlock_event_watchers", "Open event streams (WatchEvents).", registry=registry
        )
        self._lags = Counter(
            "interlock_event_watcher_lags_total",
            "Times a watcher's queue overflowed and it caught up from the store.",
            registry=registry,
        )
        self.remote_listeners: list[Callable[[list[EventRecord]], None]] = []
        """Replicas sharing a store: called on the event loop with the events
        other replicas committed, in seq order (see :meth:`_feed_loop`)."""
        self._poke = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        journal.listeners.append(self._publish)

    async def start(self) -> None:
        """Learn the highest committed seq and start looking for unpublished events."""
        self._note_published(await self._highest_committed())
        if self.journal.shared and self._checker is None:
            self._checker = asyncio.create_task(self._feed_loop(), name="event-hub-feed")
            self._listener = asyncio.create_task(
                self.journal.listen(self._poke.set), name="event-hub-listen"
            )
        elif self.check_interval > 0 and self._checker is None:
            self._checker = asyncio.create_task(self._check_loop(), name="event-hub-check")

    async def close(self) -> None:
        """End every watcher's stream now, and refuse new ones. Idempotent."""
        self._closed = True
        for watcher in self._watchers:
            watcher.close()
        await cancel_and_wait(self._checker, self._listener)
        self._checker = self._listener = None

    async def check_resume(self, after_seq: int) -> None:
        """Refuse (OutOfRange) an ``after_seq`` beyond the highest committed seq."""
        if after_seq <= (self._published or 0):
            return
        highest = await self._highest_committed()  # another replica may be ahead of us
        if after_seq > highest:
            raise OutOfRange(
                f"after_seq {after_seq} is beyond the highest event seq, {highest}: "
                f"resume with after_seq <= {highest} (0 streams from the start)",
                metadata={"highest_seq": str(highest)},
            )

    @contextlib.contextmanager
    def watch(self, after_seq: int, selection: EventFilter) -> Iterator[Watcher]:
        """A watcher of the events after ``after_seq`` matching ``selection``, while in use."""
        watcher = Watcher(self.journal.events, after_seq, selection, self.queue_size)
        if self._closed:
            watcher.close()
            yield watcher
            return
        self._watchers.add(watcher)
        self._open.inc()
        try:
            yield watcher
        finally:
            watcher.close()
            self._watchers.discard(watcher)
            self._open.dec()

    async def recent(self, selection: EventFilter, limit: int) -> list[EventRecord]:
        """The newest ``limit`` committed events matching ``selection``, oldest first
        (the page a console view starts from before it follows live)."""
        rows = await self.journal.events.recent(
            plan_id=selection.plan_id,
            agent_id=selection.agent_id,
            kinds=sorted(selection.kinds),
            limit=limit,
        )
        return [record_from_row(row) for row in rows]

    async def highest_seq(self) -> int:
        """The highest committed seq (0 when there is none)."""
        return await self._highest_committed()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    # Publishing ---------------------------------------------------------------

    def _publish(self, events: list[EventRecord]) -> None:
        """The store's listener: runs on the event loop, never blocks."""
        if self._closed or not events:
            return
        if self.journal.shared:  # the feed publishes every replica's events in seq order
            if self._published is not None and events[0].seq == self._published + 1:
                # Straight after what was published: no other replica's event
                # can lie between (seqs are given in commit order), so these
                # go out now instead of being read back by the feed.
                self._hand_out(events)
            else:
                self._poke.set()
            return
        if self._published is not None and events[0].seq > self._published + 1:
            self._everyone_to_the_store(self._published + 1, events[0].seq - 1)
        self._hand_out(events)

    def _hand_out(self, events: list[EventRecord]) -> None:
        """Publish committed events to every watcher, in seq order."""
        self._note_published(events[-1].seq)
        for watcher in self._watchers:
            if not watcher.offer(events):
                self._lags.inc()

    def _note_published(self, seq: int) -> None:
        self._published = seq if self._published is None else max(self._published, seq)

    def _everyone_to_the_store(self, first: int, last: int) -> None:
        log.info(
            "events %d..%d were committed without being published live;"
            " %d watcher(s) read them from the store",
            first,
            last,
            len(self._watchers),
        )
        for watcher in self._watchers:
            watcher.fall_behind()

    async def _highest_committed(self) -> int:
        return await self.journal.events.highest()

    async def _feed_loop(self) -> None:
        """Replicas sharing a store: publish every replica's events in seq order.

        Woken by this replica's own commits that do not follow straight on
        what was published (those that do go out at once, :meth:`_publish`),
        by NOTIFY from any replica's (the data version of a shared SQLite file)
        (:meth:`Journal.listen <interlock.journal.Journal.listen>`), and every
        ``check_interval`` in case a notification was lost (it then only
        delays). It reads the events after the highest seq it published: the
        seqs are given in commit order under the write lock, so once seq N is
        visible every seq below it is too, and nothing is skipped. Watchers
        get them all; :attr:`remote_listeners` get the other replicas'.
        """
        interval = self.check_interval if self.check_interval > 0 else CHECK_INTERVAL_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self._feed()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is away: the next wake-up reads again
                log.exception("events: could not read the events other replicas committed")
                await asyncio.sleep(interval)

    async def _feed(self) -> None:
        while not self._closed:
            rows = await self.journal.events.after(self._published or 0, PAGE_SIZE)
            if not rows:
                return
            # This replica's own events may have gone out meanwhile (_publish).
            events = [e for e in map(record_from_row, rows) if e.seq > (self._published or 0)]
            if not events:
                if len(rows) < PAGE_SIZE:
                    return
                continue
            self._hand_out(events)
            remote = [e for e in events if e.replica != self.journal.replica]
            if remote:
                for listener in self.remote_listeners:
                    try:
                        listener(remote)
                    except Exception:
                        log.exception("events: a listener of other replicas' events failed")
            if len(rows) < PAGE_SIZE:
                return

    async def _check_loop(self) -> None:
        """Catch events the store committed but never published (their writer was cancelled).

        A seq seen committed but unpublished on two checks in a row is a hole,
        not a publication still on its way through the event loop.
        """
        suspect = 0
        while True:
            await asyncio.sleep(self.check_interval)
            published = self._published or 0
            if suspect > published:
                self._everyone_to_the_store(published + 1, suspect)
                self._note_published(suspect)
            try:
                highest = await self._highest_committed()
            except Exception:  # keep checking; the next batch still reveals holes
                log.exception("events: could not read the highest committed seq")
                highest = 0
            suspect = highest if highest > (self._published or 0) else 0


__all__ = [
    "CHECK_INTERVAL_SECONDS",
    "MAX_SEQ",
    "PAGE_SIZE",
    "QUEUE_SIZE",
    "EventFilter",
    "EventHub",
    "Watcher",
    "record_from_row",
]
