"""Refused calls on the record: one shape for access_denials.jsonl and the
ACCESS_DENIED event, whoever refused.

Two kinds of refusal are recorded the same way, so one reader handles both:

- the authorization policy refusing a call (:mod:`interlock.guard`,
  PERMISSION_DENIED, ``code`` NOT_AUTHORIZED): the wrong kind of principal,
  an agent acting as another, approving one's own call or without an
  approver role;
- approval misuse the approval service refuses (:mod:`interlock.approvals`):
  presenting an approval that is unknown or no longer usable (USED, DENIED,
  EXPIRED, CANCELLED), still PENDING, being used by another call, or for other
  arguments, agent or tool; resolving an approval already resolved; approving
  twice. ``code`` is the reason code the caller gets.

Each refusal is one :class:`Denial`: committed through the store (so its
line is hash-chained like every other audit line and its event reaches
WatchEvents), then the caller gets its refusal, unchanged. Recording never
changes that refusal and never holds it up for long: :meth:`DenialLog.record`
waits at most :data:`RECORD_TIMEOUT_SECONDS` for the commit, which carries on
in the background past that (the line lands late); if the commit fails the
failure is logged and the caller still gets its refusal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from interlock.audit import ACCESS_DENIALS
from interlock.auth import current_principal
from interlock.journal import AuditLine, EventRecord, Journal, Row

log = logging.getLogger(__name__)

RECORD_TIMEOUT_SECONDS = 1.0
"""How long a refused call waits for its denial to be committed before it is
answered anyway (the commit goes on)."""

EVENT_KIND = "ACCESS_DENIED"


@dataclass(frozen=True)
class Denial:
    """One refused call: a line of access_denials.jsonl (with ``seq``,
    ``prev_hash`` and ``hash`` added by the store) and an ACCESS_DENIED event."""

    method: str
    """The RPC refused (RequestToolCall also for a plan step the server decides)."""
    principal: str
    """Who asked."""
    code: str
    """The reason code the caller got (NOT_AUTHORIZED, APPROVAL_MISMATCH, ...)."""
    reason: str
    """The refusal's message, as the caller got it."""
    kind: str = ""
    """The principal's kind; empty when it was not the caller of the RPC being
    handled (a plan step decided on behalf of whoever submitted the plan)."""
    via: str = ""
    """How the principal was authenticated (token, certificate, dev); empty as ``kind``."""
    agent_id: str = ""
    """The agent the call acted as (for approval misuse: the presented call's)."""
    tool: str = ""
    approval_id: str = ""
    decision_id: str = ""
    """The held decision the approval belongs to."""
    arguments_hash: str = ""
    """SHA-256 of the presented call's canonical arguments."""
    policy_revision: str = ""
    """The authorization policy's revision that refused; empty for approval
    misuse, which the server refuses by itself."""
    time: float = field(default_factory=time.time)

    def line(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> Iterable[Row]:
        return ()

    def events(self) -> Iterable[EventRecord]:
        return [self.event()]

    def audit(self) -> Iterable[AuditLine]:
        return [(ACCESS_DENIALS, self.line())]

    def event(self) -> EventRecord:
        payload = {k: v for k, v in self.line().items() if k != "time"}
        return EventRecord(
            kind=EVENT_KIND,
            message=f"{self.method} by {self.principal} denied ({self.code}): {self.reason}",
            agent_id=self.agent_id,
            decision_id=self.decision_id,
            tool=self.tool,
            payload=payload,
            time=self.time,
        )


def caller(principal: str) -> tuple[str, str]:
    """(kind, via) of ``principal`` when it is the caller of the RPC being
    handled, else empty strings."""
    current = current_principal.get()
    return (current.kind, current.via) if current.id == principal else ("", "")


class DenialLog:
    """Commits :class:`Denial` records with a bounded wait."""

    def __init__(self, journal: Journal, timeout: float = RECORD_TIMEOUT_SECONDS) -> None:
        self.journal = journal
        self.timeout = timeout
        self._late: set[asyncio.Task[Any]] = set()
        """Commits that outlived their wait (kept referenced until they finish)."""

    async def record(self, denial: Denial) -> None:
        """Commit ``denial``; wait for it at most :attr:`timeout`. Never raises
        (but for the caller's own cancellation): the refusal it records is what
        the caller must get."""
        task = asyncio.ensure_future(self.journal.record(denial))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.timeout)
        except TimeoutError:
            log.warning(
                "the denial of %s by %s (%s) is not committed after %gs; "
                "answering the caller, the commit goes on",
                denial.method,
                denial.principal,
                denial.code,
                self.timeout,
            )
            self._late.add(task)
            task.add_done_callback(self._finished_late)
        except asyncio.CancelledError:
            self._late.add(task)  # the commit goes on; the caller went away
            task.add_done_callback(self._finished_late)
            raise
        except Exception as exc:  # the store could not commit
            log.error(
                "the denial of %s by %s (%s) could not be recorded: %s",
                denial.method,
                denial.principal,
                denial.code,
                exc,
            )

    def _finished_late(self, task: asyncio.Task[Any]) -> None:
        self._late.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a late denial could not be recorded: %s", exc)


__all__ = ["RECORD_TIMEOUT_SECONDS", "Denial", "DenialLog", "caller"]
