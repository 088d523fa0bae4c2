"""Cross-cutting concerns for every RPC: the security gate, error mapping, metrics.

Every request is first held to its RPC's size and count limits
(:mod:`interlock.api.limits`): its size before it is parsed, the counts of its
repeated fields before anything else. Every Interlock RPC then passes the
:class:`~interlock.guard.Guard` (authentication, limits, authorization);
streams hold a per-principal slot while open.

Interlock's errors become their status code with a ``google.rpc.Status``
carrying ``ErrorInfo`` (reason, domain), for bad input ``BadRequest`` field
violations, and for a rate limit ``RetryInfo`` with the wait (where gRPC
client libraries look for it). Anything unexpected becomes INTERNAL with a
generic message; the details go to the log only.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from interlock import logcontext
from interlock.api.limits import RequestLimits
from interlock.auth import Principal
from interlock.errors import DOMAIN, InterlockError, InvalidArgument
from interlock.guard import Guard
from interlock.logcontext import REQUEST_ID_HEADER
from interlock.metrics import Metrics

log = logging.getLogger(__name__)


MAX_MESSAGE_BYTES = 1000
MAX_FIELD_BYTES = 200
MAX_DESCRIPTION_BYTES = 300
MAX_DETAIL_BYTES = 3000
"""Error text is cut to these sizes: messages quote request values, and the
status trailer (the message twice, plus the details) must stay well under
gRPC's 8 KiB metadata soft limit, or the client gets RESOURCE_EXHAUSTED
instead of the error."""


def clip(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 (lone surrogates escaped), cut to at most ``limit``
    bytes as gRPC sends it: grpc-message percent-encodes every byte that is not
    printable ASCII, so such a byte costs three."""
    # Each character costs at least one byte: the rest can never be shown.
    text = text[: limit + 1].encode("utf-8", "backslashreplace").decode("utf-8")
    costs = [1 if " " <= c <= "~" else 3 * len(c.encode("utf-8")) for c in text]
    if sum(costs) <= limit:
        return text
    used = 0
    for i, cost in enumerate(costs):
        used += cost
        if used > limit - 3:  # keep room for "..."
            return text[:i] + "..."
    return text  # pragma: no cover - the sum above exceeded limit


def to_rpc_status(err: InterlockError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=clip(err.reason, MAX_FIELD_BYTES),
        domain=DOMAIN,
        metadata={
            clip(k, MAX_FIELD_BYTES): clip(v, MAX_FIELD_BYTES) for k, v in err.metadata.items()
        },
    )
    details: list[Any] = [info]
    if err.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(max(0.0, err.retry_delay) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if err.violations:
        shown: list[error_details_pb2.BadRequest.FieldViolation] = []
        size = 0
        for v in err.violations:
            item = error_details_pb2.BadRequest.FieldViolation(
                field=clip(v.field, MAX_FIELD_BYTES),
                description=clip(v.description, MAX_DESCRIPTION_BYTES),
            )
            size += item.ByteSize()
            if size > MAX_DETAIL_BYTES:
                left = len(err.violations) - len(shown)
                shown.append(
                    error_details_pb2.BadRequest.FieldViolation(
                        field="", description=f"and {left} more problem(s) not shown"
                    )
                )
                break
            shown.append(item)
        details.append(error_details_pb2.BadRequest(field_violations=shown))
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    status = status_pb2.Status(
        code=getattr(code_pb2, err.code.name),
        message=clip(err.message, MAX_MESSAGE_BYTES),
        details=packed,
    )
    return rpc_status.to_status(status)


class Undecodable:
    """A request body the protobuf runtime could not parse (answered INVALID_ARGUMENT)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class Oversize:
    """A request body larger than its RPC accepts, left unparsed (RESOURCE_EXHAUSTED)."""

    def __init__(self, size: int) -> None:
        self.size = size


def _safe(deserializer: Any, max_bytes: int | None = None) -> Any:
    """A request deserializer that hands the handler an :class:`Undecodable`
    instead of raising: grpc.aio deserializes before any interceptor code runs,
    and its own error would be UNKNOWN with a traceback. A body over
    ``max_bytes`` is not parsed at all: the handler gets an :class:`Oversize`."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            return Oversize(len(data))
        try:
            return deserializer(data)
        except Exception as exc:
            return Undecodable(f"{type(exc).__name__}: {exc}")

    return parse


def _check_decoded(request: Any) -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            f"the request could not be decoded as its protobuf message ({request.problem})",
            reason="UNDECODABLE_REQUEST",
        )


