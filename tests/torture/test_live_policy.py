"""Scenario 2: the policy in force at hand-off decides, for steps that waited.

Steps are decided LIVE while no worker is connected; then the LIVE cap is
lowered, or the kill switch (dry_run_only) turned on and hot-reloaded, or the
server is SIGKILLed and started again with ``--dry-run-only``; then workers
connect late, one after another.

Guarantee: no item reaches a worker LIVE against the policy in force when it
is handed out (never LIVE under the kill switch; never more LIVE items held at
once than the cap). Also (finding 2): a freed tool slot wakes the step waiting
for it, so twenty 0.1 s steps on two slots finish in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import (
    control_plane_pb2_grpc,
    plans_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    types_pb2,
)

from tests.helpers.calls import tool_call
from tests.helpers.process import ServerProcess
from tests.plans.test_handoff import set_switch, set_tool
from tests.test_plans_api import FINISHED, spec, step
from tests.torture.figures import Figures

pytestmark = pytest.mark.torture

LIVE = types_pb2.EXECUTION_MODE_LIVE
DRY_RUN = types_pb2.EXECUTION_MODE_DRY_RUN
SCENARIO = "live under policy"
WORKERS = 4
CAP = 3
WAKEUP_BOUND_SECONDS = 20.0
"""Twenty 0.1 s steps on two slots: 1 s of work; it took 191 s when only the
minute's rate window woke a waiting step."""


class Pool:
    """Workers for agent1 that hold each item ``hold`` seconds, then report it;
    they count the LIVE items held at once across all of them."""

    def __init__(self, channel: grpc.aio.Channel, hold: float) -> None:
        self.stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self.hold = hold
        self.items: list[plans_pb2.WorkItem] = []
        self.live_held = 0
        self.max_live_held = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Pool:
        for _ in range(WORKERS):  # connecting late, one after the other
            self._spawn(self._pull())
            await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pull(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in self.stub.PullWork(pb.PullWorkRequest(agent_id="agent1")):
                item = response.item
                self.items.append(item)
                if item.mode == LIVE:
                    self.live_held += 1
                    self.max_live_held = max(self.max_live_held, self.live_held)
                self._spawn(self._run(item))

    async def _run(self, item: plans_pb2.WorkItem) -> None:
        await asyncio.sleep(self.hold)
        if item.mode == LIVE:
            self.live_held -= 1  # no longer held once the report is on its way
        await self.stub.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=item.decision_id,
                agent_id="agent1",
                work_id=item.work_id,
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            ),
            timeout=10,
        )

    def live(self) -> int:
        return sum(1 for i in self.items if i.mode == LIVE)


async def reload(channel: grpc.aio.Channel) -> None:
    stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
    # Some steps put a cap or a switch back, which widens what runs LIVE: the
    # reload gate refuses that unless the reload says so.
    answer = await stub.ReloadPolicies(
        policy_service_pb2.ReloadPoliciesRequest(
            accept_widening=True, reason="the scenario restores the policy"
        )
    )
    assert answer.changed, "the edited policy set did not load"


async def submit_decided_live(
    cp: control_plane_pb2_grpc.ControlPlaneStub, prefix: str, count: int, confidence: float = 0.9
) -> list[str]:
    """``count`` one-step form_fill plans; returns their ids once every step is
    decided (no worker is connected, so they wait)."""
    ids = [f"{prefix}{i}" for i in range(count)]
    for plan_id in ids:
        args = {"form_id": plan_id, "fields": {"name": plan_id}}
        await cp.SubmitPlan(spec(plan_id, step("fill", "form_fill", "agent1", confidence, args)))
    async with asyncio.timeout(15):
        while True:
            steps = [(await cp.GetPlan(pb.GetPlanRequest(plan_id=p))).plan.steps[0] for p in ids]
            if all(s.state == plans_pb2.STEP_STATE_DECIDED for s in steps):
                break
            await asyncio.sleep(0.05)
    if confidence >= 0.8:
        assert [s.decision.mode for s in steps] == [LIVE] * count, "not all decided LIVE"
    return ids


