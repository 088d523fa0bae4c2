"""Scenario 5: the disk fills up under traffic, then space returns.

``interlock serve`` as a subprocess with its data directory on a 16 MiB tmpfs
(tests/helpers/disk.py; skipped where mount is not allowed). Four clients
decide and report results; the disk is filled and kept full for a few
seconds, then freed; the server is then SIGKILLed and started again.

Guarantee: no JSONL line is torn, during or after; once space returns, the
files hold every line the store's outbox holds (lines lost: 0) without a
restart; every caller was told the truth (acknowledged means stored, refused
means not); health says NOT_SERVING while full and SERVING again after; and
``interlock audit verify`` passes after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.v1 import control_plane_pb2_grpc

from tests.helpers.disk import jsonl_damage, lines_missing, small_disk
from tests.helpers.process import ServerProcess
from tests.test_cli import run
from tests.test_disk_full import Traffic
from tests.torture.figures import Figures

pytestmark = pytest.mark.torture

SCENARIO = "disk full"
CLIENTS = 4
FULL_SECONDS = 3.0
WAIT_SECONDS = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Client:
    """What :class:`Traffic` needs of a server: ``cp``."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp


async def test_a_full_disk_loses_no_line_and_tears_none(
    tmp_path: Path, policy_dir: Path, figures: Figures
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        serve = ServerProcess(disk.data, policy_dir, tmp_path / "logs")
        try:
            await run_scenario(serve, disk, figures)
        finally:
            await serve.close()


async def run_scenario(serve: ServerProcess, disk: Any, figures: Figures) -> None:
    channel = await serve.start()
    client = Client(control_plane_pb2_grpc.ControlPlaneStub(channel))
    health = health_pb2_grpc.HealthStub(channel)
    traffic = Traffic()
    tasks = [asyncio.create_task(traffic.client(client, k)) for k in range(CLIENTS)]  # type: ignore[arg-type]
    torn: list[str] = []
    went_down = came_back = None
    try:
        await asyncio.sleep(0.5)
        full_at = time.monotonic()
        while time.monotonic() < full_at + FULL_SECONDS:
            disk.fill()  # again and again: the server frees space when it cuts a write back
            torn += jsonl_damage(disk.data, settled=False)
            status = (await health.Check(health_pb2.HealthCheckRequest())).status
            if went_down is None and status == NOT_SERVING:
                went_down = time.monotonic() - full_at
            await asyncio.sleep(0.05)
        refused_while_full = len(traffic.decide_refused) + len(traffic.report_refused)
        disk.free()
        freed_at = time.monotonic()
        while time.monotonic() < freed_at + WAIT_SECONDS:
            torn += jsonl_damage(disk.data, settled=False)
            if (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING:
                came_back = time.monotonic() - freed_at
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # traffic after recovery
    finally:
        traffic.stop.set()
        await asyncio.gather(*tasks)

    missing: dict[str, int] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:  # the files catch up without a restart
        missing = lines_missing(disk.data)
        if not missing:
            break
        await asyncio.sleep(0.1)
    torn += jsonl_damage(disk.data, settled=not missing)
    await serve.kill()
    with contextlib.closing(sqlite3.connect(disk.data / "interlock.db")) as db:
        stored = {
            json.loads(arguments)["target"]: decision_id
            for decision_id, arguments in db.execute("SELECT decision_id, arguments FROM decisions")
        }
        results = {row[0] for row in db.execute("SELECT decision_id FROM results")}
    untrue = (
        sum(1 for t, d in traffic.decided.items() if stored.get(t) != d)
        + len(set(traffic.decide_refused) & set(stored))
        + len(traffic.reported - results)
        + len(set(traffic.report_refused) & results)
    )
    await serve.start()  # after a SIGKILL, on the recovered disk
    await serve.kill()
    verified = await run("audit", "verify", str(disk.data), "--json")

    figures.record(SCENARIO, "lines lost under disk full", sum(missing.values()), "= 0")
    figures.record(SCENARIO, "torn lines", len(torn), "= 0")
    figures.record(SCENARIO, "callers told a wrong outcome", untrue, "= 0")
    figures.record(SCENARIO, "calls acknowledged", len(traffic.decided) + len(traffic.reported))
    figures.record(SCENARIO, "calls refused while full", refused_while_full)
    figures.record(
        SCENARIO, "seconds to NOT_SERVING", "never" if went_down is None else round(went_down, 2)
    )
    figures.record(
        SCENARIO,
        "seconds to SERVING once freed",
        "never" if came_back is None else round(came_back, 2),
    )
    figures.record(
        SCENARIO, "audit verify after restart", "pass" if verified.code == 0 else "FAIL", "pass"
    )

    assert missing == {}, f"lines the store holds but the files lack: {missing}"
    assert torn == [], torn
    assert untrue == 0, "a caller was told a write failed that committed, or the reverse"
    assert went_down is not None, "health never said NOT_SERVING on a full disk"
    assert came_back is not None, "health did not come back after the space was freed"
    assert verified.code == 0, verified.out
