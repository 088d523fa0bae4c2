"""The seven files of a batch run, its summary, and the table it prints.

Every file is written on every run (empty, or with zero counts), so a script
can read them without checking:

- ``tool_execution_log.jsonl``, ``execution_state_transitions.jsonl``,
  ``rollback_events.jsonl``, ``learning_signals.jsonl``: the lines the server
  wrote to its data dir during this run (``seq`` after the run started), as
  they are, each with its ``seq`` and chain hash (verify the whole chain with
  ``interlock audit verify DATA_DIR``).
- ``tool_conflicts.json``: this run's conflicts, counted by type (all six
  types, zero included) and resolution, and listed with their plan.
- ``orchestration_summary.json``: the summary (``BatchResult.summary``) and
  every plan's outcome, steps and why it did not succeed.
- ``system_health.json``: the server's health document at the end of the run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock_client import InterlockError

from interlock.audit import (
    LEARNING_SIGNALS,
    ROLLBACK_EVENTS,
    STATE_TRANSITIONS,
    TOOL_EXECUTION_LOG,
    chain_files,
    write_json_atomically,
)
from interlock.batch.inputs import PlanDocument
from interlock.health import HEALTH_FILE
from interlock.plans.model import ConflictType
from interlock.plans.summary import ORCHESTRATION_SUMMARY, TOOL_CONFLICTS
from interlock.v1 import plans_pb2, types_pb2

JSONL_FILES = (TOOL_EXECUTION_LOG, STATE_TRANSITIONS, ROLLBACK_EVENTS, LEARNING_SIGNALS)
FILES = (
    ORCHESTRATION_SUMMARY,
    TOOL_EXECUTION_LOG,
    STATE_TRANSITIONS,
    TOOL_CONFLICTS,
    ROLLBACK_EVENTS,
    LEARNING_SIGNALS,
    HEALTH_FILE,
)
"""The seven files, in the seed's order."""
CONFLICT_TYPES = tuple(t.value for t in ConflictType)


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


@dataclass
class PlanOutcome:
    """One plan of the run: accepted (``plan`` is its final state) or refused."""

    plan_id: str
    where: str
    plan: plans_pb2.Plan | None = None
    refusal: str = ""
    """Why the server refused the plan (code, message, every field problem)."""

    @property
    def accepted(self) -> bool:
        return self.plan is not None

    @classmethod
    def refused(cls, document: PlanDocument, exc: Exception) -> PlanOutcome:
        if isinstance(exc, InterlockError):
            text = f"{exc.code.name}: {exc.message}"
            problems = [f"{f}: {d}" for f, d in exc.field_violations]
            if problems:
                text += " (" + "; ".join(problems) + ")"
        else:
            text = str(exc)
        return cls(plan_id=document.plan_id or document.where, where=document.where, refusal=text)

    @property
    def state(self) -> str:
        if self.plan is None:
            return "REFUSED"
        return _name(plans_pb2.PlanState, self.plan.state, "PLAN_STATE_")

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def steps(self) -> list[dict[str, Any]]:
        if self.plan is None:
            return []
        out = []
        for s in self.plan.steps:
            decided = s.HasField("decision") and bool(s.decision.decision_id)
            out.append(
                {
                    "step_id": s.step_id,
                    "decision_id": s.decision.decision_id,
                    "tool": s.tool,
                    "agent_id": s.agent_id,
                    "confidence": s.confidence,
                    "mode": _name(types_pb2.ExecutionMode, s.decision.mode, "EXECUTION_MODE_")
                    if decided
                    else "UNDECIDED",
                    "verdict": _name(types_pb2.Verdict, s.decision.verdict, "VERDICT_")
                    if decided
                    else "",
                    "outcome": _name(plans_pb2.StepState, s.state, "STEP_STATE_"),
                    "message": s.message,
                }
            )
        return out

    def conflicts(self) -> list[dict[str, Any]]:
        if self.plan is None:
            return []
        return [
            {
                "plan_id": self.plan_id,
                "type": _name(plans_pb2.ConflictType, c.type, "CONFLICT_TYPE_"),
                "resolution": c.resolution,
                "description": c.description,
                "step_ids": list(c.step_ids),
                "plan_ids": list(c.plan_ids),
            }
            for c in self.plan.conflicts
        ]

    def why(self) -> str:
        """Why the plan did not succeed ("" when it did)."""
        if self.plan is None:
            return f"refused: {self.refusal}"
        if self.succeeded:
            return ""
        reasons = [self.plan.message] if self.plan.message else []
        for s in self.steps():
            failed = s["outcome"] in ("FAILED", "TIMED_OUT", "AMBIGUOUS")
            if failed and s["message"] and s["message"] not in self.plan.message:
                reasons.append(f"step {s['step_id']} {s['outcome']}: {s['message']}")
        return f"{self.state}: " + ("; ".join(reasons) or "no reason given")


@dataclass
class BatchResult:
    """What a batch run did: ``summary`` (the counts), ``plans``, where the files are."""

    summary: dict[str, Any]
    plans: list[PlanOutcome]
    out_dir: Path
    data_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every plan succeeded."""
        return all(p.succeeded for p in self.plans)

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(plan id, why) for every plan that did not succeed."""
        return [(p.plan_id, p.why()) for p in self.plans if not p.succeeded]


