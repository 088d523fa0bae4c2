"""orchestration_summary.json and tool_conflicts.json, rewritten whole.

Both are derived from the journal's plans (so they survive restarts and
cover every plan) and replaced atomically.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from interlock.audit import write_json_atomically
from interlock.journal.repos import Plans
from interlock.plans.conflicts import counts
from interlock.plans.runtime import conflict_from_dict

ORCHESTRATION_SUMMARY = "orchestration_summary.json"
TOOL_CONFLICTS = "tool_conflicts.json"


class Summaries:
    def __init__(self, directory: str | Path, plans: Plans) -> None:
        self.directory = Path(directory)
        self.plans = plans
        self._lock = asyncio.Lock()

    async def plan_finished(self) -> None:
        async with self._lock:
            by_state = await self.plans.counts_by_state()
            step_states: Counter[str] = Counter()
            step_modes: Counter[str] = Counter()
            for state, mode, n in await self.plans.step_counts():
                step_states[state] += n
                step_modes[mode or "UNDECIDED"] += n
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

    async def conflicts_changed(self) -> None:
        async with self._lock:
            stored = await self.plans.conflicts()
            every = [conflict_from_dict(c) for text in stored for c in orjson.loads(text)]
            by_type = counts(every)
            doc: dict[str, Any] = {
                "updated_at": time.time(),
                "total": sum(t["detected"] for t in by_type.values()),
                "by_type": by_type,
            }
            await asyncio.to_thread(write_json_atomically, self.directory / TOOL_CONFLICTS, doc)


__all__ = ["ORCHESTRATION_SUMMARY", "TOOL_CONFLICTS", "Summaries"]
