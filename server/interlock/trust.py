"""Trust that adapts: demotion and earned promotion of each (agent, tool) pair.

Every pair starts TRUSTED. Its committed outcomes move it (issue 16, item 2):

- A *bad outcome* is a FAILED or TIMED_OUT result, a LIVE plan step whose
  worker vanished (AMBIGUOUS), and a human's denial of an approval the
  policy asked for (the APPROVAL_MISMATCH learning signal's evidence). ``failures`` bad outcomes within ``window_seconds`` demote the
  pair: its state becomes DEMOTED until ``demoted_until``, a cool-down of
  ``cooldown_seconds`` that doubles with each demotion of the pair, up to
  ``max_cooldown_seconds``.
- Once the cool-down has ended the pair is on PROBATION: ``promote_after``
  consecutive clean DRY_RUN successes promote it back to TRUSTED. A bad
  outcome on probation starts the count again, and ``failures`` of them in
  the window demote it again, for twice as long. A success during the
  cool-down does not count: trust is slow to earn and quick to lose.
- A human may promote a pair at once (``ResetTrust``, ``interlock trust
  reset``); that also forgets its demotions, so the next cool-down is the
  first again.

The parameters are policy data (``data.interlock.config.trust``), read from
the active policy set, so they change with a reload. The state reaches the
policy as ``input.trust`` (:meth:`TrustBook.policy_view`); the shipped
policy (``policies/interlock/trust``) caps LIVE at DRY_RUN while the pair is
DEMOTED or on PROBATION and says why in the decision's reasons.

Where the state lives: one ``trust_pairs`` row per pair, written in the same
journal transaction as the result that changes it, under a guard on the
row's version (:class:`~interlock.journal.Guard`): across replicas on
PostgreSQL, exactly one of two concurrent changes of a pair wins and the
other is computed again from the row as it now is, so every replica agrees.
A change of state (demoted, promoted, reset) also commits a TRUST event and
a line of ``trust.jsonl``. On SQLite, one process owns the file, so the rows
are also kept in memory (the decision path reads them without a query); on
PostgreSQL every decision reads the pair's row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from interlock.audit import TRUST_LOG
from interlock.errors import FieldViolation, InvalidArgument, Unavailable
from interlock.journal import AuditLine, EventRecord, Guard, Journal, Recorded, Row, Upsert
from interlock.journal.trust import TrustPairs
from interlock.metrics import Metrics

log = logging.getLogger(__name__)

TRUSTED, DEMOTED, PROBATION = "TRUSTED", "DEMOTED", "PROBATION"
BAD_OUTCOMES = {"FAILED": "failure", "TIMED_OUT": "timeout"}
"""Result outcomes that count against a pair, and their word in reasons."""
DENIAL = "denial"
"""A human denied an approval the policy asked for."""
AMBIGUOUS = "ambiguous outcome"
"""A LIVE plan step's worker vanished: its outcome is unknown (AMBIGUOUS)."""
CHANGE_ATTEMPTS = 20
"""Guarded writes of one change before giving up while other writers keep winning."""


@dataclass(frozen=True)
class TrustParams:
    """The rules' numbers, from ``data.interlock.config.trust``."""

    failures: int = 3
    """Bad outcomes within the window that demote a pair."""
    window_seconds: float = 600.0
    """How far back bad outcomes count."""
    cooldown_seconds: float = 60.0
    """The first demotion's cool-down; each further demotion doubles it."""
    max_cooldown_seconds: float = 3600.0
    """The longest cool-down."""
    promote_after: int = 5
    """Consecutive clean DRY_RUN successes after the cool-down that promote a pair."""

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TrustParams:
        """The parameters of a policy set's data; missing ones take the defaults.

        Raises ValueError naming the field when one is not a positive number.
        """
        raw = data.get("interlock", {}).get("config", {}).get("trust", {}) or {}
        if not isinstance(raw, Mapping):
            raise ValueError("interlock/config: trust must be a mapping")
        values: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            value = raw.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"interlock/config: trust.{name} must be a positive number")
            values[name] = type(default)(value)
        return cls(**values)

    def cooldown(self, demotions: int) -> float:
        """The cool-down of a pair's ``demotions``-th demotion (1 for the first)."""
        return min(self.cooldown_seconds * 2.0 ** max(0, demotions - 1), self.max_cooldown_seconds)


