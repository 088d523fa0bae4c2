"""The asyncio client: :class:`InterlockClient`, on ``grpc.aio``.

Every method returns the server's protobuf message (from :mod:`interlock_client.v1`)
and raises :class:`~interlock_client.errors.InterlockError` when the call fails.
Methods whose response has a single field return that field's message
(:meth:`InterlockClient.request_tool_call` gives a ``Decision``,
:meth:`InterlockClient.report_tool_result` a ``ToolResult``); the others return
the whole response.

Deadlines: each call (each attempt, when retried) gets ``timeout`` seconds;
the streams (:meth:`~InterlockClient.watch_events`, :meth:`~InterlockClient.pull_work`)
have none unless given one.
Retries: only the idempotent
reads (:meth:`~InterlockClient.list_tools`, :meth:`~InterlockClient.get_health`,
:meth:`~InterlockClient.policy_status`, :meth:`~InterlockClient.get_plan`,
:meth:`~InterlockClient.list_plans`) are retried, on ``UNAVAILABLE`` only,
``retries`` times with a short exponential backoff. Calls that decide, record
or change something are never retried: a retry could record a call twice.
Nor are the streams: their callers reconnect (see each method).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, struct_pb2

from interlock_client.errors import InterlockError
from interlock_client.jsonpaths import json_type, member
from interlock_client.targets import channel_target
from interlock_client.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    grants_pb2,
    grants_pb2_grpc,
    observe_pb2,
    plans_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
    types_pb2,
)

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
DEV_PRINCIPAL_HEADER = "x-interlock-dev-principal"
TOKEN_ENV = "INTERLOCK_TOKEN"
RETRY_BACKOFF_SECONDS = 0.1
RETRY_BACKOFF_MAX_SECONDS = 1.0
OUTCOMES = ("SUCCEEDED", "FAILED", "TIMED_OUT")
"""Work items whose agent the client remembers until they are reported."""

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


def _enum_values(enum: Any, prefix: str, values: Iterable[str | int], what: str) -> list[int]:
    """Names (``"RUNNING"`` or ``"PLAN_STATE_RUNNING"``, any case) or values of an enum."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
            continue
        name = str(value).strip().upper().replace("-", "_").removeprefix(f"{prefix}_")
        try:
            out.append(int(enum.Value(f"{prefix}_{name}")))
        except ValueError:
            raise ValueError(f"unknown {what} {value!r}") from None
    return out


# Plan documents -------------------------------------------------------------------

PHASE21_KEYS = ("plan_id", "agent_assignments", "execution_order", "confidence_scores")
SPEC_KEYS = ("plan_id", "labels", "steps")
STEP_KEYS = ("step_id", "tool", "agent_id", "arguments", "confidence", "depends_on")
MAX_NESTING = 100
"""How deeply arguments may nest: protobuf refuses to decode deeper messages."""


