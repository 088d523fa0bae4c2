"""The health monitor: a 0-100 score, its components, and anomalies.

The :class:`HealthMonitor` is one of :attr:`Store.listeners`: it sees every
committed event and counts it into time buckets (``bucket_seconds``, 10 s by
default) kept for a sliding window (``window_buckets``, 30 buckets: the last
5 minutes). From the window it computes, on demand:

Components (each 0-100, mapping linear and clamped; weights sum to 1):

==================  ======  ===================================================
component           weight  score
==================  ======  ===================================================
policy_engine       0.25    100 while the engine answers, else 0
tool_success        0.25    100 * succeeded / reported results (RESULT events;
                            FAILED and TIMED_OUT count as failures)
decision_latency    0.15    p95 of DECISION ``latency_seconds``: 100 at <= 50 ms,
                            falling linearly to 0 at 1 s
fail_closed         0.10    fail-closed decisions / decisions: 100 at 0, 0 at 20 %
conflicts           0.05    CONFLICT events / plans submitted: 100 at 0, 0 at 2
rollbacks           0.10    plans finished ROLLED_BACK or FAILED_PARTIAL /
                            plans finished: 100 * (1 - rate)
approval_backlog    0.10    steps AWAITING_APPROVAL (live, from the
                            orchestrator): the lower of 100 at <= 10 steps
                            falling to 0 at 100, and 100 while the oldest has
                            waited <= 60 s falling to 0 at 1 h
==================  ======  ===================================================

A component with no data in the window scores 100 (no evidence of trouble).
The score is the weighted sum, rounded to 0.1. While the policy engine is
unavailable the score is capped at 25 and the status is UNHEALTHY (every call
fails closed). Otherwise the status is HEALTHY at >= 80, DEGRADED at >= 50,
else UNHEALTHY.

Readiness conditions (:mod:`interlock.readiness`) other than the engine are
components of weight 0 scoring 100 while they hold and 0 while they fail,
their ``detail`` the reason: ``store``, ``audit_files``, ``audit_chain``.
While one that gates serving fails (the store cannot commit, the audit files
cannot be written) the score is capped at 25 and the status is UNHEALTHY,
as for the engine; a failing warning (a broken audit chain) keeps the status
at DEGRADED at best.

Anomalies: for each of success_rate, decision_latency (mean per bucket),
fail_closed_rate and conflict_rate, the buckets of the window that hold data
for it form a series. An exponentially weighted mean and variance (alpha 0.3;
``d = x - m; m += a*d; v = (1-a) * (v + a*d*d)``) run over all but the latest
value; the latest is an anomaly when it lies more than ``k`` (3) deviations
from the mean, where the deviation is ``max(sqrt(v), floor)`` with a floor per
metric (so a perfectly flat warm-up does not make any wiggle infinite sigmas).
Detection needs at least ``warmup`` (5) earlier values, and the latest value
must be in the current or the previous bucket (stale data raises nothing).

Every ``health_interval_seconds`` the monitor writes ``system_health.json`` in
the data directory atomically (the same content GetHealth returns) and sets
the gauges ``interlock_health_score``, ``interlock_health_component_score``
and ``interlock_health_anomalies``. Counts start empty at each start-up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock import __version__
from interlock.audit import write_json_atomically
from interlock.journal import EventRecord
from interlock.metrics import Metrics
from interlock.readiness import ENGINE, Condition
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HEALTH_FILE = "system_health.json"
WEIGHTS = {
    "policy_engine": 0.25,
    "tool_success": 0.25,
    "decision_latency": 0.15,
    "fail_closed": 0.10,
    "conflicts": 0.05,
    "rollbacks": 0.10,
    "approval_backlog": 0.10,
}
ENGINE_DOWN_CAP = 25.0
HEALTHY_AT = 80.0
DEGRADED_AT = 50.0
ALPHA = 0.3
K_SIGMAS = 3.0
WARMUP = 5
SIGMA_FLOOR = {
    "success_rate": 0.05,
    "decision_latency": 0.025,
    "fail_closed_rate": 0.05,
    "conflict_rate": 0.25,
}
MAX_LATENCIES_PER_BUCKET = 2048


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def linear_score(value: float, good: float, bad: float) -> float:
    """100 at ``value <= good``, 0 at ``value >= bad``, linear between."""
    if value <= good:
        return 100.0
    return 100.0 * (1.0 - _clamp((value - good) / (bad - good)))


def status_of(score: float, engine_available: bool = True) -> str:
    if not engine_available or score < DEGRADED_AT:
        return "UNHEALTHY"
    return "HEALTHY" if score >= HEALTHY_AT else "DEGRADED"


@dataclass
class Ewma:
    """Exponentially weighted mean and variance."""

    alpha: float = ALPHA
    mean: float = 0.0
    var: float = 0.0
    n: int = 0

    def update(self, x: float) -> None:
        if self.n == 0:
            self.mean, self.var = x, 0.0
        else:
            d = x - self.mean
            self.mean += self.alpha * d
            self.var = (1.0 - self.alpha) * (self.var + self.alpha * d * d)
        self.n += 1


def detect(
    series: list[float],
    *,
    floor: float,
    k: float = K_SIGMAS,
    warmup: int = WARMUP,
    alpha: float = ALPHA,
) -> tuple[float, float, float] | None:
    """(observed, expected, deviation in sigmas) if the last value is anomalous."""
    if len(series) < warmup + 1:
        return None
    ewma = Ewma(alpha)
    for x in series[:-1]:
        ewma.update(x)
    observed = series[-1]
    sigma = max(math.sqrt(ewma.var), floor)
    deviation = abs(observed - ewma.mean) / sigma
    if deviation > k:
        return observed, ewma.mean, deviation
    return None


@dataclass
class Bucket:
    succeeded: int = 0
    failed: int = 0
    decisions: int = 0
    fail_closed: int = 0
    latency_sum: float = 0.0
    latencies: list[float] = field(default_factory=list)
    conflicts: int = 0
    plans_submitted: int = 0
    plans_finished: int = 0
    plans_rolled_back: int = 0

    def series_value(self, metric: str) -> float | None:
        if metric == "success_rate":
            results = self.succeeded + self.failed
            return self.succeeded / results if results else None
        if metric == "decision_latency":
            return self.latency_sum / len(self.latencies) if self.latencies else None
        if metric == "fail_closed_rate":
            return self.fail_closed / self.decisions if self.decisions else None
        if metric == "conflict_rate":
            if not (self.plans_submitted or self.conflicts):
                return None
            return self.conflicts / max(1, self.plans_submitted)
        raise ValueError(metric)


class HealthMonitor:
    def __init__(
        self,
        *,
        engine_available: Callable[[], bool],
        context: Callable[[], dict[str, Any]],
        approvals: Callable[[], Iterable[float]],
        conditions: Callable[[], Iterable[Condition]] = tuple,
        metrics: Metrics | None = None,
        data_dir: Path | None = None,
        interval_seconds: float = 5.0,
        bucket_seconds: float = 10.0,
        window_buckets: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``context`` gives the fixed GetHealth fields (engine, policy_revision,
        started_at, decisions); ``approvals`` the times since which the steps
        now AWAITING_APPROVAL have waited; ``conditions`` the readiness
        conditions (the engine's is :attr:`engine_available`)."""
        self.engine_available = engine_available
        self.conditions = conditions
        self.context = context
        self.approvals = approvals
        self.metrics = metrics
        self.data_dir = data_dir
        self.interval_seconds = interval_seconds
        self.clock = clock
        self.bucket_seconds = bucket_seconds
        self.window_buckets = window_buckets
        self.buckets: dict[int, Bucket] = {}
        self._task: asyncio.Task[None] | None = None

    def configure(self, *, bucket_seconds: float, window_buckets: int) -> None:
        """Change the bucket size and window; forgets what was counted."""
        self.bucket_seconds = bucket_seconds
        self.window_buckets = window_buckets
        self.buckets.clear()

    # Counting ------------------------------------------------------------------

    def _index(self, t: float) -> int:
        return math.floor(t / self.bucket_seconds)

    def _bucket(self, t: float) -> Bucket:
        index = self._index(t)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = Bucket()
            oldest = index - self.window_buckets
            for old in [i for i in self.buckets if i <= oldest]:
                del self.buckets[old]
        return bucket

    def on_events(self, events: list[EventRecord]) -> None:
        """A store listener: count each committed event into its bucket."""
        for e in events:
            kind, p = e.kind, e.payload
            if kind == "RESULT":
                b = self._bucket(e.time)
                if p.get("outcome") == "SUCCEEDED":
                    b.succeeded += 1
                else:
                    b.failed += 1
            elif kind == "DECISION":
                b = self._bucket(e.time)
                b.decisions += 1
                if p.get("fail_closed"):
                    b.fail_closed += 1
                latency = p.get("latency_seconds")
                if isinstance(latency, int | float) and len(b.latencies) < MAX_LATENCIES_PER_BUCKET:
                    b.latencies.append(float(latency))
                    b.latency_sum += float(latency)
            elif kind == "CONFLICT":
                self._bucket(e.time).conflicts += 1
            elif kind == "STATE_TRANSITION":
                if p.get("scope") == "plan" and p.get("from_state") == "":
                    self._bucket(e.time).plans_submitted += 1
            elif kind == "PLAN_FINISHED":
                b = self._bucket(e.time)
                b.plans_finished += 1
                if p.get("state") in ("ROLLED_BACK", "FAILED_PARTIAL"):
                    b.plans_rolled_back += 1

    # Scoring -------------------------------------------------------------------

    def _window(self, now: float) -> list[tuple[int, Bucket]]:
        current = self._index(now)
        return sorted(
            (i, b) for i, b in self.buckets.items() if current - self.window_buckets < i <= current
        )

    def components(self, now: float) -> list[dict[str, Any]]:
        window = [b for _, b in self._window(now)]
        span = f"last {self.bucket_seconds * self.window_buckets:g}s"
        out: list[dict[str, Any]] = []

        def add(name: str, score: float, detail: str) -> None:
            out.append(
                {
                    "name": name,
                    "score": round(score, 1),
                    "weight": WEIGHTS[name],
                    "detail": detail,
                }
            )

        available = self.engine_available()
        engine = self.context().get("engine", "")
        add(
            "policy_engine",
            100.0 if available else 0.0,
            f"{engine} engine {'answers' if available else 'is unavailable'}",
        )

        ok = sum(b.succeeded for b in window)
        results = ok + sum(b.failed for b in window)
        add(
            "tool_success",
            100.0 * ok / results if results else 100.0,
            f"{ok}/{results} results succeeded ({span})" if results else f"no results ({span})",
        )

        latencies = sorted(x for b in window for x in b.latencies)
        if latencies:
            p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]
            add(
                "decision_latency",
                linear_score(p95, 0.05, 1.0),
                f"p95 {p95 * 1000:.1f} ms over {len(latencies)} decisions ({span})",
            )
        else:
            add("decision_latency", 100.0, f"no decisions ({span})")

        decisions = sum(b.decisions for b in window)
        closed = sum(b.fail_closed for b in window)
        rate = closed / decisions if decisions else 0.0
        add(
            "fail_closed",
            linear_score(rate, 0.0, 0.2),
            f"{closed}/{decisions} decisions failed closed ({span})",
        )

        conflicts = sum(b.conflicts for b in window)
        submitted = sum(b.plans_submitted for b in window)
        per_plan = conflicts / max(1, submitted) if conflicts else 0.0
        add(
            "conflicts",
            linear_score(per_plan, 0.0, 2.0),
            f"{conflicts} conflicts over {submitted} plans submitted ({span})",
        )

        finished = sum(b.plans_finished for b in window)
        rolled = sum(b.plans_rolled_back for b in window)
        add(
            "rollbacks",
            100.0 * (1.0 - rolled / finished) if finished else 100.0,
            f"{rolled}/{finished} finished plans rolled back or failed partially ({span})",
        )

        waiting = list(self.approvals())
        oldest = max((now - t for t in waiting), default=0.0)
        add(
            "approval_backlog",
            min(linear_score(len(waiting), 10, 100), linear_score(oldest, 60, 3600)),
            f"{len(waiting)} steps awaiting approval"
            + (f", oldest waiting {oldest:.0f}s" if waiting else ""),
        )
        for condition in self.conditions():
            if condition.name != ENGINE:
                out.append(
                    {
                        "name": condition.name,
                        "score": 100.0 if condition.ok else 0.0,
                        "weight": 0.0,
                        "detail": condition.reason,
                    }
                )
        return out

    def anomalies(self, now: float) -> list[dict[str, Any]]:
        window = self._window(now)
        current = self._index(now)
        found = []
        for metric, floor in SIGMA_FLOOR.items():
            points = [(i, v) for i, b in window if (v := b.series_value(metric)) is not None]
            if not points or points[-1][0] < current - 1:
                continue
            hit = detect([v for _, v in points], floor=floor)
            if hit is None:
                continue
            observed, expected, deviation = hit
            found.append(
                {
                    "metric": metric,
                    "observed": observed,
                    "expected": expected,
                    "deviation": round(deviation, 2),
                    "window": f"{self.bucket_seconds:g}s bucket vs EWMA of the last "
                    f"{len(points) - 1} buckets with data",
                    "detected_at": now,
                }
            )
        return found

    def snapshot(self) -> dict[str, Any]:
        """The whole health document, as GetHealth and system_health.json give it."""
        now = self.clock()
        components = self.components(now)
        available = self.engine_available()
        score = round(sum(c["score"] * c["weight"] for c in components), 1)
        failing = [c for c in self.conditions() if not c.ok and c.name != ENGINE]
        blocked = any(c.gates for c in failing)
        if not available or blocked:
            score = min(score, ENGINE_DOWN_CAP)
        status = status_of(score, available and not blocked)
        if failing and status == "HEALTHY":
            status = "DEGRADED"
        doc: dict[str, Any] = {
            "status": status,
            "score": score,
            "components": components,
            "anomalies": self.anomalies(now),
            "engine_available": available,
            "version": __version__,
            "generated_at": now,
        }
        doc.update(self.context())
        self._set_gauges(doc)
        return doc

    def _set_gauges(self, doc: dict[str, Any]) -> None:
        if self.metrics is None:
            return
        self.metrics.health_score.set(doc["score"])
        for c in doc["components"]:
            self.metrics.health_component_score.labels(c["name"]).set(c["score"])
        self.metrics.health_anomalies.set(len(doc["anomalies"]))

    # The periodic file ---------------------------------------------------------

    async def write(self) -> dict[str, Any]:
        doc = self.snapshot()
        if self.data_dir is not None:
            await asyncio.to_thread(write_json_atomically, self.data_dir / HEALTH_FILE, doc)
        return doc

    async def _run(self) -> None:
        while True:
            try:
                await self.write()
            except Exception:  # a full disk must not stop the monitor
                log.exception("could not write %s", HEALTH_FILE)
            await asyncio.sleep(self.interval_seconds)

    def start(self) -> None:
        if self._task is None and self.interval_seconds > 0:
            self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


__all__ = [
    "HEALTH_FILE",
    "Ewma",
    "HealthMonitor",
    "detect",
    "linear_score",
    "status_of",
]
