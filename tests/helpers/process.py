"""``interlock serve`` as a real subprocess that a test can SIGKILL and start again.

The server keeps its loopback port and data directory across restarts, so a
client reconnects to the same address and the new process finds the old
process's SQLite files. Its log (stdout and stderr) goes to a file per start,
shown when it fails to come up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

INTERLOCK = Path(sys.executable).parent / "interlock"
START_SECONDS = 30.0
CHANNEL_OPTIONS = [
    # Retry the connection quickly while the server starts (gRPC's default backoff is 1 s+).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_argv(address: str, data_dir: Path, policy_dir: Path, *extra: str) -> list[str]:
    """``interlock serve`` on ``address`` with its own data and policy folders,
    no metrics port and no policy watcher."""
    return [
        str(INTERLOCK),
        "serve",
        "--listen",
        address,
        "--metrics-listen",
        "",
        "--data-dir",
        str(data_dir),
        "--policy-dir",
        str(policy_dir),
        "--policy-watch-interval-seconds",
        "0",
        *extra,
    ]


def clean_env() -> dict[str, str]:
    """The environment without the developer's INTERLOCK_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}


class ServerProcess:
    """One server's life after another on the same port and data directory."""

    def __init__(self, data_dir: Path, policy_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir
        self.policy_dir = policy_dir
        self.log_dir = log_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.starts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: grpc.aio.Channel | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"interlock-serve-{self.starts}.log"

    def log(self) -> str:
        """The current (or last) process's output."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, *extra: str) -> grpc.aio.Channel:
        """Start the server (``extra``: more ``interlock serve`` flags for this start);
        return a fresh channel once its health check says SERVING."""
        assert self.proc is None, "the server is already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *serve_argv(self.address, self.data_dir, self.policy_dir, *extra),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=clean_env(),
            )
        self.channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        await self._wait_serving()
        return self.channel

    async def _wait_serving(self) -> None:
        assert self.proc is not None and self.channel is not None
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"interlock serve (start {self.starts}) exited with {self.proc.returncode}:\n"
                    + self.log()
                )
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"interlock serve (start {self.starts}) not SERVING within "
                    f"{START_SECONDS:g}s:\n" + self.log()
                )
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL the server (none of its shutdown code runs) and close the channel to it."""
        proc = self.proc
        assert proc is not None, "the server is not running"
        await self.close()
        assert proc.returncode == -signal.SIGKILL, (
            f"interlock serve exited on its own ({proc.returncode}) before the SIGKILL:\n"
            + self.log()
        )

    async def close(self) -> None:
        """Kill the server if it still runs, then close the channel; safe to call twice."""
        proc, self.proc = self.proc, None
        channel, self.channel = self.channel, None
        try:
            if proc is not None:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):  # it has just exited
                        os.kill(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)
        finally:
            if channel is not None:
                await channel.close()


__all__ = ["INTERLOCK", "ServerProcess", "clean_env", "free_port"]
