"""The approval service: create, resolve, use, expire and escalate approvals.

Misuse it refuses (presenting an approval that does not cover the call or is
no longer usable; resolving one already resolved; approving twice) is put on
the record as an access denial (:mod:`interlock.denials`) before the caller
gets the refusal, which stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from interlock.approvals.record import LIVE_STATES, Approval, new_approval_id
from interlock.audit import APPROVALS_LOG
from interlock.denials import Denial, DenialLog, caller
from interlock.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InterlockError,
    InvalidArgument,
    NotFound,
)
from interlock.journal import Batch, EventRecord, Guard, Journal, Row, Upsert
from interlock.metrics import Metrics
from interlock.policy.engine import ApprovalRequirement
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)


_PAYLOAD_FIELDS = (
    "approval_id",
    "action",
    "from_state",
    "principal",
    "reason",
    "approver_roles",
    "approvals_required",
    "approved_by",
    "arguments_hash",
    "policy_revision",
)


def _unchanged(approval_id: str, prior: dict[str, Any], action: str) -> Guard:
    """The approval's row still has the state, approvals and escalation it was
    read with: across replicas, exactly one change of each read wins (one use
    of an APPROVED approval, one resolution of a PENDING one)."""
    if action == "USED":
        error = FailedPrecondition(
            f"approval {approval_id} was used by another call meanwhile", reason="APPROVAL_USED"
        )
    else:
        error = FailedPrecondition(
            f"approval {approval_id} was changed by another replica meanwhile; ask again",
            reason="APPROVAL_CHANGED",
        )
    where: dict[str, Any] = {
        k: prior[k] for k in ("state", "approvals", "escalation_level") if k in prior
    }
    return Guard(
        "approvals",
        error,
        where={"approval_id": approval_id, **where},
        values={"state": prior.get("state", "")},
    )


class Approvals:
    def __init__(self, journal: Journal, metrics: Metrics) -> None:
        self.journal = journal
        self.metrics = metrics
        self.denials = DenialLog(journal)
        self.live: dict[str, Approval] = {}
        """PENDING and APPROVED approvals by id."""
        self._by_decision: dict[str, str] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._reserved: set[str] = set()
        self._wake = asyncio.Event()
        self._refresh_lock = asyncio.Lock()
        self._refreshes: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        """Serializes changes of state (resolve, expire, escalate, cancel)."""
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[Approval], None]] = []
        """Called after every committed change of state (the orchestrator wakes plans)."""
        self.denied: list[Callable[[Approval], None]] = []
        """Called once, on the replica that committed it, after a human denies an
        approval (the pair's trust counts it: :mod:`interlock.trust`)."""
        self.metrics.track_approvals(self.pending_since)

    def pending_since(self) -> list[float]:
        """When each approval now PENDING was requested (for the gauges and health)."""
        return [a.created_at for a in list(self.live.values()) if a.state == "PENDING"]

    # Start and stop ------------------------------------------------------------

    async def start(self) -> None:
        rows = await self.journal.approvals.live()
        for row in rows:
            self._keep(Approval.from_row(row))
        if rows:
            log.info("restored %d pending or approved approval(s)", len(rows))
        self._task = asyncio.create_task(self._timers(), name="approval-timers")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def _keep(self, approval: Approval) -> None:
        if approval.state in LIVE_STATES:
            self.live[approval.approval_id] = approval
            self._by_decision[approval.decision_id] = approval.approval_id
        else:
            self.live.pop(approval.approval_id, None)
            self._by_decision.pop(approval.decision_id, None)

    # Creating ------------------------------------------------------------------

    def new(
        self,
        *,
        decision_id: str,
        plan_id: str,
        step_id: str,
        tool: str,
        agent_id: str,
        arguments_hash: str,
        policy_revision: str,
        requested_by: str,
        requirement: ApprovalRequirement,
        confidence: float,
        now: float,
    ) -> tuple[Approval, Batch]:
        """A new PENDING approval and the rows, event and audit line that
        create it; the caller commits them with the held decision, then
        calls :meth:`created`."""
        approval = Approval(
            approval_id=new_approval_id(),
            decision_id=decision_id,
            plan_id=plan_id,
            step_id=step_id,
            tool=tool,
            agent_id=agent_id,
            arguments_hash=arguments_hash,
            policy_revision=policy_revision,
            requested_by=requested_by,
            requirement=requirement,
            created_at=now,
            confidence=confidence,
            approver_roles=list(requirement.approver_roles),
        )
        need = requirement.approvals_required
        message = (
            f"approval {approval.approval_id} requested for {tool} by {agent_id}: "
            f"{need} approver{'s' if need > 1 else ''} with role "
            f"{' or '.join(approval.approver_roles)} within {requirement.ttl_seconds:g}s"
        )
        return approval, self._batch(approval, "", "REQUESTED", requested_by, "", message, now)

    def approved_by_policy(
        self,
        *,
        decision_id: str,
        plan_id: str,
        step_id: str,
        tool: str,
        agent_id: str,
        arguments_hash: str,
        policy_revision: str,
        requested_by: str,
        requirement: ApprovalRequirement,
        confidence: float,
        now: float,
    ) -> tuple[Approval, Batch]:
        """An approval the policy made itself (``requirement.auto_approve``),
        approved by ``policy:<revision>`` and used at once by ``decision_id``:
        the same record, APPROVAL event and audit line as a human's. The caller
        commits them with the decision, then calls :meth:`used`."""
        principal = f"policy:{policy_revision}"
        reason = requirement.auto_approve
        approval = Approval(
            approval_id=new_approval_id(),
            decision_id=decision_id,
            plan_id=plan_id,
            step_id=step_id,
            tool=tool,
            agent_id=agent_id,
            arguments_hash=arguments_hash,
            policy_revision=policy_revision,
            requested_by=requested_by,
            requirement=requirement,
            created_at=now,
            confidence=confidence,
            state="USED",
            approver_roles=list(requirement.approver_roles),
            approvals=[{"principal": principal, "roles": ["policy"], "at": now, "reason": reason}],
            reason=reason,
            resolved_by=principal,
            resolved_at=now,
            used_by_decision_id=decision_id,
        )
        message = (
            f"approval {approval.approval_id} for {tool} by {agent_id} approved by "
            f"policy:{policy_revision[:12]}: {reason}"
        )
        self.metrics.approvals.labels("approved").inc()
        return approval, self._batch(approval, "", "APPROVED", principal, reason, message, now)

    def created(self, approval: Approval) -> None:
        self._keep(approval)
        self.metrics.approvals.labels("requested").inc()
        self._wake.set()

    def _batch(
        self,
        a: Approval,
        before: str,
        action: str,
        principal: str,
        reason: str,
        message: str,
        now: float,
        prior: dict[str, Any] | None = None,
    ) -> Batch:
        line = {
            "time": now,
            "approval_id": a.approval_id,
            "decision_id": a.decision_id,
            "plan_id": a.plan_id,
            "step_id": a.step_id,
            "tool": a.tool,
            "agent_id": a.agent_id,
            "action": action,
            "from_state": before,
            "to_state": a.state,
            "principal": principal,
            "reason": reason,
            "approver_roles": list(a.approver_roles),
            "approvals_required": a.approvals_required,
            "approved_by": a.approved_by,
            "arguments_hash": a.arguments_hash,
            "policy_revision": a.policy_revision,
            "used_by_decision_id": a.used_by_decision_id,
        }
        # The event's payload: the audit line's own fields, and what watchers and
        # the learning signals read (state, expiry, confidence, resolution).
        payload = {k: line[k] for k in _PAYLOAD_FIELDS} | {
            "state": a.state,
            "escalation_level": a.escalation_level,
            "expires_at": a.expires_at,
            "confidence": a.confidence,
        }
        if action in ("APPROVED", "DENIED"):
            payload["resolution"] = "APPROVE" if action == "APPROVED" else "DENY"
        event = EventRecord(
            kind="APPROVAL",
            message=message,
            plan_id=a.plan_id,
            step_id=a.step_id,
            agent_id=a.agent_id,
            decision_id=a.decision_id,
            tool=a.tool,
            payload=payload,
            time=now,
        )
        rows: list[Row] = []
        if before:  # compare and set: the row is still as this change read it
            rows.append(_unchanged(a.approval_id, prior or {}, action))
        rows.append(Upsert("approvals", a.values(), ("approval_id",)))
        return Batch(rows=rows, events=[event], audit=[(APPROVALS_LOG, line)])

    async def _commit(
        self, before: Approval, after: Approval, action: str, principal: str, reason: str, msg: str
    ) -> Approval:
        """Commit a change; memory follows only once it is on disk."""
        now = after.resolved_at or time.time()
        try:
            await self.journal.commit(
                self._batch(
                    after, before.state, action, principal, reason, msg, now, before.values()
                )
            )
        except FailedPrecondition:
            await self.refresh(before.approval_id)  # another replica changed it first
            raise
        self._keep(after)
        self._notify(after)
        return after

    def _notify(self, approval: Approval) -> None:
        event = self._changed.pop(approval.approval_id, None)
        if event is not None:
            event.set()
        for listener in self.listeners:
            try:
                listener(approval)
            except Exception:
                log.exception("approval listener failed")
        self._wake.set()

    # Other replicas ------------------------------------------------------------

    def on_remote_events(self, events: list[EventRecord]) -> None:
        """An EventHub remote listener: another replica changed these approvals."""
        ids = list(
            dict.fromkeys(e.payload.get("approval_id", "") for e in events if e.kind == "APPROVAL")
        )
        ids = [i for i in ids if i]
        if ids:
            task = asyncio.create_task(self._refresh_all(ids), name="approvals-refresh")
            self._refreshes.add(task)
            task.add_done_callback(self._refreshes.discard)

    async def _refresh_all(self, ids: list[str]) -> None:
        async with self._refresh_lock:  # in the order the feed saw them
            for approval_id in ids:
                try:
                    await self.refresh(approval_id)
                except Exception:
                    log.exception("approvals: could not refresh %s from the store", approval_id)

    async def refresh(self, approval_id: str) -> Approval | None:
        """Read an approval from the store; when it changed, keep it and tell
        waiters and listeners (AwaitApproval, the orchestrator's plan steps)."""
        row = await self.journal.approvals.get(approval_id)
        if row is None:
            return None
        fresh = Approval.from_row(row)
        known = self.live.get(approval_id)
        if known is not None and known.values() == fresh.values():
            return fresh
        if known is None and fresh.state not in LIVE_STATES:
            self._notify(fresh)  # a waiter may still be waiting on it
            return fresh
        self._keep(fresh)
        self._notify(fresh)
        return fresh

    # Reading -------------------------------------------------------------------

    async def get(self, approval_id: str) -> Approval:
        live = self.live.get(approval_id)
        if live is not None:
            return live
        row = await self.journal.approvals.get(approval_id)
        if row is None:
            raise NotFound(f"unknown approval {approval_id!r}", reason="UNKNOWN_APPROVAL")
        return Approval.from_row(row)

    def for_decision(self, decision_id: str) -> Approval | None:
        approval_id = self._by_decision.get(decision_id)
        return self.live.get(approval_id) if approval_id else None

    async def stored_for_decision(self, decision_id: str) -> Approval | None:
        live = self.for_decision(decision_id)
        if live is not None:
            return live
        row = await self.journal.approvals.for_decision(decision_id)
        return Approval.from_row(row) if row else None

    async def used_by(self, decision_id: str) -> Approval | None:
        """The approval a decision used up, if any."""
        row = await self.journal.approvals.used_by(decision_id)
        return Approval.from_row(row) if row else None

    async def list(
        self, states: Iterable[str], plan_id: str, agent_id: str, tool: str, limit: int = 1000
    ) -> list[Approval]:
        chosen = list(states) or ["PENDING"]
        rows = await self.journal.approvals.find(
            states=chosen, plan_id=plan_id, agent_id=agent_id, tool=tool, limit=limit
        )
        # The store's row may trail memory by one commit: prefer memory.
        out = []
        for row in rows:
            a = self.live.get(row["approval_id"]) or Approval.from_row(row)
            if a.state in chosen:
                out.append(a)
        return out

    async def wait(self, approval_id: str, seconds: float) -> Approval:
        """Until the approval leaves PENDING, or ``seconds`` pass."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            approval = await self.get(approval_id)
            left = deadline - time.monotonic()
            if approval.state != "PENDING" or left <= 0:
                return approval
            event = self._changed.setdefault(approval_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await event.wait()

    # Resolving -----------------------------------------------------------------

    async def resolve(
        self, approval_id: str, approve: bool, reason: str, principal: str, roles: Iterable[str]
    ) -> Approval:
        if not approve and not reason.strip():
            raise InvalidArgument.of([FieldViolation("reason", "is required to deny")])
        async with self._lock:
            outcome = await self._resolve(approval_id, approve, reason, principal, roles)
        if isinstance(outcome, Approval):
            return outcome
        refusal, approval = outcome
        await self._refused("ResolveApproval", refusal, principal, approval)
        raise refusal

    async def _resolve(
        self, approval_id: str, approve: bool, reason: str, principal: str, roles: Iterable[str]
    ) -> Approval | tuple[InterlockError, Approval]:
        """The approval as resolved, or the refusal (and the approval it refers to)."""
        if self.journal.shared:  # another replica may have changed it
            await self.refresh(approval_id)
        approval = await self.get(approval_id)
        now = time.time()
        if approval.state == "PENDING" and approval.expires_at <= now:
            approval = await self._expire(approval, now)
        if approval.state != "PENDING":
            return FailedPrecondition(
                f"approval {approval_id} is already {approval.state}"
                + (f" ({approval.reason})" if approval.reason else ""),
                reason=f"APPROVAL_{approval.state}",
            ), approval
        if principal in approval.approved_by:
            return AlreadyExists(
                f"{principal} already approved {approval_id}; it needs "
                f"{approval.approvals_required} distinct approvers",
                reason="ALREADY_APPROVED_BY_YOU",
            ), approval
        after = replace(approval, approvals=list(approval.approvals))
        after.resolved_at = now
        if not approve:
            after.state, after.reason, after.resolved_by = "DENIED", reason, principal
            self.metrics.approvals.labels("denied").inc()
            denied = await self._commit(
                approval,
                after,
                "DENIED",
                principal,
                reason,
                f"approval {approval_id} for {approval.tool} denied by {principal}: {reason}",
            )
            for listener in self.denied:
                listener(denied)
            return denied
        after.approvals.append(
            {"principal": principal, "roles": sorted(set(roles)), "at": now, "reason": reason}
        )
        have, need = len(after.approvals), approval.approvals_required
        if have < need:
            after.resolved_at = 0.0
            return await self._commit(
                approval,
                after,
                "APPROVED_BY",
                principal,
                reason,
                f"approval {approval_id} for {approval.tool}: {principal} approved "
                f"({have} of {need})",
            )
        after.state, after.resolved_by, after.reason = "APPROVED", principal, reason
        self.metrics.approvals.labels("approved").inc()
        return await self._commit(
            approval,
            after,
            "APPROVED",
            principal,
            reason,
            f"approval {approval_id} for {approval.tool} approved by "
            f"{', '.join(after.approved_by)}",
        )

    # Using -----------------------------------------------------------------------

    async def reserve(
        self, approval_id: str, agent_id: str, tool: str, arguments_hash: str, principal: str
    ) -> Approval:
        """Check that an approval may be used by this call and hold it for the
        call (until :meth:`use` or :meth:`release`). Raises FAILED_PRECONDITION
        naming why it does not cover the call, once that is on the record."""
        try:
            if self.journal.shared and approval_id not in self._reserved:
                await self.refresh(approval_id)  # resolved on another replica, maybe
            return self._reserve(approval_id, agent_id, tool, arguments_hash)
        except FailedPrecondition as refusal:
            await self._refused(
                "RequestToolCall",
                refusal,
                principal,
                self.live.get(approval_id),
                approval_id=approval_id,
                agent_id=agent_id,
                tool=tool,
                arguments_hash=arguments_hash,
            )
            raise

    def _reserve(self, approval_id: str, agent_id: str, tool: str, arguments_hash: str) -> Approval:
        approval = self.live.get(approval_id)
        if approval is None:
            raise FailedPrecondition(
                f"approval {approval_id!r} is not an approved, unused approval "
                "(unknown, denied, expired or already used)",
                reason="APPROVAL_NOT_USABLE",
            )
        if approval.state == "PENDING":
            raise FailedPrecondition(
                f"approval {approval_id} is still PENDING: "
                f"{len(approval.approvals)} of {approval.approvals_required} approvals",
                reason="APPROVAL_PENDING",
            )
        if approval_id in self._reserved:
            raise FailedPrecondition(
                f"approval {approval_id} is being used by another call", reason="APPROVAL_USED"
            )
        mismatches = [
            f"{what} is {theirs!r}, the approval is for {ours!r}"
            for what, theirs, ours in (
                ("the agent", agent_id, approval.agent_id),
                ("the tool", tool, approval.tool),
            )
            if theirs != ours
        ]
        if arguments_hash != approval.arguments_hash:
            mismatches.append(
                f"the arguments hash to {arguments_hash[:12]}…, "
                f"the approval covers {approval.arguments_hash[:12]}…"
            )
        if mismatches:
            raise FailedPrecondition(
                f"approval {approval_id} does not cover this call: " + "; ".join(mismatches),
                reason="APPROVAL_MISMATCH",
            )
        self._reserved.add(approval_id)
        return approval

    async def _refused(
        self,
        method: str,
        refusal: InterlockError,
        principal: str,
        approval: Approval | None,
        *,
        approval_id: str = "",
        agent_id: str = "",
        tool: str = "",
        arguments_hash: str = "",
    ) -> None:
        """Put a refused misuse on the record: a denial line and event, a log
        line and a count. ``approval`` is the approval referred to, when known;
        the call's own agent, tool and arguments hash default to its."""
        self.metrics.approvals_refused.labels(refusal.reason).inc()
        log.info("%s by %s refused (%s): %s", method, principal, refusal.reason, refusal.message)
        kind, via = caller(principal)
        await self.denials.record(
            Denial(
                method=method,
                principal=principal,
                code=refusal.reason,
                reason=refusal.message,
                kind=kind,
                via=via,
                agent_id=agent_id or (approval.agent_id if approval else ""),
                tool=tool or (approval.tool if approval else ""),
                approval_id=approval_id or (approval.approval_id if approval else ""),
                decision_id=approval.decision_id if approval else "",
                arguments_hash=arguments_hash or (approval.arguments_hash if approval else ""),
            )
        )

    def release(self, approval_id: str) -> None:
        self._reserved.discard(approval_id)

    def use_batch(self, approval: Approval, decision_id: str, now: float) -> tuple[Approval, Batch]:
        """The approval marked USED by ``decision_id``, and its rows; commit them
        with the decision, then call :meth:`used`."""
        after = replace(approval, state="USED", used_by_decision_id=decision_id)
        message = f"approval {approval.approval_id} used by decision {decision_id}"
        batch = self._batch(after, approval.state, "USED", "", "", message, now, approval.values())
        return after, batch

    def used(self, after: Approval) -> None:
        self._reserved.discard(after.approval_id)
        self._keep(after)
        self.metrics.approvals.labels("used").inc()
        self._notify(after)

    async def withdraw(self, decision_id: str, why: str) -> None:
        """Withdraw the live approval a held decision waits for, if any: its call
        will not run (the plan was cancelled or failed)."""
        approval = self.for_decision(decision_id)
        if approval is not None:
            await self.cancel(approval, why)

    async def cancel(self, approval: Approval, why: str) -> None:
        """Withdraw a live approval whose call will not run."""
        async with self._lock:
            approval = await self.get(approval.approval_id)
            if approval.state not in LIVE_STATES:
                return
            after = replace(approval, state="CANCELLED", reason=why, resolved_at=time.time())
            message = f"approval {approval.approval_id} withdrawn: {why}"
            await self._commit(approval, after, "CANCELLED", "", why, message)

    # Timers ----------------------------------------------------------------------

    async def _expire(self, approval: Approval, now: float) -> Approval:
        ttl = approval.requirement.ttl_seconds
        why = (
            f"no quorum within its {ttl:g}s TTL ({len(approval.approvals)} of "
            f"{approval.approvals_required} approvals): denied by default"
        )
        after = replace(approval, state="EXPIRED", reason=why, resolved_at=now)
        self.metrics.approvals.labels("expired").inc()
        return await self._commit(
            approval, after, "EXPIRED", "", why, f"approval {approval.approval_id} expired: {why}"
        )

    async def _escalate(self, approval: Approval, now: float) -> Approval:
        step = approval.requirement.escalation[approval.escalation_level]
        roles = list(dict.fromkeys([*approval.approver_roles, *step.approver_roles]))
        after = replace(
            approval, approver_roles=roles, escalation_level=approval.escalation_level + 1
        )
        why = f"unanswered for {step.after_seconds:g}s"
        self.metrics.approvals.labels("escalated").inc()
        return await self._commit(
            approval,
            after,
            "ESCALATED",
            "",
            why,
            f"approval {approval.approval_id} escalated to {', '.join(step.approver_roles)}: {why}",
        )

    async def tick(self, now: float | None = None) -> float | None:
        """Expire and escalate what is due; return when something is due next."""
        async with self._lock:
            return await self._tick(time.time() if now is None else now)

    async def _tick(self, now: float) -> float | None:
        for approval in list(self.live.values()):
            if approval.state != "PENDING" or approval.approval_id in self._reserved:
                continue
            try:
                if approval.expires_at <= now:
                    await self._expire(approval, now)
                    continue
                at = approval.next_escalation_at
                if at is not None and at <= now:
                    await self._escalate(approval, now)
            except FailedPrecondition:  # another replica's timer or approver was first
                continue
        times = [
            t
            for a in self.live.values()
            if a.state == "PENDING"
            for t in (a.expires_at, a.next_escalation_at)
            if t is not None
        ]
        return min(times) if times else None

    async def _timers(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("approval timers failed; retrying in 1s")
                due = time.time() + 1.0
            wait = 60.0 if due is None else max(0.01, due - time.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


__all__ = ["Approvals"]
