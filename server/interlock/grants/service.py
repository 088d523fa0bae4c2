"""The grant service: create, list, revoke and expire grants; find the grants
that may cover a call; and the rows that count a grant's use.

A grant's use is committed with the decision it covers, under two guards
(:meth:`Grants.use_batch`): the grant's row is still ACTIVE and unexpired,
and its uses, with this one, number at most ``max_uses``. On PostgreSQL the
guards run under the journal's write lock, so replicas deciding at once
never take more than ``max_uses`` uses: a decision whose use loses is
decided again, and the grant, used up, is no longer offered to the policy.

A call is offered grants only when its (agent, tool) pair has had an ACTIVE
grant: the pairs are read at start, added by every GRANT CREATED event (this
replica's commits and other replicas', through the event feed) and read
again by the sweeper, so a held call of a pair with no grant costs no read.
A grant another replica just created may be seen a moment late (the call
then waits for an approval, as without it); a revocation or expiry never is:
the use's guard checks the row itself.

Expiry needs no timer to take effect (a grant past ``expires_at`` is never
offered); a sweeper records it (state EXPIRED, an event and an audit line),
exactly once across replicas (a guard on the ACTIVE state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from interlock.approvals import Approval
from interlock.audit import GRANTS_LOG
from interlock.auth import Principal
from interlock.contracts import Catalog
from interlock.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from interlock.grants.record import Constraint, Grant, Matcher, new_grant_id
from interlock.journal import Batch, EventRecord, Guard, Insert, Journal, Recorded, Row
from interlock.metrics import Metrics
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0
"""Longest the sweeper sleeps: it also records grants other replicas created."""
MATCHERS = 4096
"""Compiled constraints kept (a grant's constraint never changes)."""


class GrantTaken(Exception):
    """A grant's use lost: revoked, expired or used up since it was read."""

    def __init__(self, grant_id: str) -> None:
        super().__init__(f"grant {grant_id} was revoked, expired or used up meanwhile")
        self.grant_id = grant_id


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Grants:
    def __init__(self, journal: Journal, metrics: Metrics, *, max_seconds: float) -> None:
        self.journal = journal
        self.max_seconds = max_seconds
        r = metrics.registry
        self.events_total = Counter(
            "interlock_grant_events_total",
            "Grant events this replica committed, by action (CREATED, USED, EXPIRED, REVOKED).",
            ["action"],
            registry=r,
        )
        self.active = Gauge(
            "interlock_grants_active",
            "ACTIVE grants in the store, as this replica last counted (after each of its "
            f"grant changes, and every {SWEEP_SECONDS:g} s).",
            registry=r,
        )
        self._matchers: dict[str, Matcher] = {}
        self._pairs: set[tuple[str, str]] = set()
        """(agent, tool) pairs that have had an ACTIVE grant (never shrinks while running)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # Start and stop ------------------------------------------------------------

    async def start(self) -> None:
        self.journal.listeners.append(self._count)
        await self._load_pairs()
        await self._count_active()
        self._task = asyncio.create_task(self._sweep(), name="grant-expiry")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _load_pairs(self) -> None:
        self._pairs |= set(await self.journal.grants.active_pairs())

    def _count(self, events: list[EventRecord]) -> None:
        """A journal listener: this replica's committed GRANT events, counted."""
        changed = False
        for event in events:
            if event.kind == "GRANT":
                action = str(event.payload.get("action", ""))
                self.events_total.labels(action).inc()
                changed = changed or action != "USED"
        if changed:
            self._wake.set()  # the sweep counts the ACTIVE grants again now

    async def _count_active(self) -> None:
        self.active.set(await self.journal.grants.count_active())

    def on_events(self, events: list[EventRecord]) -> None:
        """A journal or EventHub listener: a grant was created (here or on another
        replica), so its pair's held calls look for grants from now on."""
        for event in events:
            if event.kind == "GRANT" and event.payload.get("action") == "CREATED":
                self._pairs.add((event.agent_id, event.tool))

    # Creating --------------------------------------------------------------------

    async def create(
        self,
        *,
        principal: Principal,
        catalog: Catalog,
        agent_id: str,
        tool: str,
        constraint: Constraint,
        plan_id: str,
        expires_at: float | None,
        max_uses: int,
        reason: str,
        approval: Approval | None = None,
        now: float | None = None,
    ) -> Grant:
        """Check and record a grant. INVALID_ARGUMENT for a malformed one,
        NOT_FOUND for an unknown agent or tool, PERMISSION_DENIED for a
        self-grant, FAILED_PRECONDITION when a revoked grant covered the same."""
        now = time.time() if now is None else now
        if approval is not None:
            agent_id = agent_id or approval.agent_id
            tool = tool or approval.tool
        violations: list[FieldViolation] = []
        if not agent_id:
            violations.append(FieldViolation("agent_id", "is required"))
        if not tool:
            violations.append(
                FieldViolation("tool", "is required: a grant covers one tool, never every tool")
            )
        if expires_at is None:
            violations.append(FieldViolation("expires_at", "is required: every grant expires"))
        elif expires_at <= now:
            violations.append(FieldViolation("expires_at", f"{_when(expires_at)} is in the past"))
        elif expires_at > now + self.max_seconds:
            violations.append(
                FieldViolation(
                    "expires_at",
                    f"{_when(expires_at)} is more than {self.max_seconds:g}s ahead "
                    "(the server's grant_max_seconds)",
                )
            )
        if max_uses < 0:
            violations.append(FieldViolation("max_uses", "must not be negative (0: no limit)"))
        if approval is not None:
            for name, ours, theirs in (
                ("agent_id", agent_id, approval.agent_id),
                ("tool", tool, approval.tool),
            ):
                if ours != theirs:
                    violations.append(
                        FieldViolation(
                            name,
                            f"is {ours!r}, but approval {approval.approval_id} is for {theirs!r}",
                        )
                    )
        if violations:
            raise InvalidArgument.of(violations)
        contract = catalog.tool(tool)  # NOT_FOUND
        catalog.agent(agent_id)  # NOT_FOUND
        properties = contract.arguments_schema.get("properties")
        problems = constraint.problems(properties if isinstance(properties, Mapping) else None)
        if problems:
            raise InvalidArgument.of(problems)
        self._refuse_self_grant(principal, agent_id, approval)
        revoked = await self.journal.grants.revoked_like(
            agent_id, tool, plan_id, constraint.as_json()
        )
        if revoked is not None:
            raise FailedPrecondition(
                f"grant {revoked['grant_id']} for {tool} by {agent_id} with the same constraint "
                f"was revoked by {revoked['revoked_by'] or 'someone'} "
                f"({revoked['revoke_reason'] or 'no reason given'}); a revoked grant is not "
                "granted again: change its constraint or ask for approvals",
                reason="GRANT_REVOKED",
            )
        assert expires_at is not None
        grant = Grant(
            grant_id=new_grant_id(),
            agent_id=agent_id,
            tool=tool,
            constraint=constraint,
            plan_id=plan_id,
            expires_at=expires_at,
            max_uses=max_uses,
            created_by=principal.id,
            created_at=now,
            reason=reason,
            approval_id=approval.approval_id if approval is not None else "",
        )
        uses = f"up to {max_uses} use(s)" if max_uses else "any number of uses"
        message = (
            f"grant {grant.grant_id} created by {principal.id}: {agent_id} may call {tool} "
            f"without a new approval until {_when(expires_at)}, {uses}"
        )
        await self.journal.record(
            Recorded(
                row_list=[Insert("grants", grant.values())],
                event_list=[self._event(grant, "CREATED", principal.id, reason, message, now)],
                audit_list=[(GRANTS_LOG, self._line(grant, "CREATED", principal.id, reason, now))],
            )
        )
        self._pairs.add((agent_id, tool))
        self._wake.set()
        return grant

    @staticmethod
    def _refuse_self_grant(principal: Principal, agent_id: str, approval: Approval | None) -> None:
        """The authorization policy refuses these first; kept here too, so no
        policy edit can let an agent widen its own calls."""
        if principal.kind == "agent":
            raise PermissionDenied(
                f"{principal.id} is an agent principal: agents may not create grants",
                reason="AGENT_MAY_NOT_GRANT",
            )
        if agent_id in principal.agents:
            raise PermissionDenied(
                f"{principal.id} acts as agent {agent_id} and may not grant to it",
                reason="SELF_GRANT",
            )
        if approval is not None and approval.requested_by == principal.id:
            raise PermissionDenied(
                f"{principal.id} asked for the call of approval {approval.approval_id} "
                "and may not grant it",
                reason="SELF_GRANT",
            )

    # Reading ---------------------------------------------------------------------

    async def get(self, grant_id: str) -> Grant:
        row = await self.journal.grants.get(grant_id)
        if row is None:
            raise NotFound(f"unknown grant {grant_id!r}", reason="UNKNOWN_GRANT")
        return Grant.from_row(row)

    async def find(
        self, *, agent_id: str = "", tool: str = "", states: Iterable[str] = ()
    ) -> list[Grant]:
        """Newest first; ``states`` as the API shows them (empty: all)."""
        wanted = set(states)
        stored = set()
        for state in wanted:  # EXHAUSTED and EXPIRED may still be ACTIVE rows
            stored |= {"ACTIVE", state} if state in ("EXHAUSTED", "EXPIRED") else {state}
        rows = await self.journal.grants.find(agent_id=agent_id, tool=tool, states=sorted(stored))
        now = time.time()
        grants = [Grant.from_row(r) for r in rows]
        return [g for g in grants if not wanted or g.state_at(now) in wanted]

    async def covering(
        self, agent_id: str, tool: str, plan_id: str, arguments: Mapping[str, Any], now: float
    ) -> list[Grant]:
        """The live grants with uses left whose constraint the arguments satisfy:
        what the policy is offered (input.grants)."""
        if (agent_id, tool) not in self._pairs:
            return []
        rows = await self.journal.grants.usable(agent_id, tool, plan_id, now)
        found = []
        for row in rows:
            grant = Grant.from_row(row)
            if grant.max_uses and grant.uses >= grant.max_uses:
                continue
            if self._matcher(grant).matches(arguments):
                found.append(grant)
        return found

    def _matcher(self, grant: Grant) -> Matcher:
        matcher = self._matchers.get(grant.grant_id)
        if matcher is None:
            if len(self._matchers) >= MATCHERS:
                self._matchers.clear()
            matcher = self._matchers[grant.grant_id] = grant.constraint.matcher()
        return matcher

    # Using -----------------------------------------------------------------------

    def use_batch(self, grant: Grant, decision_id: str, now: float) -> Batch:
        """The rows, event and audit line of a decision's use of ``grant``,
        committed with the decision; the commit raises :class:`GrantTaken`
        when the grant was revoked, expired or used up meanwhile."""
        rows: list[Row] = [
            Guard(
                "grants",
                GrantTaken(grant.grant_id),
                where={"grant_id": grant.grant_id, "state": "ACTIVE"},
                values={"last_used_at": now},
                newer_than=("expires_at", now),
            ),
            Insert(
                "grant_uses",
                {
                    "grant_id": grant.grant_id,
                    "decision_id": decision_id,
                    "used_at": now,
                    "replica": self.journal.replica,
                },
            ),
        ]
        if grant.max_uses:
            rows.append(
                Guard(
                    "grant_uses",
                    GrantTaken(grant.grant_id),
                    where={"grant_id": grant.grant_id},
                    at_most=grant.max_uses,
                )
            )
        of = f" of {grant.max_uses}" if grant.max_uses else ""
        message = (
            f"grant {grant.grant_id} used by decision {decision_id} "
            f"({grant.tool} by {grant.agent_id}; use {grant.uses + 1}{of} as read)"
        )
        event = self._event(grant, "USED", "", "", message, now, decision_id=decision_id)
        line = self._line(grant, "USED", "", "", now, decision_id=decision_id)
        return Batch(rows=rows, events=[event], audit=[(GRANTS_LOG, line)])

    # Revoking and expiring -------------------------------------------------------

    async def revoke(self, grant_id: str, principal: str, reason: str) -> Grant:
        grant = await self.get(grant_id)  # NOT_FOUND
        now = time.time()
        state = grant.state_at(now)
        if state in ("REVOKED", "EXPIRED"):
            raise FailedPrecondition(
                f"grant {grant_id} is already {state}", reason=f"GRANT_{state}"
            )
        grant.state, grant.revoked_by, grant.revoked_at = "REVOKED", principal, now
        grant.revoke_reason = reason
        message = f"grant {grant_id} revoked by {principal}" + (f": {reason}" if reason else "")
        await self._transition(grant, "REVOKED", principal, reason, message, now)
        return grant

    async def _transition(
        self, grant: Grant, action: str, principal: str, reason: str, message: str, now: float
    ) -> None:
        """ACTIVE -> ``grant.state``, once across replicas (FAILED_PRECONDITION otherwise)."""
        changed = Guard(
            "grants",
            FailedPrecondition(
                f"grant {grant.grant_id} was revoked or expired meanwhile",
                reason="GRANT_CHANGED",
            ),
            where={"grant_id": grant.grant_id, "state": "ACTIVE"},
            values={
                "state": grant.state,
                "revoked_by": grant.revoked_by,
                "revoked_at": grant.revoked_at,
                "revoke_reason": grant.revoke_reason,
            },
        )
        await self.journal.record(
            Recorded(
                row_list=[changed],
                event_list=[self._event(grant, action, principal, reason, message, now)],
                audit_list=[(GRANTS_LOG, self._line(grant, action, principal, reason, now))],
            )
        )

    async def expire_due(self, now: float | None = None) -> int:
        """Record every ACTIVE grant past its expiry as EXPIRED; how many this replica did."""
        now = time.time() if now is None else now
        done = 0
        for row in await self.journal.grants.due(now):
            grant = Grant.from_row(row)
            grant.state = "EXPIRED"
            message = f"grant {grant.grant_id} expired at {_when(grant.expires_at)}"
            try:
                await self._transition(grant, "EXPIRED", "", "", message, now)
                done += 1
            except FailedPrecondition:  # another replica (or a revoke) was first
                continue
        return done

    async def _sweep(self) -> None:
        while True:
            self._wake.clear()
            wait = SWEEP_SECONDS
            try:
                await self._load_pairs()
                await self.expire_due()
                await self._count_active()
                due = await self.journal.grants.next_expiry()
                if due is not None:
                    wait = min(wait, max(0.01, due - time.time()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("grants: recording expiries failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    # Events and audit lines ------------------------------------------------------

    def _line(
        self,
        grant: Grant,
        action: str,
        principal: str,
        reason: str,
        now: float,
        *,
        decision_id: str = "",
    ) -> dict[str, Any]:
        return {
            "time": now,
            "grant_id": grant.grant_id,
            "action": f"GRANT_{action}",
            "agent_id": grant.agent_id,
            "tool": grant.tool,
            "plan_id": grant.plan_id,
            "constraint": grant.constraint.as_dict(),
            "expires_at": grant.expires_at,
            "max_uses": grant.max_uses,
            "state": grant.state,
            "principal": principal,
            "reason": reason,
            "created_by": grant.created_by,
            "approval_id": grant.approval_id,
            "decision_id": decision_id,
        }

    def _event(
        self,
        grant: Grant,
        action: str,
        principal: str,
        reason: str,
        message: str,
        now: float,
        *,
        decision_id: str = "",
    ) -> EventRecord:
        return EventRecord(
            kind="GRANT",
            message=message,
            plan_id=grant.plan_id,
            agent_id=grant.agent_id,
            decision_id=decision_id,
            tool=grant.tool,
            payload={
                "grant_id": grant.grant_id,
                "action": action,
                "state": grant.state,
                "expires_at": grant.expires_at,
                "max_uses": grant.max_uses,
                "principal": principal,
                "reason": reason,
                "created_by": grant.created_by,
            },
            time=now,
        )


__all__ = ["GrantTaken", "Grants"]
