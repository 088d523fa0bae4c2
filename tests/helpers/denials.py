"""What refused calls leave behind: access_denials.jsonl lines and
ACCESS_DENIED events (server/interlock/denials.py writes both, one per refusal).

For the approval-misuse tests and the torture suite:

- :func:`denial_lines` reads the lines (rotated parts too), optionally only
  some reason codes; :func:`count_denials` counts them by code;
- :func:`wait_for_denial_lines` polls until a number of lines is there;
- :func:`denial_events` collects the ACCESS_DENIED events from WatchEvents.

A refusal is normally on disk before its caller hears it; a slow store may
delay the line (the caller is answered after at most a second), so the
waiting helpers poll up to a deadline and return what they found: the
caller asserts the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from interlock.audit import ACCESS_DENIALS, chain_files
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, observe_pb2


def denial_lines(data_dir: Path, *codes: str) -> list[dict[str, Any]]:
    """Every access_denials.jsonl line, oldest first; with ``codes``, only
    lines whose ``code`` is one of them."""
    found = []
    for path in chain_files(Path(data_dir), ACCESS_DENIALS):
        if not path.exists():
            continue
        for raw in path.read_text().splitlines():
            if raw.strip():
                line = json.loads(raw)
                if not codes or line.get("code") in codes:
                    found.append(line)
    return found


def count_denials(data_dir: Path) -> Counter[str]:
    """access_denials.jsonl lines by ``code``."""
    return Counter(str(line.get("code", "")) for line in denial_lines(data_dir))


async def wait_for_denial_lines(
    data_dir: Path, count: int, *codes: str, wait_seconds: float = 10.0
) -> list[dict[str, Any]]:
    """The lines (of ``codes``) once there are at least ``count``, or what there
    is at the deadline."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = denial_lines(data_dir, *codes)
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.05)


async def denial_events(
    cp: control_plane_pb2_grpc.ControlPlaneStub,
    count: int,
    *codes: str,
    after_seq: int = 0,
    wait_seconds: float = 10.0,
) -> list[observe_pb2.Event]:
    """ACCESS_DENIED events after ``after_seq`` from WatchEvents (history, then
    live; payload ``code`` among ``codes`` when given) once ``count`` arrived,
    or what arrived by the deadline. ``cp`` must be allowed WatchEvents."""
    found: list[observe_pb2.Event] = []
    call = cp.WatchEvents(
        pb.WatchEventsRequest(after_seq=after_seq, kinds=[observe_pb2.EVENT_KIND_ACCESS_DENIED])
    )
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                async for response in call:
                    event = response.event
                    if not codes or event.payload["code"] in codes:
                        found.append(event)
                    if len(found) >= count:
                        break
    finally:
        call.cancel()
    return found


__all__ = ["count_denials", "denial_events", "denial_lines", "wait_for_denial_lines"]
