"""The standard health service as outside tools use it: grpcurl calls Check,
List and Watch, and a watcher sees the server go NOT_SERVING when its policy
engine (a real OPA) dies.

Watch used to answer INTERNAL on every call (the interceptor expected an
async generator; the health servicer writes with ``context.write``), and List
INTERNAL too (the servicer had none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Running, StartServer
from tests.helpers.opa import OpaProcess
from tests.test_grpcurl import grpcurl, grpcurl_binary

SERVICES = {
    "",
    "interlock.v1.ControlPlane",
    "interlock.v1.PolicyService",
    "interlock.v1.GrantService",
    "interlock.v1.TrustService",
}
WAIT_SECONDS = 30.0
"""How long a watcher waits for its next message before the test gives up
(a bound on a hang, not a timing assertion)."""


class JsonStream:
    """The JSON objects a running ``grpcurl`` prints, one at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    async def next(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            text = self.buffer.lstrip()
            if text:
                try:
                    obj, end = self.decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass
                else:
                    self.buffer = text[end:]
                    assert isinstance(obj, dict)
                    return obj
            chunk = await asyncio.wait_for(self.proc.stdout.read(4096), WAIT_SECONDS)
            if not chunk:
                assert self.proc.stderr is not None
                err = await self.proc.stderr.read()
                raise AssertionError(f"grpcurl ended: {err.decode()}")
            self.buffer += chunk.decode()


@contextlib.asynccontextmanager
async def watching(server: Running, service: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        grpcurl_binary(),
        "-plaintext",
        "-d",
        json.dumps({"service": service}),
        f"127.0.0.1:{server.server.port}",
        "grpc.health.v1.Health/Watch",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield JsonStream(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def statuses(listed: dict[str, Any]) -> dict[str, str]:
    return {name: entry["status"] for name, entry in listed["statuses"].items()}


async def test_check_list_and_watch_through_grpcurl(server: Running) -> None:
    check = json.loads(await grpcurl(server, "grpc.health.v1.Health/Check", data="{}"))
    assert check == {"status": "SERVING"}
    listed = json.loads(await grpcurl(server, "grpc.health.v1.Health/List", data="{}"))
    assert statuses(listed) == {name: "SERVING" for name in SERVICES}
    async with watching(server, "interlock.v1.ControlPlane") as watch:
        assert await watch.next() == {"status": "SERVING"}
    async with watching(server, "no.such.Service") as watch:
        assert await watch.next() == {"status": "SERVICE_UNKNOWN"}
    # Each call was answered OK (the interceptor counts them by code).
    samples = {
        (s.labels["method"], s.labels["code"])
        for metric in server.server.metrics.grpc_requests.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.value > 0
    }
    assert ("/grpc.health.v1.Health/List", "OK") in samples
    assert ("/grpc.health.v1.Health/Check", "OK") in samples


@pytest.mark.opa
async def test_a_watcher_sees_the_engine_going_down(
    start_server: StartServer, opa: OpaProcess
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url, opa_timeout_seconds=0.5)
    async with (
        watching(s, "") as whole,
        watching(s, "interlock.v1.ControlPlane") as control_plane,
    ):
        assert await whole.next() == {"status": "SERVING"}
        assert await control_plane.next() == {"status": "SERVING"}
        opa.stop()
        assert await whole.next() == {"status": "NOT_SERVING"}
        assert await control_plane.next() == {"status": "NOT_SERVING"}
    listed = json.loads(await grpcurl(s, "grpc.health.v1.Health/List", data="{}"))
    assert statuses(listed) == {name: "NOT_SERVING" for name in SERVICES}


async def test_watch_through_the_python_stub_and_shutdown(start_server: StartServer) -> None:
    s = await start_server()
    stub = health_pb2_grpc.HealthStub(s.channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(call.read(), WAIT_SECONDS)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(s.server.stop(grace=WAIT_SECONDS))
    replies = []
    while (reply := await asyncio.wait_for(call.read(), WAIT_SECONDS)) is not grpc.aio.EOF:
        replies.append(reply.status)
    # The stream ends cleanly at shutdown, its last word NOT_SERVING, rather
    # than being cut off (CANCELLED) when the grace period runs out.
    assert replies and set(replies) == {health_pb2.HealthCheckResponse.NOT_SERVING}
    assert await call.code() == grpc.StatusCode.OK
    await stopping


# The caps on open Watch streams (Health needs no credentials) ------------------


async def open_watch(channel: grpc.aio.Channel) -> Any:
    """A Watch call that has answered its first status (so it is open server-side)."""
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(call.read(), WAIT_SECONDS)
    assert first is not grpc.aio.EOF, await call.details()
    return call


async def refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), WAIT_SECONDS)
    return caught.value


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        ({"max_health_watches_per_client": 3}, "max_health_watches_per_client"),
        ({"max_health_watches": 3, "max_health_watches_per_client": 100}, "max_health_watches"),
    ],
    ids=["per-client", "total"],
)
async def test_watch_streams_past_the_cap_are_refused(
    start_server: StartServer, limits: dict[str, int], setting: str
) -> None:
    s = await start_server(**limits)
    address = f"127.0.0.1:{s.server.port}"
    async with contextlib.AsyncExitStack() as stack:
        # Each on its own connection: the cap is per client address, not per connection.
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(address)) for _ in range(5)
        ]
        held = [await open_watch(ch) for ch in channels[:3]]
        err = await refused(channels[3])
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"({setting})" in (err.details() or "")
        assert s.server.health.watching == 3
        # Check is never limited.
        check = await health_pb2_grpc.HealthStub(channels[4]).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        # A slot comes back when a stream ends.
        held.pop().cancel()
        for _ in range(300):
            if s.server.health.watching < 3:
                break
            await asyncio.sleep(0.01)
        again = await open_watch(channels[4])
        again.cancel()
        for call in held:
            call.cancel()
