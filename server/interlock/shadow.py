"""Shadow evaluation: a candidate policy set beside the active one, on live traffic.

``interlock policy shadow start CANDIDATE_DIR --sample 0.1`` (StartShadow)
checks the candidate as a reload would (its catalog, its compilation, a probe
per tool: :func:`~interlock.policy.prepare.prepare_set`; its own Rego tests on
the engine in use, as the gate runs them) and records it in the journal (its
files, revision and sample rate, who started it and when). A candidate that
fails any of these is refused and nothing is loaded; a second start while one
runs is refused naming the running one.

Every replica then evaluates the running shadow (:class:`ShadowRunner`). Of
each recorded live decision, a sampled share is also evaluated by the
candidate *off the answer path*: the decision service hands the record, the
active set's answer and the canonical input to :meth:`ShadowRunner.offer`,
which only samples and puts it on a bounded queue (full: dropped and
counted); one background task evaluates the queue on an in-process engine of
its own (one thread; regorus when the server decides on regorus, else the
embedded regopy engine), so the caller's answer is never waited for, slowed by
a queue or changed. The candidate gets the recorded input with its own
catalog's contract and grants (as replay does: :func:`interlock.replay.rebase_input`).

Each replica keeps its counts in memory (the transition matrix from the
active answer's (verdict, mode, approval) to the candidate's, by agent and
tool; evaluated, disagreed, errors, dropped) and writes them as absolute
values every :data:`FLUSH_SECONDS` (and before a status, a promotion or a
stop), with one row per disagreement (both answers, the decision id and its
input hash). Status sums every replica's rows: it survives restarts (a
replica reloads its own counts and the candidate from the journal at
start-up; the counts of its last fraction of a second before a crash are
lost, never the decisions) and holds across replicas (each polls the
journal every :data:`POLL_SECONDS` and evaluates the shadow it finds).

Promote (PromoteShadow) makes the candidate active through the reload path
(:meth:`PolicyManager.reload` with the candidate as ``given``): the same
checks and gate (tests, replay, widening budget, ``accept_widening`` with a
reason). After the gate passes and before the swap, the shadow is recorded
as PROMOTED (a guarded write: it must still be the running one) and the
candidate's files are written into the policy folder, so a restart and the
file watcher keep it. The other replicas see the promotion when they poll
and make the same revision active the same way. Stop drops the shadow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.audit import POLICY_CHANGES
from interlock.contracts import Catalog
from interlock.decision_facts import DecisionRecord
from interlock.errors import (
    AlreadyExists,
    FailedPrecondition,
    InterlockError,
    InvalidArgument,
    PolicyLoadError,
)
from interlock.journal import EventRecord, Journal, Recorded
from interlock.journal.shadow import count_rows, end_rows, start_rows
from interlock.metrics import Metrics
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import CompiledPolicy, PolicyDecision
from interlock.policy.gate import ReloadRequest
from interlock.policy.manager import PolicyManager, ReloadOutcome
from interlock.policy.prepare import prepare_set
from interlock.policy.regorus_engine import candidate_engine
from interlock.policy.regotests import run_tests
from interlock.replay import rebase_input
from interlock.shadow_report import shadow_report, write_policy_dir
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUEUE_SIZE = 2048
"""Sampled decisions waiting for the candidate; beyond it they are dropped."""
FLUSH_SECONDS = 0.5
"""How often a replica writes its counts."""
POLL_SECONDS = 1.0
"""How often a replica looks for a shadow started, promoted or stopped elsewhere."""
MAX_DISAGREEMENT_ROWS = 10_000
"""Disagreements a replica records per shadow; beyond it they are counted only."""

Outcome = tuple[str, str, bool]
CountKey = tuple[str, str, bool, str, str, bool, str, str]
"""(from verdict, mode, approval, to verdict, mode, approval, agent, tool)."""


def _not_running(what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"no shadow is running: {what} needs one (interlock policy shadow start CANDIDATE_DIR)",
        reason="NO_SHADOW",
    )


@dataclass
class _Loaded:
    """The running shadow on this replica: its row, its compiled candidate, its counts."""

    row: dict[str, Any]
    policy_set: PolicySet
    catalog: Catalog
    compiled: CompiledPolicy
    counts: Counter[CountKey]
    evaluated: int = 0
    disagreements: int = 0
    errors: int = 0
    dropped: int = 0
    recorded_rows: int = 0

    @property
    def shadow_id(self) -> str:
        return str(self.row["shadow_id"])

    def totals(self) -> dict[str, int]:
        return {
            "evaluated": self.evaluated,
            "disagreements": self.disagreements,
            "errors": self.errors,
            "dropped": self.dropped,
        }


class ShadowRunner:
    """This replica's part of shadow evaluation (see the module docstring)."""

    def __init__(
        self,
        journal: Journal,
        policies: PolicyManager,
        metrics: Metrics,
        *,
        replica: str,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.journal = journal
        self.policies = policies
        self.metrics = metrics
        self.replica = replica
        self._engine = candidate_engine(policies.engine.name, threads=1)
        self._queue: asyncio.Queue[tuple[_Loaded, DecisionRecord, PolicyDecision, str]] = (
            asyncio.Queue(queue_size)
        )
        self._loaded: _Loaded | None = None
        self._pending: list[dict[str, Any]] = []
        self._dirty = False
        self._lock = asyncio.Lock()
        """Held while the shadow is loaded, dropped or its counts written."""
        self._tasks: list[asyncio.Task[None]] = []
        self._random = random.Random()
        self._dropped = metrics.shadow_evaluations.labels("dropped")
        self._results = {
            r: metrics.shadow_evaluations.labels(r) for r in ("agreed", "disagreed", "error")
        }

    # The hot path ----------------------------------------------------------

    def offer(self, record: DecisionRecord, active: PolicyDecision, input_json: str) -> None:
        """A decision was recorded: sample it for the shadow; never waits."""
        loaded = self._loaded
        if loaded is None or self._random.random() >= loaded.row["sample"]:
            return
        try:
            self._queue.put_nowait((loaded, record, active, input_json))
        except asyncio.QueueFull:
            loaded.dropped += 1
            self._dirty = True
            self._dropped.inc()

    # Lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load the running shadow, if any (with this replica's counts), and
        start evaluating and polling."""
        await self.sync()
        self._tasks = [
            asyncio.create_task(self._evaluate_loop(), name="shadow-evaluate"),
            asyncio.create_task(self._poll_loop(), name="shadow-poll"),
        ]

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        with contextlib.suppress(Exception):  # the store may be gone; counts are best effort
            await self.flush()
        await self._unload()
        await self._engine.close()

    # Requests --------------------------------------------------------------

    async def begin(
        self, files: Mapping[str, str], sample: float, principal: str
    ) -> dict[str, Any]:
        """Check the candidate, record it as the running shadow, load it."""
        if not files:
            raise InvalidArgument.field("policy_set", "the candidate policy set is required")
        if not 0.0 < sample <= 1.0:
            raise InvalidArgument.field("sample", f"must be above 0 and at most 1, not {sample:g}")
        running = await self.journal.shadows.running()
        if running is not None:
            raise self._already(running)
        candidate = PolicySet.from_files(dict(files), source="shadow candidate")
        catalog, compiled = await prepare_set(self._engine, candidate)
        try:
            await self._tests(candidate)
            now = time.time()
            row = {
                "shadow_id": f"shd_{secrets.token_hex(6)}",
                "state": "RUNNING",
                "candidate_revision": candidate.revision,
                "files": orjson.dumps({**candidate.files, **candidate.tests}).decode(),
                "sample": sample,
                "started_by": principal,
                "started_at": now,
                "active_revision": self.policies.active.revision,
            }
            event = self._event(
                f"shadow {row['shadow_id']} of candidate {candidate.short_revision} started "
                f"by {principal or 'an unnamed principal'} (sample {sample:g})",
                "shadow_started",
                principal,
                row,
            )
            try:
                await self.journal.record(
                    Recorded(
                        row_list=start_rows(row),
                        event_list=[event],
                        audit_list=[(POLICY_CHANGES, self._line(event))],
                    )
                )
            except AlreadyExists:
                running = await self.journal.shadows.running()
                if running is not None:
                    raise self._already(running) from None
                raise
        except BaseException:
            await compiled.release()
            raise
        async with self._lock:
            await self._unload()
            self._loaded = _Loaded(row, candidate, catalog, compiled, Counter())
        log.info(
            "shadow %s: candidate %s beside %s, sample %g",
            row["shadow_id"],
            candidate.short_revision,
            self.policies.active.policy_set.short_revision,
            sample,
        )
        return row

    async def status(self) -> dict[str, Any]:
        """The running shadow (or the last one) with every replica's counts."""
        await self.flush()
        row = await self.journal.shadows.running() or await self.journal.shadows.latest()
        if row is None:
            raise _not_running("status")
        return await self._report(row)

    async def promote(
        self, principal: str, *, accept_widening: bool = False, reason: str = ""
    ) -> tuple[dict[str, Any], ReloadOutcome]:
        """Make the running shadow's candidate active through the reload path."""
        request = ReloadRequest(principal=principal, accept_widening=accept_widening, reason=reason)
        request.check()
        await self.flush()
        row = await self.journal.shadows.running()
        if row is None:
            raise _not_running("promote")
        candidate = _policy_set(row)
        ended = {
            "ended_at": time.time(),
            "ended_by": principal,
            "accept_widening": int(accept_widening),
            "reason": reason,
        }

        async def commit(policy_set: PolicySet) -> None:
            await self._end(row, ended, "PROMOTED")
            await asyncio.to_thread(write_policy_dir, self.policies.policy_dir, row)

        if candidate.revision == self.policies.active.revision:
            await self._end(row, ended, "PROMOTED")
            outcome = ReloadOutcome(
                True, candidate.revision, candidate.revision, False, trigger="shadow promote"
            )
        else:
            outcome = await self.policies.reload(
                trigger="shadow promote", request=request, given=candidate, commit=commit
            )
        if not outcome.ok:
            raise PolicyLoadError(
                f"the shadow's candidate was refused and {outcome.previous_revision[:12]} keeps "
                f"serving; the shadow keeps running: {outcome.error}",
                reason=outcome.error_reason or None,
            )
        async with self._lock:
            await self._unload()
        return {**row, **ended, "state": "PROMOTED"}, outcome

    async def stop(self, principal: str) -> dict[str, Any]:
        """Drop the running shadow (its counts and disagreements stay recorded)."""
        await self.flush()
        row = await self.journal.shadows.running()
        if row is None:
            raise _not_running("stop")
        ended = {"ended_at": time.time(), "ended_by": principal}
        await self._end(row, ended, "STOPPED")
        async with self._lock:
            await self._unload()
        return {**row, **ended, "state": "STOPPED"}

    # Following the journal -------------------------------------------------

    async def sync(self) -> None:
        """Load the shadow the journal says runs; drop one that ended (and
        follow a promotion made on another replica)."""
        running = await self.journal.shadows.running()
        loaded = self._loaded
        if loaded is not None and (running is None or running["shadow_id"] != loaded.shadow_id):
            await self.flush()
            ended = await self.journal.shadows.get(loaded.shadow_id)
            async with self._lock:
                await self._unload()
            if ended is not None and ended["state"] == "PROMOTED":
                await self._follow(ended)
        if running is not None and self._loaded is None:
            await self._load(running)

    async def _load(self, row: dict[str, Any]) -> None:
        candidate = _policy_set(row)
        try:
            catalog, compiled = await prepare_set(self._engine, candidate)
        except InterlockError as exc:
            log.error("shadow %s: the candidate does not load here: %s", row["shadow_id"], exc)
            return
        loaded = _Loaded(row, candidate, catalog, compiled, Counter())
        for c in await self.journal.shadows.counts(loaded.shadow_id, self.replica):
            key: CountKey = (
                c["from_verdict"],
                c["from_mode"],
                bool(c["from_approval"]),
                c["to_verdict"],
                c["to_mode"],
                bool(c["to_approval"]),
                c["agent_id"],
                c["tool"],
            )
            loaded.counts[key] = int(c["count"])
        for r in await self.journal.shadows.replicas(loaded.shadow_id):
            if r["replica"] == self.replica:
                loaded.evaluated = int(r["evaluated"])
                loaded.disagreements = int(r["disagreements"])
                loaded.errors = int(r["errors"])
                loaded.dropped = int(r["dropped"])
                loaded.recorded_rows = loaded.disagreements + loaded.errors
        async with self._lock:
            if self._loaded is None:
                self._loaded = loaded
                log.info(
                    "shadow %s: evaluating candidate %s", row["shadow_id"], candidate.short_revision
                )
                return
        await compiled.release()

    async def _follow(self, row: dict[str, Any]) -> None:
        """Another replica promoted the shadow: make its revision active here too."""
        candidate = _policy_set(row)
        if candidate.revision == self.policies.active.revision:
            return

        async def commit(policy_set: PolicySet) -> None:
            await asyncio.to_thread(write_policy_dir, self.policies.policy_dir, row)

        outcome = await self.policies.reload(
            trigger="shadow promote",
            request=ReloadRequest(
                principal=str(row["ended_by"]),
                accept_widening=bool(row["accept_widening"]),
                reason=str(row["reason"]),
            ),
            given=candidate,
            commit=commit,
        )
        if not outcome.ok:
            log.error(
                "shadow %s was promoted elsewhere but refused here: %s",
                row["shadow_id"],
                outcome.error,
            )

    async def _poll_loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                if time.monotonic() - last_flush >= POLL_SECONDS:
                    last_flush = time.monotonic()
                    await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shadow: writing counts or polling failed; trying again")

    # Evaluating ------------------------------------------------------------

    async def _evaluate_loop(self) -> None:
        while True:
            loaded, record, active, input_json = await self._queue.get()
            if loaded is not self._loaded:
                continue  # the shadow ended meanwhile
            try:
                await self._evaluate(loaded, record, active, input_json)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one sample end the shadow
                log.exception("shadow: could not evaluate %s", record.decision_id)

    async def _evaluate(
        self, loaded: _Loaded, record: DecisionRecord, active: PolicyDecision, input_json: str
    ) -> None:
        before: Outcome = (active.verdict, active.mode, active.needs_approval)
        policy_input, problem = rebase_input(
            loaded.catalog, orjson.loads(input_json), record.tool, record.agent_id
        )
        after: PolicyDecision | None = None
        if policy_input is not None:
            try:
                after = await loaded.compiled.evaluate(policy_input)
            except InterlockError as exc:
                problem = exc.message
            except Exception as exc:  # an engine bug is an error, never the answer's
                problem = f"{type(exc).__name__}: {exc}"
        self._count(loaded, record, active, before, after, problem)

    def _count(
        self,
        loaded: _Loaded,
        record: DecisionRecord,
        active: PolicyDecision,
        before: Outcome,
        after: PolicyDecision | None,
        problem: str,
    ) -> None:
        self._dirty = True
        loaded.evaluated += 1
        if after is None:
            loaded.errors += 1
            self._results["error"].inc()
            self._remember(loaded, record, active, None, problem)
            return
        to: Outcome = (after.verdict, after.mode, after.needs_approval)
        loaded.counts[(*before, *to, record.agent_id, record.tool)] += 1
        if to == before:
            self._results["agreed"].inc()
            return
        loaded.disagreements += 1
        self._results["disagreed"].inc()
        self.metrics.shadow_disagreements.labels(before[0], before[1], to[0], to[1]).inc()
        self._remember(loaded, record, active, after, "")

    def _remember(
        self,
        loaded: _Loaded,
        record: DecisionRecord,
        active: PolicyDecision,
        after: PolicyDecision | None,
        error: str,
    ) -> None:
        if loaded.recorded_rows >= MAX_DISAGREEMENT_ROWS:
            return
        loaded.recorded_rows += 1
        self._pending.append(
            {
                "shadow_id": loaded.shadow_id,
                "decision_id": record.decision_id,
                "replica": self.replica,
                "decided_at": record.decided_at,
                "agent_id": record.agent_id,
                "tool": record.tool,
                "confidence": record.confidence,
                "input_hash": record.input_hash,
                "active_revision": record.policy_revision,
                "active_verdict": active.verdict,
                "active_mode": active.mode,
                "active_approval": int(active.needs_approval),
                "active_reasons": orjson.dumps(list(active.reasons)).decode(),
                "candidate_verdict": after.verdict if after else "",
                "candidate_mode": after.mode if after else "",
                "candidate_approval": int(after.needs_approval) if after else 0,
                "candidate_reasons": orjson.dumps(list(after.reasons) if after else []).decode(),
                "error": error,
            }
        )

    async def flush(self) -> None:
        """Write this replica's counts (absolute values) and new disagreements."""
        async with self._lock:
            loaded = self._loaded
            if loaded is None or not self._dirty:
                return
            pending, self._pending = self._pending, []
            self._dirty = False
            rows = count_rows(
                loaded.shadow_id,
                self.replica,
                loaded.totals(),
                dict(loaded.counts),
                pending,
                time.time(),
            )
            try:
                await self.journal.record(Recorded(row_list=rows))
            except BaseException:
                self._pending = pending + self._pending
                self._dirty = True
                raise

    # Helpers ---------------------------------------------------------------

    async def _tests(self, candidate: PolicySet) -> None:
        """The candidate's own Rego tests, on the engine in use (as the gate runs them)."""
        engine = self.policies.engine
        tests = await run_tests(engine, candidate)
        if not tests.ok:
            raise PolicyLoadError(
                f"the candidate's tests fail on the {tests.engine} engine: {tests.describe()}",
                reason="POLICY_TESTS_FAILED",
            )

    async def _end(self, row: dict[str, Any], ended: dict[str, Any], state: str) -> None:
        error = FailedPrecondition(
            f"shadow {row['shadow_id']} is no longer running (stopped or promoted meanwhile)",
            reason="NO_SHADOW",
        )
        verb = "promoted" if state == "PROMOTED" else "stopped"
        event = self._event(
            f"shadow {row['shadow_id']} of candidate {str(row['candidate_revision'])[:12]} "
            f"{verb} by {ended['ended_by'] or 'an unnamed principal'}",
            f"shadow_{verb}",
            str(ended["ended_by"]),
            {**row, **ended, "state": state},
        )
        await self.journal.record(
            Recorded(
                row_list=end_rows(str(row["shadow_id"]), error, ended, state=state),
                event_list=[event],
                audit_list=[(POLICY_CHANGES, self._line(event))],
            )
        )

    async def _unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        self._pending = []
        self._dirty = False
        if loaded is not None:
            await loaded.compiled.release()

    @staticmethod
    def _already(running: Mapping[str, Any]) -> FailedPrecondition:
        return FailedPrecondition(
            f"shadow {running['shadow_id']} (candidate {str(running['candidate_revision'])[:12]}, "
            f"started by {running['started_by'] or 'an unnamed principal'}) is running: "
            "promote or stop it before starting another",
            reason="SHADOW_RUNNING",
        )

    def _event(
        self, message: str, result: str, principal: str, row: Mapping[str, Any]
    ) -> EventRecord:
        """A POLICY event, shaped as a reload's (docs/schemas/policy_changes.schema.json),
        with the shadow (its files left out)."""
        active = self.policies.active.revision
        payload = {
            "result": result,
            "revision": active,
            "previous_revision": active,
            "trigger": "shadow",
            "error": "",
            "error_reason": "",
            "principal": principal,
            "gate": None,
            "shadow": {k: v for k, v in row.items() if k != "files"},
        }
        return EventRecord(kind="POLICY", message=message, payload=payload)

    @staticmethod
    def _line(event: EventRecord) -> dict[str, Any]:
        return {"time": event.time, **event.payload}

    async def _report(self, row: dict[str, Any]) -> dict[str, Any]:
        return shadow_report(
            row,
            await self.journal.shadows.replicas(str(row["shadow_id"])),
            await self.journal.shadows.counts(str(row["shadow_id"])),
            await self.journal.shadows.disagreements(str(row["shadow_id"]), 500),
            self._engine.name,
        )


def _policy_set(row: Mapping[str, Any]) -> PolicySet:
    files: dict[str, str] = orjson.loads(row["files"])
    return PolicySet.from_files(files, source=f"shadow {row['shadow_id']}")


__all__ = [
    "FLUSH_SECONDS",
    "POLL_SECONDS",
    "QUEUE_SIZE",
    "ShadowRunner",
]
