"""``interlock serve --workers N``: N processes on one port and one SQLite file
(issue 14, lever 3; docs/replicas.md, "Workers")."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from interlock.cli.workers import shared_config, worker_flags
from interlock.config import ServerConfig
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, types_pb2

from tests.helpers.calls import tool_call
from tests.helpers.process import CHANNEL_OPTIONS, ServerProcess, clean_env, free_port, serve_argv
from tests.test_live_cap_replicas import set_cap

LIVE = types_pb2.EXECUTION_MODE_LIVE


def test_each_worker_gets_its_own_folder_ports_and_name_and_shares_port_and_store(
    tmp_path: Path,
) -> None:
    config = ServerConfig(
        listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:9464",
        console_listen="127.0.0.1:8080",
        opa_bundle_listen="127.0.0.1:7000",
        data_dir=str(tmp_path),
        replica_id="edge",
    )
    shared = shared_config(config)
    host, _, port = shared.listen.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0  # one port, chosen for all
    assert shared.store_url == f"sqlite:{tmp_path / 'interlock.db'}" and shared.store_shared
    assert shared.reuse_port and shared.workers == 1
    assert worker_flags(shared, 0) == [
        "--data-dir", str(tmp_path), "--metrics-listen", "127.0.0.1:9464",
        "--opa-bundle-listen", "127.0.0.1:7000", "--replica-id", "edge-0",
    ]  # fmt: skip
    assert worker_flags(shared, 2) == [
        "--data-dir", str(tmp_path / "workers" / "2"), "--metrics-listen", "127.0.0.1:9466",
        "--opa-bundle-listen", "127.0.0.1:7002", "--console-listen", "", "--replica-id", "edge-2",
    ]  # fmt: skip
    on_pg = shared_config(ServerConfig(listen="127.0.0.1:5000", store_url="postgresql://x/y"))
    assert on_pg.listen == "127.0.0.1:5000" and not on_pg.store_shared
    assert "127.0.0.1:0" in worker_flags(shared_config(ServerConfig()), 1)  # any free port


def own_connection(address: str) -> grpc.aio.Channel:
    """A channel with a TCP connection of its own (not shared with other channels
    of this process), so the kernel may hand it to either worker."""
    return grpc.aio.insecure_channel(
        address, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    )


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def wait_for(check: object, what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def start_workers(server: ServerProcess, n: int = 2) -> None:
    """Start ``interlock serve --workers n`` and wait until every worker serves
    (the first to serve answers the health check before the others listen)."""
    await server.start("--workers", str(n))
    await wait_for(
        lambda: server.log().count("serving gRPC on") == n, "workers not serving", within=90
    )


def decided_lines(folder: Path) -> int:
    log = folder / "tool_execution_log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.integration
async def test_two_workers_share_one_port_one_store_and_the_live_cap(
    tmp_path: Path, policy_dir: Path
) -> None:
    set_cap(policy_dir, 3)
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    await start_workers(server)
    channels = [own_connection(server.address) for _ in range(12)]
    try:
        assert server.proc is not None
        assert len(children(server.proc.pid)) == 2
        stubs = [control_plane_pb2_grpc.ControlPlaneStub(c) for c in channels]

        async def call(i: int) -> types_pb2.Decision:
            request = tool_call(arguments={"target": f"screen-{i}"}, confidence=0.95)
            return (await stubs[i % len(stubs)].RequestToolCall(request, timeout=30)).decision

        decided = await asyncio.gather(*(call(i) for i in range(48)))
        # The cap holds across the two processes: exactly 3 LIVE, not 3 each.
        assert sum(d.mode == LIVE for d in decided) == 3
        # Both workers decided some (12 connections: 1 in 2^11 that the kernel
        # gives them all to one), each writing its own audit files.
        data = tmp_path / "data"
        assert decided_lines(data) > 0 and decided_lines(data / "workers" / "1") > 0
        assert decided_lines(data) + decided_lines(data / "workers" / "1") == 48
        # Results reported over other connections free the slots for every
        # worker: three calls go LIVE again, and no more.
        for n, d in enumerate(d for d in decided if d.mode == LIVE):
            await stubs[n + 5].ReportToolResult(
                pb.ReportToolResultRequest(
                    decision_id=d.decision_id,
                    agent_id="agent1",
                    outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
                )
            )
        again = await asyncio.gather(*(call(100 + i) for i in range(12)))
        assert sum(d.mode == LIVE for d in again) == 3
        # Each sees the other alive (heartbeats in the shared store).
        deadline = time.monotonic() + 30
        while True:
            health = await stubs[0].GetHealth(pb.GetHealthRequest())
            (agreement,) = [c for c in health.components if c.name == "policy_agreement"]
            if "every live replica (2)" in agreement.detail:
                break
            assert time.monotonic() < deadline, agreement.detail
            await asyncio.sleep(0.5)
    finally:
        for c in channels:
            await c.close()
        await server.close()


@pytest.mark.integration
async def test_a_killed_worker_is_started_again_and_sigterm_stops_them_all(
    tmp_path: Path, policy_dir: Path
) -> None:
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    await start_workers(server)
    try:
        proc = server.proc
        assert proc is not None
        first = children(proc.pid)
        assert len(first) == 2
        await asyncio.sleep(10.5)  # past the early-exit window: a crash, not a failed start
        os.kill(first[1], signal.SIGKILL)
        await wait_for(
            lambda: len(children(proc.pid)) == 2 and first[1] not in children(proc.pid),
            "the killed worker was not started again",
        )
        await wait_for(lambda: "starting worker 1 again" in server.log(), "no restart logged")
        workers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        for pid in workers:  # no worker outlives the supervisor
            await wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), f"{pid} lives on")
    finally:
        await server.close()


@pytest.mark.integration
async def test_workers_die_with_a_killed_supervisor(tmp_path: Path, policy_dir: Path) -> None:
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    await start_workers(server)
    assert server.proc is not None
    workers = children(server.proc.pid)
    await server.kill()
    for pid in workers:
        await wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), f"{pid} lives on")


@pytest.mark.integration
async def test_a_worker_that_cannot_start_stops_the_supervisor_with_an_error(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "no-policies"
    empty.mkdir()
    server = ServerProcess(tmp_path / "data", empty, tmp_path / "logs")
    with pytest.raises(AssertionError, match="exited with 1"):
        await start_workers(server)
    assert "stopping the others" in server.log()
    await server.close()


@pytest.mark.integration
async def test_ctrl_c_stops_every_worker_gracefully(tmp_path: Path, policy_dir: Path) -> None:
    """Ctrl-C signals the whole process group: each worker stops on its own
    (its graceful stop, not cut short by a second signal) and all exit 0."""
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *serve_argv(address, tmp_path / "data", policy_dir, "--workers", "2"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
    try:
        await wait_for(
            lambda: log.read_text().count("serving gRPC on") == 2,
            f"the workers did not both serve:\n{log}",
            within=90,
        )
        os.killpg(proc.pid, signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
        text = log.read_text()
        assert text.count("SIGINT received: stopping") == 2, text
        assert text.count("interlock stopped") == 2, text
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