def _copy_lines(data_dir: Path, name: str, after_seq: int, dest: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    lines: list[str] = []
    for path in chain_files(data_dir, name):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if int(record.get("seq", 0)) > after_seq:
                records.append(record)
                lines.append(line)
    dest.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return records


def _conflicts_doc(outcomes: list[PlanOutcome]) -> dict[str, Any]:
    every = [c for o in outcomes for c in o.conflicts()]
    by_type: dict[str, dict[str, Any]] = {
        t: {"detected": 0, "resolutions": {}} for t in CONFLICT_TYPES
    }
    for c in every:
        entry = by_type.setdefault(c["type"], {"detected": 0, "resolutions": {}})
        entry["detected"] += 1
        entry["resolutions"][c["resolution"]] = entry["resolutions"].get(c["resolution"], 0) + 1
    return {"total": len(every), "by_type": by_type, "conflicts": every}


def write_outputs(
    out_dir: Path,
    data_dir: Path,
    after_seq: int,
    outcomes: list[PlanOutcome],
    health: Mapping[str, Any],
    *,
    answered: Mapping[str, str],
    settings: Mapping[str, Any],
    started_at: float,
) -> BatchResult:
    """Write the seven files; return the result with its summary."""
    files = {name: out_dir / name for name in FILES}
    lines = {n: _copy_lines(data_dir, n, after_seq, files[n]) for n in JSONL_FILES}
    conflicts = _conflicts_doc(outcomes)
    rollbacks = lines[ROLLBACK_EVENTS]
    signals = lines[LEARNING_SIGNALS]
    by_mode: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    matrix: dict[str, Counter[str]] = {}
    for o in outcomes:
        for s in o.steps():
            by_mode[s["mode"]] += 1
            by_outcome[s["outcome"]] += 1
            matrix.setdefault(s["mode"], Counter())[s["outcome"]] += 1
    states = Counter(o.state for o in outcomes)
    approvals = Counter(answered.values())
    summary: dict[str, Any] = {
        "plans_processed": len(outcomes),
        "plans_succeeded": states.get("SUCCEEDED", 0),
        "plans_failed": len(outcomes) - states.get("SUCCEEDED", 0),
        "plans_by_state": dict(sorted(states.items())),
        "steps": {
            "total": sum(by_mode.values()),
            "by_mode": dict(sorted(by_mode.items())),
            "by_outcome": dict(sorted(by_outcome.items())),
            "by_mode_and_outcome": {m: dict(sorted(c.items())) for m, c in sorted(matrix.items())},
        },
        "conflicts": {
            "total": conflicts["total"],
            "by_type": {t: v["detected"] for t, v in conflicts["by_type"].items()},
        },
        "rollbacks": {
            "events": len(rollbacks),
            "plans": len({r.get("plan_id") for r in rollbacks if r.get("plan_id")}),
        },
        "signals": {
            "total": len(signals),
            "by_kind": dict(sorted(Counter(str(s.get("kind")) for s in signals).items())),
        },
        "approvals": {k: approvals.get(k, 0) for k in ("approved", "denied", "unanswered")},
        "health_score": health.get("score"),
        "health_status": health.get("status"),
    }
    document = {
        **summary,
        "run": {
            "started_at": started_at,
            "finished_at": time.time(),
            "out_dir": str(out_dir),
            "settings": dict(settings),
        },
        "plan_results": [
            {
                "plan_id": o.plan_id,
                "source": o.where,
                "state": o.state,
                "succeeded": o.succeeded,
                "why": o.why(),
                "steps": o.steps(),
                "conflicts": len(o.conflicts()),
                "rollback_events": sum(1 for r in rollbacks if r.get("plan_id") == o.plan_id),
            }
            for o in outcomes
        ],
    }
    write_json_atomically(files[ORCHESTRATION_SUMMARY], document)
    write_json_atomically(files[TOOL_CONFLICTS], conflicts)
    write_json_atomically(files[HEALTH_FILE], dict(health))
    return BatchResult(summary, outcomes, out_dir, data_dir, files)


def format_table(result: BatchResult) -> str:
    """A table per plan (its steps by mode and outcome, conflicts, rollbacks), then totals."""
    out: list[str] = []
    rollbacks = Counter[str]()
    path = result.files.get(ROLLBACK_EVENTS)
    if path is not None and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rollbacks[str(json.loads(line).get("plan_id", ""))] += 1
    for o in result.plans:
        out.append(f"plan {o.plan_id}: {o.state}")
        steps = o.steps()
        if steps:
            widths = [
                max(len(h), *(len(str(s[k])) for s in steps))
                for h, k in (
                    ("STEP", "step_id"),
                    ("TOOL", "tool"),
                    ("AGENT", "agent_id"),
                    ("MODE", "mode"),
                    ("OUTCOME", "outcome"),
                )
            ]
            rows = [("STEP", "TOOL", "AGENT", "MODE", "OUTCOME")] + [
                (s["step_id"], s["tool"], s["agent_id"], s["mode"], s["outcome"]) for s in steps
            ]
            for row in rows:
                out.append(
                    "  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                )
            cells = Counter((s["mode"], s["outcome"]) for s in steps)
            text = ", ".join(f"{m} {st} {n}" for (m, st), n in sorted(cells.items()))
            out.append(f"  steps by mode and outcome: {text}")
        kinds = Counter(f"{c['type']} ({c['resolution']})" for c in o.conflicts())
        out.append(
            "  conflicts: "
            + (", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) if kinds else "none")
        )
        out.append(f"  rollbacks: {rollbacks.get(o.plan_id, 0)}")
        if not o.succeeded:
            out.append(f"  why: {o.why()}")
        out.append("")
    s = result.summary
    out.append(
        f"{s['plans_processed']} plans: {s['plans_succeeded']} succeeded, "
        f"{s['plans_failed']} did not; conflicts {s['conflicts']['total']}, "
        f"rollback events {s['rollbacks']['events']}, signals {s['signals']['total']}, "
        f"health {s['health_score']} ({s['health_status']})"
    )
    out.append(f"files in {result.out_dir}: {', '.join(FILES)}")
    return "\n".join(out)


__all__ = ["FILES", "BatchResult", "PlanOutcome", "format_table", "write_outputs"]
