"""Plans through the API: submission, conflicts, orchestration with workers, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import plans_pb2, types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import details
from tests.helpers.stored import stored as stored_rows
from tests.helpers.workers import EXAMPLE, FINISHED, Worker, wait_plan, wait_step


def phase21(doc: dict) -> pb.SubmitPlanRequest:
    msg = plans_pb2.Phase21Plan()
    json_format.ParseDict(
        {
            **doc,
            "agent_assignments": {a: {"tools": t} for a, t in doc["agent_assignments"].items()},
        },
        msg,
    )
    return pb.SubmitPlanRequest(phase21=msg)


def spec(plan_id: str, *steps: dict) -> pb.SubmitPlanRequest:
    msg = plans_pb2.PlanSpec(plan_id=plan_id)
    for s in steps:
        json_format.ParseDict(s, msg.steps.add())
    return pb.SubmitPlanRequest(spec=msg)


def step(
    step_id: str,
    tool: str,
    agent: str,
    confidence: float,
    arguments: dict | None = None,
    depends_on: tuple[str, ...] = (),
) -> dict:
    out: dict = {
        "step_id": step_id,
        "tool": tool,
        "agent_id": agent,
        "confidence": confidence,
        "depends_on": list(depends_on),
    }
    if arguments is not None:
        out["arguments"] = arguments
    return out


def states(plan: plans_pb2.Plan) -> dict[str, str]:
    return {
        s.step_id: plans_pb2.StepState.Name(s.state).removeprefix("STEP_STATE_") for s in plan.steps
    }


def modes(plan: plans_pb2.Plan) -> dict[str, str]:
    return {
        s.step_id: types_pb2.ExecutionMode.Name(s.decision.mode).removeprefix("EXECUTION_MODE_")
        for s in plan.steps
    }


async def test_the_phase21_example_runs_step_by_step(server: Running) -> None:
    async with Worker(server.channel, "agent1") as agent1:
        plan = (await server.cp.SubmitPlan(phase21(EXAMPLE))).plan
        assert [s.step_id for s in plan.steps] == ["vision_inspect", "form_fill", "button_click"]
        items = await agent1.wait_for(2)
        assert [(i.tool, types_pb2.ExecutionMode.Name(i.mode)) for i in items] == [
            ("vision_inspect", "EXECUTION_MODE_LIVE"),
            ("form_fill", "EXECUTION_MODE_DRY_RUN"),
        ]
        assert items[0].deadline.seconds > 0 and items[0].decision_id.startswith("dec_")
        # button_click is irreversible: LIVE waits for a human approval.
        click = await wait_step(
            server.cp, "plan_1", "button_click", plans_pb2.STEP_STATE_AWAITING_APPROVAL
        )
        assert "irreversible" in click.message
        got = (await server.cp.GetPlan(pb.GetPlanRequest(plan_id="plan_1"))).plan
        assert got.state == plans_pb2.PLAN_STATE_RUNNING
        assert states(got) == {
            "vision_inspect": "SUCCEEDED",
            "form_fill": "SUCCEEDED",
            "button_click": "AWAITING_APPROVAL",
        }
        cancelled = (
            await server.cp.CancelPlan(pb.CancelPlanRequest(plan_id="plan_1", reason="no approver"))
        ).plan
        assert cancelled.state == plans_pb2.PLAN_STATE_CANCELLED
        assert states(cancelled)["button_click"] == "CANCELLED"


async def test_mock_steps_are_completed_by_interlock_in_dependency_order(server: Running) -> None:
    req = spec(
        "mocks",
        step("look", "vision_inspect", "agent1", 0.2, {"target": "a"}),
        step("fill", "form_fill", "agent1", 0.3, {"form_id": "f", "fields": {"a": "b"}}, ("look",)),
        step("look2", "vision_inspect", "agent2", 0.1, {"target": "b"}),
    )
    await server.cp.SubmitPlan(req)
    plan = await wait_plan(server.cp, "mocks", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED
    assert set(modes(plan).values()) == {"MOCK"}
    assert all(s.result.outcome == types_pb2.TOOL_OUTCOME_SUCCEEDED for s in plan.steps)


async def test_an_invalid_plan_reports_every_problem_and_keeps_nothing(server: Running) -> None:
    bad = {
        **EXAMPLE,
        "plan_id": "bad_1",
        "agent_assignments": {
            "agent1": ["vision_inspect", "launch_rocket"],
            "agent2": ["vision_inspect"],
        },
        "confidence_scores": {"vision_inspect": 1.7, "form_fill": 0.5, "button_click": 0.9},
    }
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.SubmitPlan(phase21(bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = details(info.value)
    assert len(violations) >= 4, violations
    text = " ".join(f"{f} {d}" for f, d in violations)
    assert "launch_rocket" in text and "1.7" in text
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await server.cp.GetPlan(pb.GetPlanRequest(plan_id="bad_1"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_plan_id_is_used_once(server: Running) -> None:
    req = spec("once", step("a", "vision_inspect", "agent1", 0.1, {"target": "x"}))
    await server.cp.SubmitPlan(req)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.SubmitPlan(req)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_denied_step_fails_the_plan_with_the_reason(server: Running) -> None:
    req = spec("denied", step("click", "button_click", "agent1", 0.9, {"selector": "#go"}))
    plan = (await server.cp.SubmitPlan(req)).plan
    assert any(c.type == plans_pb2.CONFLICT_TYPE_PERMISSION for c in plan.conflicts)
    plan = await wait_plan(server.cp, "denied", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_FAILED
    assert "ui.click" in plan.message


async def test_a_failed_step_rolls_back_completed_live_steps(start_server: StartServer) -> None:
    s = await start_server(approval_required_for_high_risk=False)
    transfer = {
        "from_account": "AB123456",
        "to_account": "CD123456",
        "amount": 10,
        "currency": "EUR",
    }

    def ops_outcome(item: plans_pb2.WorkItem):
        if item.tool == "crm_lookup":
            return types_pb2.TOOL_OUTCOME_FAILED, {}, "record locked"
        return types_pb2.TOOL_OUTCOME_SUCCEEDED, {"ran": item.tool}, ""

    async with Worker(s.channel, "ops", ops_outcome) as ops:
        req = spec(
            "refund",
            step("pay", "transfer_funds", "ops", 0.9, transfer),
            step("check", "crm_lookup", "ops", 0.9, {"record_id": "CU-12345"}, ("pay",)),
        )
        await s.cp.SubmitPlan(req)
        plan = await wait_plan(s.cp, "refund", FINISHED)
        assert plan.state == plans_pb2.PLAN_STATE_ROLLED_BACK, plan.message
        assert states(plan) == {"pay": "ROLLED_BACK", "check": "FAILED", "pay.undo": "SUCCEEDED"}
        assert [(i.tool, i.compensation) for i in ops.items] == [
            ("transfer_funds", False),
            ("crm_lookup", False),
            ("refund_funds", True),
        ]
        assert json_format.MessageToDict(ops.items[2].arguments) == transfer
    lines = [json.loads(x) for x in (s.data_dir / "rollback_events.jsonl").read_text().splitlines()]
    assert [(x["step_id"], x["action"]) for x in lines] == [
        ("pay", "compensate"),
        ("pay", "compensated"),
    ]


async def test_a_live_step_whose_worker_vanishes_is_ambiguous_never_repeated(
    server: Running,
) -> None:
    req = spec("vanish", step("look", "vision_inspect", "agent1", 0.9, {"target": "x"}))
    hold = lambda item: None  # noqa: E731 - the worker never reports
    async with Worker(server.channel, "agent1", hold) as first:
        await server.cp.SubmitPlan(req)
        await first.wait_for(1)
    plan = await wait_plan(server.cp, "vanish", FINISHED)
    assert states(plan)["look"] == "AMBIGUOUS" and plan.state == plans_pb2.PLAN_STATE_FAILED
    async with Worker(server.channel, "agent1") as second:
        import asyncio

        await asyncio.sleep(0.3)
        assert second.items == [], "a LIVE step is never offered again"


async def test_a_dry_run_step_is_offered_again_after_its_worker_vanishes(server: Running) -> None:
    req = spec("again", step("look", "vision_inspect", "agent1", 0.6, {"target": "x"}))
    async with Worker(server.channel, "agent1", lambda item: None) as first:
        await server.cp.SubmitPlan(req)
        await first.wait_for(1)
    async with Worker(server.channel, "agent1") as second:
        items = await second.wait_for(1)
        assert items[0].attempt == 2
        plan = await wait_plan(server.cp, "again", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED


async def test_reports_for_work_are_checked(server: Running) -> None:
    async with Worker(server.channel, "agent1", lambda item: None) as worker:
        await server.cp.SubmitPlan(
            spec("check", step("look", "vision_inspect", "agent1", 0.6, {"target": "x"}))
        )
        (item,) = await worker.wait_for(1)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.cp.ReportToolResult(
                pb.ReportToolResultRequest(
                    work_id=item.work_id,
                    decision_id=item.decision_id,
                    agent_id="agent2",
                    outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
                )
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.cp.ReportToolResult(
                pb.ReportToolResultRequest(
                    work_id="wk_nope", agent_id="agent1", outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED
                )
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_step_past_its_timeout_fails_and_counts(
    start_server: StartServer, policy_dir: Path
) -> None:
    catalog = policy_dir / "interlock/catalog/data.yaml"
    catalog.write_text(
        catalog.read_text().replace("    timeout_seconds: 10\n", "    timeout_seconds: 0.3\n", 1)
    )
    s = await start_server()
    async with Worker(s.channel, "mailer", lambda item: None):
        await s.cp.SubmitPlan(
            spec("slow", step("look", "crm_lookup", "mailer", 0.6, {"record_id": "CU-12345"}))
        )
        plan = await wait_plan(s.cp, "slow", FINISHED)
    assert states(plan)["look"] == "TIMED_OUT" and plan.state == plans_pb2.PLAN_STATE_FAILED
    (timeout,) = [c for c in plan.conflicts if c.type == plans_pb2.CONFLICT_TYPE_TIMEOUT]
    assert timeout.resolution == "cancel" and list(timeout.step_ids) == ["look"]
    counts = json.loads((s.data_dir / "tool_conflicts.json").read_text())
    assert counts["by_type"]["TIMEOUT"]["detected"] == 1


async def test_plans_are_listed_and_summarised(server: Running) -> None:
    for i in range(3):
        await server.cp.SubmitPlan(
            spec(f"p{i}", step("a", "vision_inspect", "agent1", 0.1, {"target": "x"}))
        )
        await wait_plan(server.cp, f"p{i}", FINISHED)
    page = await server.cp.ListPlans(pb.ListPlansRequest(page_size=2))
    assert [p.plan_id for p in page.plans] == ["p0", "p1"] and page.next_page_token
    rest = await server.cp.ListPlans(
        pb.ListPlansRequest(page_size=2, page_token=page.next_page_token)
    )
    assert [p.plan_id for p in rest.plans] == ["p2"] and not rest.next_page_token
    summary = json.loads((server.data_dir / "orchestration_summary.json").read_text())
    assert summary["plans"]["by_state"]["SUCCEEDED"] == 3
    db = stored_rows(server)
    kinds = {k for (k,) in db.execute("SELECT DISTINCT kind FROM events")}
    assert {"DECISION", "RESULT", "STATE_TRANSITION", "PLAN_FINISHED"} <= kinds


async def test_conflicts_are_found_resolved_and_counted(start_server: StartServer) -> None:
    s = await start_server(approval_required_for_high_risk=False)
    email = {"to": ["a@example.com"], "subject": "hello", "body": "hi"}
    # RESOURCE: two button clicks that could run at once; button_click allows one at a time.
    clicks = (
        await s.cp.SubmitPlan(
            spec(
                "clicks",
                step("c1", "button_click", "agent2", 0.1, {"selector": "#a"}),
                step("c2", "button_click", "agent2", 0.1, {"selector": "#b"}),
            )
        )
    ).plan
    (resource,) = [c for c in clicks.conflicts if c.type == plans_pb2.CONFLICT_TYPE_RESOURCE]
    assert resource.resolution == "serialize"
    # ORDERING: the Phase-21 order puts form_clear before the form_fill it undoes.
    reorder = (
        await s.cp.SubmitPlan(
            phase21(
                {
                    "plan_id": "reorder",
                    "agent_assignments": {"agent1": ["form_clear", "form_fill"]},
                    "execution_order": ["form_clear", "form_fill"],
                    "confidence_scores": {"form_clear": 0.1, "form_fill": 0.1},
                }
            )
        )
    ).plan
    (ordering,) = [c for c in reorder.conflicts if c.type == plans_pb2.CONFLICT_TYPE_ORDERING]
    assert ordering.resolution == "reorder"
    # DUPLICATE_ACTION: the same irreversible email, with the same arguments, twice.
    dup = (
        await s.cp.SubmitPlan(
            spec(
                "dup",
                step("e1", "send_email", "mailer", 0.1, email),
                step("e2", "send_email", "mailer", 0.1, email),
            )
        )
    ).plan
    (duplicate,) = [c for c in dup.conflicts if c.type == plans_pb2.CONFLICT_TYPE_DUPLICATE_ACTION]
    assert duplicate.resolution == "dedupe"
    # RATE_LIMIT: transfer_funds allows 6 calls a minute; 7 are throttled, never dropped.
    transfer = {"from_account": "AB123456", "to_account": "CD123456", "currency": "EUR"}
    burst = (
        await s.cp.SubmitPlan(
            spec(
                "burst",
                *[
                    step(f"t{i}", "transfer_funds", "ops", 0.1, {**transfer, "amount": i + 1})
                    for i in range(7)
                ],
            )
        )
    ).plan
    (rate,) = [c for c in burst.conflicts if c.type == plans_pb2.CONFLICT_TYPE_RATE_LIMIT]
    assert rate.resolution == "throttle" and "t6" in rate.step_ids

    for plan_id in ("clicks", "reorder", "dup"):
        done = await wait_plan(s.cp, plan_id, FINISHED)
        assert done.state == plans_pb2.PLAN_STATE_SUCCEEDED, (plan_id, done.message)
    assert states(await wait_plan(s.cp, "dup", FINISHED))["e2"] == "SKIPPED"
    burst_now = (await s.cp.GetPlan(pb.GetPlanRequest(plan_id="burst"))).plan
    assert states(burst_now)["t6"] == "PENDING", "the 7th transfer waits for the next minute"
    await s.cp.CancelPlan(pb.CancelPlanRequest(plan_id="burst"))

    counts = json.loads((s.data_dir / "tool_conflicts.json").read_text())["by_type"]
    for kind in ("RESOURCE", "ORDERING", "DUPLICATE_ACTION", "RATE_LIMIT"):
        assert counts[kind]["detected"] >= 1, counts
    db = stored_rows(s)
    kinds = [
        json.loads(p)["type"]
        for (p,) in db.execute("SELECT payload FROM events WHERE kind='CONFLICT'")
    ]
    assert {"RESOURCE", "ORDERING", "DUPLICATE_ACTION", "RATE_LIMIT"} <= set(kinds)


async def test_a_result_stored_just_before_a_stop_finishes_its_step_after_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The report's result was committed, the step's new state was not (a crash
    between the two): after the restart the stored result finishes the step."""
    data = str(tmp_path / "half")
    s = await start_server(data_dir=data)
    async with Worker(s.channel, "agent1", lambda item: None) as worker:
        await s.cp.SubmitPlan(
            spec("half", step("look", "vision_inspect", "agent1", 0.9, {"target": "x"}))
        )
        (item,) = await worker.wait_for(1)
        await s.server.decisions.report(
            decision_id=item.decision_id,
            agent_id="agent1",
            outcome="SUCCEEDED",
            output={"seen": "x"},
            error_message="",
            duration_seconds=0.1,
        )
    await s.channel.close()
    await s.server.stop(grace=0.1)
    again = await start_server(data_dir=data)
    plan = await wait_plan(again.cp, "half", FINISHED)
    assert plan.state == plans_pb2.PLAN_STATE_SUCCEEDED, plan.message
    assert json_format.MessageToDict(plan.steps[0].result.output) == {"seen": "x"}


