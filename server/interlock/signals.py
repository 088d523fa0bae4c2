"""Learning signals: patterns in committed events, stored with their evidence.

The :class:`SignalEngine` is one of :attr:`Store.listeners`. On the event
loop, for each committed batch, it only updates in-memory counters (per tool,
per mode) and, when a rule fires, puts the signal on a queue; a background
task commits each queued signal. Nothing on the decision path ever awaits a
signal. Each signal is stored three ways, in one transaction of the journal: a row
of the ``signals`` table, a line of ``learning_signals.jsonl`` (with the
``seq`` of its event) and a ``SIGNAL`` event, so WatchEvents streams it.

Rules (see docs/signals.md):

- TOOL_RELIABILITY, from RESULT events: a tool's success rate over its
  reported results, overall and by mode; emitted every
  ``reliability_every`` results of the tool, or sooner when the rate moved
  more than ``reliability_delta`` since the tool's last signal.
- EXECUTION_MODE_ANALYSIS, from DECISION events: a tool's decisions by mode
  (MOCK, DRY_RUN, LIVE) plus denied and pending approval; emitted every
  ``modes_every`` decisions of the tool; the value is the LIVE share.
- CONFLICT_PATTERN, from CONFLICT events: the same conflict type on the same
  tool ``conflict_threshold`` times within ``conflict_window`` seconds (and
  again at every further multiple of the threshold within the window).
- APPROVAL_MISMATCH, from APPROVAL events (payload ``resolution``,
  ``confidence``): :func:`approval_mismatch`.
- VALIDATION_OUTCOME (the Phase-22 correlation), from RESULT events and the
  argument-schema refusals reported to :meth:`SignalEngine.schema_failed`:
  per tool, how its pre-execution checks predicted what happened. Each LIVE
  result is paired with the latest DRY_RUN result of the same plan step, or
  else of the same tool and canonical arguments (the worker reads the
  decision's arguments from the store); emitted at once when a DRY_RUN
  success is followed by a LIVE failure, every ``validation_every`` pairs,
  and every ``schema_every`` schema refusals; the value is the share of
  paired DRY_RUN successes whose LIVE run did not succeed.

Counters start empty at each start of the server: the evidence says since when.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.audit import LEARNING_SIGNALS
from interlock.journal import Batch, EventRecord, Insert, Journal
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KINDS = (
    "TOOL_RELIABILITY",
    "APPROVAL_MISMATCH",
    "EXECUTION_MODE_ANALYSIS",
    "CONFLICT_PATTERN",
    "VALIDATION_OUTCOME",
)

RELIABILITY_EVERY = 10
"""A TOOL_RELIABILITY signal every this many reported results of a tool."""
RELIABILITY_DELTA = 0.2
"""...or sooner, once the success rate moved more than this since the last one."""
MODES_EVERY = 10
"""An EXECUTION_MODE_ANALYSIS signal every this many decisions of a tool."""
CONFLICT_THRESHOLD = 3
"""A CONFLICT_PATTERN once the same type hits the same tool this many times..."""
CONFLICT_WINDOW_SECONDS = 3600.0
"""...within this many seconds."""
LOW_CONFIDENCE = 0.5
"""An approval below this confidence is a mismatch."""
HIGH_CONFIDENCE = 0.9
"""A denial at or above this confidence is a mismatch."""
EVIDENCE_ITEMS = 20
"""At most this many plans, occurrences and step ids in a CONFLICT_PATTERN's evidence."""
VALIDATION_EVERY = 10
"""A VALIDATION_OUTCOME signal every this many DRY_RUN-then-LIVE pairs of a tool..."""
SCHEMA_EVERY = 5
"""...and every this many argument-schema refusals of a tool."""
DRY_RUNS_KEPT = 10_000
"""DRY_RUN results remembered for pairing (the oldest are forgotten first)."""
QUEUE_SIZE = 10_000
"""Signals waiting to be committed; beyond it new ones are dropped (and logged)."""


OUTCOME_KEYS = {"SUCCEEDED": "successes", "FAILED": "failures", "TIMED_OUT": "timeouts"}
MODE_KEYS = ("MOCK", "DRY_RUN", "LIVE", "denied", "pending_approval")


