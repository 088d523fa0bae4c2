"""Plan leases: which replica drives a plan, under a term every write checks.

On PostgreSQL several replicas share the journal, and a plan is driven by one
of them at a time: the one holding its row in ``plan_leases`` (owner, term,
expiry). The owner renews its leases every third of the lease time; every
change it records to a plan carries a guard on (plan, owner, term), so once
another replica has taken the plan over (term + 1) a paused or partitioned old
owner cannot write to it any more: its write fails with :class:`LeaseLost`,
and it forgets the plan. A replica takes over a plan whose lease expired (or
one it held itself before a restart) with a compare-and-set on the lease row
exactly as it read it: two replicas racing for the same lease, one wins.

On SQLite there is one process: plans carry no lease.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.errors import FailedPrecondition
from interlock.journal import Guard, Insert, Recorded


class LeaseLost(FailedPrecondition):
    """Another replica drives the plan now (its lease has a newer term)."""

    reason = "LEASE_LOST"


class LeaseTaken(FailedPrecondition):
    """Another replica took (or renewed) the lease first."""

    reason = "LEASE_TAKEN"


@dataclass
class Lease:
    owner: str
    term: int
    fresh: bool = False
    """Not recorded yet: the plan's first change inserts it."""


def default_replica(data_dir: str) -> str:
    """A replica's id when none is configured: the host and its data directory
    (each replica has its own), the same across its restarts."""
    return f"{socket.gethostname()}:{Path(data_dir).resolve()}"


def guard(plan_id: str, lease: Lease) -> Guard:
    """The condition every write to the plan carries."""
    return Guard(
        "plan_leases",
        LeaseLost(
            f"plan {plan_id}: this replica's lease (term {lease.term}) was taken over",
        ),
        where={"plan_id": plan_id, "owner": lease.owner, "term": lease.term},
        values={"term": lease.term},
    )


def first(plan_id: str, lease: Lease, expires_at: float) -> Insert:
    return Insert(
        "plan_leases",
        {
            "plan_id": plan_id,
            "owner": lease.owner,
            "term": lease.term,
            "expires_at": expires_at,
            "cancel_requested": "",
        },
    )


def renewal(plan_id: str, lease: Lease, expires_at: float) -> Recorded:
    return Recorded(
        row_list=[
            Guard(
                "plan_leases",
                LeaseLost(f"plan {plan_id}: the lease (term {lease.term}) was taken over"),
                where={"plan_id": plan_id, "owner": lease.owner, "term": lease.term},
                values={"expires_at": expires_at},
            )
        ]
    )


def takeover(row: dict[str, Any], owner: str, expires_at: float) -> Recorded:
    """Take the lease as it was read (owner, term and expiry unchanged since),
    with the next term."""
    return Recorded(
        row_list=[
            Guard(
                "plan_leases",
                LeaseTaken(f"plan {row['plan_id']}: another replica took the lease first"),
                where={
                    "plan_id": row["plan_id"],
                    "owner": row["owner"],
                    "term": row["term"],
                    "expires_at": row["expires_at"],
                },
                values={"owner": owner, "term": int(row["term"]) + 1, "expires_at": expires_at},
            )
        ]
    )


def cancel_request(plan_id: str, reason: str) -> Recorded:
    """Ask the replica driving the plan to cancel it (it reads its leases' rows)."""
    return Recorded(
        row_list=[
            Guard(
                "plan_leases",
                FailedPrecondition(f"plan {plan_id} has no lease", reason="PLAN_FINISHED"),
                where={"plan_id": plan_id},
                values={"cancel_requested": reason},
            )
        ]
    )


__all__ = [
    "Lease",
    "LeaseLost",
    "LeaseTaken",
    "cancel_request",
    "default_replica",
    "first",
    "guard",
    "renewal",
    "takeover",
]
