"""A server started on edited audit files says so: in health and in its log.

The tail of each chain is checked against the store at start-up (at once);
the whole chain in the background. A broken chain is a warning: the server
keeps serving (gRPC health SERVING) and GetHealth is DEGRADED at best, with
the broken file and line as the ``audit_chain`` component's detail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.audit import TOOL_EXECUTION_LOG
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2

from tests.conftest import Running, StartServer
from tests.test_audit import decisions, lines_of, stop

WAIT_SECONDS = 10.0


def chain_component(h: pb.GetHealthResponse) -> tuple[float, str]:
    (found,) = [(c.score, c.detail) for c in h.components if c.name == "audit_chain"]
    return found


def edit(path: Path, index: int) -> None:
    """Change one field of one line, leaving it valid JSON (its hash no longer matches)."""
    lines = lines_of(path)
    record = json.loads(lines[index])
    record["agent_id"] = "mallory"
    lines[index] = json.dumps(record, sort_keys=True) + "\n"
    path.write_text("".join(lines))


async def served_and_stopped(start_server: StartServer, data: Path, n: int = 6) -> None:
    s = await start_server(data_dir=str(data))
    await decisions(s, n)
    await stop(s)


async def health_saying(s: Running, words: str) -> pb.GetHealthResponse:
    """GetHealth once the audit_chain component's detail has ``words``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        h = await s.cp.GetHealth(pb.GetHealthRequest())
        if words in chain_component(h)[1]:
            return h
        assert time.monotonic() < deadline, chain_component(h)
        await asyncio.sleep(0.05)


async def test_an_edited_line_in_the_middle_is_reported_by_the_background_check(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "edited"
    # Over 64 KiB of lines, so the edited third line is beyond the tail checked at once.
    await served_and_stopped(start_server, data, 100)
    assert (data / TOOL_EXECUTION_LOG).stat().st_size > 64 * 1024
    edit(data / TOOL_EXECUTION_LOG, 2)

    caplog.set_level(logging.ERROR, logger="interlock")
    s = await start_server(data_dir=str(data))
    h = await health_saying(s, f"{TOOL_EXECUTION_LOG} line 3: hash mismatch (edited?)")
    assert chain_component(h)[0] == 0
    assert h.status == observe_pb2.HEALTH_STATUS_DEGRADED
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(TOOL_EXECUTION_LOG in m and "line 3" in m for m in errors), errors
    # A warning, not an outage: the server still serves and decides.
    check = await health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest())
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert len(await decisions(s, 1)) == 1


async def test_an_edited_last_line_is_reported_at_start_up(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "tail"
    await served_and_stopped(start_server, data)
    edit(data / TOOL_EXECUTION_LOG, -1)

    caplog.set_level(logging.ERROR, logger="interlock")
    s = await start_server(data_dir=str(data))
    # No waiting: the tail is checked before the server answers its first call.
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    score, detail = chain_component(h)
    assert score == 0 and TOOL_EXECUTION_LOG in detail, detail
    assert h.status != observe_pb2.HEALTH_STATUS_HEALTHY
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(TOOL_EXECUTION_LOG in m and "broken" in m for m in errors), errors


async def test_untouched_files_verify_at_start_up(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "clean"
    await served_and_stopped(start_server, data)
    s = await start_server(data_dir=str(data))
    h = await health_saying(s, "every chain verifies")
    assert chain_component(h)[0] == 100 and h.status == observe_pb2.HEALTH_STATUS_HEALTHY