async def test_a_vanished_worker_whose_report_was_stored_is_not_ambiguous(server: Running) -> None:
    async with Worker(server.channel, "agent1", lambda item: None) as worker:
        await server.cp.SubmitPlan(
            spec("known", step("look", "vision_inspect", "agent1", 0.9, {"target": "x"}))
        )
        (item,) = await worker.wait_for(1)
        await server.server.decisions.report(
            decision_id=item.decision_id,
            agent_id="agent1",
            outcome="FAILED",
            output={},
            error_message="no screen",
            duration_seconds=0.1,
        )
    plan = await wait_plan(server.cp, "known", FINISHED)
    assert states(plan)["look"] == "FAILED" and "no screen" in plan.message


async def test_cancelling_while_a_worker_holds_a_live_step_leaves_it_ambiguous(
    server: Running,
) -> None:
    async with Worker(server.channel, "agent1", lambda item: None) as worker:
        await server.cp.SubmitPlan(
            spec("held", step("look", "vision_inspect", "agent1", 0.9, {"target": "x"}))
        )
        (item,) = await worker.wait_for(1)
        plan = (await server.cp.CancelPlan(pb.CancelPlanRequest(plan_id="held"))).plan
        assert plan.state == plans_pb2.PLAN_STATE_CANCELLED
        assert states(plan)["look"] == "AMBIGUOUS"
        # The worker's late report is still recorded.
        await worker.report(item, types_pb2.TOOL_OUTCOME_SUCCEEDED, {"done": True})
    step_now = await wait_step(server.cp, "held", "look", plans_pb2.STEP_STATE_SUCCEEDED)
    assert step_now.result.outcome == types_pb2.TOOL_OUTCOME_SUCCEEDED


async def test_work_streams_end_unavailable_when_the_server_stops(
    start_server: StartServer,
) -> None:
    s = await start_server()
    call = s.cp.PullWork(pb.PullWorkRequest(agent_id="agent1"))
    import asyncio

    reader = asyncio.ensure_future(call.read())
    await asyncio.sleep(0.2)
    await s.server.stop(grace=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(reader, 5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "reconnect" in (info.value.details() or "")


async def test_a_step_without_a_confidence_is_refused_by_name(server: Running) -> None:
    request = spec("noconf", step("look", "vision_inspect", "agent1", 0.5, {"target": "x"}))
    request.spec.steps[0].ClearField("confidence")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.SubmitPlan(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.steps[0].confidence" in [f for f, _ in details(info.value)[1]]


async def test_work_items_name_their_agent(server: Running) -> None:
    async with Worker(server.channel, "agent1", lambda item: None) as worker:
        await server.cp.SubmitPlan(
            spec("who", step("look", "vision_inspect", "agent1", 0.6, {"target": "x"}))
        )
        (item,) = await worker.wait_for(1)
    assert item.agent_id == "agent1"
