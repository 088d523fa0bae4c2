"""The moment of hand-off decides: queued steps obey the policy in force when a
worker receives them, the LIVE cap is exact, and waits end when what they
wait for happens (issue 11, findings 1 and 2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, plans_pb2, policy_service_pb2, types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.workers import FINISHED, wait_plan
from tests.test_plans_api import spec, step

LIVE = types_pb2.EXECUTION_MODE_LIVE


def edit_yaml(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


def set_switch(policy_dir: Path, name: str, value: Any) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["switches"][name] = value

    edit_yaml(policy_dir / "interlock" / "config" / "data.yaml", change)


def set_tool(policy_dir: Path, tool: str, **fields: Any) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["tools"][tool].update(fields)

    edit_yaml(policy_dir / "interlock" / "catalog" / "data.yaml", change)


async def reload(server: Running) -> None:
    answer = await server.policy.ReloadPolicies(policy_service_pb2.ReloadPoliciesRequest())
    assert answer.changed, "the edited policy set did not load"


async def submit_fills(server: Running, count: int, confidence: float, prefix: str = "p") -> None:
    for i in range(count):
        args = {"form_id": f"{prefix}{i}", "fields": {"name": f"n{i}"}}
        await server.cp.SubmitPlan(
            spec(f"{prefix}{i}", step("fill", "form_fill", "agent1", confidence, args))
        )


async def step_of(server: Running, plan_id: str) -> plans_pb2.Step:
    plan = (await server.cp.GetPlan(pb.GetPlanRequest(plan_id=plan_id))).plan
    return plan.steps[0]


async def wait_decided(server: Running, plan_ids: list[str], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while True:
            steps = [await step_of(server, p) for p in plan_ids]
            if all(s.state == plans_pb2.STEP_STATE_DECIDED for s in steps):
                return
            await asyncio.sleep(0.05)


class HoldingWorker:
    """A worker that receives items and holds them until told to report; it
    tracks how many LIVE items it holds at once."""

    all: list[HoldingWorker] = []

    def __init__(self, channel: grpc.aio.Channel, agent_id: str, *, hold: bool = True) -> None:
        HoldingWorker.all.append(self)
        self.stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self.agent_id = agent_id
        self.hold = hold
        self.items: list[plans_pb2.WorkItem] = []
        self.held: dict[str, plans_pb2.WorkItem] = {}
        self.max_live_held = 0
        self.arrived = asyncio.Event()
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HoldingWorker:
        self._call = self.stub.PullWork(pb.PullWorkRequest(agent_id=self.agent_id))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._call.cancel()
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._task

    async def _run(self) -> None:
        async for response in self._call:
            item = response.item
            self.items.append(item)
            self.held[item.work_id] = item
            live = sum(1 for i in self.held.values() if i.mode == LIVE)
            self.max_live_held = max(self.max_live_held, live)
            for worker in HoldingWorker.all:
                worker.arrived.set()
            if not self.hold:
                await self.report(item)

    async def report(self, item: plans_pb2.WorkItem) -> None:
        self.held.pop(item.work_id, None)
        await self.stub.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=item.decision_id,
                agent_id=self.agent_id,
                work_id=item.work_id,
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            )
        )


async def wait_items(workers: list[HoldingWorker], count: int, within: float = 10) -> None:
    """Until the workers together have received ``count`` items."""
    async with asyncio.timeout(within):
        while sum(len(w.items) for w in workers) < count:
            workers[0].arrived.clear()
            await workers[0].arrived.wait()


def decision_lines(server: Running) -> list[dict[str, Any]]:
    path = server.data_dir / "tool_execution_log.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [line for line in lines if line["kind"] == "decision"]


async def test_kill_switch_reaches_steps_already_decided_live(
    start_server: StartServer, policy_dir: Path
) -> None:
    """Steps decided LIVE while no worker was connected arrive DRY_RUN after the
    dry-run-only switch is turned on; each new decision names the old one."""
    set_switch(policy_dir, "max_concurrent_live", 50)
    server = await start_server()
    count = 12
    await submit_fills(server, count, 0.9)
    plan_ids = [f"p{i}" for i in range(count)]
    await wait_decided(server, plan_ids)
    decided = {p: await step_of(server, p) for p in plan_ids}
    assert all(s.decision.mode == LIVE for s in decided.values())

    set_switch(policy_dir, "dry_run_only", True)
    await reload(server)
    direct = await server.cp.RequestToolCall(
        pb.RequestToolCallRequest(
            agent_id="agent1",
            tool="form_fill",
            confidence=0.9,
            arguments=_struct({"form_id": "direct", "fields": {"a": "b"}}),
        )
    )
    assert direct.decision.mode == types_pb2.EXECUTION_MODE_DRY_RUN

    workers = [HoldingWorker(server.channel, "agent1", hold=False) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:  # connecting late, one after the other
            await stack.enter_async_context(worker)
            await asyncio.sleep(0.05)
        for plan_id in plan_ids:
            finished = await wait_plan(server.cp, plan_id, FINISHED)
            assert finished.state == plans_pb2.PLAN_STATE_SUCCEEDED, finished
    received = [item for w in workers for item in w.items]
    assert len(received) == count
    assert [i for i in received if i.mode == LIVE] == []
    assert {i.mode for i in received} == {types_pb2.EXECUTION_MODE_DRY_RUN}
    old = {s.decision.decision_id for s in decided.values()}
    supersedes = {line["supersedes"] for line in decision_lines(server) if "supersedes" in line}
    assert supersedes == old
    assert {i.decision_id for i in received}.isdisjoint(old)
    assert server.server.decisions.live_in_flight() == 0


async def test_lowered_cap_holds_for_steps_already_decided_live(
    start_server: StartServer, policy_dir: Path
) -> None:
    """A cap lowered while LIVE steps wait is never exceeded when workers come."""
    set_switch(policy_dir, "max_concurrent_live", 50)
    set_tool(policy_dir, "form_fill", max_concurrency=50)
    server = await start_server()
    count = 16
    await submit_fills(server, count, 0.9)
    plan_ids = [f"p{i}" for i in range(count)]
    await wait_decided(server, plan_ids)
    assert [(await step_of(server, p)).decision.mode for p in plan_ids] == [LIVE] * count
    assert server.server.decisions.live_in_flight() == count

    set_switch(policy_dir, "max_concurrent_live", 3)
    await reload(server)
    workers = [HoldingWorker(server.channel, "agent1") for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
            await asyncio.sleep(0.05)
        await wait_items(workers, count)
        held_live = [i for w in workers for i in w.held.values() if i.mode == LIVE]
        assert len(held_live) == 3  # the cap, no more: the others were decided again
        assert server.server.decisions.live_in_flight() == 3
        for worker in workers:
            for item in list(worker.held.values()):
                await worker.report(item)
    assert max(w.max_live_held for w in workers) <= 3
    assert server.server.decisions.live_in_flight() == 0


async def test_a_queued_live_step_counts_until_it_ends_not_until_its_timeout(
    start_server: StartServer, policy_dir: Path
) -> None:
    """A LIVE step that waits longer than its tool's timeout still holds its
    place under the cap: later steps do not go LIVE past the cap."""
    set_switch(policy_dir, "max_concurrent_live", 2)
    set_tool(policy_dir, "form_fill", max_concurrency=50, timeout_seconds=1)
    server = await start_server()
    await submit_fills(server, 2, 0.9, prefix="early")
    await wait_decided(server, ["early0", "early1"])
    await asyncio.sleep(1.5)  # past form_fill's timeout since those decisions
    await submit_fills(server, 4, 0.9, prefix="late")
    await wait_decided(server, [f"late{i}" for i in range(4)])
    late = [await step_of(server, f"late{i}") for i in range(4)]
    assert [s.decision.mode for s in late] == [types_pb2.EXECUTION_MODE_DRY_RUN] * 4
    async with HoldingWorker(server.channel, "agent1") as worker:
        await wait_items([worker], 6)
        assert worker.max_live_held == 2


@pytest.mark.parametrize("engine", ["embedded", pytest.param("opa", marks=pytest.mark.opa)])
async def test_concurrent_decisions_never_exceed_the_live_cap(
    start_server: StartServer, policy_dir: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    """Many LIVE-eligible calls at once (evaluated concurrently by OPA): exactly
    the cap's worth go LIVE."""
    set_switch(policy_dir, "max_concurrent_live", 3)
    options: dict[str, Any] = {"engine": engine}
    if engine == "opa":
        options["opa_url"] = request.getfixturevalue("opa").url
    server = await start_server(**options)

    async def call(i: int) -> int:
        answer = await server.cp.RequestToolCall(
            pb.RequestToolCallRequest(
                agent_id="agent1",
                tool="vision_inspect",
                confidence=0.95,
                arguments=_struct({"target": f"screen-{i}"}),
            )
        )
        return int(answer.decision.mode)

    modes = await asyncio.gather(*(call(i) for i in range(60)))
    assert modes.count(LIVE) == 3
    assert server.server.decisions.live_in_flight() == 3


