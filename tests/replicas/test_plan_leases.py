"""Plans across replicas: three ``interlock serve`` processes on one PostgreSQL
database, each plan driven by one replica under a lease with a term.

- SIGKILL the replica that drives plans with LIVE steps: the others take its
  plans over once the lease expires; no LIVE step is handed to a worker twice;
  every plan ends (a LIVE step out with the dead replica's worker, unreported,
  is AMBIGUOUS at its deadline).
- Two replicas racing for the same expired lease, many rounds: exactly one
  wins each; the loser's writes to the plan are refused from then on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from interlock.audit import AuditLog
from interlock.journal import EventRecord, Journal, open_journal
from interlock.plans import leases
from interlock.plans.leases import Lease, LeaseLost, LeaseTaken
from interlock.plans.model import PlanState
from interlock.plans.runtime import PlanChange, PlanRun
from interlock.v1 import control_plane_pb2_grpc

from tests.helpers.postgres import PostgresCluster, pg_bindir
from tests.helpers.process import ServerProcess
from tests.plans.test_handoff import set_switch, set_tool
from tests.test_plan_durability import get_plan
from tests.test_plans_api import FINISHED, states
from tests.torture.sessions import LIVE, ResilientWatcher, ResilientWorker
from tests.torture.test_sigkill import plan

pytestmark = pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL server binaries")

LEASE_SECONDS = 2.0
STEP_TIMEOUT_SECONDS = 5


@pytest.fixture
async def replicas(
    tmp_path: Path, policy_dir: Path, cluster: PostgresCluster
) -> AsyncIterator[list[ServerProcess]]:
    servers = [
        ServerProcess(tmp_path / f"data{i}", policy_dir, tmp_path / f"logs{i}") for i in range(3)
    ]
    try:
        yield servers
    finally:
        for s in servers:
            await s.close()


async def test_the_plans_of_a_killed_replica_are_taken_over_and_no_live_step_runs_twice(
    replicas: list[ServerProcess], policy_dir: Path, cluster: PostgresCluster
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    for tool in ("vision_inspect", "form_fill"):
        set_tool(policy_dir, tool, timeout_seconds=STEP_TIMEOUT_SECONDS, max_concurrency=20)
    url = cluster.create_database("leases")
    flags = ("--store", url, "--plan-lease-seconds", str(LEASE_SECONDS))
    channels = [await s.start(*flags) for s in replicas]
    rng = random.Random(5)
    # A worker of agent1 on every replica (any of them may claim a plan's items).
    workers = [ResilientWorker("agent1", rng, (0.3, 1.0)) for _ in replicas]
    for worker, channel in zip(workers, channels, strict=True):
        await worker.connect(channel)
    watcher = ResilientWatcher()  # on a replica that survives: it must miss nothing
    watcher.connect(channels[1])
    owner = control_plane_pb2_grpc.ControlPlaneStub(channels[0])
    plan_ids = [f"p{i}" for i in range(6)]
    for plan_id in plan_ids:
        await owner.SubmitPlan(plan(plan_id), timeout=10)
    await asyncio.sleep(0.6)  # LIVE steps out with replica 0's worker
    out_at_kill = [i for i in workers[0].unreported.values() if i.mode == LIVE]
    before = {p: await get_plan(owner, p) for p in plan_ids}
    running_at_kill = [p for p, x in before.items() if x.state not in FINISHED]
    await replicas[0].kill()
    await workers[0].disconnect()
    killed_at = time.monotonic()

    survivor = control_plane_pb2_grpc.ControlPlaneStub(channels[1])
    deadline = killed_at + LEASE_SECONDS + STEP_TIMEOUT_SECONDS + 30
    while True:
        plans = {p: await get_plan(survivor, p) for p in plan_ids}
        unfinished = [f"{p}: {states(x)}" for p, x in plans.items() if x.state not in FINISHED]
        if not unfinished or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    for worker in workers[1:]:
        await worker.disconnect()
    with psycopg.connect(url) as conn:
        highest = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    await watcher.wait_for_seq(highest, within=30)
    await watcher.disconnect()
    assert watcher.breaks == []  # every replica's events, seq after seq, through the kill
    assert [e.seq for e in watcher.events[:highest]] == list(range(1, highest + 1))

    assert unfinished == [], "plans never finished:\n" + "\n".join(unfinished)
    assert workers[0].live_delivered_twice(*workers[1:]) == []
    # Every plan still running when its driver died was taken over by a survivor
    # (a lease of a higher term, held by another replica), and finished there.
    assert running_at_kill, "the plans finished before the kill: nothing to take over"
    dead = (replicas[0].data_dir / "replica_id").read_text().strip()
    with psycopg.connect(url) as conn:
        leases_now = dict(
            (row[0], (row[1], row[2]))
            for row in conn.execute("SELECT plan_id, owner, term FROM plan_leases")
        )
    for plan_id in running_at_kill:
        owner_now, term = leases_now[plan_id]
        assert owner_now != dead and term >= 2, (plan_id, owner_now, term)
    for item in out_at_kill:  # out with the dead replica's worker, never reported
        assert states(plans[item.plan_id])[item.step_id] == "AMBIGUOUS"


def journal_on(url: str, data: Path) -> Journal:
    return open_journal(url, data, AuditLog(data, fsync=False), fsync=False)


async def test_two_replicas_racing_for_the_same_expired_lease_one_wins_each_round(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("race")
    a, b = journal_on(url, tmp_path / "a"), journal_on(url, tmp_path / "b")
    await a.start()
    await b.start()
    try:
        for n in range(40):
            run = PlanRun(plan_id=f"race{n}", source_format="json", labels={}, steps={})
            run.state = PlanState.RUNNING
            first = PlanChange(run, event_list=[EventRecord(kind="STATE_TRANSITION")])
            first.lease = [leases.first(run.plan_id, Lease("gone", 1), expires_at=0.0)]
            await a.record(first)
            (row,) = [
                r
                for r in await a.plans.takeable("nobody", time.time())
                if r["plan_id"] == run.plan_id
            ]
            outcomes = await asyncio.gather(
                a.record(leases.takeover(row, "a", time.time() + 60)),
                b.record(leases.takeover(row, "b", time.time() + 60)),
                return_exceptions=True,
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, LeaseTaken)]
            assert (len(won), len(lost)) == (1, 1), outcomes
            winner = "a" if not isinstance(outcomes[0], BaseException) else "b"
            # The old owner (term 1) can no longer write to the plan.
            late = PlanChange(run, event_list=[EventRecord(kind="STATE_TRANSITION")])
            late.lease = [leases.guard(run.plan_id, Lease("gone", 1))]
            with pytest.raises(LeaseLost):
                await a.record(late)
            ok = PlanChange(run, event_list=[EventRecord(kind="STATE_TRANSITION")])
            ok.lease = [leases.guard(run.plan_id, Lease(winner, 2))]
            await b.record(ok)
    finally:
        await a.close()
        await b.close()