class PlanDocumentError(ValueError):
    """A plan document that no ``SubmitPlanRequest`` can express, so nothing was sent.

    Only what the request cannot carry is checked here (a wrong JSON type, an
    unknown key, a spec step without a confidence); the server validates the
    rest (tools, agents, ids, ranges, dependencies) and answers
    ``INVALID_ARGUMENT``.

    Attributes:
        field_violations: ``(field, description)`` for every problem, with the
            field paths the server uses (``spec.steps[1].confidence``).
    """

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.field_violations = [(str(f), str(d)) for f, d in violations]
        listed = "; ".join(f"{f}: {d}" for f, d in self.field_violations)
        super().__init__(f"the plan cannot be sent: {listed}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field_violations,))


class _Reader:
    """Reads a plan document into proto values, noting what cannot be carried."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def note(self, path: str, description: str) -> None:
        self.problems.append((path, description))

    def unknown_keys(self, doc: Mapping[Any, Any], allowed: tuple[str, ...], base: str) -> None:
        for key in doc:
            if key not in allowed:
                self.note(member(base, key), f"unknown field; expected {', '.join(allowed)}")

    def text(self, value: object, path: str) -> str:
        """A string field; null or absent is empty (the server reports what it requires)."""
        if value is None:
            return ""
        if not isinstance(value, str):
            self.note(path, f"must be a string, not {json_type(value)}")
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.note(path, "is not valid Unicode text (a lone surrogate)")
            return ""
        return value

    def texts(self, value: object, path: str, what: str = "an array") -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.note(path, f"must be {what}, not {json_type(value)}")
            return []
        return [self.text(v, f"{path}[{j}]") for j, v in enumerate(value)]

    def mapping(self, value: object, path: str, what: str = "an object") -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.note(path, f"must be {what}, not {json_type(value)}")
            return {}
        return value

    def number(self, value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.note(path, f"must be a number, not {json_type(value)}")
            return None
        try:
            return float(value)
        except OverflowError:
            self.note(path, f"is too large for a double: {value}")
            return None

    def json_value(self, value: object, path: str, depth: int = 0) -> None:
        """Note every part of an arguments object that a protobuf Struct cannot hold.
        (NaN and infinities fit; the server refuses them.)"""
        if depth > MAX_NESTING:
            self.note(path, f"nests deeper than {MAX_NESTING} levels")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str):
                    self.text(key, member(path, key))
                    self.json_value(item, member(path, key), depth + 1)
                else:
                    self.note(member(path, key), "keys must be strings")
        elif isinstance(value, list | tuple):
            for j, item in enumerate(value):
                self.json_value(item, f"{path}[{j}]", depth + 1)
        elif isinstance(value, str):
            self.text(value, path)
        elif isinstance(value, int) and not isinstance(value, bool):
            self.number(value, path)  # notes an integer too large for a double
        elif value is not None and not isinstance(value, bool | float):
            self.note(path, f"is not a JSON value ({json_type(value)})")

    def phase21(self, doc: Mapping[Any, Any]) -> plans_pb2.Phase21Plan:
        base = "phase21"
        self.unknown_keys(doc, PHASE21_KEYS, base)
        plan = plans_pb2.Phase21Plan(plan_id=self.text(doc.get("plan_id"), f"{base}.plan_id"))
        path = f"{base}.agent_assignments"
        for agent, tools in self.mapping(doc.get("agent_assignments"), path).items():
            agent_path = member(path, agent)
            if not isinstance(agent, str):
                self.note(agent_path, "agent ids must be strings")
                continue
            names = self.texts(tools, agent_path, "an array of tool names")
            plan.agent_assignments[self.text(agent, agent_path)].tools.extend(names)
        order = doc.get("execution_order")
        plan.execution_order.extend(self.texts(order, f"{base}.execution_order"))
        path = f"{base}.confidence_scores"
        for tool, score in self.mapping(doc.get("confidence_scores"), path).items():
            score_path = member(path, tool)
            if not isinstance(tool, str):
                self.note(score_path, "tool names must be strings")
                continue
            value = self.number(score, score_path)
            if value is not None:
                plan.confidence_scores[self.text(tool, score_path)] = value
        return plan

    def spec(self, doc: Mapping[Any, Any]) -> plans_pb2.PlanSpec:
        base = "spec"
        self.unknown_keys(doc, SPEC_KEYS, base)
        plan = plans_pb2.PlanSpec(plan_id=self.text(doc.get("plan_id"), f"{base}.plan_id"))
        labels = self.mapping(doc.get("labels"), f"{base}.labels", "an object of strings")
        for key, value in labels.items():
            label_path = member(f"{base}.labels", key)
            if not isinstance(key, str):
                self.note(label_path, "label names must be strings")
                continue
            plan.labels[self.text(key, label_path)] = self.text(value, label_path)
        steps = doc.get("steps")
        if steps is not None and not isinstance(steps, list | tuple):
            self.note(f"{base}.steps", f"must be an array, not {json_type(steps)}")
            steps = None
        for i, raw in enumerate(steps or ()):
            step_path = f"{base}.steps[{i}]"
            if not isinstance(raw, Mapping):
                self.note(step_path, f"must be an object, not {json_type(raw)}")
                continue
            plan.steps.append(self.step(raw, step_path))
        return plan

    def step(self, raw: Mapping[Any, Any], base: str) -> plans_pb2.StepSpec:
        self.unknown_keys(raw, STEP_KEYS, base)
        step = plans_pb2.StepSpec(
            step_id=self.text(raw.get("step_id"), f"{base}.step_id"),
            tool=self.text(raw.get("tool"), f"{base}.tool"),
            agent_id=self.text(raw.get("agent_id"), f"{base}.agent_id"),
            depends_on=self.texts(raw.get("depends_on"), f"{base}.depends_on"),
        )
        if raw.get("confidence") is None:
            # StepSpec.confidence has no presence: a missing one would arrive as 0.
            self.note(f"{base}.confidence", "is required")
        else:
            step.confidence = self.number(raw["confidence"], f"{base}.confidence") or 0.0
        arguments = raw.get("arguments")
        if arguments is not None:  # absent (not {}) means "no arguments": no schema check
            if not isinstance(arguments, Mapping):
                self.note(f"{base}.arguments", f"must be an object, not {json_type(arguments)}")
            else:
                before = len(self.problems)
                self.json_value(arguments, f"{base}.arguments")
                step.arguments.SetInParent()  # present even when empty
                if len(self.problems) == before:
                    step.arguments.update(dict(arguments))
        return step


def plan_request(plan: Mapping[str, Any]) -> control_plane_pb2.SubmitPlanRequest:
    """The ``SubmitPlanRequest`` of a plan JSON document, in either format.

    A document with ``"steps"`` is a spec plan (``plan_id``, ``labels``, ``steps``:
    ``step_id``, ``tool``, ``agent_id``, ``arguments``, ``confidence``,
    ``depends_on``); one with ``"agent_assignments"`` or ``"execution_order"`` a
    Phase-21 plan (``plan_id``, ``agent_assignments`` {agent: [tools]},
    ``execution_order``, ``confidence_scores``), as the server's JSON reader
    tells them apart. ``null`` counts as absent.

    Raises:
        TypeError: ``plan`` is not a mapping.
        PlanDocumentError: (a ValueError) the document is neither format, or holds
            something the request cannot carry; every such problem is listed.
    """
    if not isinstance(plan, Mapping):
        raise TypeError(f"a plan must be a mapping (a JSON object), not {type(plan).__name__}")
    reader = _Reader()
    if "steps" in plan:
        request = control_plane_pb2.SubmitPlanRequest(spec=reader.spec(plan))
    elif "agent_assignments" in plan or "execution_order" in plan:
        request = control_plane_pb2.SubmitPlanRequest(phase21=reader.phase21(plan))
    else:
        raise PlanDocumentError(
            [
                (
                    "plan",
                    "is neither format: expected 'steps' (a spec plan) or "
                    "'agent_assignments' and 'execution_order' (a Phase-21 plan)",
                )
            ]
        )
    if reader.problems:
        raise PlanDocumentError(reader.problems)
    return request


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials: trust ``ca_file`` (the system's roots when None);
    present ``cert_file``/``key_file`` for mutual TLS. Files are PEM."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together")

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca_file),
        private_key=read(key_file),
        certificate_chain=read(cert_file),
    )


def credentials_from_files(
    token_file: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> tuple[str | None, grpc.ChannelCredentials | None]:
    """(token, credentials) as the example programs and the CLI take them: the
    token from ``token_file``, else ``$INTERLOCK_TOKEN``; TLS credentials when a CA
    or a client certificate is given (see :func:`tls_credentials`). Reads files:
    call it before the event loop, or in a thread. Raises OSError when a file
    cannot be read, ValueError when only one of cert_file/key_file is given."""
    token = Path(token_file).read_text().strip() if token_file else None
    token = token or os.environ.get(TOKEN_ENV) or None
    credentials = None
    if ca_file or cert_file or key_file:
        credentials = tls_credentials(ca_file, cert_file, key_file)
    return token, credentials


def _with_timeout(method: Callable[..., Awaitable[_Response]], seconds: float) -> Any:
    """The stub method with its deadline stretched to ``seconds`` (for long waits)."""

    def call(request: Any, *, timeout: float, metadata: Any) -> Awaitable[_Response]:
        return method(request, timeout=max(timeout, seconds), metadata=metadata)

    return call


class InterlockClient:
    """An asyncio client of one Interlock server, or of several replicas.

    Use it as ``async with InterlockClient("127.0.0.1:50051") as client: ...``, or
    call :meth:`close` when done. The channel is opened on first use, on the
    running event loop; a client belongs to that loop.

    Replicas of one Interlock (sharing a PostgreSQL database) are reached with a
    list of their addresses, ``InterlockClient(["10.0.0.1:50051", "10.0.0.2:50051"])``
    or ``"10.0.0.1:50051,10.0.0.2:50051"``: the calls spread over them with gRPC's
    ``round_robin`` policy (see :mod:`interlock_client.targets`).

    Args:
        target: the server's ``host:port``, any gRPC target (``dns:///name:port``),
            or a list of replicas' ``IP:PORT`` (a sequence or comma-separated).
        timeout: the deadline of each call, in seconds.
        retries: how many times an idempotent read is retried on ``UNAVAILABLE``.
        token: sent as ``authorization: Bearer <token>`` metadata when given.
        credentials: channel credentials for TLS (see :func:`tls_credentials`); an
            insecure channel when omitted.
        options: extra gRPC channel options.
        dev_principal: in the server's insecure development mode only, the name
            to act as (sent as ``x-interlock-dev-principal``); ignored by a
            server that authenticates.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        dev_principal: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        resolved = channel_target(target)
        self.target = resolved.display
        """The server's address, or the replicas' addresses joined with commas."""
        self._uri = resolved.uri
        self.timeout = float(timeout)
        self.retries = int(retries)
        metadata = []
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        if dev_principal:
            metadata.append((DEV_PRINCIPAL_HEADER, dev_principal))
        self._metadata: tuple[tuple[str, str], ...] | None = tuple(metadata) or None
        self._credentials = credentials
        given = list(options or [])
        named = {name for name, _ in given}  # the caller's options win over the target's
        self._options = [o for o in resolved.options if o[0] not in named] + given
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
            channel = grpc.aio.secure_channel(self._uri, self._credentials, self._options)
        else:
            channel = grpc.aio.insecure_channel(self._uri, self._options)
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
        approval_id: str = "",
    ) -> types_pb2.Decision:
        """Ask whether, and in which mode, ``agent_id`` may call ``tool``; never retried.

        A held call comes back PENDING_APPROVAL with ``.approval_id``; once it is
        approved (:meth:`await_approval`), ask again with the same arguments and
        ``approval_id=`` to run it LIVE. An approval is used up by that call.

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
            approval_id=approval_id,
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
        values = _enum_values(observe_pb2.EventKind, "EVENT_KIND", kinds, "event kind")
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

    # Plans -------------------------------------------------------------------

    async def submit_plan(self, plan: Mapping[str, Any]) -> plans_pb2.Plan:
        """Submit a plan JSON document (either format, see :func:`plan_request`); never retried.

        Returns the accepted ``Plan``: its ``.state`` (``plans_pb2.PLAN_STATE_*``), its
        ``.steps`` in the order they will run, and the ``.conflicts`` found and how
        each was resolved. The server validates the plan and refuses a bad one
        with INVALID_ARGUMENT (reason ``INVALID_PLAN``) listing every problem in
        ``field_violations``; a plan id already used gives ALREADY_EXISTS.
        Raises ``TypeError`` or :class:`PlanDocumentError` (a ``ValueError``),
        without sending anything, for a document the request cannot carry.
        """
        request = plan_request(plan)
        response: control_plane_pb2.SubmitPlanResponse = await self._call(
            self.control_plane.SubmitPlan, request, idempotent=False
        )
        return response.plan

    async def get_plan(self, plan_id: str) -> plans_pb2.Plan:
        """A plan, its steps (state, decision, result) and its conflicts; NOT_FOUND if unknown."""
        response: control_plane_pb2.GetPlanResponse = await self._call(
            self.control_plane.GetPlan,
            control_plane_pb2.GetPlanRequest(plan_id=plan_id),
            idempotent=True,
        )
        return response.plan

    async def list_plans(
        self, states: Iterable[str | int] = (), page_size: int = 20, page_token: str = ""
    ) -> control_plane_pb2.ListPlansResponse:
        """One page of plans, by plan id: ``.plans`` and ``.next_page_token`` (empty on
        the last page; pass it as ``page_token`` for the next one).

        ``states`` are names (``"RUNNING"`` or ``"PLAN_STATE_RUNNING"``, any case) or
        ``PlanState`` values; empty means every state. The server allows at most 100
        plans a page.
        """
        values = _enum_values(plans_pb2.PlanState, "PLAN_STATE", states, "plan state")
        request = control_plane_pb2.ListPlansRequest(
            states=values,  # type: ignore[arg-type]
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call(self.control_plane.ListPlans, request, idempotent=True)

    async def cancel_plan(self, plan_id: str, reason: str = "") -> plans_pb2.Plan:
        """Cancel a plan that has not finished; never retried. Returns the plan, normally
        ``CANCELLED`` already (the server waits a few seconds for the plan to stop).

        A finished plan gives FAILED_PRECONDITION (reason ``PLAN_FINISHED``).
        """
        response: control_plane_pb2.CancelPlanResponse = await self._call(
            self.control_plane.CancelPlan,
            control_plane_pb2.CancelPlanRequest(plan_id=plan_id, reason=reason),
            idempotent=False,
        )
        return response.plan

    # Agent workers -------------------------------------------------------------

    async def pull_work(
        self,
        agent_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
    ) -> AsyncGenerator[plans_pb2.WorkItem, None]:
        """The work stream of ``agent_id``'s worker: each ``WorkItem`` as the server hands it out.

        Run the item's ``.tool`` with its ``.arguments`` in its ``.mode`` (MOCK and
        DRY_RUN: no side effects; LIVE: for real; ``.compensation``: it undoes an
        earlier step), before its ``.deadline``, then report it with
        :meth:`report_work`. Work for an agent without a worker waits on the server.

        Never retried, and there is no deadline unless ``timeout`` is given: the
        stream runs until the caller stops iterating (close the iterator, e.g. with
        ``contextlib.aclosing``), the server ends it (it does when it stops: the
        iteration just ends) or the connection fails (``InterlockError``, usually
        ``UNAVAILABLE``). The caller reconnects by calling ``pull_work`` again,
        with a backoff; see ``clients/python/examples/agent_worker.py``. Items the
        worker held unreported when its stream ended are not lost silently: the
        server offers a MOCK or DRY_RUN item again, and marks a LIVE one
        AMBIGUOUS (a LIVE call is never repeated), so keep the stream open until
        the items in hand are reported.
        """
        request = control_plane_pb2.PullWorkRequest(agent_id=agent_id)
        call = self.control_plane.PullWork(request, timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response.item
        except grpc.aio.AioRpcError as exc:
            raise InterlockError.from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def report_work(
        self,
        item: plans_pb2.WorkItem,
        outcome: str | int,
        output: Mapping[str, Any] | None = None,
        error_message: str = "",
        duration_seconds: float = 0.0,
        *,
        agent_id: str = "",
    ) -> types_pb2.ToolResult:
        """Report how a work item from :meth:`pull_work` ended; never retried.

        Sends the item's ``work_id``, ``decision_id`` and ``agent_id`` (pass
        ``agent_id`` to report as another agent, which the server refuses unless
        it is the item's). ``outcome`` is ``"SUCCEEDED"``,
        ``"FAILED"`` or ``"TIMED_OUT"`` (any case). Returns the recorded
        ``ToolResult``. An item the server no longer waits for (cancelled, timed
        out, or lost with its stream) gives NOT_FOUND; another agent's item
        PERMISSION_DENIED.
        """
        agent = agent_id or item.agent_id
        if not agent:
            raise ValueError(f"work item {item.work_id!r} names no agent: pass agent_id")
        result = await self.report_tool_result(
            item.decision_id,
            agent,
            outcome,
            output,
            error_message,
            duration_seconds,
            work_id=item.work_id,
        )
        return result

    # Approvals ------------------------------------------------------------------

    async def list_approvals(
        self,
        states: Iterable[str | int] = (),
        plan_id: str = "",
        agent_id: str = "",
        tool: str = "",
    ) -> list[observe_pb2.Approval]:
        """Approvals in ``states`` (names like ``"PENDING"`` or values; PENDING when
        empty), oldest first, optionally of one plan, agent or tool."""
        values = _enum_values(observe_pb2.ApprovalState, "APPROVAL_STATE", states, "approval state")
        request = control_plane_pb2.ListApprovalsRequest(
            states=values,  # type: ignore[arg-type]
            plan_id=plan_id,
            agent_id=agent_id,
            tool=tool,
        )
        response: control_plane_pb2.ListApprovalsResponse = await self._call(
            self.control_plane.ListApprovals, request, idempotent=True
        )
        return list(response.approvals)

    async def resolve_approval(
        self, approval_id: str, approve: bool, reason: str = ""
    ) -> observe_pb2.Approval:
        """Approve or deny (a denial needs a reason) as the authenticated principal;
        never retried. Returns the approval after it (PENDING while a quorum is short)."""
        request = control_plane_pb2.ResolveApprovalRequest(
            approval_id=approval_id,
            resolution=observe_pb2.APPROVAL_RESOLUTION_APPROVE
            if approve
            else observe_pb2.APPROVAL_RESOLUTION_DENY,
            reason=reason,
        )
        response: control_plane_pb2.ResolveApprovalResponse = await self._call(
            self.control_plane.ResolveApproval, request, idempotent=False
        )
        return response.approval

    async def await_approval(self, approval_id: str, wait: float = 30.0) -> observe_pb2.Approval:
        """Wait up to ``wait`` seconds (at most 300) for an approval to leave PENDING;
        returns it, still PENDING if nobody answered in time."""
        request = control_plane_pb2.AwaitApprovalRequest(approval_id=approval_id)
        request.timeout.FromNanoseconds(int(wait * 1e9))
        response: control_plane_pb2.AwaitApprovalResponse = await self._call(
            _with_timeout(self.control_plane.AwaitApproval, wait + self.timeout),
            request,
            idempotent=True,
        )
        return response.approval

    # Health ---------------------------------------------------------------------

    async def get_health(self) -> control_plane_pb2.GetHealthResponse:
        """The server's health: status, score, engine, policy revision, decision counts."""
        return await self._call(
            self.control_plane.GetHealth,
            control_plane_pb2.GetHealthRequest(),
            idempotent=True,
        )

    # Learning signals ---------------------------------------------------------------

    async def list_signals(
        self, kinds: Iterable[str | int] = (), tool: str = "", limit: int = 0
    ) -> control_plane_pb2.ListSignalsResponse:
        """Learning signals, newest first (``.signals``), each with its evidence.

        ``kinds`` are names (``"TOOL_RELIABILITY"`` or ``"SIGNAL_KIND_TOOL_RELIABILITY"``,
        any case) or ``SignalKind`` values; empty means every kind. ``tool`` keeps one
        tool's signals. ``limit`` 0 means the server's default (100); at most 1000.
        """
        values = _enum_values(observe_pb2.SignalKind, "SIGNAL_KIND", kinds, "signal kind")
        request = control_plane_pb2.ListSignalsRequest(
            kinds=values,  # type: ignore[arg-type]
            tool=tool,
            limit=limit,
        )
        return await self._call(self.control_plane.ListSignals, request, idempotent=True)

    # PolicyService -----------------------------------------------------------

    async def policy_status(self) -> policy_service_pb2.GetPolicyStatusResponse:
        """The active policy set: revision, engine, modules, reload counts, last refusal."""
        return await self._call(
            self.policy_service.GetPolicyStatus,
            policy_service_pb2.GetPolicyStatusRequest(),
            idempotent=True,
        )

    async def reload_policies(
        self, *, accept_widening: bool = False, reason: str = ""
    ) -> policy_service_pb2.ReloadPoliciesResponse:
        """Re-read the server's policy folder and swap it in; never retried.

        A broken set is refused with FAILED_PRECONDITION (reason ``POLICY_INVALID``,
        or ``POLICY_TESTS_FAILED`` when its own tests fail) and the active one
        keeps serving. A set that widens what runs LIVE beyond the server's
        budget is refused (``POLICY_WIDENS_LIVE``) unless ``accept_widening``
        is given with a ``reason``.
        """
        return await self._call(
            self.policy_service.ReloadPolicies,
            policy_service_pb2.ReloadPoliciesRequest(
                accept_widening=accept_widening, reason=reason
            ),
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

    async def replay_policy(
        self,
        policy_files: Mapping[str, str],
        *,
        since: float = 0.0,
        until: float = 0.0,
        agent_id: str = "",
        tool: str = "",
        limit: int = 0,
        engine: str = "",
        samples: int = 0,
        skip_unrecorded: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
    ) -> AsyncGenerator[policy_service_pb2.ReplayPolicyResponse, None]:
        """Replay recorded decisions under a candidate set (its files, as
        ``evaluate_policy`` takes them): yields ``ReplayPolicyResponse``
        messages, progress after each page, the report last. ``since`` and
        ``until`` are Unix times (0: no bound). No deadline by default."""
        request = policy_service_pb2.ReplayPolicyRequest(
            agent_id=agent_id,
            tool=tool,
            limit=limit,
            engine=engine,
            samples=samples,
            skip_unrecorded=skip_unrecorded,
        )
        request.policy_set.files.update(dict(policy_files))
        if since:
            request.since.FromNanoseconds(int(since * 1e9))
        if until:
            request.until.FromNanoseconds(int(until * 1e9))
        call = self.policy_service.ReplayPolicy(request, timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise InterlockError.from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def start_shadow(
        self, policy_files: Mapping[str, str], *, sample: float = 0.0
    ) -> policy_service_pb2.StartShadowResponse:
        """Load a candidate set (its files, tests included) beside the active one;
        ``sample`` of the live decisions (0: the server's default, 0.1) are also
        evaluated by it. Refused (FAILED_PRECONDITION) when the candidate does not
        check, its tests fail, or a shadow already runs (SHADOW_RUNNING)."""
        request = policy_service_pb2.StartShadowRequest(sample=sample)
        request.policy_set.files.update(dict(policy_files))
        return await self._call(self.policy_service.StartShadow, request, idempotent=False)

    async def shadow_status(self) -> policy_service_pb2.GetShadowStatusResponse:
        """The running (or last) shadow and its transition matrix so far."""
        return await self._call(
            self.policy_service.GetShadowStatus,
            policy_service_pb2.GetShadowStatusRequest(),
            idempotent=True,
        )

    async def promote_shadow(
        self, *, accept_widening: bool = False, reason: str = ""
    ) -> policy_service_pb2.PromoteShadowResponse:
        """Make the running shadow's candidate active (through the reload gate)."""
        return await self._call(
            self.policy_service.PromoteShadow,
            policy_service_pb2.PromoteShadowRequest(accept_widening=accept_widening, reason=reason),
            idempotent=False,
        )

    async def stop_shadow(self) -> policy_service_pb2.StopShadowResponse:
        """Drop the running shadow."""
        return await self._call(
            self.policy_service.StopShadow, policy_service_pb2.StopShadowRequest(), idempotent=False
        )

    # TrustService ---------------------------------------------------------------

    def _trust(self) -> trust_pb2_grpc.TrustServiceStub:
        """The TrustService stub on this client's channel."""
        self._open()
        assert self._channel is not None
        return trust_pb2_grpc.TrustServiceStub(self._channel)

    async def get_trust(self, agent_id: str = "", tool: str = "") -> list[trust_pb2.PairTrust]:
        """The trust of (agent, tool) pairs: one pair when both are given, else
        every pair with an outcome so far that matches (docs/trust.md)."""
        response: trust_pb2.GetTrustResponse = await self._call(
            self._trust().GetTrust,
            trust_pb2.GetTrustRequest(agent_id=agent_id, tool=tool),
            idempotent=True,
        )
        return list(response.pairs)

    async def reset_trust(self, agent_id: str, tool: str, reason: str) -> trust_pb2.PairTrust:
        """Promote a demoted pair back to TRUSTED as the authenticated principal
        (approvers and admins; the reason is required and audited). Never retried."""
        response: trust_pb2.ResetTrustResponse = await self._call(
            self._trust().ResetTrust,
            trust_pb2.ResetTrustRequest(agent_id=agent_id, tool=tool, reason=reason),
            idempotent=False,
        )
        return response.trust

    # GrantService ---------------------------------------------------------------

    @property
    def grant_service(self) -> grants_pb2_grpc.GrantServiceStub:
        """The raw GrantService stub."""
        self._open()
        assert self._channel is not None
        return grants_pb2_grpc.GrantServiceStub(self._channel)

    async def create_grant(
        self,
        agent_id: str,
        tool: str,
        *,
        expires_at: float,
        max_uses: int = 0,
        arguments_equal: Mapping[str, Any] | None = None,
        argument_patterns: Mapping[str, str] | None = None,
        arguments_schema: Mapping[str, Any] | None = None,
        plan_id: str = "",
        reason: str = "",
        approval_id: str = "",
    ) -> grants_pb2.Grant:
        """Let ``agent_id`` call ``tool`` without a new approval, while its arguments
        satisfy the constraint (exact values, whole-match patterns, a JSON Schema
        subset), until ``expires_at`` (Unix seconds) and up to ``max_uses`` times
        (0: no limit), as the authenticated principal (docs/grants.md). Never retried."""
        request = grants_pb2.CreateGrantRequest(
            agent_id=agent_id,
            tool=tool,
            plan_id=plan_id,
            max_uses=max_uses,
            reason=reason,
            approval_id=approval_id,
        )
        request.expires_at.FromNanoseconds(int(expires_at * 1e9))
        if arguments_equal:
            request.arguments_equal.update(dict(arguments_equal))
        if argument_patterns:
            request.argument_patterns.update(dict(argument_patterns))
        if arguments_schema:
            request.arguments_schema.update(dict(arguments_schema))
        response: grants_pb2.CreateGrantResponse = await self._call(
            self.grant_service.CreateGrant, request, idempotent=False
        )
        return response.grant

    async def list_grants(
        self, agent_id: str = "", tool: str = "", states: Iterable[str | int] = ()
    ) -> list[grants_pb2.Grant]:
        """Grants, newest first, optionally of one agent or tool and in ``states``
        (names like ``"ACTIVE"`` or values; every state when empty)."""
        values = _enum_values(grants_pb2.GrantState, "GRANT_STATE", states, "grant state")
        request = grants_pb2.ListGrantsRequest(
            agent_id=agent_id,
            tool=tool,
            states=values,  # type: ignore[arg-type]
        )
        response: grants_pb2.ListGrantsResponse = await self._call(
            self.grant_service.ListGrants, request, idempotent=True
        )
        return list(response.grants)

    async def revoke_grant(self, grant_id: str, reason: str = "") -> grants_pb2.Grant:
        """Revoke a grant at once: it covers no call from now on. Never retried."""
        response: grants_pb2.RevokeGrantResponse = await self._call(
            self.grant_service.RevokeGrant,
            grants_pb2.RevokeGrantRequest(grant_id=grant_id, reason=reason),
            idempotent=False,
        )
        return response.grant


__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "InterlockClient",
    "PlanDocumentError",
    "outcome_value",
    "plan_request",
    "to_struct",
]