@dataclass(frozen=True)
class TrustRow:
    """A pair's stored state."""

    agent_id: str
    tool: str
    state: str = TRUSTED
    """TRUSTED or DEMOTED (PROBATION is DEMOTED after ``demoted_until``)."""
    failures: tuple[tuple[float, str], ...] = ()
    """Bad outcomes counted toward the next demotion: (time, kind)."""
    demoted_at: float = 0.0
    demoted_until: float = 0.0
    demotions: int = 0
    clean_runs: int = 0
    reason: str = ""
    """Why the pair was last demoted, promoted or reset."""
    version: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrustRow:
        return cls(
            agent_id=row["agent_id"],
            tool=row["tool"],
            state=row["state"],
            failures=tuple((float(t), str(k)) for t, k in orjson.loads(row["failures"])),
            demoted_at=float(row["demoted_at"]),
            demoted_until=float(row["demoted_until"]),
            demotions=int(row["demotions"]),
            clean_runs=int(row["clean_runs"]),
            reason=row["reason"],
            version=int(row["version"]),
            updated_at=float(row["updated_at"]),
        )

    def values(self) -> dict[str, Any]:
        """The row's columns that change (not the key)."""
        return {
            "state": self.state,
            "failures": orjson.dumps([list(f) for f in self.failures]).decode(),
            "demoted_at": self.demoted_at,
            "demoted_until": self.demoted_until,
            "demotions": self.demotions,
            "clean_runs": self.clean_runs,
            "reason": self.reason,
            "version": self.version,
            "updated_at": self.updated_at,
        }

    def effective(self, now: float) -> str:
        """TRUSTED, DEMOTED (cooling down) or PROBATION (earning promotion back)."""
        if self.state != DEMOTED:
            return TRUSTED
        return DEMOTED if now < self.demoted_until else PROBATION

    def recent(self, now: float, params: TrustParams) -> tuple[tuple[float, str], ...]:
        """The bad outcomes still inside the window."""
        return tuple(f for f in self.failures if f[0] > now - params.window_seconds)


@dataclass(frozen=True)
class Transition:
    """A change of state a fact committed: demoted, promoted or reset."""

    action: str
    before: TrustRow
    after: TrustRow
    principal: str = ""
    cooldown_seconds: float = 0.0


