"""``make run-replicas`` (``python -m interlock.devtools.replicas``): a real
PostgreSQL cluster and replicas sharing it, stopped all together by Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from interlock_client import InterlockClient

from tests.helpers.postgres import pg_bindir
from tests.helpers.process import clean_env, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL binaries (make postgres)"),
]


def adjacent_free_ports() -> int:
    """A free loopback port whose next port is free too (the runner numbers its replicas)."""
    for _ in range(100):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two adjacent free ports")


@pytest.fixture
def root() -> Iterator[Path]:
    """Not under tmp_path: the postgres user must reach the cluster's folder."""
    path = Path(tempfile.mkdtemp(prefix="interlock-run-replicas-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_two_replicas_share_one_database_and_stop_on_ctrl_c(root: Path) -> None:
    port = adjacent_free_ports()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "interlock.devtools.replicas", "--replicas", "2",
        "--port", str(port), "--metrics-port", "0", "--console-listen", "", "--root", str(root),
        "--", "--no-fsync",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=clean_env(),
    )  # fmt: skip
    try:
        listed = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
        async with InterlockClient(listed[0], timeout=5, retries=50) as first:
            await first.get_health()  # retried on UNAVAILABLE while the replicas start
            decision = await first.request_tool_call(
                "agent1", "vision_inspect", {"target": "x"}, 0.9
            )
        # The second replica finds the decision the first one recorded: one database.
        async with InterlockClient(listed[1], timeout=5, retries=50) as second_replica:
            await second_replica.get_health()
            result = await second_replica.report_tool_result(
                decision.decision_id, "agent1", "SUCCEEDED"
            )
            assert result.decision_id == decision.decision_id
        assert (root / "postgres" / "pgdata" / "postmaster.pid").exists()

        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode(errors="replace")
        assert b"stopping the replicas, then PostgreSQL" in out
        assert not (root / "postgres" / "pgdata" / "postmaster.pid").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
