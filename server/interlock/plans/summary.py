"""orchestration_summary.json and tool_conflicts.json, rewritten whole.

Both are derived from the store (so they survive restarts and cover every
plan), computed off the event loop, and replaced atomically.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from interlock.audit import write_json_atomically
from interlock.plans.conflicts import counts
from interlock.plans.runtime import conflict_from_dict

if TYPE_CHECKING:
    from interlock.plans.orchestrator import Orchestrator

ORCHESTRATION_SUMMARY = "orchestration_summary.json"
TOOL_CONFLICTS = "tool_conflicts.json"


class Summaries:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = asyncio.Lock()

    async def plan_finished(self, orchestrator: Orchestrator) -> None:
        async with self._lock:
            plans = await orchestrator.store.query(
                "SELECT state, COUNT(*) AS n FROM plans GROUP BY state"
            )
            steps = await orchestrator.store.query(
                "SELECT state, mode, COUNT(*) AS n FROM steps GROUP BY state, mode"
            )
            by_state = {r["state"]: r["n"] for r in plans}
            step_states: Counter[str] = Counter()
            step_modes: Counter[str] = Counter()
            for r in steps:
                step_states[r["state"]] += r["n"]
                step_modes[r["mode"] or "UNDECIDED"] += r["n"]
            finished = sum(n for s, n in by_state.items() if s not in ("PENDING", "RUNNING"))
            doc = {
                "updated_at": time.time(),
                "plans_processed": finished,
                "plans_succeeded": by_state.get("SUCCEEDED", 0),
                "plans": {"total": sum(by_state.values()), "by_state": by_state},
                "steps": {"by_state": dict(step_states), "by_mode": dict(step_modes)},
            }
            await asyncio.to_thread(
                write_json_atomically, self.directory / ORCHESTRATION_SUMMARY, doc
            )

    async def conflicts_changed(self, orchestrator: Orchestrator) -> None:
        async with self._lock:
            rows = await orchestrator.store.query("SELECT conflicts FROM plans")
            every = [conflict_from_dict(c) for r in rows for c in orjson.loads(r["conflicts"])]
            by_type = counts(every)
            doc: dict[str, Any] = {
                "updated_at": time.time(),
                "total": sum(t["detected"] for t in by_type.values()),
                "by_type": by_type,
            }
            await asyncio.to_thread(write_json_atomically, self.directory / TOOL_CONFLICTS, doc)


__all__ = ["ORCHESTRATION_SUMMARY", "TOOL_CONFLICTS", "Summaries"]
