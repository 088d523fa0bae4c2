"""The standard gRPC health service (``grpc.health.v1.Health``): Check, Watch, List.

Check and Watch are grpcio-health-checking's asyncio servicer as it comes
(Watch writes its replies with ``context.write``; the interceptor keeps that
shape). That servicer has no List (the generated base answers it with an
error); :class:`HealthService` adds it from the statuses it was given, so
``grpcurl ... grpc.health.v1.Health/List`` and other tools that list every
service's health get an answer.

Health needs no credentials (a load balancer's probe has none), so its Watch
streams are capped: at most ``max_watches`` open at once in all, and
``max_watches_per_client`` from one client address (the peer's IP, any port);
past either, Watch answers RESOURCE_EXHAUSTED (reason
``TOO_MANY_HEALTH_WATCHES``) at once. Check and List hold nothing open and are
not counted.

Watch streams do not end on their own; at shutdown
(:meth:`HealthService.enter_graceful_shutdown`) each gets NOT_SERVING and
ends with OK, so they do not hold ``server.stop(grace)`` for its whole grace
period (like the event streams).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from grpc_health.v1 import health, health_pb2

from interlock.errors import ResourceExhausted

HealthCheckResponse = health_pb2.HealthCheckResponse
MAX_WATCHES = 1000
MAX_WATCHES_PER_CLIENT = 16


def client_address(peer: str) -> str:
    """A gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``) without its port."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0] or rest
    return peer


class HealthService(health.aio.HealthServicer):  # type: ignore[misc]
    """The aio health servicer, with List."""

    def __init__(
        self,
        *,
        max_watches: int = MAX_WATCHES,
        max_watches_per_client: int = MAX_WATCHES_PER_CLIENT,
    ) -> None:
        super().__init__()
        self._statuses: dict[str, int] = {"": HealthCheckResponse.SERVING}
        self._closing = False
        self._watches: set[asyncio.Future[None]] = set()
        self.max_watches = max_watches
        self.max_watches_per_client = max_watches_per_client
        self._open: Counter[str] = Counter()
        """Open Watch streams per client address."""

    @property
    def watching(self) -> int:
        """Open Watch streams."""
        return self._open.total()

    def _admit(self, client: str) -> None:
        if self.watching >= self.max_watches:
            raise ResourceExhausted(
                f"the server already holds {self.max_watches} Health/Watch streams, the most "
                "allowed (max_health_watches); use Health/Check, or retry later",
                reason="TOO_MANY_HEALTH_WATCHES",
            )
        if self._open[client] >= self.max_watches_per_client:
            raise ResourceExhausted(
                f"{client} already holds {self.max_watches_per_client} Health/Watch streams, "
                "the most one client address may (max_health_watches_per_client)",
                reason="TOO_MANY_HEALTH_WATCHES",
            )

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
        for watch in list(self._watches):
            watch.cancel()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """The parent's Watch (it writes each change with ``context.write``),
        ended with the final status at shutdown; refused past the caps."""
        client = client_address(context.peer())
        self._admit(client)
        self._open[client] += 1
        try:
            await self._watch(request, context)
        finally:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    async def _watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        if not self._closing:
            watch = asyncio.ensure_future(super().Watch(request, context))
            self._watches.add(watch)
            try:
                await watch
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not self._closing or (current is not None and current.cancelling()):
                    raise  # the call itself was cancelled (the client went away)
            finally:
                self._watches.discard(watch)
        # Shutting down: the last word (perhaps said already; a repeat is harmless).
        status = self._statuses.get(request.service, HealthCheckResponse.SERVICE_UNKNOWN)
        await context.write(HealthCheckResponse(status=status))

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Every service the server reports on, with its status."""
        return health_pb2.HealthListResponse(
            statuses={
                name: HealthCheckResponse(status=status) for name, status in self._statuses.items()
            }
        )


__all__ = ["MAX_WATCHES", "MAX_WATCHES_PER_CLIENT", "HealthService", "client_address"]
