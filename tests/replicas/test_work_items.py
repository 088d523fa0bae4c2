"""Plan work across replicas: items in the shared ``work_items`` table, claimed once.

- A plan submitted to replica A whose agent's worker is connected only to
  replica B completes: B's worker receives every item (the LIVE ones once)
  and reports to B; A drives the plan to its end.
- Workers for the same agent on two replicas racing for the items of many
  plans: each item is delivered exactly once.
- Two journals claiming the same offered item at once, many rounds: exactly
  one claim wins each.
- A tool's max_concurrency holds across replicas.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from interlock.audit import AuditLog
from interlock.journal import EventRecord, Journal, Recorded, open_journal
from interlock.plans import leases, shared_work
from interlock.plans.leases import Lease
from interlock.plans.model import PlanState, StepState
from interlock.plans.runtime import PlanChange, PlanRun, StepRun
from interlock.plans.workers import WorkOffer
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, plans_pb2, types_pb2

from tests.conftest import SharedStore
from tests.helpers.postgres import PostgresCluster, pg_bindir
from tests.helpers.process import ServerProcess
from tests.plans.test_handoff import set_switch, set_tool
from tests.test_plan_durability import get_plan
from tests.test_plans_api import FINISHED, spec, states, step
from tests.torture.sessions import LIVE, ResilientWorker
from tests.torture.test_sigkill import plan

pytestmark = pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL server binaries")


@pytest.fixture
async def two(
    tmp_path: Path, policy_dir: Path, cluster: PostgresCluster
) -> AsyncIterator[list[ServerProcess]]:
    servers = [
        ServerProcess(tmp_path / f"data{i}", policy_dir, tmp_path / f"logs{i}") for i in range(2)
    ]
    try:
        yield servers
    finally:
        for s in servers:
            await s.close()


async def wait_finished(
    stub: control_plane_pb2_grpc.ControlPlaneStub, plan_ids: list[str], within: float = 60
) -> dict[str, plans_pb2.Plan]:
    deadline = time.monotonic() + within
    while True:
        plans = {p: await get_plan(stub, p) for p in plan_ids}
        if all(x.state in FINISHED for x in plans.values()) or time.monotonic() > deadline:
            return plans
        await asyncio.sleep(0.2)


async def test_a_plan_on_one_replica_runs_on_a_worker_connected_to_another(
    two: list[ServerProcess], policy_dir: Path, shared_store: SharedStore
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    a, b = [await s.start(*shared_store.argv) for s in two]
    worker = ResilientWorker("agent1", random.Random(3), (0.05, 0.2))
    await worker.connect(b)  # agent1's only worker is on B
    driver = control_plane_pb2_grpc.ControlPlaneStub(a)
    await driver.SubmitPlan(plan("far"), timeout=10)

    (done,) = (await wait_finished(driver, ["far"])).values()
    await worker.disconnect()

    assert done.state == plans_pb2.PLAN_STATE_SUCCEEDED, states(done)
    # look and fill LIVE, check DRY_RUN: each handed to B's worker once; note is MOCK.
    handed = Counter(i.step_id for i in worker.items)
    assert handed == {"look": 1, "fill": 1, "check": 1}
    assert sorted(i.step_id for i in worker.items if i.mode == LIVE) == ["fill", "look"]
    assert worker.refused == [] and worker.unreported == {}
    assert {s.step_id: s.result.outcome for s in done.steps if s.step_id != "note"} == {
        "look": types_pb2.TOOL_OUTCOME_SUCCEEDED,
        "fill": types_pb2.TOOL_OUTCOME_SUCCEEDED,
        "check": types_pb2.TOOL_OUTCOME_SUCCEEDED,
    }


async def test_workers_on_two_replicas_racing_for_the_same_items_get_each_once(
    two: list[ServerProcess], policy_dir: Path, shared_store: SharedStore
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 200)
    for tool in ("vision_inspect", "form_fill"):
        set_tool(policy_dir, tool, max_concurrency=200, rate_limit_per_minute=1000)
    channels = [await s.start(*shared_store.argv) for s in two]
    rng = random.Random(7)
    # Two workers of agent1 on each replica, all pulling at once.
    workers = [ResilientWorker("agent1", rng, (0.0, 0.05)) for _ in range(4)]
    for n, worker in enumerate(workers):
        await worker.connect(channels[n % 2])
    stubs = [control_plane_pb2_grpc.ControlPlaneStub(c) for c in channels]
    plan_ids = [f"r{n}" for n in range(24)]
    await asyncio.gather(
        *(stubs[n % 2].SubmitPlan(plan(p), timeout=10) for n, p in enumerate(plan_ids))
    )

    plans = await wait_finished(stubs[0], plan_ids, within=120)
    for worker in workers:
        await worker.disconnect()

    unfinished = [f"{p}: {states(x)}" for p, x in plans.items() if x.state not in FINISHED]
    assert unfinished == []
    assert all(x.state == plans_pb2.PLAN_STATE_SUCCEEDED for x in plans.values())
    items = [i for w in workers for i in w.items]
    by_work = Counter(i.work_id for i in items)
    by_step = Counter((i.plan_id, i.step_id) for i in items)
    assert [w for w, n in by_work.items() if n > 1] == []
    assert [s for s, n in by_step.items() if n > 1] == []
    assert len(items) == 3 * len(plan_ids)  # look, fill, check of every plan, once
    # Both replicas' workers took items of plans the other replica drives.
    assert all(w.items for w in workers[:2])


def journal_on(url: str, data: Path) -> Journal:
    return open_journal(url, data, AuditLog(data, fsync=False), fsync=False)


async def test_two_replicas_claiming_the_same_item_exactly_one_wins_each_round(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("claims")
    a, b = journal_on(url, tmp_path / "a"), journal_on(url, tmp_path / "b")
    await a.start()
    await b.start()
    try:
        for n in range(40):
            run = PlanRun(plan_id=f"c{n}", source_format="json", labels={}, steps={})
            run.state = PlanState.RUNNING
            s = StepRun(
                plan_id=run.plan_id,
                step_id="look",
                position=0,
                tool="vision_inspect",
                agent_id="agent1",
                arguments={"target": "x"},
                confidence=0.9,
                depends_on=(),
                state=StepState.DECIDED,
                mode="LIVE",
                decision_id=f"d{n}",
                work_id=f"w{n}",
                attempt=1,
            )
            offer = WorkOffer(
                work_id=s.work_id,
                agent_id="agent1",
                plan_id=run.plan_id,
                step_id="look",
                decision_id=s.decision_id,
                tool="vision_inspect",
                arguments={"target": "x"},
                mode="LIVE",
                deadline=0.0,
                attempt=1,
            )
            first = PlanChange(run, [s], [EventRecord(kind="DISPATCH")])
            first.lease = [leases.first(run.plan_id, Lease("a", 1), time.time() + 60)]
            first.work = shared_work.offer_rows(
                offer,
                revision="r",
                owner="a",
                max_concurrency=1000,
                rate_limit_per_minute=1000,
                window_seconds=60,
            )
            await a.record(first)
            outcomes = await asyncio.gather(
                a.record(shared_work.claim(offer, "a", time.time() + 30)),
                b.record(shared_work.claim(offer, "b", time.time() + 30)),
                return_exceptions=True,
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, shared_work.NotClaimed)]
            assert (len(won), len(lost)) == (1, 1), outcomes
            # A claimed item can no longer be withdrawn: the driver knows it is out.
            with pytest.raises(shared_work.NotClaimed):
                await b.record(shared_work.withdraw(offer.work_id))
            (row,) = await a.plans.work_items([offer.work_id])
            assert row["state"] == shared_work.DELIVERED
            (step_row,) = await a.plans.steps(run.plan_id)
            assert step_row["state"] == "DISPATCHED"
        # Closing an item that is not in the table is refused, not silently ignored.
        with pytest.raises(shared_work.NotClaimed):
            await a.record(Recorded(row_list=[shared_work.closed("nope", report_expected=False)]))
    finally:
        await a.close()
        await b.close()


async def test_a_tools_max_concurrency_holds_across_replicas(
    two: list[ServerProcess], policy_dir: Path, cluster: PostgresCluster
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    set_tool(policy_dir, "vision_inspect", max_concurrency=1)
    url = cluster.create_database("tool_cap")
    channels = [await s.start("--store", url) for s in two]
    stubs = [control_plane_pb2_grpc.ControlPlaneStub(c) for c in channels]
    out: set[str] = set()
    most = 0
    seen: list[str] = []

    async def work(channel: grpc.aio.Channel) -> None:
        nonlocal most
        stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        async for response in stub.PullWork(pb.PullWorkRequest(agent_id="agent1")):
            item = response.item
            seen.append(item.work_id)
            out.add(item.work_id)
            most = max(most, len(out))
            await asyncio.sleep(0.3)
            out.discard(item.work_id)
            request = pb.ReportToolResultRequest(
                agent_id="agent1",
                work_id=item.work_id,
                decision_id=item.decision_id,
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            )
            await stub.ReportToolResult(request, timeout=10)

    tasks = [asyncio.create_task(work(c)) for c in channels for _ in range(2)]
    plan_ids = [f"cap{n}" for n in range(6)]
    for n, p in enumerate(plan_ids):
        await stubs[n % 2].SubmitPlan(
            spec(p, step("look", "vision_inspect", "agent1", 0.9, {"target": p})), timeout=10
        )
    plans = await wait_finished(stubs[0], plan_ids)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert {p: x.state for p, x in plans.items()} == {
        p: plans_pb2.PLAN_STATE_SUCCEEDED for p in plan_ids
    }
    assert len(seen) == len(plan_ids)
    assert most == 1  # 2 without the shared count (one item out per replica)


async def test_a_tools_rate_limit_holds_across_replicas(
    two: list[ServerProcess], policy_dir: Path, cluster: PostgresCluster
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    set_tool(policy_dir, "vision_inspect", max_concurrency=10, rate_limit_per_minute=2)
    url = cluster.create_database("tool_rate")
    channels = [await s.start("--store", url) for s in two]
    stubs = [control_plane_pb2_grpc.ControlPlaneStub(c) for c in channels]
    workers = [ResilientWorker("agent1", random.Random(n), (0.0, 0.05)) for n in range(2)]
    for worker, channel in zip(workers, channels, strict=True):
        await worker.connect(channel)
    plan_ids = [f"rate{n}" for n in range(4)]
    for n, p in enumerate(plan_ids):
        await stubs[n % 2].SubmitPlan(
            spec(p, step("look", "vision_inspect", "agent1", 0.9, {"target": p})), timeout=10
        )
    finished = await wait_finished(stubs[0], plan_ids, within=10)
    for worker in workers:
        await worker.disconnect()

    # Two dispatches a minute across both replicas: two plans ran, two still wait
    # for the window (four ran when each replica counted its own).
    done = sorted(p for p, x in finished.items() if x.state == plans_pb2.PLAN_STATE_SUCCEEDED)
    assert len(done) == 2, {p: states(x) for p, x in finished.items()}
    assert sum(len(w.items) for w in workers) == 2