async def wait_finished(cp: control_plane_pb2_grpc.ControlPlaneStub, ids: list[str]) -> None:
    async with asyncio.timeout(30):
        for plan_id in ids:
            while True:
                plan = (await cp.GetPlan(pb.GetPlanRequest(plan_id=plan_id))).plan
                if plan.state in FINISHED:
                    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan
                    break
                await asyncio.sleep(0.05)


async def test_queued_live_steps_obey_the_cap_and_the_kill_switch_at_hand_off(
    serve: ServerProcess, policy_dir: Path, figures: Figures
) -> None:
    set_switch(policy_dir, "max_concurrent_live", 50)
    set_tool(policy_dir, "form_fill", max_concurrency=50)
    channel = await serve.start()
    cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
    against = 0

    # A. The cap lowered from 50 to 3 while 16 LIVE steps wait.
    ids = await submit_decided_live(cp, "cap", 16)
    set_switch(policy_dir, "max_concurrent_live", CAP)
    await reload(channel)
    async with Pool(channel, hold=0.15) as pool:
        await wait_finished(cp, ids)
    max_held = pool.max_live_held
    against += max(0, max_held - CAP)

    # B. The kill switch turned on while 12 LIVE steps wait.
    set_switch(policy_dir, "max_concurrent_live", 50)
    await reload(channel)
    ids = await submit_decided_live(cp, "switch", 12)
    set_switch(policy_dir, "dry_run_only", True)
    await reload(channel)
    direct = await cp.RequestToolCall(
        tool_call(tool="form_fill", arguments={"form_id": "d", "fields": {"a": "b"}})
    )
    assert direct.decision.mode == DRY_RUN, "the switch did not reach direct calls"
    async with Pool(channel, hold=0.02) as pool:
        await wait_finished(cp, ids)
    switch_live = pool.live()
    against += switch_live

    # C. SIGKILL while 10 LIVE steps wait; started again with --dry-run-only.
    set_switch(policy_dir, "dry_run_only", False)
    await reload(channel)
    ids = await submit_decided_live(cp, "crash", 10)
    await serve.kill()
    channel = await serve.start("--dry-run-only")
    cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
    async with Pool(channel, hold=0.02) as pool:
        await wait_finished(cp, ids)
    crash_live = pool.live()
    against += crash_live

    # D. Twenty 0.1 s steps on a tool with two slots.
    set_tool(policy_dir, "form_fill", max_concurrency=2)
    await reload(channel)
    started = time.monotonic()
    async with Pool(channel, hold=0.1) as pool:
        ids = [f"slot{i}" for i in range(20)]
        for plan_id in ids:
            args = {"form_id": plan_id, "fields": {"name": plan_id}}
            await cp.SubmitPlan(spec(plan_id, step("fill", "form_fill", "agent1", 0.75, args)))
        await wait_finished(cp, ids)
    wakeup = time.monotonic() - started

    figures.record(SCENARIO, "LIVE delivered against policy", against, "= 0")
    figures.record(SCENARIO, "max LIVE held at once (cap lowered to 3)", max_held, f"<= {CAP}")
    figures.record(SCENARIO, "LIVE delivered under the kill switch", switch_live, "= 0")
    figures.record(SCENARIO, "LIVE delivered after SIGKILL + --dry-run-only", crash_live, "= 0")
    figures.record(
        SCENARIO, "20 plans on 2 slots, seconds", round(wakeup, 1), f"< {WAKEUP_BOUND_SECONDS:g}"
    )

    assert max_held <= CAP, f"{max_held} LIVE items held at once under a cap of {CAP}"
    assert switch_live == 0, "LIVE items handed out under the kill switch"
    assert crash_live == 0, "LIVE items handed out by a server started with --dry-run-only"
    assert wakeup < WAKEUP_BOUND_SECONDS, f"twenty 0.1 s steps on two slots took {wakeup:.1f}s"
