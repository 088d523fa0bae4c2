"""WatchEvents' wire form: event kinds as enum values, the request's filter, and Event messages.

The event stream itself (:mod:`interlock.events`) deals in plain
:class:`~interlock.journal.EventRecord` objects and kind names (``"DECISION"``);
this module maps them to and from protobuf at the API edge.
"""

from __future__ import annotations

from collections.abc import Iterable

from interlock.api.convert import dict_to_struct, timestamp
from interlock.decisions import check_id
from interlock.errors import FieldViolation, InvalidArgument
from interlock.events import EventFilter
from interlock.journal import EventRecord
from interlock.v1 import observe_pb2

_KIND_PREFIX = "EVENT_KIND_"


def kind_name(value: int) -> str:
    """``EVENT_KIND_DECISION`` -> ``"DECISION"``; ``""`` for UNSPECIFIED and unknown values."""
    if value == observe_pb2.EVENT_KIND_UNSPECIFIED:
        return ""
    try:
        return str(observe_pb2.EventKind.Name(value)).removeprefix(_KIND_PREFIX)
    except ValueError:
        return ""


def kind_value(name: str) -> int:
    """A stored kind (``"DECISION"``) as its enum value; UNSPECIFIED when unknown."""
    try:
        return int(observe_pb2.EventKind.Value(_KIND_PREFIX + name))
    except ValueError:
        return int(observe_pb2.EVENT_KIND_UNSPECIFIED)


def kind_names() -> list[str]:
    """Every event kind's name, in enum order (UNSPECIFIED left out)."""
    return [n for n in (kind_name(v) for v in observe_pb2.EventKind.values()) if n]


def event_filter(plan_id: str, agent_id: str, kinds: Iterable[int]) -> EventFilter:
    """Validate a WatchEvents request's filter; InvalidArgument names every bad field."""
    violations: list[FieldViolation] = []
    check_id("plan_id", plan_id, violations, required=False)
    check_id("agent_id", agent_id, violations, required=False)
    names: set[str] = set()
    for i, value in enumerate(kinds):
        name = kind_name(value)
        if name:
            names.add(name)
        else:
            violations.append(
                FieldViolation(f"kinds[{i}]", f"must be a known event kind, not {value}")
            )
    if violations:
        raise InvalidArgument.of(violations)
    return EventFilter(plan_id, agent_id, frozenset(names))


def event_pb(event: EventRecord) -> observe_pb2.Event:
    return observe_pb2.Event(
        seq=event.seq,
        kind=kind_value(event.kind),  # type: ignore[arg-type]
        time=timestamp(event.time),
        plan_id=event.plan_id,
        step_id=event.step_id,
        agent_id=event.agent_id,
        decision_id=event.decision_id,
        tool=event.tool,
        message=event.message,
        payload=dict_to_struct(event.payload),
    )


__all__ = ["event_filter", "event_pb", "kind_name", "kind_names", "kind_value"]
