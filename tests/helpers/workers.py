"""A scripted agent worker for the plan tests: pulls work over gRPC, reports back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, plans_pb2, types_pb2

EXAMPLE: dict[str, Any] = {
    "plan_id": "plan_1",
    "agent_assignments": {"agent1": ["vision_inspect", "form_fill"], "agent2": ["button_click"]},
    "execution_order": ["vision_inspect", "form_fill", "button_click"],
    "confidence_scores": {"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9},
}
"""The Phase-21 example plan."""

FINISHED = {
    plans_pb2.PLAN_STATE_SUCCEEDED,
    plans_pb2.PLAN_STATE_FAILED,
    plans_pb2.PLAN_STATE_FAILED_PARTIAL,
    plans_pb2.PLAN_STATE_CANCELLED,
    plans_pb2.PLAN_STATE_ROLLED_BACK,
}
"""The plan states that are final."""

Outcome = Callable[[plans_pb2.WorkItem], tuple[int, dict[str, Any], str] | None]
"""Decides how an item ends: (TOOL_OUTCOME_*, output, error) or None to hold it."""


def succeed(item: plans_pb2.WorkItem) -> tuple[int, dict[str, Any], str]:
    return types_pb2.TOOL_OUTCOME_SUCCEEDED, {"ran": item.tool}, ""


class Worker:
    """Runs in the test's loop; every item it received is kept in ``items``."""

    def __init__(
        self, channel: grpc.aio.Channel, agent_id: str, outcome: Outcome = succeed
    ) -> None:
        self.stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self.agent_id = agent_id
        self.outcome = outcome
        self.items: list[plans_pb2.WorkItem] = []
        self.received = asyncio.Condition()
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self._call = self.stub.PullWork(pb.PullWorkRequest(agent_id=self.agent_id))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task

    async def _run(self) -> None:
        async for response in self._call:
            item = response.item
            async with self.received:
                self.items.append(item)
                self.received.notify_all()
            decided = self.outcome(item)
            if decided is not None:
                await self.report(item, *decided)

    async def report(
        self, item: plans_pb2.WorkItem, outcome: int, output: dict[str, Any], error: str = ""
    ) -> None:
        request = pb.ReportToolResultRequest(
            decision_id=item.decision_id,
            agent_id=self.agent_id,
            work_id=item.work_id,
            outcome=outcome,
            error_message=error,
        )
        request.output.update(output)
        await self.stub.ReportToolResult(request)

    async def wait_for(self, count: int, within: float = 10) -> list[plans_pb2.WorkItem]:
        async with self.received:
            await asyncio.wait_for(self.received.wait_for(lambda: len(self.items) >= count), within)
        return list(self.items)


async def wait_plan(cp: Any, plan_id: str, states: set[int], within: float = 15) -> plans_pb2.Plan:
    """Poll GetPlan until the plan is in one of ``states``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        plan = (await cp.GetPlan(pb.GetPlanRequest(plan_id=plan_id))).plan
        if plan.state in states:
            return plan
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"plan {plan_id} stayed {plans_pb2.PlanState.Name(plan.state)}: {plan}"
            )
        await asyncio.sleep(0.05)


async def wait_step(
    cp: Any, plan_id: str, step_id: str, state: int, within: float = 10
) -> plans_pb2.Step:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        plan = (await cp.GetPlan(pb.GetPlanRequest(plan_id=plan_id))).plan
        step = next(s for s in plan.steps if s.step_id == step_id)
        if step.state == state:
            return step
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"step {step_id} stayed {plans_pb2.StepState.Name(step.state)}: {plan}"
            )
        await asyncio.sleep(0.05)


TRANSFER = {"from_account": "AB123456", "to_account": "CD123456", "amount": 10, "currency": "EUR"}


def refund_outcome(item: plans_pb2.WorkItem) -> tuple[int, dict[str, Any], str]:
    """ops' worker: the CRM lookup fails, everything else (the refund too) succeeds."""
    if item.tool == "crm_lookup":
        return types_pb2.TOOL_OUTCOME_FAILED, {}, "record locked"
    return types_pb2.TOOL_OUTCOME_SUCCEEDED, {"ran": item.tool}, ""


async def run_refund_plan(channel: grpc.aio.Channel, cp: Any, plan_id: str = "refund") -> Any:
    """A LIVE transfer, then a lookup that fails: the transfer is refunded.

    Needs a server with approval_required_for_high_risk=False (transfer_funds
    is HIGH risk). Returns the finished plan (ROLLED_BACK).
    """
    from tests.test_plans_api import spec, step  # the request builders

    async with Worker(channel, "ops", refund_outcome):
        await cp.SubmitPlan(
            spec(
                plan_id,
                step("pay", "transfer_funds", "ops", 0.9, TRANSFER),
                step("check", "crm_lookup", "ops", 0.9, {"record_id": "CU-12345"}, ("pay",)),
            )
        )
        return await wait_plan(cp, plan_id, FINISHED)
