"""Server reflection v1 (what current grpcurl, buf curl and ghz ask for first)
beside v1alpha."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.conftest import Running
from tests.test_grpcurl import grpcurl

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
OURS = {"interlock.v1.ControlPlane", "interlock.v1.PolicyService", "grpc.health.v1.Health"}


async def ask(
    channel: grpc.aio.Channel, method: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """A raw reflection stream. v1 and v1alpha messages are the same bytes, so
    v1alpha's classes encode a v1 request; only the method name differs."""
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return [r async for r in call(iter(requests))]


def called(server: Running) -> set[tuple[str, str]]:
    return {
        (s.labels["method"], s.labels["code"])
        for metric in server.server.metrics.grpc_requests.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.value > 0
    }


async def test_a_v1_client_lists_and_describes_the_services(server: Running) -> None:
    listed, described = await ask(
        server.channel,
        V1_METHOD,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="interlock.v1.ControlPlane"),
    )
    names = {s.name for s in listed.list_services_response.service}
    assert OURS <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    files: dict[str, Any] = {}
    for raw in described.file_descriptor_response.file_descriptor_proto:
        f = descriptor_pb2.FileDescriptorProto.FromString(raw)
        files[f.name] = f
    services = {s.name for f in files.values() for s in f.service if f.package == "interlock.v1"}
    assert "ControlPlane" in services


async def test_the_v1_service_describes_itself(server: Running) -> None:
    (answer,) = await ask(
        server.channel,
        V1_METHOD,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
    )
    (raw,) = answer.file_descriptor_response.file_descriptor_proto
    f = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert f.package == "grpc.reflection.v1"
    assert f.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


async def test_v1alpha_still_answers(server: Running) -> None:
    (listed,) = await ask(
        server.channel, V1ALPHA_METHOD, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    assert OURS <= {s.name for s in listed.list_services_response.service}


async def test_grpcurl_uses_v1(server: Running) -> None:
    services = set((await grpcurl(server, "list")).split())
    assert OURS | {"grpc.reflection.v1.ServerReflection"} <= services
    assert (V1_METHOD, "OK") in called(server)
    assert not any(method == V1ALPHA_METHOD for method, _ in called(server))
