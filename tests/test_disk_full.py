"""A full disk under traffic: honest answers, no torn audit line, health says so, recovery.

A real server keeps its data directory on a 16 MiB tmpfs (mounted for the
test; skipped where mount fails, i.e. not root). Four clients decide and
report results; the disk is filled (and kept full) during the traffic, then
freed after the traffic has stopped (so the server must notice by itself).
The server is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import STORE, Running, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.disk import SmallDisk, jsonl_damage, lines_missing, small_disk
from tests.test_cli import run

CLIENTS = 4
WAIT_SECONDS = 20.0
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted


@dataclass
class Traffic:
    """What the callers were told: acknowledged ids and refusals, by the call's target."""

    decided: dict[str, str] = field(default_factory=dict)
    decide_refused: dict[str, grpc.StatusCode] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    report_refused: dict[str, grpc.StatusCode] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, s: Running, k: int) -> None:
        n = 0
        while not self.stop.is_set():
            await self.call(s, f"c{k}-{n}")
            n += 1

    async def call(self, s: Running, target: str) -> None:
        """Decide a call on ``target`` (unique), then report its result."""
        try:
            answer = await s.cp.RequestToolCall(
                tool_call(arguments={"target": target}, confidence=0.6), timeout=10
            )
        except grpc.aio.AioRpcError as err:
            self.decide_refused[target] = err.code()
            await asyncio.sleep(0.005)  # no busy loop against a full disk
            return
        decision_id = answer.decision.decision_id
        self.decided[target] = decision_id
        try:
            await s.cp.ReportToolResult(
                pb.ReportToolResultRequest(
                    decision_id=decision_id,
                    agent_id="agent1",
                    outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as err:
            self.report_refused[decision_id] = err.code()
        else:
            self.reported.add(decision_id)


def conditions(h: pb.GetHealthResponse) -> dict[str, tuple[float, str]]:
    return {c.name: (c.score, c.detail) for c in h.components if c.weight == 0}


@pytest.mark.skipif(STORE != "sqlite", reason="fills the disk of the SQLite file's data dir")
async def test_a_full_disk_misreports_no_commit_tears_no_line_and_recovers_without_restart(
    disk: SmallDisk, start_server: StartServer
) -> None:
    s = await start_server(data_dir=str(disk.data))
    health = health_pb2_grpc.HealthStub(s.channel)
    traffic = Traffic()
    clients = [asyncio.create_task(traffic.client(s, k)) for k in range(CLIENTS)]
    try:
        await asyncio.sleep(0.5)
        assert traffic.decided and not traffic.decide_refused
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING

        # Fill the disk and keep it full until health says so, and a while longer.
        disk.fill()
        damage: list[str] = []
        unhealthy: pb.GetHealthResponse | None = None
        max_lag = 0.0
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            disk.fill()
            damage += jsonl_damage(disk.data, settled=False)
            max_lag = max(max_lag, s.server.metrics.audit_lag._value.get())
            checks = [
                (await health.Check(health_pb2.HealthCheckRequest(service=name))).status
                for name in ("", "interlock.v1.ControlPlane", "interlock.v1.PolicyService")
            ]
            h = await s.cp.GetHealth(pb.GetHealthRequest())
            if checks == [NOT_SERVING] * 3 and h.status == observe_pb2.HEALTH_STATUS_UNHEALTHY:
                unhealthy = h
                break
            await asyncio.sleep(0.05)
        assert unhealthy is not None, "health never said NOT_SERVING / UNHEALTHY on a full disk"
        failing = {n: d for n, (score, d) in conditions(unhealthy).items() if score == 0}
        assert set(failing) & {"store", "audit_files"}, conditions(unhealthy)
        assert any("No space left" in d or "full" in d for d in failing.values()), failing
        assert unhealthy.score <= 25
        for _ in range(20):  # more traffic against the full disk
            disk.fill()
            damage += jsonl_damage(disk.data, settled=False)
            max_lag = max(max_lag, s.server.metrics.audit_lag._value.get())
            await asyncio.sleep(0.05)
        assert damage == [], damage

    finally:
        traffic.stop.set()
        await asyncio.gather(*clients)

    # Free the space, with no traffic: without a restart (the writer probes and
    # retries on its tick), health recovers and the files catch up.
    disk.free()
    recovered: pb.GetHealthResponse | None = None
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        h = await s.cp.GetHealth(pb.GetHealthRequest())
        check = (await health.Check(health_pb2.HealthCheckRequest())).status
        if check == SERVING and h.status != observe_pb2.HEALTH_STATUS_UNHEALTHY:
            recovered = h
            break
        await asyncio.sleep(0.05)
    assert recovered is not None, "health did not recover after the space was freed"
    assert all(score == 100 for score, _ in conditions(recovered).values()), conditions(recovered)
    missing: dict[str, int] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        missing = lines_missing(disk.data)
        if not missing:
            break
        await asyncio.sleep(0.1)
    assert missing == {}, f"lines the store holds but the files lack: {missing}"
    before = len(traffic.decided)
    await traffic.call(s, "after")
    assert len(traffic.decided) == before + 1, "no decision after the recovery"

    await s.channel.close()
    await s.server.stop(grace=0.5)
    assert jsonl_damage(disk.data, settled=True) == []
    done = await run("audit", "verify", str(disk.data), "--json")
    assert done.code == 0, done.out

    # Every caller was told the truth: acknowledged means in the database, refused means not.
    with contextlib.closing(sqlite3.connect(disk.data / "interlock.db")) as db:
        stored = {
            json.loads(arguments)["target"]: decision_id
            for decision_id, arguments in db.execute("SELECT decision_id, arguments FROM decisions")
        }
        results = {row[0] for row in db.execute("SELECT decision_id FROM results")}
    assert {t: stored.get(t) for t in traffic.decided} == traffic.decided
    assert set(traffic.decide_refused) & set(stored) == set()
    assert traffic.reported <= results
    assert set(traffic.report_refused) & results == set()
    codes = {c.name for c in [*traffic.decide_refused.values(), *traffic.report_refused.values()]}
    assert codes <= {"UNAVAILABLE"}, codes
    print(
        f"\ndisk full: {len(traffic.decided)} decisions acknowledged (all in the database), "
        f"{len(traffic.decide_refused)} refused (none in the database), {len(traffic.reported)} results acknowledged, "
        f"{len(traffic.report_refused)} refused; refusal codes {sorted(codes)}; "
        f"audit lag peaked at {max_lag:.0f} line(s); lines lost after recovery: 0; "
        f"torn lines: 0; health while full: "
        f"{ {n: d for n, (score, d) in conditions(unhealthy).items() if score == 0} }"
    )
