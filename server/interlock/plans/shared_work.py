"""Plan work across replicas: the ``work_items`` table (PostgreSQL only).

On a shared journal a plan's driver does not hand its items to its own
workers: it inserts each item into ``work_items`` (state OFFERED) in the same
transaction as the step's DISPATCH event, with guards that the tool's items
out (OFFERED or DELIVERED) stay within its ``max_concurrency`` and its
dispatches of the last minute within its ``rate_limit_per_minute``, counted
across every replica. Any replica with a connected worker for the agent
claims an item with a compare-and-set OFFERED -> DELIVERED that also moves
the step DECIDED -> DISPATCHED, in one transaction: of two replicas racing,
exactly one wins. A claimer whose policy revision is not the item's marks it
RECHECK instead, and the driver decides the step again and offers a new item
(the moment of hand-off decides). A report at any replica records the result
and marks the item REPORTED; a worker that goes away marks its received items
LOST. The driver reads its items' states (woken by other replicas' events,
and every half second in case a notification was lost) and acts on them. The
table is the truth: a lost notification delays, never loses.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from interlock.audit import STATE_TRANSITIONS
from interlock.errors import FailedPrecondition
from interlock.journal import EventRecord, Guard, Insert, Recorded, Row
from interlock.plans.workers import WorkOffer

OFFERED, DELIVERED, RECHECK, REPORTED, LOST, WITHDRAWN, CLOSED = (
    "OFFERED",
    "DELIVERED",
    "RECHECK",
    "REPORTED",
    "LOST",
    "WITHDRAWN",
    "CLOSED",
)


class SlotTaken(FailedPrecondition):
    """Another replica took the tool's last slot (concurrency or rate) first."""

    reason = "SLOT_TAKEN"


class NotClaimed(FailedPrecondition):
    """The item was claimed, withdrawn or reported by someone else first."""

    reason = "WORK_TAKEN"


def offer_rows(
    offer: WorkOffer,
    *,
    revision: str,
    owner: str,
    max_concurrency: int,
    rate_limit_per_minute: int,
    window_seconds: float,
) -> list[Row]:
    """The item's row and the tool's guards (counted with the new row in)."""
    now = time.time()
    return [
        Insert(
            "work_items",
            {
                "work_id": offer.work_id,
                "plan_id": offer.plan_id,
                "step_id": offer.step_id,
                "agent_id": offer.agent_id,
                "tool": offer.tool,
                "decision_id": offer.decision_id,
                "arguments": orjson.dumps(dict(offer.arguments)).decode(),
                "mode": offer.mode,
                "attempt": offer.attempt,
                "compensation": int(offer.compensation),
                "revision": revision,
                "owner": owner,
                "state": OFFERED,
                "holding": 1,
                "claimed_by": "",
                "deadline": 0.0,
                "result": "",
                "offered_at": now,
                "updated_at": now,
            },
        ),
        Guard(
            "work_items",
            SlotTaken(f"{offer.tool}: its {max_concurrency} concurrent item(s) are out"),
            where={"tool": offer.tool, "holding": 1},
            at_most=max_concurrency,
        ),
        Guard(
            "work_items",
            SlotTaken(f"{offer.tool}: {rate_limit_per_minute} dispatch(es) in the last minute"),
            where={"tool": offer.tool},
            newer_than=("offered_at", now - window_seconds),
            at_most=rate_limit_per_minute,
        ),
    ]


def offer_of(row: dict[str, Any]) -> WorkOffer:
    return WorkOffer(
        work_id=str(row["work_id"]),
        agent_id=str(row["agent_id"]),
        plan_id=str(row["plan_id"]),
        step_id=str(row["step_id"]),
        decision_id=str(row["decision_id"]),
        tool=str(row["tool"]),
        arguments=orjson.loads(row["arguments"]),
        mode=str(row["mode"]),
        deadline=float(row["deadline"]),
        attempt=int(row["attempt"]),
        compensation=bool(row["compensation"]),
    )


