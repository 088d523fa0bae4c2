"""What one request may cost, checked before any handler work.

Two bounds, both applied by the interceptor before authentication or the
handler runs:

1. **Size per RPC.** Each method accepts at most its own number of bytes,
   checked on the serialized request *before* it is parsed. A request without
   a free-form payload (ListSignals, WatchEvents, ListPlans, ...) gets
   :data:`SMALL_REQUEST_BYTES` plus room for its free-text fields;
   RequestToolCall and ReportToolResult get room for arguments or an output of
   ``max_argument_bytes`` as a protobuf Struct (up to ~8x its canonical JSON);
   SubmitPlan and EvaluatePolicy carry plans and policy sets and keep
   ``max_message_bytes``. Past the limit: RESOURCE_EXHAUSTED
   (``REQUEST_TOO_LARGE``), the code gRPC itself gives a message over
   ``max_message_bytes``.
2. **Count per repeated field.** Every repeated field and map reachable from a
   request message has a maximum count: an enum filter holds at most as many
   values as the enum has (more can only repeat them), plan fields at most
   ``max_plan_steps``, policy files at most :data:`MAX_POLICY_FILES`. Counting
   is ``len()`` of the parsed field, so it costs nothing however long the
   field is, and a nested field is only visited after its parent passed.
   Past a limit: INVALID_ARGUMENT naming the field and the limit. Fields of
   ``google.protobuf`` messages (a Struct's lists) are bounded by the size
   limit and checked by the handlers that convert them.

Building the limits walks every request type of the served services and
refuses (ValueError) a repeated field nobody gave a limit: a new field must
be given one before the server starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from interlock.config import ServerConfig
from interlock.errors import FieldViolation, InvalidArgument, ResourceExhausted

SMALL_REQUEST_BYTES = 64 * 1024
"""The size limit of a request with no free-form payload, before text fields."""

STRUCT_PER_JSON_BYTE = 8
"""A Struct's encoding is at most about this many bytes per byte of its JSON."""

MAX_POLICY_FILES = 256
"""Most files in an inline policy set (EvaluatePolicy)."""

MAX_PLAN_LABELS = 64
"""Most labels on one plan."""

_PAYLOAD_METHODS = ("RequestToolCall", "ReportToolResult")
_LARGE_METHODS = ("SubmitPlan", "EvaluatePolicy", "ReplayPolicy")


def _plain(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class _Check:
    """One field of a message that is repeated or leads to a repeated field."""

    name: str
    limit: int | None  # None: not repeated (a message field to descend into)
    sub: str  # the full name of the element (or map value) type to descend into, or ""
    is_map: bool


class RequestLimits:
    """The per-method size limits and the per-field count limits of requests."""

    def __init__(
        self,
        config: ServerConfig,
        request_types: Iterable[Descriptor],
    ) -> None:
        text = 4 * config.max_string_length  # UTF-8 bytes of one free-text field
        small = min(config.max_message_bytes, SMALL_REQUEST_BYTES + 2 * text)
        payload = min(
            config.max_message_bytes,
            STRUCT_PER_JSON_BYTE * config.max_argument_bytes + SMALL_REQUEST_BYTES + text,
        )
        self.small_bytes = small
        self.sizes: dict[str, int] = {m: payload for m in _PAYLOAD_METHODS}
        self.sizes.update({m: config.max_message_bytes for m in _LARGE_METHODS})
        steps = config.max_plan_steps
        self.counts: dict[str, int] = {
            "interlock.v1.Phase21Plan.agent_assignments": steps,
            "interlock.v1.Phase21Plan.ToolList.tools": steps,
            "interlock.v1.Phase21Plan.execution_order": steps,
            "interlock.v1.Phase21Plan.confidence_scores": steps,
            "interlock.v1.PlanSpec.steps": steps,
            "interlock.v1.PlanSpec.labels": MAX_PLAN_LABELS,
            "interlock.v1.StepSpec.depends_on": steps,
            "interlock.v1.PolicySet.files": MAX_POLICY_FILES,
        }
        self._plans: dict[str, tuple[_Check, ...]] = {}
        for descriptor in request_types:
            self._plan(descriptor)

    def max_bytes(self, method: str) -> int:
        """The largest serialized request ``method`` (a full gRPC method name) accepts."""
        return self.sizes.get(_plain(method), self.small_bytes)

    def check_size(self, method: str, size: int) -> None:
        limit = self.max_bytes(method)
        if size > limit:
            raise ResourceExhausted(
                f"the request is {size} bytes; {_plain(method)} accepts at most {limit}",
                reason="REQUEST_TOO_LARGE",
                metadata={"limit_bytes": str(limit)},
            )

    def limit_of(self, field: FieldDescriptor) -> int:
        """The most entries a repeated field may hold."""
        limit = self.counts.get(field.full_name)
        if limit is not None:
            return limit
        if field.enum_type is not None:
            return sum(1 for v in field.enum_type.values if v.number != 0)
        raise ValueError(f"request field {field.full_name} is repeated but has no count limit")

    def _plan(self, descriptor: Descriptor) -> tuple[_Check, ...]:
        plan = self._plans.get(descriptor.full_name)
        if plan is not None:
            return plan
        self._plans[descriptor.full_name] = ()  # recursion guard
        checks: list[_Check] = []
        for field in descriptor.fields:
            target = field.message_type
            is_map = target is not None and target.GetOptions().map_entry
            if target is not None and is_map:
                target = target.fields_by_name["value"].message_type
            if target is not None and target.full_name.startswith("google.protobuf."):
                target = None  # Struct and friends: bounded by the size limit
            descend = target is not None and bool(self._plan(target))
            if field.is_repeated:
                sub = target.full_name if descend and target is not None else ""
                checks.append(_Check(field.name, self.limit_of(field), sub, is_map))
            elif descend and target is not None:
                checks.append(_Check(field.name, None, target.full_name, False))
        plan = tuple(checks)
        self._plans[descriptor.full_name] = plan
        return plan

    def check_counts(self, request: Any) -> None:
        """Refuse a request whose repeated fields hold more than their limits."""
        violations: list[FieldViolation] = []
        self._walk(request, self._plans.get(request.DESCRIPTOR.full_name, ()), "", violations)
        if violations:
            raise InvalidArgument.of(violations, reason="TOO_MANY_VALUES")

    def _walk(
        self, message: Any, plan: tuple[_Check, ...], prefix: str, out: list[FieldViolation]
    ) -> None:
        for check in plan:
            path = f"{prefix}{check.name}"
            if check.limit is None:
                if message.HasField(check.name):
                    sub = getattr(message, check.name)
                    self._walk(sub, self._plans[check.sub], f"{path}.", out)
                continue
            values = getattr(message, check.name)
            if len(values) > check.limit:
                out.append(
                    FieldViolation(path, f"holds {len(values)} values; the limit is {check.limit}")
                )
                continue
            if not check.sub:
                continue
            sub_plan = self._plans[check.sub]
            if check.is_map:
                for key, value in values.items():
                    self._walk(value, sub_plan, f"{path}[{key!r}].", out)
            else:
                for i, value in enumerate(values):
                    self._walk(value, sub_plan, f"{path}[{i}].", out)


def request_types(services: Iterable[Any]) -> list[Descriptor]:
    """The request message types of every method of the given service descriptors."""
    return [m.input_type for s in services for m in s.methods]


__all__ = [
    "MAX_PLAN_LABELS",
    "MAX_POLICY_FILES",
    "SMALL_REQUEST_BYTES",
    "RequestLimits",
    "request_types",
]