@dataclass(frozen=True)
class Signal:
    kind: str
    tool: str
    agent_id: str
    value: float
    evidence: dict[str, Any]
    signal_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        return {
            "signal_id": self.signal_id,
            "kind": self.kind,
            "tool": self.tool,
            "agent_id": self.agent_id,
            "value": self.value,
            "evidence": self.evidence,
            "created_at": self.created_at,
        }


def approval_mismatch(
    resolution: str,
    confidence: float,
    *,
    low: float = LOW_CONFIDENCE,
    high: float = HIGH_CONFIDENCE,
) -> str | None:
    """Why a human resolution disagrees with the agent's confidence, or None.

    Approved although the agent was unsure (confidence below ``low``), or
    denied although it was sure (at or above ``high``).
    """
    name = resolution.strip().upper().removeprefix("APPROVAL_RESOLUTION_")
    if name in ("APPROVE", "APPROVED") and confidence < low:
        return "approved_at_low_confidence"
    if name in ("DENY", "DENIED") and confidence >= high:
        return "denied_at_high_confidence"
    return None


def _rate(successes: int, total: int) -> float:
    return successes / total if total else 0.0


@dataclass
class _Reliability:
    since: float
    by_mode: dict[str, dict[str, int]] = field(default_factory=dict)
    total: int = 0
    last_rate: float | None = None

    def add(self, mode: str, outcome: str) -> None:
        counts = self.by_mode.setdefault(mode, dict.fromkeys(OUTCOME_KEYS.values(), 0))
        key = OUTCOME_KEYS.get(outcome)
        if key is not None:
            counts[key] += 1
            self.total += 1

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOME_KEYS.values(), 0)
        for counts in self.by_mode.values():
            for k, v in counts.items():
                out[k] += v
        return out


@dataclass
class _Modes:
    since: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODE_KEYS, 0))
    total: int = 0


PAIR_KEYS = {
    ("SUCCEEDED", "SUCCEEDED"): "dry_run_succeeded_live_succeeded",
    ("SUCCEEDED", "FAILED"): "dry_run_succeeded_live_failed",
    ("FAILED", "SUCCEEDED"): "dry_run_failed_live_succeeded",
    ("FAILED", "FAILED"): "dry_run_failed_live_failed",
}
"""The four cells of a tool's DRY_RUN-then-LIVE table (TIMED_OUT counts as FAILED)."""


@dataclass
class _Validation:
    """One tool's pre-execution checks against what happened."""

    since: float
    schema_failures: int = 0
    schema_fields: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PAIR_KEYS.values(), 0))
    paired_by: dict[str, int] = field(default_factory=lambda: {"plan_step": 0, "arguments": 0})
    live_unchecked: int = 0
    """LIVE results with no DRY_RUN result of the same step or arguments before them."""
    misses: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVIDENCE_ITEMS))
    """The latest DRY_RUN successes followed by a LIVE failure."""

    def total_pairs(self) -> int:
        return sum(self.pairs.values())

    def miss_rate(self) -> float:
        ok = self.pairs["dry_run_succeeded_live_succeeded"]
        missed = self.pairs["dry_run_succeeded_live_failed"]
        return _rate(missed, ok + missed)


def _passed(outcome: str) -> str:
    return "SUCCEEDED" if outcome == "SUCCEEDED" else "FAILED"


@dataclass(frozen=True)
class _Result:
    """A DRY_RUN or LIVE RESULT event waiting for the worker (which reads its arguments)."""

    event: EventRecord


@dataclass(frozen=True)
class _Conflict:
    """A CONFLICT event waiting for the worker (which looks up its steps' tools)."""

    event: EventRecord


