"""Typed reads of the journal, one repository per kind of state.

Every read of state goes through here; nothing above the journal speaks SQL.
Rows come back as plain dicts keyed by column; the owning domain module turns
them into its objects (``PlanRun.from_rows``, ``Approval.from_row``). The SQL
is portable (``?`` placeholders; the backend speaks its dialect).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from interlock.journal.backend import Backend

Rowdict = dict[str, Any]


def _in(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({', '.join('?' * len(values))})"


class _Repo:
    def __init__(self, backend: Backend) -> None:
        self.db = backend


class Decisions(_Repo):
    async def get(self, decision_id: str) -> Rowdict | None:
        rows = await self.db.fetch("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
        return rows[0] if rows else None

    async def arguments(self, decision_id: str) -> str | None:
        """The decision's canonical arguments JSON."""
        rows = await self.db.fetch(
            "SELECT arguments FROM decisions WHERE decision_id = ?", (decision_id,)
        )
        return str(rows[0]["arguments"]) if rows else None

    async def result(self, decision_id: str) -> Rowdict | None:
        rows = await self.db.fetch("SELECT * FROM results WHERE decision_id = ?", (decision_id,))
        return rows[0] if rows else None

    def live_unreported(self, now: float) -> list[Rowdict]:
        """Direct LIVE decisions still counting toward the cap (start-up; sync)."""
        return self.db.fetch_sync(
            "SELECT d.decision_id, d.live_deadline FROM decisions d"
            " LEFT JOIN results r ON r.decision_id = d.decision_id"
            " WHERE d.live_deadline IS NOT NULL AND d.live_deadline > ?"
            " AND r.decision_id IS NULL",
            (now,),
        )

    async def search(
        self,
        *,
        agent_id: str = "",
        tool: str = "",
        verdict: str = "",
        mode: str = "",
        since: float = 0.0,
        until: float = 0.0,
        limit: int = 100,
    ) -> list[Rowdict]:
        """Newest first; an empty filter matches everything."""
        sql = "SELECT * FROM decisions WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (
            ("agent_id", agent_id),
            ("tool", tool),
            ("verdict", verdict),
            ("mode", mode),
        ):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if since:
            sql += " AND decided_at >= ?"
            params.append(since)
        if until:
            sql += " AND decided_at < ?"
            params.append(until)
        sql += " ORDER BY decided_at DESC, decision_id DESC LIMIT ?"
        params.append(limit)
        return await self.db.fetch(sql, params)

    @staticmethod
    def _replay_filter(
        since: float, until: float, agent_id: str, tool: str
    ) -> tuple[str, list[Any]]:
        sql, params = "", list[Any]()
        for column, value in (("d.agent_id", agent_id), ("d.tool", tool)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if since:
            sql += " AND d.decided_at >= ?"
            params.append(since)
        if until:
            sql += " AND d.decided_at < ?"
            params.append(until)
        return sql, params

    async def count_for_replay(
        self, *, since: float = 0.0, until: float = 0.0, agent_id: str = "", tool: str = ""
    ) -> int:
        where, params = self._replay_filter(since, until, agent_id, tool)
        rows = await self.db.fetch(
            f"SELECT COUNT(*) AS n FROM decisions d WHERE 1 = 1{where}", params
        )
        return int(rows[0]["n"])

    async def for_replay(
        self,
        *,
        since: float = 0.0,
        until: float = 0.0,
        agent_id: str = "",
        tool: str = "",
        before: tuple[float, str] | None = None,
        limit: int = 5000,
    ) -> list[Rowdict]:
        """A page of decisions, newest first, strictly before the cursor
        (decided_at, decision_id), each with its recorded policy input
        (``input``: None for a decision recorded before inputs were kept)."""
        where, params = self._replay_filter(since, until, agent_id, tool)
        if before is not None:
            where += " AND (d.decided_at < ? OR (d.decided_at = ? AND d.decision_id < ?))"
            params += [before[0], before[0], before[1]]
        params.append(limit)
        return await self.db.fetch(
            "SELECT d.decision_id, d.decided_at, d.agent_id, d.tool, d.plan_id, d.step_id,"
            " d.confidence, d.verdict, d.mode, d.needs_approval, d.reasons,"
            " d.policy_revision, d.fail_closed, d.arguments, i.input"
            " FROM decisions d LEFT JOIN decision_inputs i ON i.decision_id = d.decision_id"
            f" WHERE 1 = 1{where} ORDER BY d.decided_at DESC, d.decision_id DESC LIMIT ?",
            params,
        )


class Plans(_Repo):
    async def exists(self, plan_id: str) -> bool:
        return bool(await self.db.fetch("SELECT 1 FROM plans WHERE plan_id = ?", (plan_id,)))

    async def get(self, plan_id: str) -> tuple[Rowdict, list[Rowdict]] | None:
        """The plan's row and its steps' rows."""
        rows = await self.db.fetch("SELECT * FROM plans WHERE plan_id = ?", (plan_id,))
        if not rows:
            return None
        return rows[0], await self.steps(plan_id)

    async def steps(self, plan_id: str) -> list[Rowdict]:
        return await self.db.fetch("SELECT * FROM steps WHERE plan_id = ?", (plan_id,))

    async def ids(self, states: Sequence[str], limit: int, after: str) -> list[str]:
        """Plan ids after ``after`` in id order, in any of ``states`` (all if empty)."""
        sql = "SELECT plan_id FROM plans WHERE plan_id > ?"
        params: list[Any] = [after]
        if states:
            sql += " AND " + _in("state", states)
            params += list(states)
        sql += " ORDER BY plan_id LIMIT ?"
        params.append(limit)
        return [str(r["plan_id"]) for r in await self.db.fetch(sql, params)]

    async def unfinished(self) -> list[Rowdict]:
        return await self.db.fetch("SELECT * FROM plans WHERE state IN ('PENDING', 'RUNNING')")

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT state, COUNT(*) AS n FROM plans GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}

    async def step_counts(self) -> list[tuple[str, str, int]]:
        """(state, mode, count) of every step of every plan."""
        rows = await self.db.fetch(
            "SELECT state, mode, COUNT(*) AS n FROM steps GROUP BY state, mode"
        )
        return [(str(r["state"]), str(r["mode"]), int(r["n"])) for r in rows]

    async def conflicts(self) -> list[str]:
        """Every plan's conflicts, as stored JSON."""
        return [str(r["conflicts"]) for r in await self.db.fetch("SELECT conflicts FROM plans")]

    async def leases_of(self, owner: str) -> list[Rowdict]:
        """The leases a replica holds on unfinished plans."""
        return await self.db.fetch(
            "SELECT l.* FROM plan_leases l JOIN plans p ON p.plan_id = l.plan_id"
            " WHERE l.owner = ? AND p.state IN ('PENDING', 'RUNNING')",
            (owner,),
        )

    async def takeable(self, owner: str, now: float) -> list[Rowdict]:
        """Leases on unfinished plans that ``owner`` may take: expired ones, and
        its own (held before a restart)."""
        return await self.db.fetch(
            "SELECT l.* FROM plan_leases l JOIN plans p ON p.plan_id = l.plan_id"
            " WHERE p.state IN ('PENDING', 'RUNNING') AND (l.expires_at < ? OR l.owner = ?)"
            " ORDER BY l.plan_id",
            (now, owner),
        )

    async def offered_work(self, agent_ids: Sequence[str]) -> list[Rowdict]:
        """Work items offered and not yet claimed, for some agents, oldest first."""
        if not agent_ids:
            return []
        return await self.db.fetch(
            "SELECT * FROM work_items WHERE state = 'OFFERED' AND "
            + _in("agent_id", agent_ids)
            + " ORDER BY offered_at, work_id",
            list(agent_ids),
        )

    async def work_items(self, work_ids: Sequence[str]) -> list[Rowdict]:
        if not work_ids:
            return []
        return await self.db.fetch(
            "SELECT * FROM work_items WHERE " + _in("work_id", work_ids), list(work_ids)
        )

    async def step_work(self, plan_id: str, step_id: str) -> list[Rowdict]:
        """A step's work items, newest first."""
        return await self.db.fetch(
            "SELECT * FROM work_items WHERE plan_id = ? AND step_id = ? ORDER BY offered_at DESC",
            (plan_id, step_id),
        )

    async def step_owners(self, plan_id: str, step_ids: Iterable[str]) -> list[Rowdict]:
        """The tool and agent of some steps of a plan."""
        ids = list(step_ids)
        if not ids:
            return []
        return await self.db.fetch(
            "SELECT step_id, tool, agent_id FROM steps WHERE plan_id = ? AND "
            + _in("step_id", ids),
            [plan_id, *ids],
        )


