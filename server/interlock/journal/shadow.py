"""Shadow evaluation's state in the journal (schema version 9): typed reads,
and the rows of its facts (interlock.shadow decides what they mean).

``shadows`` keeps every shadow (the candidate's files and revision, the
sample rate, who started it and when, how it ended); ``shadow_running``
holds at most one row, the running shadow's id, so a second start fails its
insert, atomically across replicas. Each replica keeps its own totals
(``shadow_replicas``) and its transition counts by agent and tool
(``shadow_counts``), written as absolute values it holds in memory, so
replicas never overwrite each other's; ``shadow_disagreements`` keeps each
disagreement with both answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interlock.journal.records import Delete, Guard, Insert, Row, Upsert
from interlock.journal.repos import Rowdict, _Repo

SLOT = "shadow"
"""The key of the one ``shadow_running`` row."""


class Shadows(_Repo):
    """Reads of the shadow tables."""

    async def running(self) -> Rowdict | None:
        """The running shadow's row, if one runs."""
        rows = await self.db.fetch(
            "SELECT s.* FROM shadow_running r JOIN shadows s ON s.shadow_id = r.shadow_id"
            " WHERE r.slot = ?",
            (SLOT,),
        )
        return rows[0] if rows else None

    async def get(self, shadow_id: str) -> Rowdict | None:
        rows = await self.db.fetch("SELECT * FROM shadows WHERE shadow_id = ?", (shadow_id,))
        return rows[0] if rows else None

    async def latest(self) -> Rowdict | None:
        """The shadow started last, running or ended."""
        rows = await self.db.fetch("SELECT * FROM shadows ORDER BY started_at DESC LIMIT 1")
        return rows[0] if rows else None

    async def replicas(self, shadow_id: str) -> list[Rowdict]:
        return await self.db.fetch(
            "SELECT * FROM shadow_replicas WHERE shadow_id = ? ORDER BY replica", (shadow_id,)
        )

    async def counts(self, shadow_id: str, replica: str = "") -> list[Rowdict]:
        """Transition counts by agent and tool (every replica's, or one's)."""
        sql = "SELECT * FROM shadow_counts WHERE shadow_id = ?"
        params: list[Any] = [shadow_id]
        if replica:
            sql += " AND replica = ?"
            params.append(replica)
        return await self.db.fetch(sql, params)

    async def disagreements(self, shadow_id: str, limit: int) -> list[Rowdict]:
        """The newest disagreements (candidate errors included), newest first."""
        return await self.db.fetch(
            "SELECT * FROM shadow_disagreements WHERE shadow_id = ?"
            " ORDER BY decided_at DESC, decision_id LIMIT ?",
            (shadow_id, limit),
        )


def start_rows(shadow: Mapping[str, Any]) -> list[Row]:
    """A new running shadow: fails (AlreadyExists) while another one runs."""
    return [
        Insert("shadow_running", {"slot": SLOT, "shadow_id": shadow["shadow_id"]}),
        Insert("shadows", dict(shadow)),
    ]


def end_rows(
    shadow_id: str, error: Exception, ended: Mapping[str, Any], *, state: str
) -> list[Row]:
    """End the running shadow ``shadow_id`` (``error`` when it is not the one running)."""
    return [
        Guard(
            "shadow_running",
            error,
            where={"slot": SLOT, "shadow_id": shadow_id},
            values={"shadow_id": shadow_id},
        ),
        Delete("shadow_running", {"slot": SLOT}),
        Guard(
            "shadows",
            error,
            where={"shadow_id": shadow_id, "state": "RUNNING"},
            values={"state": state, **ended},
        ),
    ]


def count_rows(
    shadow_id: str,
    replica: str,
    totals: Mapping[str, int],
    counts: Mapping[tuple[str, str, bool, str, str, bool, str, str], int],
    disagreements: Sequence[Mapping[str, Any]],
    now: float,
) -> list[Row]:
    """A replica's totals and transition counts as they stand (absolute
    values), and its new disagreement rows."""
    rows: list[Row] = [
        Upsert(
            "shadow_replicas",
            {"shadow_id": shadow_id, "replica": replica, **totals, "updated_at": now},
            ("shadow_id", "replica"),
        )
    ]
    key = (
        "shadow_id",
        "replica",
        "from_verdict",
        "from_mode",
        "from_approval",
        "to_verdict",
        "to_mode",
        "to_approval",
        "agent_id",
        "tool",
    )
    for (fv, fm, fa, tv, tm, ta, agent, tool), n in counts.items():
        values = dict(
            zip(
                key,
                (shadow_id, replica, fv, fm, int(fa), tv, tm, int(ta), agent, tool),
                strict=True,
            )
        )
        rows.append(Upsert("shadow_counts", {**values, "count": n}, key))
    for d in disagreements:
        rows.append(Upsert("shadow_disagreements", dict(d), ("shadow_id", "decision_id")))
    return rows


__all__ = ["SLOT", "Shadows", "count_rows", "end_rows", "start_rows"]
