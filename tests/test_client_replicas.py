"""The Python client and the CLI given a list of replicas: calls spread over them.

Two real ``interlock serve`` processes, each on its own SQLite file, stand in
for two replicas: each counts the decisions it made (GetHealth's
``decisions``), so the test sees where every call went. (Replicas sharing a
PostgreSQL database behave the same way towards a client; a shared database
is not what these tests are about.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from interlock.v1 import control_plane_pb2, control_plane_pb2_grpc
from interlock_client import InterlockClient, SyncInterlockClient
from interlock_client.targets import ROUND_ROBIN_SERVICE_CONFIG, channel_target

from tests.helpers.process import ServerProcess
from tests.test_cli import run

SPREAD_CALLS = 20
WARM_UP_SECONDS = 30.0


# The targets, without a server -------------------------------------------------------


def test_a_list_becomes_an_ipv4_target_with_round_robin() -> None:
    for given in (["127.0.0.1:50051", "127.0.0.1:50052"], " 127.0.0.1:50051, 127.0.0.1:50052 "):
        target = channel_target(given)
        assert target.uri == "ipv4:127.0.0.1:50051,127.0.0.1:50052"
        assert target.display == "127.0.0.1:50051,127.0.0.1:50052"
        assert dict(target.options) == {
            "grpc.service_config": ROUND_ROBIN_SERVICE_CONFIG,
            "grpc.default_authority": "127.0.0.1:50051",
        }
    assert json.loads(ROUND_ROBIN_SERVICE_CONFIG) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert channel_target("[::1]:1,[::1]:2").uri == "ipv6:[::1]:1,[::1]:2"


def test_one_address_or_a_resolver_target_is_kept() -> None:
    assert channel_target("localhost:50051").uri == "localhost:50051"
    assert channel_target("localhost:50051").options == ()
    assert channel_target(["127.0.0.1:50051"]).uri == "127.0.0.1:50051"
    dns = channel_target("dns:///interlock.example:50051")
    assert dns.uri == "dns:///interlock.example:50051"
    assert dict(dns.options) == {"grpc.service_config": ROUND_ROBIN_SERVICE_CONFIG}


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("localhost:1,localhost:2", "takes IP addresses"),
        ("127.0.0.1:1,[::1]:2", "cannot mix IPv4 and IPv6"),
        ("127.0.0.1:1,127.0.0.1", "must be IP:PORT"),
        ("127.0.0.1:1,", "must be IP:PORT"),
        ("127.0.0.1:1,::1:2", "takes brackets"),
        ([], "one or more"),
        ("", "empty"),
    ],
)
def test_a_bad_list_is_refused_saying_why(given: str | list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        InterlockClient(given)


# Two real servers ---------------------------------------------------------------


@pytest.fixture
async def replicas(tmp_path: Path, policy_dir: Path) -> AsyncIterator[list[ServerProcess]]:
    servers = [
        ServerProcess(tmp_path / f"data{i}", policy_dir, tmp_path / f"logs{i}") for i in range(2)
    ]
    try:
        await asyncio.gather(*(s.start() for s in servers))
        yield servers
    finally:
        await asyncio.gather(*(s.close() for s in servers))


async def decisions(server: ServerProcess) -> int:
    """How many decisions the server has made since it started."""
    assert server.channel is not None
    stub = control_plane_pb2_grpc.ControlPlaneStub(server.channel)
    health = await stub.GetHealth(control_plane_pb2.GetHealthRequest(), timeout=10)
    return sum(health.decisions.values())


async def counts(servers: list[ServerProcess]) -> list[int]:
    return list(await asyncio.gather(*(decisions(s) for s in servers)))


async def spread(servers: list[ServerProcess], call: Callable[[int], object]) -> list[int]:
    """Call until every server has decided once (the channel connects to each in
    the background), then SPREAD_CALLS more; return how many of those each made."""
    n = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WARM_UP_SECONDS
    while min(await counts(servers)) == 0:
        assert loop.time() < deadline, f"not every replica got a call: {await counts(servers)}"
        await call(n) if asyncio.iscoroutinefunction(call) else await asyncio.to_thread(call, n)
        n += 1
    before = await counts(servers)
    for i in range(SPREAD_CALLS):
        await call(n + i) if asyncio.iscoroutinefunction(call) else await asyncio.to_thread(
            call, n + i
        )
    after = await counts(servers)
    return [a - b for a, b in zip(after, before, strict=True)]


@pytest.mark.integration
async def test_calls_spread_evenly_over_the_listed_replicas(replicas: list[ServerProcess]) -> None:
    async with InterlockClient([s.address for s in replicas], timeout=10) as client:

        async def decide(i: int) -> None:
            await client.request_tool_call("agent1", "vision_inspect", {"target": f"t{i}"}, 0.9)

        assert await spread(replicas, decide) == [SPREAD_CALLS // 2] * 2


@pytest.mark.integration
async def test_the_sync_client_spreads_a_comma_separated_target(
    replicas: list[ServerProcess],
) -> None:
    client = SyncInterlockClient(",".join(s.address for s in replicas), timeout=10)
    try:
        assert client.target == ",".join(s.address for s in replicas)

        def decide(i: int) -> None:
            client.request_tool_call("agent1", "vision_inspect", {"target": f"t{i}"}, 0.9)

        assert await spread(replicas, decide) == [SPREAD_CALLS // 2] * 2
    finally:
        await asyncio.to_thread(client.close)  # it runs a loop of its own to close


@pytest.mark.integration
async def test_calls_go_on_when_one_replica_is_killed(replicas: list[ServerProcess]) -> None:
    async with InterlockClient([s.address for s in replicas], timeout=10) as client:

        async def decide(i: int) -> None:
            await client.request_tool_call("agent1", "vision_inspect", {"target": f"t{i}"}, 0.9)

        await spread(replicas, decide)
        survivor = replicas[1]
        await replicas[0].kill()
        # In-flight picks may still name the dead replica until its connection is
        # seen to close; reads are retried on UNAVAILABLE, so health goes through.
        await client.get_health()
        before = await decisions(survivor)
        for i in range(10):
            await decide(1000 + i)
        assert await decisions(survivor) == before + 10


@pytest.mark.integration
async def test_the_cli_takes_a_list_of_replicas(replicas: list[ServerProcess]) -> None:
    listed = ",".join(s.address for s in replicas)
    result = await run(
        "--target", listed, "decide", "--agent", "agent1", "--tool", "vision_inspect",
        "--args", '{"target": "x"}', "--confidence", "0.9", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["verdict"] == "VERDICT_ALLOW"
    assert sum(await counts(replicas)) == 1

    refused = await run("--target", "localhost:1,localhost:2", "health")
    assert refused.code == 2
    assert "takes IP addresses" in refused.err
