"""Request builders and status-detail readers for the API tests."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from interlock.v1 import control_plane_pb2 as pb


def tool_call(
    agent_id: str = "agent1",
    tool: str = "vision_inspect",
    arguments: dict[str, Any] | None = None,
    confidence: float | None = 0.9,
    **extra: Any,
) -> pb.RequestToolCallRequest:
    req = pb.RequestToolCallRequest(agent_id=agent_id, tool=tool, **extra)
    if confidence is not None:
        req.confidence = confidence
    req.arguments.update({"target": "login button"} if arguments is None else arguments)
    return req


def details(err: grpc.aio.AioRpcError) -> tuple[str, list[tuple[str, str]]]:
    """(ErrorInfo reason, BadRequest field violations) of a failed call."""
    status = rpc_status.from_call(err)
    reason, violations = "", []
    if status is not None:
        for d in status.details:
            if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                d.Unpack(info)
                reason = info.reason
            elif d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                d.Unpack(br)
                violations = [(v.field, v.description) for v in br.field_violations]
    return reason, violations