class SignalEngine:
    """Counts committed events and emits learning signals; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        *,
        reliability_every: int = RELIABILITY_EVERY,
        reliability_delta: float = RELIABILITY_DELTA,
        modes_every: int = MODES_EVERY,
        conflict_threshold: int = CONFLICT_THRESHOLD,
        conflict_window: float = CONFLICT_WINDOW_SECONDS,
        validation_every: int = VALIDATION_EVERY,
        schema_every: int = SCHEMA_EVERY,
        dry_runs_kept: int = DRY_RUNS_KEPT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.journal = journal
        self.reliability_every = reliability_every
        self.reliability_delta = reliability_delta
        self.modes_every = modes_every
        self.conflict_threshold = conflict_threshold
        self.conflict_window = conflict_window
        self.validation_every = validation_every
        self.schema_every = schema_every
        self.dry_runs_kept = dry_runs_kept
        self.dropped = 0
        """Signals dropped because the queue was full."""
        self.emitted = 0
        """Signals committed."""
        self._queue: asyncio.Queue[Signal | _Conflict | _Result] = asyncio.Queue(queue_size)
        self._reliability: dict[str, _Reliability] = {}
        self._modes: dict[str, _Modes] = {}
        self._conflicts: dict[tuple[str, str], deque[tuple[float, str, tuple[str, ...]]]] = {}
        self._conflict_agents: dict[tuple[str, str], set[str]] = {}
        self._validation: dict[str, _Validation] = {}
        self._dry_runs: OrderedDict[tuple[str, ...], tuple[str, str, float]] = OrderedDict()
        """(tool, "step", plan, step) or (tool, "arguments", sha256) -> (outcome, decision, time)."""
        self._worker: asyncio.Task[None] | None = None
        self._listening = False

    async def start(self) -> None:
        """Create the table (through the store's writer), listen, start the worker."""
        if not self._listening:
            self.journal.listeners.append(self.observe)
            self._listening = True
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="signal-engine")

    async def drain(self) -> None:
        """Wait until every queued signal is committed (or failed)."""
        await self._queue.join()

    async def close(self, grace: float = 2.0) -> None:
        """Stop listening, commit what is queued (for at most ``grace`` seconds), stop."""
        if self._listening:
            with contextlib.suppress(ValueError):
                self.journal.listeners.remove(self.observe)
            self._listening = False
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drain(), grace)
        await cancel_and_wait(worker)

    # The listener: counters only, never blocks ------------------------------------

    def observe(self, events: list[EventRecord]) -> None:
        for event in events:
            try:
                if event.kind == "RESULT":
                    self._on_result(event)
                    if event.payload.get("mode") in ("DRY_RUN", "LIVE"):
                        self._put(_Result(event))
                elif event.kind == "DECISION":
                    self._on_decision(event)
                elif event.kind == "CONFLICT":
                    self._put(_Conflict(event))
                elif event.kind == "APPROVAL":
                    self._on_approval(event)
            except Exception:  # a malformed payload must not break the store's callbacks
                log.exception("signals: could not count event %d", event.seq)

    def schema_failed(self, tool: str, agent_id: str, fields: list[str]) -> None:
        """A call (or a plan step) of ``tool`` was refused for breaking its
        argument schema; ``fields`` are the violations' paths. Call it on the
        event loop; it only counts, and queues a signal every ``schema_every``."""
        stats = self._validation_of(tool, time.time())
        stats.schema_failures += 1
        for path in fields:
            name = path.split(".", 1)[1] if "." in path else path
            stats.schema_fields[name] = stats.schema_fields.get(name, 0) + 1
        if stats.schema_failures % self.schema_every == 0:
            last = {"agent_id": agent_id, "fields": fields[:EVIDENCE_ITEMS]}
            self._put(self._validation_signal(tool, stats, "schema_failures", last))

    def _validation_of(self, tool: str, now: float) -> _Validation:
        stats = self._validation.get(tool)
        if stats is None:
            stats = self._validation[tool] = _Validation(since=now)
        return stats

    def _put(self, item: Signal | _Conflict | _Result) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("signals: queue full; dropped a signal (%d so far)", self.dropped)

    def _on_result(self, event: EventRecord) -> None:
        stats = self._reliability.get(event.tool)
        if stats is None:
            stats = self._reliability[event.tool] = _Reliability(since=event.time)
        before = stats.total
        stats.add(str(event.payload.get("mode", "")), str(event.payload.get("outcome", "")))
        if stats.total == before:
            return
        totals = stats.totals()
        rate = _rate(totals["successes"], stats.total)
        due = stats.total % self.reliability_every == 0
        moved = stats.last_rate is not None and abs(rate - stats.last_rate) > self.reliability_delta
        if not (due or moved):
            return
        stats.last_rate = rate
        by_mode = {
            mode: {**counts, "success_rate": _rate(counts["successes"], sum(counts.values()))}
            for mode, counts in sorted(stats.by_mode.items())
        }
        evidence = {
            **totals,
            "results": stats.total,
            "success_rate": rate,
            "by_mode": by_mode,
            "window": {"since": stats.since, "until": event.time, "results": stats.total},
            "trigger": "every" if due else "rate_change",
        }
        self._put(Signal("TOOL_RELIABILITY", event.tool, "", rate, evidence))

    def _on_decision(self, event: EventRecord) -> None:
        stats = self._modes.get(event.tool)
        if stats is None:
            stats = self._modes[event.tool] = _Modes(since=event.time)
        verdict = str(event.payload.get("verdict", ""))
        mode = str(event.payload.get("mode", ""))
        if verdict == "DENY":
            key = "denied"
        elif verdict == "PENDING_APPROVAL":
            key = "pending_approval"
        elif mode in MODE_KEYS:
            key = mode
        else:
            return
        stats.counts[key] += 1
        stats.total += 1
        if stats.total % self.modes_every:
            return
        live = stats.counts["LIVE"]
        evidence = {
            "counts": dict(stats.counts),
            "decisions": stats.total,
            "escalations": live,
            "live_share": _rate(live, stats.total),
            "window": {"since": stats.since, "until": event.time, "decisions": stats.total},
        }
        self._put(
            Signal("EXECUTION_MODE_ANALYSIS", event.tool, "", _rate(live, stats.total), evidence)
        )

    def _on_approval(self, event: EventRecord) -> None:
        resolution = str(event.payload.get("resolution", ""))
        confidence = float(event.payload.get("confidence", 0.0))
        why = approval_mismatch(resolution, confidence)
        if why is None:
            return
        evidence = {
            "rule": why,
            "resolution": resolution,
            "confidence": confidence,
            "low": LOW_CONFIDENCE,
            "high": HIGH_CONFIDENCE,
            "decision_id": event.decision_id,
            "plan_id": event.plan_id,
            "step_id": event.step_id,
            "event_seq": event.seq,
        }
        self._put(Signal("APPROVAL_MISMATCH", event.tool, event.agent_id, confidence, evidence))

    # The worker -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Conflict):
                    for signal in await self._on_conflict(item.event):
                        await self._commit(signal)
                elif isinstance(item, _Result):
                    found = await self._on_checked_result(item.event)
                    if found is not None:
                        await self._commit(found)
                else:
                    await self._commit(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signals: could not emit a signal")
            finally:
                self._queue.task_done()

    async def _commit(self, signal: Signal) -> None:
        record = signal.record()
        evidence = orjson.dumps(signal.evidence, option=orjson.OPT_SORT_KEYS).decode()
        event = EventRecord(
            kind="SIGNAL",
            tool=signal.tool,
            agent_id=signal.agent_id,
            time=signal.created_at,
            message=f"{signal.kind} {signal.tool or '-'} = {signal.value:.3g}",
            payload={k: record[k] for k in ("signal_id", "kind", "value", "evidence")},
        )
        await self.journal.commit(
            Batch(
                rows=[
                    Insert(
                        "signals",
                        {
                            "signal_id": signal.signal_id,
                            "kind": signal.kind,
                            "tool": signal.tool,
                            "agent_id": signal.agent_id,
                            "value": signal.value,
                            "evidence": evidence,
                            "created_at": signal.created_at,
                        },
                    )
                ],
                events=[event],
                audit=[(LEARNING_SIGNALS, record)],
            )
        )
        self.emitted += 1

    async def _on_conflict(self, event: EventRecord) -> list[Signal]:
        kind = str(event.payload.get("type", ""))
        step_ids = tuple(str(s) for s in event.payload.get("step_ids") or ())
        plan_ids = tuple(str(p) for p in event.payload.get("plan_ids") or ())
        if not step_ids and event.step_id:
            step_ids = tuple(event.step_id.split(","))
        steps: dict[str, str] = {}  # tool -> agents, via the plan's steps
        agents: set[str] = {event.agent_id} if event.agent_id else set()
        if event.tool:
            steps[event.tool] = event.agent_id
        elif event.plan_id and step_ids:
            rows = await self.journal.plans.step_owners(event.plan_id, step_ids)
            for row in rows:
                steps[row["tool"]] = row["agent_id"]
                agents.add(row["agent_id"])
        out: list[Signal] = []
        now = event.time
        for tool in sorted(steps):
            key = (kind, tool)
            seen = self._conflicts.setdefault(key, deque())
            seen.append((now, event.plan_id, step_ids))
            while seen and seen[0][0] < now - self.conflict_window:
                seen.popleft()
            known = self._conflict_agents.setdefault(key, set())
            known |= agents
            count = len(seen)
            if count < self.conflict_threshold or count % self.conflict_threshold:
                continue
            evidence = {
                "type": kind,
                "count": count,
                "window": {
                    "seconds": self.conflict_window,
                    "since": seen[0][0],
                    "until": now,
                },
                # The most recent occurrences only: evidence stays small however
                # many conflicts the window holds (count has the total).
                "plans": sorted({p for _, p, _ in seen if p} | set(plan_ids))[-EVIDENCE_ITEMS:],
                "steps": [
                    {"plan_id": p, "step_ids": list(s)[:EVIDENCE_ITEMS]}
                    for _, p, s in list(seen)[-EVIDENCE_ITEMS:]
                ],
                "agents": sorted(known),
                "last_resolution": str(event.payload.get("resolution", "")),
            }
            agent = next(iter(known)) if len(known) == 1 else ""
            out.append(Signal("CONFLICT_PATTERN", tool, agent, float(count), evidence))
        return out

    async def _on_checked_result(self, event: EventRecord) -> Signal | None:
        """Remember a DRY_RUN result; pair a LIVE one with the DRY_RUN before it."""
        arguments = await self.journal.decisions.arguments(event.decision_id) or ""
        keys: list[tuple[str, ...]] = []
        if event.plan_id and event.step_id:
            keys.append((event.tool, "step", event.plan_id, event.step_id))
        if arguments:
            keys.append((event.tool, "arguments", hashlib.sha256(arguments.encode()).hexdigest()))
        outcome = _passed(str(event.payload.get("outcome", "")))
        if event.payload.get("mode") == "DRY_RUN":
            for key in keys:
                self._dry_runs[key] = (outcome, event.decision_id, event.time)
                self._dry_runs.move_to_end(key)
            while len(self._dry_runs) > self.dry_runs_kept:
                self._dry_runs.popitem(last=False)
            return None
        stats = self._validation_of(event.tool, event.time)
        for key in keys:
            earlier = self._dry_runs.get(key)
            if earlier is not None:
                break
        else:
            stats.live_unchecked += 1
            return None
        dry_outcome, dry_decision, _ = earlier
        stats.pairs[PAIR_KEYS[(dry_outcome, outcome)]] += 1
        stats.paired_by["plan_step" if key[1] == "step" else "arguments"] += 1
        pair = {
            "dry_run_decision_id": dry_decision,
            "live_decision_id": event.decision_id,
            "plan_id": event.plan_id,
            "step_id": event.step_id,
            "agent_id": event.agent_id,
            "paired_by": "plan_step" if key[1] == "step" else "arguments",
            "live_outcome": str(event.payload.get("outcome", "")),
            "error_message": str(event.payload.get("error_message", ""))[:200],
        }
        missed = dry_outcome == "SUCCEEDED" and outcome == "FAILED"
        if missed:
            stats.misses.append(pair)
            trigger = "missed_failure"
        elif stats.total_pairs() % self.validation_every == 0:
            trigger = "every"
        else:
            return None
        return self._validation_signal(event.tool, stats, trigger, pair)

    def _validation_signal(
        self, tool: str, stats: _Validation, trigger: str, pair: dict[str, Any]
    ) -> Signal:
        rate = stats.miss_rate()
        top_fields = sorted(stats.schema_fields.items(), key=lambda kv: (-kv[1], kv[0]))
        evidence = {
            "schema_failures": stats.schema_failures,
            "schema_fields": dict(top_fields[:EVIDENCE_ITEMS]),
            "pairs": stats.total_pairs(),
            "outcomes": dict(stats.pairs),
            "paired_by": dict(stats.paired_by),
            "live_unchecked": stats.live_unchecked,
            "dry_run_success_live_failure_rate": rate,
            "missed_failures": list(stats.misses),
            "last_pair": pair,
            "trigger": trigger,
            "window": {"since": stats.since, "until": time.time(), "pairs": stats.total_pairs()},
        }
        return Signal("VALIDATION_OUTCOME", tool, "", rate, evidence)


__all__ = [
    "CONFLICT_THRESHOLD",
    "CONFLICT_WINDOW_SECONDS",
    "HIGH_CONFIDENCE",
    "KINDS",
    "LOW_CONFIDENCE",
    "MODES_EVERY",
    "RELIABILITY_DELTA",
    "RELIABILITY_EVERY",
    "SCHEMA_EVERY",
    "VALIDATION_EVERY",
    "Signal",
    "SignalEngine",
    "approval_mismatch",
]
