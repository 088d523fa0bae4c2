"""Typed reads of grants and their uses (docs/grants.md).

A grant's row holds what it covers and its state as last written (ACTIVE,
EXPIRED, REVOKED); its uses are rows of ``grant_uses``, counted here. A
grant's use is written by the decision that takes it, under guards
(:class:`~interlock.journal.records.Guard`): the grant still ACTIVE and not
expired, and its uses at most ``max_uses`` with this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interlock.journal.backend import Backend

Rowdict = dict[str, Any]

_WITH_USES = (
    "SELECT g.*, (SELECT COUNT(*) FROM grant_uses u WHERE u.grant_id = g.grant_id) AS uses"
    " FROM grants g"
)


class Grants:
    def __init__(self, backend: Backend) -> None:
        self.db = backend

    async def get(self, grant_id: str) -> Rowdict | None:
        rows = await self.db.fetch(f"{_WITH_USES} WHERE g.grant_id = ?", (grant_id,))
        return rows[0] if rows else None

    async def usable(self, agent_id: str, tool: str, plan_id: str, now: float) -> list[Rowdict]:
        """ACTIVE, unexpired grants of an agent and tool, for any plan or this one
        (uses not yet compared with max_uses: the caller does, and the use's guard)."""
        return await self.db.fetch(
            f"{_WITH_USES} WHERE g.agent_id = ? AND g.tool = ? AND g.state = 'ACTIVE'"
            " AND g.expires_at > ? AND (g.plan_id = '' OR g.plan_id = ?)",
            (agent_id, tool, now, plan_id),
        )

    async def revoked_like(
        self, agent_id: str, tool: str, plan_id: str, constraint_json: str
    ) -> Rowdict | None:
        """A REVOKED grant covering the same agent, tool, plan and constraint."""
        rows = await self.db.fetch(
            "SELECT * FROM grants WHERE agent_id = ? AND tool = ? AND plan_id = ?"
            " AND constraint_json = ? AND state = 'REVOKED' ORDER BY revoked_at DESC LIMIT 1",
            (agent_id, tool, plan_id, constraint_json),
        )
        return rows[0] if rows else None

    async def find(
        self, *, agent_id: str = "", tool: str = "", states: Sequence[str] = (), limit: int = 1000
    ) -> list[Rowdict]:
        """Newest first; states as stored (ACTIVE, EXPIRED, REVOKED)."""
        sql = f"{_WITH_USES} WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("agent_id", agent_id), ("tool", tool)):
            if value:
                sql += f" AND g.{column} = ?"
                params.append(value)
        if states:
            sql += f" AND g.state IN ({', '.join('?' * len(states))})"
            params.extend(states)
        sql += " ORDER BY g.created_at DESC, g.grant_id LIMIT ?"
        params.append(limit)
        return await self.db.fetch(sql, params)

    async def active_pairs(self) -> list[tuple[str, str]]:
        """The (agent_id, tool) pairs that have an ACTIVE grant."""
        rows = await self.db.fetch(
            "SELECT DISTINCT agent_id, tool FROM grants WHERE state = 'ACTIVE'"
        )
        return [(r["agent_id"], r["tool"]) for r in rows]

    async def count_active(self) -> int:
        rows = await self.db.fetch("SELECT COUNT(*) AS n FROM grants WHERE state = 'ACTIVE'")
        return int(rows[0]["n"]) if rows else 0

    async def due(self, now: float) -> list[Rowdict]:
        """ACTIVE grants whose expiry has come (to be recorded EXPIRED)."""
        return await self.db.fetch(
            "SELECT * FROM grants WHERE state = 'ACTIVE' AND expires_at <= ?", (now,)
        )

    async def next_expiry(self) -> float | None:
        rows = await self.db.fetch(
            "SELECT MIN(expires_at) AS at FROM grants WHERE state = 'ACTIVE'"
        )
        at = rows[0]["at"] if rows else None
        return float(at) if at is not None else None


__all__ = ["Grants"]
