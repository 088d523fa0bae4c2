"""Shared fixtures: a real Interlock server on a loopback port, a real OPA."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from interlock.config import load_config
from interlock.server import InterlockServer
from interlock.v1 import control_plane_pb2_grpc, policy_service_pb2_grpc

from tests.helpers.opa import OpaProcess

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"


class Running:
    """A started server with stubs on a channel to it."""

    def __init__(self, server: InterlockServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self.policy = policy_service_pb2_grpc.PolicyServiceStub(channel)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.config.data_dir)


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policy bundle, safe to edit."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


@pytest.fixture
async def start_server(tmp_path: Path, policy_dir: Path) -> AsyncIterator[StartServer]:
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        values = {
            "listen": "127.0.0.1:0",
            "metrics_listen": "",
            "data_dir": str(tmp_path / f"data{len(started)}"),
            "policy_dir": str(policy_dir),
            "policy_watch_interval_seconds": 0,
        }
        values.update(overrides)
        server = InterlockServer(load_config(env={}, overrides=values))
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        running = Running(server, channel)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.server.stop(grace=0.5)


@pytest.fixture
async def server(start_server: StartServer) -> Running:
    return await start_server()


@pytest.fixture
def opa() -> Iterator[OpaProcess]:
    """A real OPA server of the test's own, killed at the end."""
    proc = OpaProcess()
    proc.start()
    yield proc
    proc.stop()
