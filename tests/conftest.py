"""Shared fixtures: a real Interlock server on a loopback port, a real OPA."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from interlock.config import ServerConfig, load_config
from interlock.server import InterlockServer
from interlock.v1 import control_plane_pb2_grpc, policy_service_pb2_grpc

from tests.helpers.opa import OpaProcess, opa_server_options
from tests.helpers.postgres import PostgresCluster, pg_bindir
from tests.helpers.security import Team, write_principals

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
CATALOG = {
    "button_click",
    "crm_lookup",
    "delete_record",
    "form_clear",
    "form_fill",
    "refund_funds",
    "send_email",
    "transfer_funds",
    "vision_inspect",
}
"""The tools of the shipped catalog."""


def server_config(data_dir: Path, policy_dir: Path = POLICIES, **overrides: Any) -> ServerConfig:
    """A test server's configuration: loopback port 0, no metrics port, no watcher,
    and none of the developer's INTERLOCK_* variables."""
    values = {
        "listen": "127.0.0.1:0",
        "metrics_listen": "",
        "data_dir": str(data_dir),
        "policy_dir": str(policy_dir),
        "policy_watch_interval_seconds": 0,
    }
    values.update(overrides)
    return load_config(env={}, overrides=values)


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

INTEGRATION_FIXTURES = frozenset({"start_server", "opa"})
"""Fixtures that start an Interlock server or an OPA process. A test that uses
one, directly or through another fixture (server, target, make_team, ...), is
marked ``integration``."""

INTEGRATION_PATHS = frozenset(
    {
        # Modules whose tests also start processes or servers of their own
        # (the CLI, `interlock serve`, promtool, Prometheus, grpcurl, the Go and
        # TypeScript workers, wheels in fresh venvs, crash-and-restart runs).
        "test_audit.py",
        "test_batch.py",
        "test_cli.py",
        "test_cli_approvals.py",
        "test_client.py",
        "test_fuzz.py",
        "test_grpcurl.py",
        "test_health_watch.py",
        "test_metrics_conventions.py",
        "test_packaging.py",
        "test_plan_cli.py",
        "test_plan_durability.py",
        "test_polyglot.py",
        "test_prometheus.py",
        "test_replicas.py",
        "test_security.py",
        # Whole folders of process-level suites.
        "console",
        "torture",
    }
)
"""Paths under tests/ (a module, or a folder's first part) marked ``integration`` whole."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test that starts a server or another process.

    ``make test-fast`` runs the rest (``-m "not integration"``): unit tests of
    pure functions, data and policies, in seconds. A new module that starts
    processes without the fixtures above belongs in :data:`INTEGRATION_PATHS`.
    """
    tests = Path(__file__).resolve().parent
    for item in items:
        parts = item.path.resolve().relative_to(tests).parts
        fixtures = getattr(item, "fixturenames", ())
        if INTEGRATION_FIXTURES.intersection(fixtures) or (parts[0] in INTEGRATION_PATHS):
            item.add_marker(pytest.mark.integration)
        if "start_server" in fixtures:
            item.add_marker(pytest.mark.api)


STORE = os.environ.get("INTERLOCK_TEST_STORE", "sqlite")
"""The journal backend the in-process test servers use: sqlite (default) or
postgresql (``make test-postgres``: the API tests again, on a throwaway cluster)."""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    """The session's PostgreSQL cluster when the tests run on PostgreSQL."""
    if STORE != "postgresql":
        yield None
        return
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="session")
def cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the tests that run several servers on
    one database (each test makes a database of its own in it); skipped where
    Debian's server binaries are missing (`make postgres`)."""
    if pg_bindir() is None:
        pytest.skip("no PostgreSQL server binaries: run `make postgres`")
    c = PostgresCluster()
    c.start()
    yield c
    c.remove()


@dataclass(frozen=True)
class SharedStore:
    """One store several servers share: a PostgreSQL database, or a SQLite file
    with ``store_shared`` (workers on one host, docs/replicas.md)."""

    kind: str
    url: str

    @property
    def overrides(self) -> dict[str, Any]:
        """Config overrides that put an in-process server on it."""
        extra: dict[str, Any] = {"store_shared": True} if self.kind == "sqlite" else {}
        return {"store_url": self.url, **extra}

    @property
    def argv(self) -> list[str]:
        """The same, as ``interlock serve`` flags."""
        return ["--store", self.url] + (["--store-shared"] if self.kind == "sqlite" else [])


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> SharedStore:
    """Each test that runs several servers on one store, once per kind of store."""
    if request.param == "sqlite":
        return SharedStore("sqlite", f"sqlite:{tmp_path / 'shared' / 'interlock.db'}")
    cluster: PostgresCluster = request.getfixturevalue("cluster")
    return SharedStore("postgresql", cluster.create_database(f"s{abs(hash(tmp_path)) % 10**8}"))


_databases: dict[str, str] = {}


def store_url_for(cluster: PostgresCluster, data_dir: str) -> str:
    """One database per data directory: a server restarted on the same data
    directory finds its state again, as it would in its SQLite file."""
    if data_dir not in _databases:
        _databases[data_dir] = cluster.create_database(f"t{len(_databases)}")
    return _databases[data_dir]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policy bundle, safe to edit."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


@pytest.fixture
async def start_server(
    tmp_path: Path, policy_dir: Path, postgres: PostgresCluster | None
) -> AsyncIterator[StartServer]:
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        overrides.setdefault("data_dir", str(tmp_path / f"data{len(started)}"))
        if postgres is not None and "store_url" not in overrides:
            overrides["store_url"] = store_url_for(postgres, overrides["data_dir"])
        if overrides.get("engine") == "opa":  # the bundle server the test's OPA polls
            for key, value in opa_server_options(overrides.get("opa_url", "")).items():
                overrides.setdefault(key, value)
        server = InterlockServer(server_config(policy_dir=policy_dir, **overrides))
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
async def target(start_server: StartServer) -> str:
    """The address of a live server, for tests that only need to reach it."""
    running = await start_server()
    return f"127.0.0.1:{running.server.port}"


@pytest.fixture
def opa() -> Iterator[OpaProcess]:
    """A real OPA server of the test's own, killed at the end."""
    proc = OpaProcess()
    proc.start()
    yield proc
    proc.stop()


MakeTeam = Callable[..., Awaitable[Team]]


@pytest.fixture
async def make_team(start_server: StartServer, tmp_path: Path) -> AsyncIterator[MakeTeam]:
    """Start a server that authenticates with a principals file of the test
    principals (tests/helpers/security.py); ``tokens`` reuses earlier ones."""
    teams: list[Team] = []

    async def make(tokens: dict[str, str] | None = None, **overrides: Any) -> Team:
        path = tmp_path / "principals.yaml"
        if tokens is None:
            tokens = write_principals(path)
        team = Team(await start_server(principals_file=str(path), **overrides), tokens)
        teams.append(team)
        return team

    yield make
    for team in teams:
        await team.close()
