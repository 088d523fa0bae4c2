"""ListSignals: the learning signals the :class:`~interlock.signals.SignalEngine` stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from interlock.api.convert import dict_to_struct, timestamp
from interlock.errors import FieldViolation, InvalidArgument, Unavailable
from interlock.signals import SignalEngine
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_PREFIX = "SIGNAL_KIND_"


def signal_pb(row: Mapping[str, Any]) -> observe_pb2.Signal:
    return observe_pb2.Signal(
        signal_id=row["signal_id"],
        kind=_PREFIX + row["kind"],
        tool=row["tool"],
        agent_id=row["agent_id"],
        value=row["value"],
        evidence=dict_to_struct(orjson.loads(row["evidence"])),
        created_at=timestamp(row["created_at"]),
    )


def _kind_names(kinds: list[int]) -> list[str]:
    names: list[str] = []
    violations: list[FieldViolation] = []
    for i, value in enumerate(kinds):
        try:
            name = str(observe_pb2.SignalKind.Name(value)).removeprefix(_PREFIX)
        except ValueError:
            name = "UNSPECIFIED"
        if name == "UNSPECIFIED":
            violations.append(
                FieldViolation(f"kinds[{i}]", f"must be a known signal kind, not {value}")
            )
        elif name not in names:
            names.append(name)
    if violations:
        raise InvalidArgument.of(violations)
    return names


async def list_signals(
    engine: SignalEngine | None, request: pb.ListSignalsRequest
) -> pb.ListSignalsResponse:
    """Newest first, filtered by kinds and tool; limit 0 means 100, at most 1000."""
    if request.limit > MAX_LIMIT:
        raise InvalidArgument.field("limit", f"must be at most {MAX_LIMIT}, not {request.limit}")
    kinds = _kind_names(list(request.kinds))
    if engine is None:
        raise Unavailable("learning signals are not enabled on this server")
    rows = await engine.journal.signals.newest(
        kinds=kinds, tool=request.tool, limit=request.limit or DEFAULT_LIMIT
    )
    return pb.ListSignalsResponse(signals=[signal_pb(r) for r in rows])


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "list_signals", "signal_pb"]
