"""gRPC server reflection, ``grpc.reflection.v1`` beside ``v1alpha``.

Current grpcurl, ``buf curl`` and ghz ask for v1 first (older ones fall back
to v1alpha). grpcio-reflection (1.85, the version pinned) serves only
v1alpha, and Python gRPC has no v1 yet (grpc/grpc#38576). The two protocols
are the same messages with the same field numbers in another package, so the
bytes on the wire are identical: v1 is served by the same servicer with
v1alpha's message classes, under the v1 method name. So that clients can
also describe the v1 service itself, its file
(``grpc/reflection/v1/reflection.proto``) is added to the descriptor pool,
derived from v1alpha's by renaming the package.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def _renamed(type_name: str, old: str) -> str:
    prefix = f".{old}."
    return (
        f".{V1_PACKAGE}.{type_name[len(prefix) :]}" if type_name.startswith(prefix) else type_name
    )


def _rename_fields(message: descriptor_pb2.DescriptorProto, old: str) -> None:
    for field in message.field:
        if field.type_name:  # only message and enum fields name a type
            field.type_name = _renamed(field.type_name, old)
    for nested in message.nested_type:
        _rename_fields(nested, old)


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection file: v1alpha's, in the v1 package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = proto.package
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated=true and its language packages
    for message in proto.message_type:
        _rename_fields(message, old)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type, old)
            method.output_type = _renamed(method.output_type, old)
    return proto


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(v1_file())


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (v1 and v1alpha) for ``service_names`` and the two
    reflection services themselves."""
    pool = descriptor_pool.Default()
    _add_v1_file(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "enable_server_reflection", "v1_file"]