class Approvals(_Repo):
    async def live(self) -> list[Rowdict]:
        return await self.db.fetch("SELECT * FROM approvals WHERE state IN ('PENDING', 'APPROVED')")

    async def get(self, approval_id: str) -> Rowdict | None:
        rows = await self.db.fetch("SELECT * FROM approvals WHERE approval_id = ?", (approval_id,))
        return rows[0] if rows else None

    async def for_decision(self, decision_id: str) -> Rowdict | None:
        """The approval a PENDING_APPROVAL decision asked for."""
        rows = await self.db.fetch("SELECT * FROM approvals WHERE decision_id = ?", (decision_id,))
        return rows[0] if rows else None

    async def used_by(self, decision_id: str) -> Rowdict | None:
        """The approval a decision used up."""
        rows = await self.db.fetch(
            "SELECT * FROM approvals WHERE used_by_decision_id = ?", (decision_id,)
        )
        return rows[0] if rows else None

    async def find(
        self,
        *,
        states: Sequence[str],
        plan_id: str = "",
        agent_id: str = "",
        tool: str = "",
        limit: int,
    ) -> list[Rowdict]:
        """Oldest first."""
        sql = "SELECT * FROM approvals WHERE " + _in("state", states)
        params: list[Any] = list(states)
        for column, value in (("plan_id", plan_id), ("agent_id", agent_id), ("tool", tool)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY created_at, approval_id LIMIT ?"
        params.append(limit)
        return await self.db.fetch(sql, params)


class Events(_Repo):
    async def after(self, seq: int, limit: int = 500) -> list[Rowdict]:
        return await self.db.fetch(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )

    async def highest(self) -> int:
        rows = await self.db.fetch("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
        return int(rows[0]["seq"])

    async def recent(
        self, *, plan_id: str = "", agent_id: str = "", kinds: Sequence[str] = (), limit: int
    ) -> list[Rowdict]:
        """The newest ``limit`` events that match, oldest first."""
        sql = "SELECT * FROM events WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("plan_id", plan_id), ("agent_id", agent_id)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if kinds:
            sql += " AND " + _in("kind", kinds)
            params += sorted(kinds)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return list(reversed(await self.db.fetch(sql, params)))


class LiveHolds(_Repo):
    async def count(self, now: float) -> int:
        """LIVE executions in flight across every replica (holds not yet expired)."""
        rows = await self.db.fetch_point(
            "SELECT COUNT(*) AS n FROM live_holds WHERE until > ?", (now,)
        )
        return int(rows[0]["n"])


class Replicas(_Repo):
    async def alive(self, since: float) -> list[Rowdict]:
        """Replicas whose heartbeat is at or after ``since``, by id."""
        return await self.db.fetch(
            "SELECT * FROM replicas WHERE heartbeat >= ? ORDER BY replica_id", (since,)
        )


class Signals(_Repo):
    async def newest(self, *, kinds: Sequence[str], tool: str, limit: int) -> list[Rowdict]:
        sql = "SELECT * FROM signals"
        where: list[str] = []
        params: list[Any] = []
        if kinds:
            where.append(_in("kind", kinds))
            params += list(kinds)
        if tool:
            where.append("tool = ?")
            params.append(tool)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return await self.db.fetch(sql, params)


class AuditLines(_Repo):
    async def files(self) -> list[str]:
        """Every file name the outbox holds lines of."""
        rows = await self.db.fetch("SELECT DISTINCT file FROM audit_outbox ORDER BY file")
        return [str(r["file"]) for r in rows]

    async def page(self, file: str, after_seq: int, limit: int) -> list[Rowdict]:
        """All replicas' lines of ``file`` after ``after_seq``, in seq order (seq, replica, line)."""
        return await self.db.fetch(
            "SELECT seq, replica, line FROM audit_outbox WHERE file = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (file, after_seq, limit),
        )

    async def mentioning(self, file: str, decision_id: str) -> list[str]:
        """The committed lines of ``file`` that name a decision (may over-match)."""
        rows = await self.db.fetch(
            "SELECT line FROM audit_outbox WHERE file = ? AND line LIKE ? ORDER BY seq",
            (file, f'%"decision_id":"{decision_id}"%'),
        )
        return [str(r["line"]) for r in rows]


__all__ = [
    "Approvals",
    "AuditLines",
    "Decisions",
    "Events",
    "LiveHolds",
    "Plans",
    "Replicas",
    "Signals",
]
