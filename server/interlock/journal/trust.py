"""Typed reads of the trust state of (agent, tool) pairs (:mod:`interlock.trust`)."""

from __future__ import annotations

from typing import Any

from interlock.journal.backend import Backend

Rowdict = dict[str, Any]


class TrustPairs:
    """The ``trust_pairs`` table: one row per (agent, tool) that ever had an outcome."""

    def __init__(self, backend: Backend) -> None:
        self.db = backend

    async def get(self, agent_id: str, tool: str) -> Rowdict | None:
        rows = await self.db.fetch_point(
            "SELECT * FROM trust_pairs WHERE agent_id = ? AND tool = ?", (agent_id, tool)
        )
        return rows[0] if rows else None

    async def find(self, *, agent_id: str = "", tool: str = "", limit: int = 1000) -> list[Rowdict]:
        """Pairs by agent and tool (empty matches all), in that order."""
        sql = "SELECT * FROM trust_pairs WHERE 1 = 1"
        params: list[Any] = []
        if agent_id:
            sql += " AND agent_id = ?"
            params.append(agent_id)
        if tool:
            sql += " AND tool = ?"
            params.append(tool)
        sql += " ORDER BY agent_id, tool LIMIT ?"
        params.append(limit)
        return await self.db.fetch(sql, params)

    def demoted_sync(self) -> list[Rowdict]:
        """Every pair now demoted (start-up: the gauge; sync)."""
        return self.db.fetch_sync("SELECT * FROM trust_pairs WHERE state = 'DEMOTED'")


class PolicyApprovals:
    """Approvals the policy made itself (``resolved_by`` is ``policy:<revision>``)."""

    def __init__(self, backend: Backend) -> None:
        self.db = backend

    async def count(self, agent_id: str, tool: str, since: float) -> int:
        """The pair's policy-made approvals created after ``since``."""
        rows = await self.db.fetch(
            "SELECT COUNT(*) AS n FROM approvals WHERE agent_id = ? AND tool = ?"
            " AND resolved_by LIKE ? AND created_at > ?",
            (agent_id, tool, "policy:%", since),
        )
        return int(rows[0]["n"])


__all__ = ["PolicyApprovals", "TrustPairs"]
