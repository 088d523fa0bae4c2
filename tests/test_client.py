"""The Python client library against a real server on a loopback port.

Self-contained: each test starts its own server in-process (port 0, a fresh
data folder, the repository's policy bundle); a few use a small fake server
to show the retry, deadline and metadata behaviour.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from interlock.server import InterlockServer
from interlock.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    observe_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    types_pb2,
)
from interlock_client import InterlockClient, InterlockError, SyncInterlockClient

from tests.conftest import CATALOG, server_config


@pytest.fixture
async def client(target: str) -> AsyncIterator[InterlockClient]:
    async with InterlockClient(target, timeout=10) as c:
        yield c


# The real server ----------------------------------------------------------------


async def test_list_tools_returns_the_catalog(client: InterlockClient) -> None:
    response = await client.list_tools()

    assert {t.name for t in response.tools} == CATALOG
    assert len(response.tools) == 9
    vision = next(t for t in response.tools if t.name == "vision_inspect")
    assert vision.risk == types_pb2.RISK_LEVEL_LOW
    assert list(vision.required_permissions) == ["screen.read"]
    assert "target" in vision.arguments_schema["properties"]
    assert response.policy_revision == (await client.policy_status()).revision


async def test_decision_round_trip_then_report(client: InterlockClient) -> None:
    decision = await client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)

    assert decision.verdict == types_pb2.VERDICT_ALLOW
    assert decision.mode == types_pb2.EXECUTION_MODE_LIVE
    assert decision.decision_id
    assert (decision.agent_id, decision.tool) == ("agent1", "vision_inspect")
    assert decision.confidence == pytest.approx(0.9)
    assert decision.reasons
    assert decision.policy_revision == (await client.policy_status()).revision

    result = await client.report_tool_result(
        decision.decision_id,
        "agent1",
        "SUCCEEDED",
        output={"description": "a button", "count": 2},
        duration_seconds=1.5,
    )

    assert result.decision_id == decision.decision_id
    assert result.outcome == types_pb2.TOOL_OUTCOME_SUCCEEDED
    assert result.mode == types_pb2.EXECUTION_MODE_LIVE
    assert result.tool == "vision_inspect"
    assert dict(result.output) == {"description": "a button", "count": 2}
    assert result.duration.ToNanoseconds() == 1_500_000_000
    health = await client.get_health()
    assert health.decisions["ALLOW"] == 1


async def test_out_of_range_confidence_is_invalid_argument(client: InterlockClient) -> None:
    with pytest.raises(InterlockError) as caught:
        await client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 1.5)

    err = caught.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_ARGUMENT"
    assert [f for f, _ in err.field_violations] == ["confidence"]
    assert "1.5" in err.field_violations[0][1]
    assert str(err).startswith("INVALID_ARGUMENT: ")


async def test_missing_confidence_is_invalid_argument(client: InterlockClient) -> None:
    with pytest.raises(InterlockError) as caught:
        await client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, None)

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ("confidence", "is required") in caught.value.field_violations


async def test_unknown_tool_is_not_found(client: InterlockClient) -> None:
    with pytest.raises(InterlockError) as caught:
        await client.request_tool_call("agent1", "launch_rockets", {}, 0.9)

    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert "launch_rockets" in caught.value.message
    assert caught.value.reason
    assert caught.value.field_violations == []


async def test_second_report_of_a_decision_already_exists(client: InterlockClient) -> None:
    decision = await client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)
    await client.report_tool_result(decision.decision_id, "agent1", "SUCCEEDED")

    with pytest.raises(InterlockError) as caught:
        await client.report_tool_result(decision.decision_id, "agent1", "failed")

    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.reason == "RESULT_ALREADY_REPORTED"


async def test_report_rejects_an_unknown_outcome_before_sending(client: InterlockClient) -> None:
    with pytest.raises(ValueError, match="SUCCEEDED, FAILED, TIMED_OUT"):
        await client.report_tool_result("dec_x", "agent1", "EXPLODED")


async def test_evaluate_policy_decides_without_recording(client: InterlockClient) -> None:
    allowed = await client.evaluate_policy("agent1", "vision_inspect", {"target": "x"}, 0.9)
    raw = await client.evaluate_policy(raw_input={"tool": "vision_inspect"})

    assert allowed.verdict == types_pb2.VERDICT_ALLOW
    assert allowed.mode == types_pb2.EXECUTION_MODE_LIVE
    assert allowed.input["agent"]["id"] == "agent1"
    assert raw.verdict == types_pb2.VERDICT_DENY
    assert raw.mode == types_pb2.EXECUTION_MODE_MOCK
    assert raw.reasons
    assert dict((await client.get_health()).decisions) == {}  # nothing was recorded
    with pytest.raises(ValueError, match="not both"):
        await client.evaluate_policy("agent1", raw_input={"tool": "x"})


async def test_policy_status_and_reload(client: InterlockClient) -> None:
    status = await client.policy_status()
    reload = await client.reload_policies()

    assert status.tool_count == 9
    assert status.engine == "regorus"
    assert status.engine_available
    assert reload.changed is False
    assert reload.revision == reload.previous_revision == status.revision


async def test_closed_client_refuses_calls(target: str) -> None:
    async with InterlockClient(target) as c:
        assert len((await c.list_tools()).tools) == 9
    with pytest.raises(RuntimeError, match="closed"):
        await c.list_tools()


# The blocking client --------------------------------------------------------------


@contextlib.contextmanager
def server_in_thread(data_dir: Path) -> Iterator[str]:
    """A real server on its own event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server", daemon=True)
    thread.start()

    async def start() -> tuple[InterlockServer, int]:
        server = InterlockServer(server_config(data_dir))
        return server, await server.start()

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_sync_client_round_trip(tmp_path: Path) -> None:
    with server_in_thread(tmp_path) as target, SyncInterlockClient(target, timeout=10) as client:
        assert {t.name for t in client.list_tools().tools} == CATALOG

        decision = client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)
        assert decision.verdict == types_pb2.VERDICT_ALLOW
        assert decision.mode == types_pb2.EXECUTION_MODE_LIVE

        result = client.report_tool_result(decision.decision_id, "agent1", "timed_out")
        assert result.outcome == types_pb2.TOOL_OUTCOME_TIMED_OUT

        with pytest.raises(InterlockError) as caught:
            client.report_tool_result(decision.decision_id, "agent1", "SUCCEEDED")
        assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS

        with pytest.raises(InterlockError) as caught:
            client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 1.5)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.field_violations[0][0] == "confidence"

        assert client.policy_status().revision == decision.policy_revision
        assert client.get_health().decisions["ALLOW"] == 1

    with pytest.raises(RuntimeError, match="closed"):
        client.list_tools()


