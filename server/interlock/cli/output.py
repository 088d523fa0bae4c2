"""How the CLI shows responses and errors to people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from interlock_client import InterlockError

from interlock.cli.common import SERVER_ENV
from interlock.v1 import observe_pb2, plans_pb2, types_pb2

# Output helpers ---------------------------------------------------------------


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(f"{prefix}_")
    except ValueError:
        return str(value)


def _verdict(value: int) -> str:
    return _enum(types_pb2.Verdict, value, "VERDICT")


def _mode(value: int) -> str:
    return _enum(types_pb2.ExecutionMode, value, "EXECUTION_MODE")


def _time(ts: timestamp_pb2.Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds(d: duration_pb2.Duration) -> str:
    return f"{d.ToNanoseconds() / 1e9:g}s"


def _number(value: float) -> str:
    return f"{value:g}"


def to_json(message: Message) -> str:
    """A message as indented JSON, proto field names, every field present."""
    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_json_line(message: Message) -> str:
    """A message as one line of JSON (for streams: one object per line)."""
    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(data, ensure_ascii=False)


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = []
    for row in (header, *rows):
        cells = [f"{c:<{w}}" for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def _reasons(reasons: Sequence[str]) -> str:
    if not reasons:
        return "reasons    (none)"
    return "reasons\n" + "\n".join(f"  - {r}" for r in reasons)


def format_decision(d: types_pb2.Decision) -> str:
    rows = [
        ("verdict", _verdict(d.verdict)),
        ("mode", _mode(d.mode)),
        ("decision", d.decision_id),
        ("tool", d.tool),
        ("agent", d.agent_id),
        ("confidence", _number(d.confidence)),
    ]
    if d.needs_approval:
        rows.append(("approval", f"needed{f' ({d.approval_id})' if d.approval_id else ''}"))
    if d.fail_closed:
        rows.append(("fail closed", "yes: the policy could not be evaluated"))
    if d.plan_id or d.step_id:
        rows.append(("plan", f"{d.plan_id or '-'} step {d.step_id or '-'}"))
    rows += [
        ("revision", d.policy_revision),
        ("engine", d.engine),
        ("decided", _time(d.decided_at)),
    ]
    return _pairs(rows) + "\n" + _reasons(d.reasons)


def format_tools(response: Any) -> str:
    rows = [
        [
            t.name,
            _enum(types_pb2.RiskLevel, t.risk, "RISK_LEVEL"),
            "yes" if t.reversible else "no",
            t.compensating_tool or "-",
            ",".join(t.required_permissions) or "-",
            _seconds(t.timeout),
            t.description,
        ]
        for t in response.tools
    ]
    header = ["NAME", "RISK", "REVERSIBLE", "UNDONE BY", "PERMISSIONS", "TIMEOUT", "DESCRIPTION"]
    footer = f"{len(rows)} tools; policy revision {response.policy_revision}"
    return (_table(header, rows) + "\n\n" if rows else "") + footer


def format_result(r: types_pb2.ToolResult) -> str:
    rows = [
        ("recorded", _enum(types_pb2.ToolOutcome, r.outcome, "TOOL_OUTCOME")),
        ("decision", r.decision_id),
        ("tool", r.tool),
        ("agent", r.agent_id),
        ("mode", _mode(r.mode)),
        ("duration", _seconds(r.duration)),
    ]
    if r.error_message:
        rows.append(("error", r.error_message))
    rows.append(("reported", _time(r.reported_at)))
    return _pairs(rows)


def format_policy_status(s: Any) -> str:
    rows = [
        ("revision", s.revision),
        ("engine", f"{s.engine} ({'available' if s.engine_available else 'UNAVAILABLE'})"),
        ("source", s.source),
        ("loaded", _time(s.loaded_at)),
        ("tools", str(s.tool_count)),
        ("reloads", f"{s.reloads} ({s.reload_failures} refused)"),
    ]
    if s.last_error:
        rows.append(("last error", f"{s.last_error} (at {_time(s.last_error_at)})"))
    modules = "\n".join(f"  - {m}" for m in s.modules)
    return _pairs(rows) + f"\nmodules ({len(s.modules)})" + (f"\n{modules}" if modules else "")


def format_reload(r: Any) -> str:
    if not r.changed:
        return f"unchanged: policy set {r.revision} keeps serving"
    gate = f"tests: {r.tests_passed} passed, {r.tests_skipped} skipped"
    if r.replay_digest:
        gate += (
            f"; replay: {r.replayed_decisions} decisions, {r.widening_live} widened to LIVE"
            f" (report sha256 {r.replay_digest})"
        )
    return f"reloaded: policy set {r.revision} is live (was {r.previous_revision})\n{gate}"


def format_evaluation(e: Any) -> str:
    rows = [
        ("verdict", _verdict(e.verdict)),
        ("mode", _mode(e.mode)),
        ("approval", "needed" if e.needs_approval else "not needed"),
        ("revision", e.revision),
        ("engine", e.engine),
    ]
    return _pairs(rows) + "\n" + _reasons(e.reasons)


def format_health(h: Any) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(h.decisions.items())) or "none"
    rows = [
        ("status", _enum(observe_pb2.HealthStatus, h.status, "HEALTH_STATUS")),
        ("score", _number(h.score)),
        ("engine", f"{h.engine} ({'available' if h.engine_available else 'UNAVAILABLE'})"),
        ("revision", h.policy_revision),
        ("version", h.version),
        ("started", _time(h.started_at)),
        ("decisions", counts),
    ]
    out = _pairs(rows)
    if h.components:
        out += "\ncomponents\n" + "\n".join(
            f"  - {c.name}: {_number(c.score)} (weight {_number(c.weight)}) {c.detail}".rstrip()
            for c in h.components
        )
    if h.anomalies:
        out += "\nanomalies\n" + "\n".join(
            f"  - {a.metric}: observed {_number(a.observed)}, expected {_number(a.expected)}"
            f" ({_number(a.deviation)} sd over {a.window or '-'})"
            for a in h.anomalies
        )
    return out


def _plan_state(value: int) -> str:
    return _enum(plans_pb2.PlanState, value, "PLAN_STATE")


def _step_state(value: int) -> str:
    return _enum(plans_pb2.StepState, value, "STEP_STATE")


def _conflict(c: plans_pb2.Conflict) -> str:
    kind = _enum(plans_pb2.ConflictType, c.type, "CONFLICT_TYPE")
    scope = ", ".join([*c.step_ids, *(f"plan {p}" for p in c.plan_ids)])
    return f"  - {kind} -> {c.resolution or '-'}: {c.description}" + (
        f" [{scope}]" if scope else ""
    )


def format_plan(p: plans_pb2.Plan) -> str:
    """The plan's fields, a table of its steps (in the order they run), its conflicts."""
    rows = [("plan", p.plan_id), ("state", _plan_state(p.state))]
    if p.message:
        rows.append(("message", p.message))
    if p.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(p.labels.items()))))
    rows += [("submitted", _time(p.submitted_at)), ("updated", _time(p.updated_at))]
    steps = [
        [
            s.step_id,
            s.agent_id,
            s.tool,
            _mode(s.decision.mode) if s.decision.mode else "-",
            _step_state(s.state),
            s.result.error_message or s.message,
        ]
        for s in p.steps
    ]
    table = _table(["STEP", "AGENT", "TOOL", "MODE", "STATE", "MESSAGE"], steps)
    out = _pairs(rows) + f"\nsteps ({len(steps)})\n" + _indent(table)
    out += f"\nconflicts ({len(p.conflicts)})"
    if p.conflicts:
        out += "\n" + "\n".join(_conflict(c) for c in p.conflicts)
    return out


