"""The standard gRPC health service (``grpc.health.v1.Health``): Check, Watch, List.

Check and Watch are grpcio-health-checking's asyncio servicer as it comes
(Watch writes its replies with ``context.write``; the interceptor keeps that
shape). That servicer has no List (the generated base answers it with an
error); :class:`HealthService` adds it from the statuses it was given, so
``grpcurl ... grpc.health.v1.Health/List`` and other tools that list every
service's health get an answer.

Open Watch streams do not end on their own: at shutdown they receive
NOT_SERVING and end when the server's grace period does.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

HealthCheckResponse = health_pb2.HealthCheckResponse


class HealthService(health.aio.HealthServicer):  # type: ignore[misc]
    """The aio health servicer, with List."""

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, int] = {"": HealthCheckResponse.SERVING}
        self._closing = False

    async def set(self, service: str, status: int) -> None:
        """Set the status of ``service`` ("" is the whole server); ignored once
        shutting down, as in the parent."""
        await super().set(service, status)
        if not self._closing:
            self._statuses[service] = status

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING, for good."""
        await super().enter_graceful_shutdown()
        self._closing = True
        for service in self._statuses:
            self._statuses[service] = HealthCheckResponse.NOT_SERVING

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Every service the server reports on, with its status."""
        return health_pb2.HealthListResponse(
            statuses={
                name: HealthCheckResponse(status=status) for name, status in self._statuses.items()
            }
        )


__all__ = ["HealthService"]
