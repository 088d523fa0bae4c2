"""The rollback walk, on a plan built by hand (the orchestrator's I/O faked).

Through the API a barrier cannot happen yet: an irreversible tool never runs
LIVE without an approval, and approvals come in a later issue. These tests
pin down what the walk does when it meets one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from interlock.config import ServerConfig
from interlock.contracts import Catalog
from interlock.plans.model import PlanState, StepState
from interlock.plans.rollback import Rollback
from interlock.plans.runtime import PlanRun, StepRun
from interlock.policy.bundle import PolicySet

from tests.conftest import POLICIES


@dataclass
class FakeOrchestrator:
    """Records what the walk asks for; dispatch always finds a slot."""

    catalog: Catalog
    config: ServerConfig = field(default_factory=ServerConfig)
    dispatched: list[str] = field(default_factory=list)
    records: list[tuple[str, str]] = field(default_factory=list)

    class _Hub:
        def is_out(self, work_id: str) -> bool:
            return False

    hub: Any = field(default_factory=_Hub)

    def _release(self, step: StepRun) -> None:
        pass

    async def set_step(
        self, plan: PlanRun, step: StepRun, state: StepState, message: str = ""
    ) -> None:
        step.state = state
        step.message = message or step.message

    async def set_plan(self, plan: PlanRun, state: PlanState, message: str = "") -> None:
        plan.state = state
        plan.message = message

    async def commit(
        self, plan: PlanRun, steps: Any = (), events: Any = (), audit: Any = ()
    ) -> None:
        for _, line in audit:
            self.records.append((line["step_id"], line["action"]))

    async def _dispatch(self, plan: PlanRun, step: StepRun, *, compensation: bool = False) -> bool:
        step.work_id = f"wk-{step.step_id}"
        self.dispatched.append(f"{step.tool}:{step.compensates}")
        return True


@pytest.fixture
def fake() -> FakeOrchestrator:
    return FakeOrchestrator(Catalog.from_data(PolicySet.from_dir(POLICIES).data))


def run(step_id: str, tool: str, position: int, state: StepState, mode: str = "LIVE") -> StepRun:
    return StepRun(
        plan_id="p",
        step_id=step_id,
        position=position,
        tool=tool,
        agent_id="ops",
        arguments={},
        confidence=0.9,
        depends_on=(),
        state=state,
        mode=mode,
    )


def plan_of(*steps: StepRun) -> PlanRun:
    return PlanRun(
        plan_id="p",
        source_format="spec",
        labels={},
        steps={s.step_id: s for s in steps},
        state=PlanState.RUNNING,
    )


async def test_an_irreversible_step_is_a_barrier(fake: FakeOrchestrator) -> None:
    plan = plan_of(
        run("pay", "transfer_funds", 0, StepState.SUCCEEDED),
        run("mail", "send_email", 1, StepState.SUCCEEDED),
        run("pay2", "transfer_funds", 2, StepState.SUCCEEDED),
        run("check", "crm_lookup", 3, StepState.FAILED),
    )
    walk = Rollback(fake)  # type: ignore[arg-type]
    await walk.advance(plan)
    assert fake.dispatched == ["refund_funds:pay2"], "the newest reversible step is undone first"
    plan.steps["pay2.undo"].state = StepState.SUCCEEDED
    await walk.advance(plan)
    assert plan.steps["pay2"].state == StepState.ROLLED_BACK
    assert plan.state == PlanState.FAILED_PARTIAL
    assert "send_email is irreversible" not in plan.message
    assert "mail (send_email) is irreversible" in plan.message
    assert "not undone: mail, pay" in plan.message
    assert fake.dispatched == ["refund_funds:pay2"], "nothing behind the barrier is touched"
    assert ("mail", "barrier") in fake.records


async def test_a_failed_compensation_ends_partial(fake: FakeOrchestrator) -> None:
    plan = plan_of(
        run("pay", "transfer_funds", 0, StepState.SUCCEEDED),
        run("check", "crm_lookup", 1, StepState.FAILED),
    )
    walk = Rollback(fake)  # type: ignore[arg-type]
    await walk.advance(plan)
    plan.steps["pay.undo"].state = StepState.FAILED
    await walk.advance(plan)
    assert plan.state == PlanState.FAILED_PARTIAL
    assert ("pay", "compensation_failed") in fake.records


async def test_nothing_live_means_failed_and_reads_need_no_undo(fake: FakeOrchestrator) -> None:
    plan = plan_of(
        run("look", "vision_inspect", 0, StepState.SUCCEEDED),
        run("fill", "form_fill", 1, StepState.SUCCEEDED, mode="DRY_RUN"),
        run("check", "crm_lookup", 2, StepState.TIMED_OUT),
    )
    walk = Rollback(fake)  # type: ignore[arg-type]
    await walk.advance(plan)
    assert fake.dispatched == []
    assert plan.steps["look"].state == StepState.ROLLED_BACK  # a read: nothing to undo
    assert plan.steps["fill"].state == StepState.SUCCEEDED  # DRY_RUN changed nothing
    assert plan.state == PlanState.FAILED, "nothing needed compensating"


async def test_rollback_can_be_turned_off(fake: FakeOrchestrator) -> None:
    fake.config = ServerConfig(rollback_on_failure=False)
    plan = plan_of(
        run("pay", "transfer_funds", 0, StepState.SUCCEEDED),
        run("check", "crm_lookup", 1, StepState.FAILED),
    )
    await Rollback(fake).advance(plan)  # type: ignore[arg-type]
    assert fake.dispatched == [] and plan.state == PlanState.FAILED
    assert "rollback is disabled" in plan.message


async def test_the_compensation_gets_the_arguments_its_schema_accepts(
    fake: FakeOrchestrator,
) -> None:
    fill = run("fill", "form_fill", 0, StepState.SUCCEEDED)
    fill.arguments = {"form_id": "signup", "fields": {"email": "a@example.com"}}
    plan = plan_of(fill, run("check", "crm_lookup", 1, StepState.FAILED))
    await Rollback(fake).advance(plan)  # type: ignore[arg-type]
    undo = plan.steps["fill.undo"]
    assert (undo.tool, undo.mode, undo.compensates) == ("form_clear", "LIVE", "fill")
    assert undo.arguments == {"form_id": "signup"}, "form_clear accepts no fields"
