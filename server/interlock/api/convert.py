"""Conversions between protobuf messages and plain Python values."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from interlock.contracts import ToolContract
from interlock.decisions import ID_PATTERN, DecisionRecord, ResultRecord
from interlock.errors import InvalidArgument
from interlock.v1 import types_pb2

MAX_SAFE_INT = 2**53


def _value(v: struct_pb2.Value, path: str) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        n = v.number_value
        if not math.isfinite(n):
            raise InvalidArgument.field(path, "must be a finite number (not NaN or infinity)")
        # Struct numbers are doubles; give integral ones back as ints.
        return int(n) if n.is_integer() and abs(n) < MAX_SAFE_INT else n
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value, path)
    if kind == "list_value":
        return [_value(item, f"{path}[{i}]") for i, item in enumerate(v.list_value.values)]
    return None


def struct_to_dict(message: struct_pb2.Struct, path: str = "arguments") -> dict[str, Any]:
    """A Struct as plain JSON values; non-finite numbers are refused, naming the field."""
    return {key: _value(value, f"{path}.{key}") for key, value in message.fields.items()}


def dict_to_struct(value: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if value:
        out.update(value)
    return out


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def enum_value(enum: Any, prefix: str, name: str) -> Any:
    return int(enum.Value(f"{prefix}_{name}"))


def enum_name(enum: Any, prefix: str, value: int) -> str:
    """The value's name without its prefix, or "" for unknown values."""
    try:
        return str(enum.Name(value)).removeprefix(f"{prefix}_")
    except ValueError:
        return ""


def mode_pb(name: str) -> Any:
    return enum_value(types_pb2.ExecutionMode, "EXECUTION_MODE", name)


def verdict_pb(name: str) -> Any:
    return enum_value(types_pb2.Verdict, "VERDICT", name)


def contract_pb(t: ToolContract) -> types_pb2.ToolContract:
    return types_pb2.ToolContract(
        name=t.name,
        description=t.description,
        risk=enum_value(types_pb2.RiskLevel, "RISK_LEVEL", t.risk),
        reversible=t.reversible,
        compensating_tool=t.compensating_tool or "",
        required_permissions=list(t.required_permissions),
        max_concurrency=t.max_concurrency,
        rate_limit_per_minute=t.rate_limit_per_minute,
        timeout=duration(t.timeout_seconds),
        arguments_schema=dict_to_struct(dict(t.arguments_schema)),
    )


def decision_pb(r: DecisionRecord) -> types_pb2.Decision:
    return types_pb2.Decision(
        decision_id=r.decision_id,
        verdict=verdict_pb(r.verdict),
        mode=mode_pb(r.mode),
        reasons=r.reasons,
        policy_revision=r.policy_revision,
        engine=r.engine,
        tool=r.tool,
        agent_id=r.agent_id,
        confidence=r.confidence,
        needs_approval=r.needs_approval,
        input_hash=r.input_hash,
        decided_at=timestamp(r.decided_at),
        plan_id=r.plan_id,
        step_id=r.step_id,
        fail_closed=r.fail_closed,
        approval_id=r.approval_id,
    )


def result_pb(r: ResultRecord) -> types_pb2.ToolResult:
    return types_pb2.ToolResult(
        decision_id=r.decision_id,
        agent_id=r.agent_id,
        tool=r.tool,
        mode=mode_pb(r.mode),
        outcome=enum_value(types_pb2.ToolOutcome, "TOOL_OUTCOME", r.outcome),
        output=dict_to_struct(dict(r.output)),
        error_message=r.error_message,
        duration=duration(r.duration_seconds),
        reported_at=timestamp(r.reported_at),
    )


def require_id(name: str, value: str) -> None:
    """Refuse a missing id, or one outside the id pattern."""
    if not value:
        raise InvalidArgument.field(name, "is required")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument.field(
            name, "must be 1-128 characters of letters, digits and _ . : @ -"
        )


def check_text(name: str, value: str, limit: int) -> None:
    """Refuse a free-text field longer than ``limit`` (max_string_length)."""
    if len(value) > limit:
        raise InvalidArgument.field(name, f"is longer than {limit} characters")


MAX_DURATION_SECONDS = 315_576_000_000
"""google.protobuf.Duration's range: about 10,000 years."""


def check_duration(name: str, value: duration_pb2.Duration) -> None:
    """Refuse a negative duration or one outside the proto's range (it could not
    be turned back into a Duration when read)."""
    if not 0 <= value.seconds <= MAX_DURATION_SECONDS or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument.field(
            name, f"must be between 0 and {MAX_DURATION_SECONDS} seconds (google.protobuf.Duration)"
        )