def _struct(value: dict[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    out = struct_pb2.Struct()
    out.update(value)
    return out


async def test_a_freed_slot_wakes_the_steps_waiting_for_it(
    start_server: StartServer, policy_dir: Path
) -> None:
    """Twenty one-step plans on a tool with two slots, 0.1 s of work each,
    finish in seconds: a report wakes the next step at once (it used to wait
    for the rate window to roll over, about a minute)."""
    set_tool(policy_dir, "form_fill", max_concurrency=2)
    server = await start_server()
    stub = server.cp

    async def work(call: Any) -> None:
        async def finish(item: plans_pb2.WorkItem) -> None:
            await asyncio.sleep(0.1)
            await stub.ReportToolResult(
                pb.ReportToolResultRequest(
                    decision_id=item.decision_id,
                    agent_id="agent1",
                    work_id=item.work_id,
                    outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
                )
            )

        tasks = []
        async for response in call:
            tasks.append(asyncio.create_task(finish(response.item)))

    call = stub.PullWork(pb.PullWorkRequest(agent_id="agent1"))
    worker = asyncio.create_task(work(call))
    try:
        await submit_fills(server, 20, 0.75)  # DRY_RUN: every step goes to the worker
        async with asyncio.timeout(30):  # the old wake-up needed minutes
            for i in range(20):
                plan = await wait_plan(stub, f"p{i}", FINISHED, within=30)
                assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED
    finally:
        call.cancel()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await worker


@pytest.mark.parametrize("restart", [True])
async def test_steps_decided_before_a_restart_are_decided_again_when_handed_out(
    start_server: StartServer, policy_dir: Path, tmp_path: Path, restart: bool
) -> None:
    """The switches of the new process apply to steps decided by the old one."""
    set_switch(policy_dir, "max_concurrent_live", 50)
    data_dir = str(tmp_path / "data")
    first = await start_server(data_dir=data_dir)
    await submit_fills(first, 4, 0.9)
    await wait_decided(first, [f"p{i}" for i in range(4)])
    await first.channel.close()
    await first.server.stop(grace=0.5)
    second = await start_server(data_dir=data_dir, dry_run_only=True)
    async with HoldingWorker(second.channel, "agent1", hold=False) as worker:
        for i in range(4):
            plan = await wait_plan(second.cp, f"p{i}", FINISHED)
            assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED
    assert worker.items and all(i.mode == types_pb2.EXECUTION_MODE_DRY_RUN for i in worker.items)
