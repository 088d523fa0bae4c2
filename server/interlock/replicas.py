"""This replica's name, and what it must agree on with the others (docs/replicas.md).

Several ``interlock serve`` processes may share one PostgreSQL database. Each
has a *replica id* (``replica_id`` in the config; unset, the one kept in
``DATA_DIR/replica_id``, made on the first start from the host name and a
random suffix, so it survives restarts and two replicas on one host differ
by their data directories). It names the replica in GetHealth, in the
start-up log, on its events' rows and in every audit line it writes.

:class:`PolicyAgreement` records, every :data:`HEARTBEAT_SECONDS` and on
each reload, the policy revision the replica serves in the ``replicas``
table, and compares it with the other replicas alive (a heartbeat within
:data:`ALIVE_SECONDS`). The newest revision among them is the one loaded
last. A replica that serves another revision than the newest (it could not
load the new one, or its policy folder differs) fails the readiness
condition ``policy_agreement`` (a warning, not gating: its answers stay
correct for the revision it names) and refuses LIVE (decisions that would be
LIVE are denied, fail closed) until it serves the newest again. Replicas
whose revisions differ though their folders' contents do not agree (two
folders) are named in the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from interlock.journal import Journal, Recorded, Upsert
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
"""How often a replica records that it is alive and what it serves."""
ALIVE_SECONDS = 10.0
"""A replica whose last heartbeat is older than this is not compared with."""
POLICY_AGREEMENT = "policy_agreement"
"""The readiness condition (not gating) that every live replica serves one revision."""
_SAFE = re.compile(r"[^A-Za-z0-9_.:@-]")


def replica_id(configured: str, data_dir: Path) -> str:
    """The configured id, else the one kept in ``DATA_DIR/replica_id`` (made once)."""
    if configured:
        return configured
    path = data_dir / "replica_id"
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if kept:
            return kept
    host = _SAFE.sub("-", socket.gethostname())[:40] or "replica"
    made = f"{host}-{secrets.token_hex(3)}"
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(made + "\n")
    os.replace(tmp, path)
    return made


class PolicyAgreement:
    """Heartbeats in the ``replicas`` table and the ``policy_agreement`` condition."""

    def __init__(
        self,
        journal: Journal,
        replica: str,
        *,
        revision: Callable[[], tuple[str, float]],
        policy_dir: str,
        on_condition: Callable[[str, bool, str], None],
        interval: float = HEARTBEAT_SECONDS,
        alive: float = ALIVE_SECONDS,
    ) -> None:
        self.journal = journal
        self.replica = replica
        self.revision = revision
        """(revision served, when it was loaded)."""
        self.policy_dir = policy_dir
        self.on_condition = on_condition
        self.interval = interval
        self.alive = alive
        self.started_at = time.time()
        self.live_refused: str = ""
        """Why LIVE is refused on this replica now ("" when it is not)."""
        self.peers: list[dict[str, object]] = []
        """The replicas alive at the last check (for health)."""
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name="replica-heartbeat")

    def reloaded(self) -> None:
        """The policy changed: record it and compare again now."""
        self._poke.set()

    async def close(self) -> None:
        """Stop beating. The loop also ends on ``_closed`` at its next turn, and
        the cancel is repeated until the task has ended: a cancel that lands
        while a heartbeat's query is in PostgreSQL's driver was seen lost
        (the loop went on and close waited for ever)."""
        self._closed = True
        self._poke.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poke.wait()
            if self._closed:
                return
            self._poke.clear()
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store condition says why; keep beating
                log.warning("replicas: heartbeat failed: %s", exc)

    async def beat(self) -> None:
        """Record this replica's revision, then compare with the others alive."""
        revision, loaded_at = self.revision()
        now = time.time()
        row = {
            "replica_id": self.replica,
            "revision": revision,
            "loaded_at": loaded_at,
            "policy_dir": self.policy_dir,
            "started_at": self.started_at,
            "heartbeat": now,
        }
        await self.journal.record(Recorded(row_list=[Upsert("replicas", row, ("replica_id",))]))
        peers = await self.journal.replicas.alive(now - self.alive)
        self.peers = [dict(p) for p in peers]
        self._compare(revision)

    def _compare(self, mine: str) -> None:
        revisions: dict[str, list[str]] = {}
        newest, newest_at = mine, -1.0
        for p in self.peers:
            revisions.setdefault(str(p["revision"]), []).append(str(p["replica_id"]))
            at = float(p["loaded_at"])  # type: ignore[arg-type]
            if at > newest_at:
                newest, newest_at = str(p["revision"]), at
        if len(revisions) <= 1:
            self.live_refused = ""
            self.on_condition(
                POLICY_AGREEMENT,
                True,
                f"every live replica ({len(self.peers)}) serves revision {mine[:12]}",
            )
            return
        listing = "; ".join(
            f"{rev[:12]} on {', '.join(sorted(ids))}" for rev, ids in sorted(revisions.items())
        )
        folders = sorted({str(p["policy_dir"]) for p in self.peers})
        reason = f"live replicas serve different policy revisions: {listing}"
        if len(folders) > 1:
            reason += f" (policy folders: {', '.join(folders)})"
        if mine != newest:
            self.live_refused = (
                f"replica {self.replica} serves policy revision {mine[:12]}, not the newest "
                f"revision {newest[:12]} other replicas serve; LIVE is refused here until it does"
            )
            reason += f"; this replica is not on the newest ({newest[:12]}) and refuses LIVE"
        else:
            self.live_refused = ""
        if self.live_refused:
            log.warning("replicas: %s", reason)
        self.on_condition(POLICY_AGREEMENT, False, reason)


__all__ = [
    "ALIVE_SECONDS",
    "HEARTBEAT_SECONDS",
    "POLICY_AGREEMENT",
    "PolicyAgreement",
    "replica_id",
]