def format_plans(response: Any, more: bool = False) -> str:
    """One line a plan: id, state, steps by state, submitted, message."""
    rows = []
    for p in response.plans:
        counts: dict[str, int] = {}
        for s in p.steps:
            state = _step_state(s.state)
            counts[state] = counts.get(state, 0) + 1
        steps = ", ".join(f"{n} {state}" for state, n in counts.items())
        rows.append(
            [p.plan_id, _plan_state(p.state), steps or "-", _time(p.submitted_at), p.message]
        )
    footer = f"{len(rows)} plan{'' if len(rows) == 1 else 's'}"
    if more:
        footer += " (more: raise --limit)"
    header = ["PLAN", "STATE", "STEPS", "SUBMITTED", "MESSAGE"]
    return (_table(header, rows) + "\n\n" if rows else "") + footer


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _event_time(ts: timestamp_pb2.Timestamp) -> str:
    when = ts.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def format_event(e: observe_pb2.Event) -> str:
    """One line: seq, time, kind, plan/step/agent, message."""
    scope = [
        f"{name}={value}"
        for name, value in (("plan", e.plan_id), ("step", e.step_id), ("agent", e.agent_id))
        if value
    ]
    kind = _enum(observe_pb2.EventKind, e.kind, "EVENT_KIND")
    return f"{e.seq:>6}  {_event_time(e.time)}  {kind:<16}  {' '.join(scope) or '-'}  {e.message}"


def format_signals(response: Any) -> str:
    """One line per signal, newest first: time, kind, tool, agent, value, evidence (JSON)."""
    rows = [
        [
            _event_time(s.created_at),
            _enum(observe_pb2.SignalKind, s.kind, "SIGNAL_KIND"),
            s.tool or "-",
            s.agent_id or "-",
            _number(s.value),
            json.dumps(MessageToDict(s.evidence), sort_keys=True),
        ]
        for s in response.signals
    ]
    if not rows:
        return "no signals"
    return _table(["CREATED", "KIND", "TOOL", "AGENT", "VALUE", "EVIDENCE"], rows)


def print_error(err: InterlockError, target: str) -> None:
    lines = [f"error: {err.code.name}: {err.message}"]
    lines += [f"  {field}: {description}" for field, description in err.field_violations]
    if err.reason and err.reason != err.code.name:
        lines.append(f"  reason: {err.reason}")
    if err.code == grpc.StatusCode.UNAVAILABLE:
        lines.append(f"  is the server running at {target}? (--server or ${SERVER_ENV})")
    print("\n".join(lines), file=sys.stderr)