async def test_sync_client_works_beside_a_running_loop(target: str) -> None:
    def use() -> str:
        with SyncInterlockClient(target) as client:
            return client.request_tool_call(
                "agent2", "button_click", {"selector": "#ok"}, 0.99
            ).tool

    # The blocking client runs in a worker thread so this loop keeps serving.
    assert await asyncio.to_thread(use) == "button_click"


ASYNC_ONLY = {"control_plane", "policy_service", "grant_service", "trust_service"}
"""The raw grpc.aio stubs: bound to the asyncio client's loop, so not mirrored."""


def _surface(client: object) -> set[str]:
    return {name for name in dir(client) if not name.startswith("_")}


def test_sync_client_mirrors_every_method_of_the_async_client(target: str) -> None:
    async_client = InterlockClient(target)  # opens no channel until its first call
    with SyncInterlockClient(target) as sync_client:
        assert _surface(sync_client) == _surface(async_client) - ASYNC_ONLY
        for name in sorted(_surface(sync_client)):
            async_member = getattr(InterlockClient, name, None)
            if not callable(async_member):
                continue
            sync_params = inspect.signature(getattr(SyncInterlockClient, name)).parameters
            async_params = inspect.signature(async_member).parameters
            assert list(sync_params.values()) == list(async_params.values()), name


