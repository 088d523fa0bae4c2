"""The live layer's endpoints: the event stream as server-sent events, and the
pending-approvals count of the header.

``GET /live/events`` streams the events after ``Last-Event-ID`` (what the
browser sends when it reconnects by itself) or ``?after=`` (what the page
sends when it opens a new stream), each with ``id: <seq>``. The events come
from :meth:`EventHub.watch`, which reads the durable store first and then
follows live, so a reconnect, even to a restarted server, resumes without a
gap or a duplicate. A comment every :data:`HEARTBEAT_SECONDS` finds clients
that went away; when the server stops, a ``bye`` event ends the stream and the
browser reconnects (``retry:`` tells it how soon).
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web

from interlock.api.events import event_filter, kind_value
from interlock.console.pages import allow
from interlock.console.shared import console
from interlock.console.views import event_view
from interlock.errors import InvalidArgument
from interlock.events import MAX_SEQ, EventFilter
from interlock.journal import EventRecord
from interlock.v1 import control_plane_pb2 as pb

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 1000


def _after(request: web.Request) -> int:
    text = request.headers.get("Last-Event-ID") or request.query.get("after", "") or "0"
    if not text.isdigit():
        raise InvalidArgument.field("after", "must be an event seq (a whole number)")
    return min(int(text), MAX_SEQ)


def _selection(request: web.Request) -> EventFilter:
    q = request.query
    kinds = [k for k in q.get("kinds", "").split(",") if k]
    return event_filter(
        q.get("plan_id", ""), q.get("agent_id", ""), [kind_value(k) or -1 for k in kinds]
    )


async def events(request: web.Request) -> web.StreamResponse:
    selection = _selection(request)
    after = _after(request)
    principal = await allow(request, "events", pb.WatchEventsRequest())
    c = console(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await c.s.events.check_resume(after)
    with c.s.guard.stream(principal), c.s.events.watch(after, selection) as watcher:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
        queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(maxsize=100)

        async def pump() -> None:
            async for event in watcher:
                await queue.put(event)
            await queue.put(None)

        task = asyncio.create_task(pump(), name="console-sse")
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                if event is None:
                    await response.write(f"event: bye\ndata: {watcher.cursor}\n\n".encode())
                    break
                data = orjson.dumps(event_view(event)).decode()
                await response.write(
                    f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()
                )
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return response


async def pending(request: web.Request) -> web.Response:
    await allow(request, "inbox")
    # The inbox's own source (the store, with memory ahead of it), so the count
    # never trails the list it heads: memory alone lags the committed event.
    pending = await console(request).s.approvals.list(["PENDING"], "", "", "")
    return web.json_response({"pending": len(pending)})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/live/events", events)
    router.add_get("/live/pending", pending)


__all__ = ["HEARTBEAT_SECONDS", "add_routes"]