def _move(work_id: str, before: str, values: dict[str, Any], **where: Any) -> Guard:
    return Guard(
        "work_items",
        NotClaimed(f"work {work_id} is no longer {before}"),
        where={"work_id": work_id, "state": before, **where},
        values={**values, "updated_at": time.time()},
    )


def claim(offer: WorkOffer, replica: str, deadline: float) -> Recorded:
    """OFFERED -> DELIVERED and the step DECIDED -> DISPATCHED, or nothing."""
    now = time.time()
    reason = f"delivered to {offer.agent_id}'s worker on replica {replica}"
    return Recorded(
        row_list=[
            _move(
                offer.work_id,
                OFFERED,
                {"state": DELIVERED, "claimed_by": replica, "deadline": deadline},
            ),
            Guard(
                "steps",
                NotClaimed(f"step {offer.step_id} of plan {offer.plan_id} is no longer DECIDED"),
                where={
                    "plan_id": offer.plan_id,
                    "step_id": offer.step_id,
                    "work_id": offer.work_id,
                    "state": "DECIDED",
                },
                values={"state": "DISPATCHED", "deadline": deadline, "updated_at": now},
            ),
        ],
        event_list=[
            EventRecord(
                kind="STATE_TRANSITION",
                plan_id=offer.plan_id,
                step_id=offer.step_id,
                agent_id=offer.agent_id,
                decision_id=offer.decision_id,
                tool=offer.tool,
                message=f"step {offer.step_id}: DECIDED -> DISPATCHED ({reason})",
                payload={
                    "scope": "step",
                    "from_state": "DECIDED",
                    "to_state": "DISPATCHED",
                    "mode": offer.mode,
                    "reason": reason,
                    "work_id": offer.work_id,
                },
            )
        ],
        audit_list=[
            (
                STATE_TRANSITIONS,
                {
                    "time": now,
                    "decision_id": offer.decision_id,
                    "plan_id": offer.plan_id,
                    "step_id": offer.step_id,
                    "tool": offer.tool,
                    "from_state": "DECIDED",
                    "to_state": "DISPATCHED",
                    "mode": offer.mode,
                    "reason": reason,
                },
            )
        ],
    )


def recheck(work_id: str, replica: str) -> Recorded:
    """The claimer serves another policy revision: the driver decides again."""
    return Recorded(
        row_list=[_move(work_id, OFFERED, {"state": RECHECK, "holding": 0, "claimed_by": replica})]
    )


def lost(work_id: str, replica: str) -> Recorded:
    """The worker that received the item went away without reporting it."""
    return Recorded(
        row_list=[_move(work_id, DELIVERED, {"state": LOST, "holding": 0}, claimed_by=replica)]
    )


def reported(work_id: str, before: str, result: dict[str, Any]) -> Recorded:
    return Recorded(
        row_list=[
            _move(
                work_id,
                before,
                {"state": REPORTED, "holding": 0, "result": orjson.dumps(result).decode()},
            )
        ]
    )


def withdraw(work_id: str) -> Recorded:
    """Take back an item no worker has claimed (the step is cancelled or re-offered)."""
    return Recorded(row_list=[_move(work_id, OFFERED, {"state": WITHDRAWN, "holding": 0})])


def closed(work_id: str, *, report_expected: bool) -> Guard:
    """The item's step ended: it no longer counts toward the tool's concurrency,
    and a late report is refused unless the step is AMBIGUOUS (its report is
    still taken)."""
    values: dict[str, Any] = {"holding": 0}
    if not report_expected:
        values["state"] = CLOSED
    return Guard(
        "work_items",
        NotClaimed(f"no work item {work_id}"),
        where={"work_id": work_id},
        values=values,
    )


__all__ = [
    "CLOSED",
    "DELIVERED",
    "LOST",
    "OFFERED",
    "RECHECK",
    "REPORTED",
    "WITHDRAWN",
    "NotClaimed",
    "SlotTaken",
    "claim",
    "closed",
    "lost",
    "offer_of",
    "offer_rows",
    "recheck",
    "reported",
    "withdraw",
]