def test_sync_client_streams_events_and_lists_signals(tmp_path: Path) -> None:
    with server_in_thread(tmp_path) as target, SyncInterlockClient(target, timeout=10) as client:
        decision = client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)
        events = client.watch_events(kinds=["DECISION"], timeout=10)
        first = next(events)
        events.close()
        assert first.kind == observe_pb2.EVENT_KIND_DECISION
        assert first.decision_id == decision.decision_id
        assert list(client.list_signals(kinds=["TOOL_RELIABILITY"]).signals) == []


# Retries, deadlines and metadata, against a fake server ----------------------------


class FlakyControlPlane(control_plane_pb2_grpc.ControlPlaneServicer):
    """Answers UNAVAILABLE `failures` times per method, then succeeds (reads only)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: collections.Counter[str] = collections.Counter()
        self.metadata: list[dict[str, str]] = []

    async def _count(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[name] += 1
        self.metadata.append({m.key: m.value for m in context.invocation_metadata() or ()})
        if self.calls[name] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")

    async def ListTools(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("ListTools", context)
        return control_plane_pb2.ListToolsResponse(policy_revision="fake")

    async def RequestToolCall(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("RequestToolCall", context)
        return control_plane_pb2.RequestToolCallResponse()

    async def ReportToolResult(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("ReportToolResult", context)
        return control_plane_pb2.ReportToolResultResponse()

    async def GetHealth(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.sleep(10)  # longer than any deadline the tests set
        return control_plane_pb2.GetHealthResponse()


class FlakyPolicyService(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(self, control: FlakyControlPlane) -> None:
        self.control = control

    async def ReloadPolicies(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.control._count("ReloadPolicies", context)
        return policy_service_pb2.ReloadPoliciesResponse()


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, FlakyControlPlane]]:
    control = FlakyControlPlane(failures=2)
    server = grpc.aio.server()
    control_plane_pb2_grpc.add_ControlPlaneServicer_to_server(control, server)
    policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(FlakyPolicyService(control), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", control
    finally:
        await server.stop(0)


async def test_reads_are_retried_on_unavailable(flaky: tuple[str, FlakyControlPlane]) -> None:
    target, control = flaky
    async with InterlockClient(target, retries=2) as c:
        response = await c.list_tools()

    assert response.policy_revision == "fake"
    assert control.calls["ListTools"] == 3


async def test_reads_give_up_after_their_retries(flaky: tuple[str, FlakyControlPlane]) -> None:
    target, control = flaky
    async with InterlockClient(target, retries=1) as c:
        with pytest.raises(InterlockError) as caught:
            await c.list_tools()

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.message == "warming up"
    assert control.calls["ListTools"] == 2


async def test_writes_are_never_retried(flaky: tuple[str, FlakyControlPlane]) -> None:
    target, control = flaky
    async with InterlockClient(target, retries=5) as c:
        for call in (
            c.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9),
            c.report_tool_result("dec_1", "agent1", "SUCCEEDED"),
            c.reload_policies(),
        ):
            with pytest.raises(InterlockError) as caught:
                await call
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE

    assert control.calls == {"RequestToolCall": 1, "ReportToolResult": 1, "ReloadPolicies": 1}


async def test_each_call_has_a_deadline(flaky: tuple[str, FlakyControlPlane]) -> None:
    target, _ = flaky
    async with InterlockClient(target, timeout=0.2) as c:
        with pytest.raises(InterlockError) as caught:
            await c.get_health()

    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_token_is_sent_as_bearer_metadata(flaky: tuple[str, FlakyControlPlane]) -> None:
    target, control = flaky
    async with InterlockClient(target, token="s3cret") as c:
        await c.list_tools()
    async with InterlockClient(target) as c:
        with pytest.raises(InterlockError):
            await c.request_tool_call("agent1", "vision_inspect", {}, 0.9)

    assert {m.get("authorization") for m in control.metadata[:3]} == {"Bearer s3cret"}
    assert "authorization" not in control.metadata[-1]


async def test_unreachable_server_is_unavailable() -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    async with InterlockClient(f"127.0.0.1:{port}", retries=1, timeout=2) as c:
        with pytest.raises(InterlockError) as caught:
            await c.get_health()

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == ""
