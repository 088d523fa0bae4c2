"""The asyncio client: :class:`InterlockClient`, on ``grpc.aio``.

Every method returns the server's protobuf message (from :mod:`interlock.v1`)
and raises :class:`~interlock_client.errors.InterlockError` when the call fails.
Methods whose response has a single field return that field's message
(:meth:`InterlockClient.request_tool_call` gives a ``Decision``,
:meth:`InterlockClient.report_tool_result` a ``ToolResult``); the others return
the whole response.

Deadlines: each call (each attempt, when retried) gets ``timeout`` seconds.
Retries: only the idempotent
reads (:meth:`~InterlockClient.list_tools`, :meth:`~InterlockClient.get_health`,
:meth:`~InterlockClient.policy_status`) are retried, on ``UNAVAILABLE`` only,
``retries`` times with a short exponential backoff. Calls that decide, record
or change something are never retried: a retry could record a call twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, struct_pb2
from interlock.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    observe_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    types_pb2,
)

from interlock_client.errors import InterlockError

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
RETRY_BACKOFF_SECONDS = 0.1
RETRY_BACKOFF_MAX_SECONDS = 1.0
OUTCOMES = ("SUCCEEDED", "FAILED", "TIMED_OUT")

_Response = TypeVar("_Response")


def to_struct(value: Mapping[str, Any] | None, what: str = "value") -> struct_pb2.Struct:
    """A JSON-like mapping as a ``google.protobuf.Struct`` (numbers become doubles)."""
    out = struct_pb2.Struct()
    if value is None:
        return out
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping (a JSON object), not {type(value).__name__}")
    try:
        out.update(dict(value))
    except (ValueError, TypeError, AttributeError) as exc:
        raise TypeError(f"{what} must hold JSON values only: {exc}") from exc
    return out


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def outcome_value(outcome: str | int) -> int:
    """``"SUCCEEDED"`` / ``"FAILED"`` / ``"TIMED_OUT"`` (any case) or a ToolOutcome value."""
    if isinstance(outcome, int) and not isinstance(outcome, bool):
        return outcome
    if isinstance(outcome, str):
        name = outcome.strip().upper().replace("-", "_").removeprefix("TOOL_OUTCOME_")
        if name in OUTCOMES:
            return int(types_pb2.ToolOutcome.Value(f"TOOL_OUTCOME_{name}"))
    raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")


class InterlockClient:
    """An asyncio client of one Interlock server.

    Use it as ``async with InterlockClient("127.0.0.1:50051") as client: ...``, or
    call :meth:`close` when done. The channel is opened on first use, on the
    running event loop; a client belongs to that loop.

    Args:
        target: the server's ``host:port``.
        timeout: the deadline of each call, in seconds.
        retries: how many times an idempotent read is retried on ``UNAVAILABLE``.
        token: sent as ``authorization: Bearer <token>`` metadata when given.
        credentials: channel credentials for TLS; an insecure channel when omitted.
        options: extra gRPC channel options.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.target = target
        self.timeout = float(timeout)
        self.retries = int(retries)
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        self._credentials = credentials
        self._options = list(options or [])
        self._channel: grpc.aio.Channel | None = None
        self._control: control_plane_pb2_grpc.ControlPlaneStub | None = None
        self._policy: policy_service_pb2_grpc.PolicyServiceStub | None = None
        self._closed = False

    # Lifecycle ---------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("the InterlockClient is closed")
        if self._channel is not None:
            return
        if self._credentials is not None:
            channel = grpc.aio.secure_channel(self.target, self._credentials, self._options)
        else:
            channel = grpc.aio.insecure_channel(self.target, self._options)
        self._channel = channel
        self._control = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self._policy = policy_service_pb2_grpc.PolicyServiceStub(channel)

    @property
    def control_plane(self) -> control_plane_pb2_grpc.ControlPlaneStub:
        """The raw ControlPlane stub, for RPCs this client does not wrap."""
        self._open()
        assert self._control is not None
        return self._control

    @property
    def policy_service(self) -> policy_service_pb2_grpc.PolicyServiceStub:
        """The raw PolicyService stub."""
        self._open()
        assert self._policy is not None
        return self._policy

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Idempotent."""
        self._closed = True
        channel, self._channel = self._channel, None
        self._control = self._policy = None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> InterlockClient:
        self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Calling -----------------------------------------------------------------

    async def _call(
        self,
        method: Callable[..., Awaitable[_Response]],
        request: Any,
        *,
        idempotent: bool,
    ) -> _Response:
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return await method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                retry = (
                    idempotent
                    and exc.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt + 1 < attempts
                )
                if not retry:
                    raise InterlockError.from_rpc_error(exc) from exc
            await asyncio.sleep(min(RETRY_BACKOFF_SECONDS * 2**attempt, RETRY_BACKOFF_MAX_SECONDS))
        raise AssertionError("unreachable")  # pragma: no cover

    # ControlPlane ------------------------------------------------------------

    async def list_tools(self) -> control_plane_pb2.ListToolsResponse:
        """The tool contracts of the active policy set (``.tools``) and its ``.policy_revision``."""
        return await self._call(
            self.control_plane.ListTools,
            control_plane_pb2.ListToolsRequest(),
            idempotent=True,
        )

    async def request_tool_call(
        self,
        agent_id: str,
        tool: str,
        arguments: Mapping[str, Any] | None,
        confidence: float | None,
        plan_id: str = "",
        step_id: str = "",
    ) -> types_pb2.Decision:
        """Ask whether, and in which mode, ``agent_id`` may call ``tool``; never retried.

        Returns the ``Decision``: ``.verdict`` (``types_pb2.VERDICT_*``), ``.mode``
        (``types_pb2.EXECUTION_MODE_*``), ``.reasons``, ``.decision_id`` (report the
        result against it), ``.policy_revision`` and more. ``confidence=None`` sends
        no confidence (the server refuses that with INVALID_ARGUMENT).
        """
        request = control_plane_pb2.RequestToolCallRequest(
            agent_id=agent_id,
            tool=tool,
            arguments=to_struct(arguments, "arguments"),
            plan_id=plan_id,
            step_id=step_id,
        )
        if confidence is not None:
            request.confidence = float(confidence)
        response: control_plane_pb2.RequestToolCallResponse = await self._call(
            self.control_plane.RequestToolCall, request, idempotent=False
        )
        return response.decision

    async def report_tool_result(
        self,
        decision_id: str,
        agent_id: str,
        outcome: str | int,
        output: Mapping[str, Any] | None = None,
        error_message: str = "",
        duration_seconds: float = 0.0,
        *,
        work_id: str = "",
    ) -> types_pb2.ToolResult:
        """Report how a decided call ended; never retried. Returns the recorded ``ToolResult``.

        ``outcome`` is ``"SUCCEEDED"``, ``"FAILED"`` or ``"TIMED_OUT"`` (any case).
        A second report of the same decision fails with ALREADY_EXISTS.
        """
        request = control_plane_pb2.ReportToolResultRequest(
            decision_id=decision_id,
            agent_id=agent_id,
            outcome=outcome_value(outcome),  # type: ignore[arg-type]
            output=to_struct(output, "output"),
            error_message=error_message,
            duration=_duration(duration_seconds),
            work_id=work_id,
        )
        response: control_plane_pb2.ReportToolResultResponse = await self._call(
            self.control_plane.ReportToolResult, request, idempotent=False
        )
        return response.result

    async def watch_events(
        self,
        after_seq: int = 0,
        *,
        plan_id: str = "",
        agent_id: str = "",
        kinds: Iterable[str | int] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
    ) -> AsyncGenerator[observe_pb2.Event, None]:
        """The event stream: every ``Event`` after ``after_seq`` matching the filters, in order.

        Yields events from the server's history first, then live, until the
        caller stops iterating (close the iterator, e.g. with
        ``contextlib.aclosing``, to end the call), ``timeout`` seconds pass
        (no deadline by default) or the server ends the stream. ``kinds`` are
        names (``"DECISION"`` or ``"EVENT_KIND_DECISION"``, any case) or
        ``EventKind`` values; empty means every kind.

        Never retried: on an error (``InterlockError``; ``UNAVAILABLE`` with
        reason ``SERVER_STOPPING`` when the server stops), resume with a new
        call with ``after_seq`` set to the ``seq`` of the last event received;
        nothing is skipped or repeated.
        """
        values: list[int] = []
        for kind in kinds:
            if isinstance(kind, int) and not isinstance(kind, bool):
                values.append(kind)
                continue
            name = str(kind).strip().upper().replace("-", "_").removeprefix("EVENT_KIND_")
            try:
                values.append(int(observe_pb2.EventKind.Value(f"EVENT_KIND_{name}")))
            except ValueError:
                raise ValueError(f"unknown event kind {kind!r}") from None
        request = control_plane_pb2.WatchEventsRequest(
            after_seq=after_seq,
            plan_id=plan_id,
            agent_id=agent_id,
            kinds=values,  # type: ignore[arg-type]
        )
        call = self.control_plane.WatchEvents(request, timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response.event
        except grpc.aio.AioRpcError as exc:
            raise InterlockError.from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def get_health(self) -> control_plane_pb2.GetHealthResponse:
        """The server's health: status, score, engine, policy revision, decision counts."""
        return await self._call(
            self.control_plane.GetHealth,
            control_plane_pb2.GetHealthRequest(),
            idempotent=True,
        )

    # PolicyService -----------------------------------------------------------

    async def policy_status(self) -> policy_service_pb2.GetPolicyStatusResponse:
        """The active policy set: revision, engine, modules, reload counts, last refusal."""
        return await self._call(
            self.policy_service.GetPolicyStatus,
            policy_service_pb2.GetPolicyStatusRequest(),
            idempotent=True,
        )

    async def reload_policies(self) -> policy_service_pb2.ReloadPoliciesResponse:
        """Re-read the server's policy folder and swap it in; never retried.

        A broken set is refused with FAILED_PRECONDITION (reason ``POLICY_INVALID``)
        and the active one keeps serving.
        """
        return await self._call(
            self.policy_service.ReloadPolicies,
            policy_service_pb2.ReloadPoliciesRequest(),
            idempotent=False,
        )

    async def evaluate_policy(
        self,
        agent_id: str = "",
        tool: str = "",
        arguments: Mapping[str, Any] | None = None,
        confidence: float | None = None,
        *,
        live_in_flight: int = 0,
        raw_input: Mapping[str, Any] | None = None,
        policy_files: Mapping[str, str] | None = None,
    ) -> policy_service_pb2.EvaluatePolicyResponse:
        """Evaluate a tool call, or a raw policy input, changing nothing.

        Give either a tool call (``agent_id``, ``tool``, ``arguments``, ``confidence``,
        ``live_in_flight``), which the server turns into the policy input as
        :meth:`request_tool_call` would, or ``raw_input``, passed to the decision
        rule as it is. ``policy_files`` (bundle-relative path -> content) evaluates
        against that set instead of the active one. Not retried (a policy set can be
        expensive to compile), though it changes nothing.
        """
        request = policy_service_pb2.EvaluatePolicyRequest()
        if raw_input is not None:
            if agent_id or tool or arguments or confidence is not None or live_in_flight:
                raise ValueError("give either a tool call or raw_input, not both")
            request.raw_input.CopyFrom(to_struct(raw_input, "raw_input"))
        else:
            call = policy_service_pb2.ToolCallInput(
                agent_id=agent_id,
                tool=tool,
                arguments=to_struct(arguments, "arguments"),
                live_in_flight=live_in_flight,
            )
            if confidence is not None:
                call.confidence = float(confidence)
            request.tool_call.CopyFrom(call)
        if policy_files is not None:
            request.policy_set.SetInParent()
            request.policy_set.files.update(dict(policy_files))
        return await self._call(self.policy_service.EvaluatePolicy, request, idempotent=False)


__all__ = ["DEFAULT_TARGET", "DEFAULT_TIMEOUT", "InterlockClient", "outcome_value", "to_struct"]
