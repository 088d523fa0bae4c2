"""Cross-cutting concerns for every RPC: the security gate, error mapping, metrics.

Every Interlock RPC first passes the :class:`~interlock.guard.Guard`
(authentication, limits, authorization); streams hold a per-principal slot
while open.

Interlock's errors become their status code with a ``google.rpc.Status``
carrying ``ErrorInfo`` (reason, domain) and, for bad input, ``BadRequest``
field violations. Anything unexpected becomes INTERNAL with a generic message;
the details go to the log only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from interlock import logcontext
from interlock.errors import DOMAIN, InterlockError
from interlock.guard import Guard
from interlock.logcontext import REQUEST_ID_HEADER
from interlock.metrics import Metrics

log = logging.getLogger(__name__)


def to_rpc_status(err: InterlockError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata)
    details = [info]
    if err.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in err.violations
                ]
            )
        )
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    status = status_pb2.Status(
        code=getattr(code_pb2, err.code.name), message=err.message, details=packed
    )
    return rpc_status.to_status(status)


def _bind_request_id(context: grpc.aio.ServicerContext) -> None:
    """Take the caller's x-request-id (or make one) for this call's log records."""
    given = ""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            given = value
    logcontext.request_id.set(given or logcontext.new_request_id())
    logcontext.decision_id.set("")


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics, guard: Guard | None = None) -> None:
        self.metrics = metrics
        self.guard = guard
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._counters: dict[tuple[str, grpc.StatusCode], Any] = {}
        self._histograms: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        key = (method, code)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.grpc_requests.labels(method, code.name)
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = self.metrics.grpc_latency.labels(method)
        counter.inc()
        histogram.observe(time.perf_counter() - started)

    async def _fail(
        self, context: grpc.aio.ServicerContext, method: str, exc: BaseException
    ) -> grpc.StatusCode:
        if isinstance(exc, InterlockError):
            status = to_rpc_status(exc)
            code = exc.code
        else:
            log.error("unexpected error in %s", method, exc_info=exc)
            status = to_rpc_status(InterlockError("internal error"))
            code = grpc.StatusCode.INTERNAL
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)
        return code

    def _unary(self, method: str, inner: Any) -> Any:
        guard = self.guard if self.guard is not None and Guard.guards(method) else None

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                if guard is not None:
                    await guard.admit(
                        method, request, context.invocation_metadata(), context.auth_context()
                    )
                response = await inner(request, context)
            except grpc.aio.AbortError:
                self._observe(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            except Exception as exc:
                self._observe(method, await self._fail(context, method, exc), started)
                return None
            code = context.code() or grpc.StatusCode.OK
            self._observe(method, code, started)
            return response

        return handle

    def _stream(self, method: str, inner: Any) -> Any:
        guard = self.guard if self.guard is not None and Guard.guards(method) else None

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                if guard is None:
                    async for item in inner(request, context):
                        yield item
                else:
                    principal = await guard.admit(
                        method, request, context.invocation_metadata(), context.auth_context()
                    )
                    with guard.stream(principal):
                        async for item in inner(request, context):
                            yield item
            except grpc.aio.AbortError:
                self._observe(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            except Exception as exc:
                self._observe(method, await self._fail(context, method, exc), started)
                return
            self._observe(method, context.code() or grpc.StatusCode.OK, started)

        return handle
