"""Scenario 1: SIGKILL the server again and again while plans with LIVE steps
run and workers report.

Guarantee: no LIVE step is handed to a worker twice, across every life of the
server; a watcher that resumes with ``after_seq`` sees every event exactly
once, in order (no gap, no repeat), and the event log after the last restart
holds every event it saw, unchanged; every plan ends (SUCCEEDED, or FAILED
with an AMBIGUOUS step), none stays RUNNING.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc

from tests.helpers.process import ServerProcess
from tests.plans.test_handoff import set_switch, set_tool
from tests.test_plan_durability import describe, get_plan, read_events
from tests.test_plans_api import FINISHED, spec, states, step
from tests.torture.figures import Figures
from tests.torture.sessions import LIVE, ResilientWatcher, ResilientWorker

pytestmark = pytest.mark.torture

ROUNDS = 6
PLANS_PER_ROUND = 5
STEP_TIMEOUT_SECONDS = 5
"""Tool timeout: a LIVE step out at a crash whose report never comes is AMBIGUOUS this soon."""
SCENARIO = "sigkill"


def plan(plan_id: str) -> pb.SubmitPlanRequest:
    """LIVE, LIVE, DRY_RUN in a chain, and a MOCK step beside them."""
    return spec(
        plan_id,
        step("look", "vision_inspect", "agent1", 0.9, {"target": f"{plan_id} a"}),
        step(
            "fill",
            "form_fill",
            "agent1",
            0.9,
            {"form_id": plan_id, "fields": {"name": plan_id}},
            ("look",),
        ),
        step("check", "vision_inspect", "agent1", 0.6, {"target": f"{plan_id} b"}, ("fill",)),
        step("note", "vision_inspect", "agent1", 0.1, {"target": f"{plan_id} c"}),
    )


async def test_repeated_sigkills_deliver_no_live_step_twice_and_lose_no_event(
    serve: ServerProcess, policy_dir: Path, figures: Figures
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    for tool in ("vision_inspect", "form_fill"):
        set_tool(policy_dir, tool, timeout_seconds=STEP_TIMEOUT_SECONDS, max_concurrency=20)
    rng = random.Random(11)
    workers = [ResilientWorker("agent1", rng, (0.02, 0.5)) for _ in range(2)]
    watcher = ResilientWatcher()
    plan_ids: list[str] = []
    kills = out_at_kill = 0

    async def connect() -> control_plane_pb2_grpc.ControlPlaneStub:
        channel = await serve.start()
        watcher.connect(channel)
        for worker in workers:
            await worker.connect(channel)
        return control_plane_pb2_grpc.ControlPlaneStub(channel)

    async def disconnect() -> None:
        await watcher.disconnect()
        for worker in workers:
            await worker.disconnect()

    for r in range(ROUNDS):
        cp = await connect()
        for i in range(PLANS_PER_ROUND):
            plan_ids.append(f"r{r}p{i}")
            await cp.SubmitPlan(plan(plan_ids[-1]), timeout=10)
        await asyncio.sleep(rng.uniform(0.2, 1.2))  # plans mid-run: steps out, reports on the way
        out_at_kill += sum(1 for w in workers for i in w.unreported.values() if i.mode == LIVE)
        await serve.kill()
        kills += 1
        await disconnect()

    cp = await connect()
    unfinished = []
    deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_SECONDS + 20
    while True:
        plans = {p: await get_plan(cp, p) for p in plan_ids}
        unfinished = [f"{p}: {states(x)}" for p, x in plans.items() if x.state not in FINISHED]
        if not unfinished or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    ambiguous = sum(1 for x in plans.values() for s in states(x).values() if s == "AMBIGUOUS")

    # The log after the last restart against what the watcher saw across all of them.
    history = await read_events(cp, pb.WatchEventsRequest(after_seq=0), quiet=0.5)
    await watcher.wait_for_seq(history[-1].seq)
    await disconnect()
    stored = {e.seq: describe(e) for e in history}
    seen = {e.seq: describe(e) for e in watcher.events}
    lost = [seq for seq in stored if seq not in seen]
    changed = [seq for seq, d in seen.items() if stored.get(seq, d) != d]
    gaps = [e.seq for n, e in enumerate(history, start=1) if e.seq != n]
    twice = workers[0].live_delivered_twice(*workers[1:])
    items = [i for w in workers for i in w.items]

    figures.record(SCENARIO, "SIGKILLs survived", kills)
    figures.record(SCENARIO, "plans", len(plan_ids))
    figures.record(SCENARIO, "LIVE items delivered", sum(1 for i in items if i.mode == LIVE))
    figures.record(SCENARIO, "LIVE items out with a worker at a SIGKILL", out_at_kill)
    figures.record(SCENARIO, "LIVE delivered twice", len(twice), "= 0")
    figures.record(
        SCENARIO, "events lost", len(lost) + len(changed) + len(watcher.breaks) + len(gaps), "= 0"
    )
    figures.record(SCENARIO, "events seen by the resuming watcher", len(watcher.events))
    figures.record(SCENARIO, "plans not finished", len(unfinished), "= 0")
    figures.record(SCENARIO, "steps AMBIGUOUS", ambiguous)

    assert twice == [], f"LIVE steps handed out more than once: {twice}"
    assert watcher.breaks == [], f"the resuming watcher's seqs jump: {watcher.breaks}"
    assert gaps == [], f"the event log has a gap or a repeat at {gaps}"
    assert lost == [] and changed == [], (lost, changed)
    assert unfinished == [], "plans never finished:\n" + "\n".join(unfinished)
    assert kills == ROUNDS
