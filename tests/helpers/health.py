"""Waiting for the standard gRPC health service (grpc.health.v1) to answer a status."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status_name(status: int) -> str:
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


async def wait_for_health(
    channel: grpc.aio.Channel, status: int, *, service: str = "", within: float = 6.0
) -> None:
    """Poll ``Health/Check`` until it answers ``status``; fail naming the last answer.

    The server notices a change (an engine going down, coming back) on its own
    probe's schedule, so a test asks again every 0.1 s, for up to ``within``
    seconds, rather than once.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    deadline = time.monotonic() + within
    while True:
        answer = (await stub.Check(request)).status
        if answer == status:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"health of {service or 'the server'!r} stayed {status_name(answer)} for "
                f"{within:g} s, expected {status_name(status)}"
            )
        await asyncio.sleep(0.1)