def clock_text(at: float) -> str:
    """A time of day in reasons: ``12:04:05 UTC``."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


def _span(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def _cause(failures: Iterable[tuple[float, str]], params: TrustParams) -> str:
    """``3 failures in 10 min`` (or ``2 failures and 1 denial in 10 min``)."""
    counts: dict[str, int] = {}
    for _, kind in failures:
        counts[kind] = counts.get(kind, 0) + 1
    parts = [f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(counts.items())]
    words = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    return f"{words} in {_span(params.window_seconds)}"


def apply_outcome(
    row: TrustRow, kind: str, mode: str, now: float, params: TrustParams
) -> tuple[TrustRow, Transition | None]:
    """The pair after one outcome: ``kind`` is ``clean``, or a bad outcome's word
    (failure, timeout, denial); ``mode`` the mode it ran in. Pure."""
    phase = row.effective(now)
    if kind == "clean":
        if phase != PROBATION or mode != "DRY_RUN":
            return row, None
        runs = row.clean_runs + 1
        if runs < params.promote_after:
            return replace(row, clean_runs=runs, version=row.version + 1, updated_at=now), None
        reason = (
            f"{row.tool} promoted for {row.agent_id} after {runs} clean DRY_RUN runs "
            "since its cool-down ended"
        )
        after = replace(
            row,
            state=TRUSTED,
            failures=(),
            clean_runs=0,
            reason=reason,
            version=row.version + 1,
            updated_at=now,
        )
        return after, Transition("promoted", row, after)
    failures = (*row.recent(now, params), (now, kind))
    if phase == DEMOTED or len(failures) < params.failures:
        after = replace(
            row, failures=failures, clean_runs=0, version=row.version + 1, updated_at=now
        )
        return after, None
    demotions = row.demotions + 1
    cooldown = params.cooldown(demotions)
    until = now + cooldown
    reason = (
        f"{row.tool} demoted for {row.agent_id} until {clock_text(until)} after "
        f"{_cause(failures, params)}"
    )
    after = replace(
        row,
        state=DEMOTED,
        failures=(),
        demoted_at=now,
        demoted_until=until,
        demotions=demotions,
        clean_runs=0,
        reason=reason,
        version=row.version + 1,
        updated_at=now,
    )
    return after, Transition("demoted", row, after, cooldown_seconds=cooldown)


def reset(row: TrustRow, principal: str, why: str, now: float) -> tuple[TrustRow, Transition]:
    """A human promotes the pair back and forgets its demotions."""
    reason = f"{row.tool} reset to TRUSTED for {row.agent_id} by {principal}: {why}"
    after = replace(
        row,
        state=TRUSTED,
        failures=(),
        demoted_until=0.0,
        demotions=0,
        clean_runs=0,
        reason=reason,
        version=row.version + 1,
        updated_at=now,
    )
    return after, Transition("reset", row, after, principal=principal)


class TrustChanged(Exception):
    """Another writer changed the pair's row since it was read."""


@dataclass
class TrustChange:
    """A pair's new state as a journal fact: the guarded row update, and for a
    change of state its TRUST event and ``trust.jsonl`` line."""

    after: TrustRow
    transition: Transition | None = None
    why: str = ""
    params: TrustParams = field(default_factory=TrustParams)

    def rows(self) -> Iterable[Row]:
        a = self.after
        return [
            Guard(
                "trust_pairs",
                TrustChanged(f"the trust of {a.tool} for {a.agent_id} changed meanwhile"),
                where={"agent_id": a.agent_id, "tool": a.tool, "version": a.version - 1},
                values=a.values(),
            )
        ]

    def _line(self) -> dict[str, Any]:
        t = self.transition
        assert t is not None
        a = t.after
        return {
            "time": a.updated_at,
            "action": t.action,
            "agent_id": a.agent_id,
            "tool": a.tool,
            "from_state": t.before.effective(a.updated_at),
            "to_state": a.state,
            "demoted_until": a.demoted_until,
            "demotions": a.demotions,
            "cooldown_seconds": t.cooldown_seconds,
            "principal": t.principal,
            "why": self.why,
            "reason": a.reason,
        }

    def events(self) -> Iterable[EventRecord]:
        if self.transition is None:
            return []
        line = self._line()
        return [
            EventRecord(
                kind="TRUST",
                message=self.after.reason,
                agent_id=self.after.agent_id,
                tool=self.after.tool,
                payload=line,
                time=line["time"],
            )
        ]

    def audit(self) -> Iterable[AuditLine]:
        return [(TRUST_LOG, self._line())] if self.transition is not None else []


def view(row: TrustRow, now: float, params: TrustParams) -> dict[str, Any]:
    """A pair's state as GetTrust and the CLI show it."""
    recent = row.recent(now, params)
    return {
        "agent_id": row.agent_id,
        "tool": row.tool,
        "state": row.effective(now),
        "failures": len(recent),
        "failures_needed": params.failures,
        "window_seconds": params.window_seconds,
        "demoted_at": row.demoted_at,
        "demoted_until": row.demoted_until,
        "demotions": row.demotions,
        "clean_runs": row.clean_runs,
        "clean_runs_needed": params.promote_after,
        "reason": row.reason,
        "updated_at": row.updated_at,
    }