def _bind_request_id(context: grpc.aio.ServicerContext) -> None:
    """Take the caller's x-request-id (or make one) for this call's log records."""
    given = ""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            given = value
    logcontext.request_id.set(given or logcontext.new_request_id())
    logcontext.decision_id.set("")


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self, metrics: Metrics, guard: Guard | None = None, limits: RequestLimits | None = None
    ) -> None:
        self.metrics = metrics
        self.guard = guard
        self.limits = limits
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
        """The handler with the interceptor's work around it, in the handler's own
        shape: the same cardinality, and a coroutine that writes with
        ``context.write`` stays one (grpc.aio picks how to send replies from
        the kind of function it is given)."""
        max_bytes = self.limits.max_bytes(method) if self.limits is not None else None
        deserializer = _safe(handler.request_deserializer, max_bytes)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream, streaming_requests=False),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary, streaming_requests=True),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream, streaming_requests=True),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        return handler  # pragma: no cover - every handler has one of the four shapes

    def _check_request(self, method: str, request: Any) -> None:
        """The first step of every call: a body that parsed, within its RPC's limits."""
        _check_decoded(request)
        if self.limits is None:
            return
        try:
            if isinstance(request, Oversize):
                self.limits.check_size(method, request.size)
            self.limits.check_counts(request)
        except InterlockError:
            self.metrics.limits_exceeded.labels("request").inc()
            raise

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

    def _checked(self, method: str, requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
        """A client stream whose every message is held to the same checks as a
        unary request, as it arrives."""

        async def each() -> AsyncIterator[Any]:
            async for request in requests:
                self._check_request(method, request)
                yield request

        return each()

    async def _admit(
        self,
        guard: Guard | None,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        streaming_requests: bool,
    ) -> tuple[Any, Principal | None]:
        """Check the request (for a client stream: each message, as it comes)
        and pass the guard. Returns the request to give the handler and the
        principal the guard admitted (None for an unguarded method)."""
        if streaming_requests:
            request = self._checked(method, request)
            facts = None  # a client stream is admitted on its method and principal
        else:
            self._check_request(method, request)
            facts = request
        principal = await guard.admit(method, facts, context) if guard is not None else None
        return request, principal

    def _unary(self, method: str, inner: Any, *, streaming_requests: bool = False) -> Any:
        """Wrap a handler that answers once (unary-unary, or stream-unary)."""
        guard = self.guard if self.guard is not None and Guard.guards(method) else None

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                request, _ = await self._admit(guard, method, request, context, streaming_requests)
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

    def _stream(self, method: str, inner: Any, *, streaming_requests: bool) -> Any:
        """Wrap a handler that answers with a stream (unary-stream, stream-stream),
        in either of grpc.aio's shapes: an async generator (or a function
        returning an iterator) that yields the replies, or a coroutine that
        writes them with ``context.write`` and returns None (the standard
        health service's Watch)."""
        guard = self.guard if self.guard is not None and Guard.guards(method) else None
        writes = inspect.iscoroutinefunction(inner)

        async def run(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            """The inner handler's replies; nothing for one that writes them itself."""
            request, principal = await self._admit(
                guard, method, request, context, streaming_requests
            )
            slot = guard.stream(principal) if guard is not None and principal is not None else None
            with slot or contextlib.nullcontext():
                if writes:
                    await inner(request, context)
                    return
                replies = inner(request, context)
                if isinstance(replies, AsyncIterable):
                    async for item in replies:
                        yield item
                else:
                    for item in replies:
                        yield item

        async def write(request: Any, context: grpc.aio.ServicerContext) -> None:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                async for _ in run(request, context):
                    pass  # pragma: no cover - a writing handler yields nothing
            except grpc.aio.AbortError:
                self._observe(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            except Exception as exc:
                self._observe(method, await self._fail(context, method, exc), started)
                return
            self._observe(method, context.code() or grpc.StatusCode.OK, started)

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                async for item in run(request, context):
                    yield item
            except grpc.aio.AbortError:
                self._observe(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            except Exception as exc:
                self._observe(method, await self._fail(context, method, exc), started)
                return
            self._observe(method, context.code() or grpc.StatusCode.OK, started)

        return write if writes else handle