class TrustBook:
    """Reads and changes the trust of pairs; the decision path asks it for
    ``input.trust``, results and denials tell it their outcomes."""

    def __init__(self, journal: Journal, metrics: Metrics) -> None:
        self.journal = journal
        self.pairs = TrustPairs(journal.backend)
        self._memory: dict[tuple[str, str], TrustRow] = {}
        """SQLite only: every pair read or written so far (one process owns the file)."""
        self._tasks: set[asyncio.Task[None]] = set()
        r = metrics.registry
        self.demotions_total = Counter(
            "interlock_trust_demotions_total",
            "Demotions of an (agent, tool) pair to DRY_RUN, by tool.",
            ["tool"],
            registry=r,
        )
        self.promotions_total = Counter(
            "interlock_trust_promotions_total",
            "Promotions of an (agent, tool) pair back to TRUSTED, by tool and how (earned, reset).",
            ["tool", "how"],
            registry=r,
        )
        self.demoted_pairs = Gauge(
            "interlock_trust_demoted_pairs",
            "(agent, tool) pairs demoted (cooling down or on probation) as this replica last saw.",
            registry=r,
        )
        self._demoted: set[tuple[str, str]] = set()
        self._params: tuple[str, TrustParams] = ("", TrustParams())

    def params(self, revision: str, data: Mapping[str, Any]) -> TrustParams:
        """The parameters of a policy set (parsed once per revision). A set whose
        ``trust`` data does not check keeps the defaults, and the log says why."""
        if self._params[0] != revision:
            try:
                parsed = TrustParams.from_data(data)
            except ValueError as exc:
                log.error("policy revision %s: %s; the trust defaults apply", revision[:12], exc)
                parsed = TrustParams()
            self._params = (revision, parsed)
        return self._params[1]

    def start(self) -> None:
        """Count the pairs demoted at start-up (the gauge)."""
        for row in self.pairs.demoted_sync():
            self._demoted.add((row["agent_id"], row["tool"]))
        self.demoted_pairs.set(len(self._demoted))

    async def close(self) -> None:
        for task in list(self._tasks):
            try:
                await task
            except Exception:
                log.exception("trust: a pending change failed")

    # Reading ---------------------------------------------------------------

    async def row(self, agent_id: str, tool: str, *, fresh: bool = False) -> TrustRow:
        key = (agent_id, tool)
        if not self.journal.shared and not fresh:
            known = self._memory.get(key)
            if known is not None:
                return known
        stored = await self.pairs.get(agent_id, tool)
        found = TrustRow.from_row(stored) if stored else TrustRow(agent_id, tool, version=-1)
        if not self.journal.shared:
            self._memory[key] = found
        return found

    async def policy_view(
        self, agent_id: str, tool: str, params: TrustParams, now: float
    ) -> dict[str, Any]:
        """``input.trust``: the pair's state at ``now`` and the facts its reason needs."""
        row = await self.row(agent_id, tool)
        state = row.effective(now)
        recent = row.recent(now, params)
        out: dict[str, Any] = {"state": state, "failures": len(recent)}
        if state != TRUSTED:
            out |= {
                "demoted_until": row.demoted_until,
                "until": clock_text(row.demoted_until),
                "demotions": row.demotions,
                "clean_runs": row.clean_runs,
                "clean_runs_needed": params.promote_after,
                "reason": row.reason,
            }
        return out

    async def find(self, agent_id: str, tool: str, params: TrustParams) -> list[dict[str, Any]]:
        now = time.time()
        if agent_id and tool:
            rows = [await self.row(agent_id, tool, fresh=True)]
        else:
            rows = [
                TrustRow.from_row(r) for r in await self.pairs.find(agent_id=agent_id, tool=tool)
            ]
        return [view(r, now, params) for r in rows]

    # Changing --------------------------------------------------------------

    async def _ensure(self, row: TrustRow) -> TrustRow:
        """A pair never seen has its row made first (a no-op when another made it)."""
        if row.version >= 0:
            return row
        await self.journal.record(
            Recorded(
                row_list=[
                    Upsert(
                        "trust_pairs",
                        {"agent_id": row.agent_id, "tool": row.tool},
                        ("agent_id", "tool"),
                    )
                ]
            )
        )
        return await self.row(row.agent_id, row.tool, fresh=True)

    def change(
        self, row: TrustRow, kind: str, mode: str, params: TrustParams, now: float
    ) -> TrustChange | None:
        """The fact of an outcome, or None when it changes nothing (no write)."""
        after, transition = apply_outcome(row, kind, mode, now, params)
        if after is row:
            return None
        return TrustChange(after, transition, params=params)

    async def outcome(
        self,
        agent_id: str,
        tool: str,
        kind: str,
        mode: str,
        params: TrustParams,
        now: float,
        *,
        fresh: bool = False,
    ) -> TrustChange | None:
        """The change an outcome makes to the pair as now stored (None: none).
        Outcomes in MOCK mode say nothing of the tool, and change nothing."""
        if mode == "MOCK":
            return None
        row = await self.row(agent_id, tool, fresh=fresh)
        change = self.change(row, kind, mode, params, now)
        if change is not None and row.version < 0:
            change = self.change(await self._ensure(row), kind, mode, params, now)
        return change

    def committed(self, change: TrustChange) -> None:
        """A change is on disk: memory, the metrics and the log follow."""
        a = change.after
        if not self.journal.shared:
            self._memory[(a.agent_id, a.tool)] = a
        t = change.transition
        if t is None:
            return
        key = (a.agent_id, a.tool)
        if t.action == "demoted":
            self.demotions_total.labels(a.tool).inc()
            self._demoted.add(key)
            log.warning("%s", a.reason)
        else:
            self.promotions_total.labels(
                a.tool, "earned" if t.action == "promoted" else "reset"
            ).inc()
            self._demoted.discard(key)
            log.info("%s", a.reason)
        self.demoted_pairs.set(len(self._demoted))

    async def record_outcome(
        self, agent_id: str, tool: str, kind: str, mode: str, params: TrustParams
    ) -> None:
        """An outcome committed elsewhere (a human's denial): its change, guarded."""
        fresh = False
        for _ in range(CHANGE_ATTEMPTS):
            change = await self.outcome(
                agent_id, tool, kind, mode, params, time.time(), fresh=fresh
            )
            if change is None:
                return
            try:
                await self.journal.record(change)
            except TrustChanged:
                fresh = True
                continue
            self.committed(change)
            return
        log.warning("trust: gave up recording a %s of %s for %s", kind, tool, agent_id)

    def record_later(
        self, agent_id: str, tool: str, kind: str, mode: str, params: TrustParams
    ) -> None:
        """:meth:`record_outcome` in the background (a listener on the event loop)."""
        task = asyncio.ensure_future(self.record_outcome(agent_id, tool, kind, mode, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reset(
        self, agent_id: str, tool: str, principal: str, why: str, params: TrustParams
    ) -> dict[str, Any]:
        """A human promotes the pair back (ResetTrust)."""
        violations = []
        if not why.strip():
            violations.append(
                FieldViolation("reason", "is required: say why the pair is trusted again")
            )
        if violations:
            raise InvalidArgument.of(violations)
        for _ in range(CHANGE_ATTEMPTS):
            row = await self._ensure(await self.row(agent_id, tool, fresh=True))
            now = time.time()
            after, transition = reset(row, principal, why, now)
            change = TrustChange(after, transition, why=why, params=params)
            try:
                await self.journal.record(change)
            except TrustChanged:
                continue
            self.committed(change)
            return view(after, now, params)
        raise Unavailable(f"the trust of {tool} for {agent_id} kept changing; try again")


__all__ = [
    "AMBIGUOUS",
    "BAD_OUTCOMES",
    "DEMOTED",
    "DENIAL",
    "PROBATION",
    "TRUSTED",
    "TrustBook",
    "TrustChange",
    "TrustChanged",
    "TrustParams",
    "TrustRow",
    "apply_outcome",
    "view",
]
