"""RequestToolCall, ReportToolResult, ListTools and GetHealth through a real server."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import policy_service_pb2 as ppb
from interlock.v1 import types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import details, tool_call
from tests.helpers.stored import stored as stored_rows


async def test_list_tools_returns_the_catalog_with_contracts(server: Running) -> None:
    resp = await server.cp.ListTools(pb.ListToolsRequest())
    tools = {t.name: t for t in resp.tools}
    assert {
        "vision_inspect",
        "form_fill",
        "button_click",
        "send_email",
        "delete_record",
        "transfer_funds",
    } <= set(tools)
    transfer = tools["transfer_funds"]
    assert transfer.risk == types_pb2.RISK_LEVEL_HIGH
    assert transfer.reversible and transfer.compensating_tool == "refund_funds"
    assert list(transfer.required_permissions) == ["payments.transfer"]
    assert transfer.timeout.seconds == 60
    assert "amount" in transfer.arguments_schema["properties"]
    assert len(resp.policy_revision) == 64


@pytest.mark.parametrize(
    ("agent", "tool", "args", "confidence", "verdict", "mode"),
    [
        (
            "agent1",
            "vision_inspect",
            {"target": "x"},
            0.9,
            types_pb2.VERDICT_ALLOW,
            types_pb2.EXECUTION_MODE_LIVE,
        ),
        (
            "agent1",
            "vision_inspect",
            {"target": "x"},
            0.6,
            types_pb2.VERDICT_ALLOW,
            types_pb2.EXECUTION_MODE_DRY_RUN,
        ),
        (
            "agent1",
            "vision_inspect",
            {"target": "x"},
            0.2,
            types_pb2.VERDICT_ALLOW,
            types_pb2.EXECUTION_MODE_MOCK,
        ),
        (
            "agent1",
            "form_fill",
            {"form_id": "f", "fields": {"a": "b"}},
            0.75,
            types_pb2.VERDICT_ALLOW,
            types_pb2.EXECUTION_MODE_DRY_RUN,
        ),
        (
            "agent2",
            "button_click",
            {"selector": "#go"},
            0.9,
            types_pb2.VERDICT_PENDING_APPROVAL,
            types_pb2.EXECUTION_MODE_LIVE,
        ),
        (
            "agent1",
            "button_click",
            {"selector": "#go"},
            0.9,
            types_pb2.VERDICT_DENY,
            types_pb2.EXECUTION_MODE_MOCK,
        ),
        (
            "ops",
            "transfer_funds",
            {"from_account": "AB123456", "to_account": "CD123456", "amount": 10, "currency": "EUR"},
            0.9,
            types_pb2.VERDICT_PENDING_APPROVAL,
            types_pb2.EXECUTION_MODE_LIVE,
        ),
    ],
)
async def test_decisions_follow_the_policy(
    server: Running, agent: str, tool: str, args: dict, confidence: float, verdict: int, mode: int
) -> None:
    resp = await server.cp.RequestToolCall(tool_call(agent, tool, args, confidence))
    d = resp.decision
    assert (d.verdict, d.mode) == (verdict, mode), list(d.reasons)
    assert d.decision_id.startswith("dec_")
    assert d.reasons, "every decision says why"
    assert d.engine == "regorus"
    assert len(d.policy_revision) == 64 and len(d.input_hash) == 64
    assert d.needs_approval == (verdict == types_pb2.VERDICT_PENDING_APPROVAL)


async def test_permission_denial_names_the_missing_permission(server: Running) -> None:
    resp = await server.cp.RequestToolCall(
        tool_call("agent1", "button_click", {"selector": "#go"}, 0.9)
    )
    assert (
        "agent agent1 lacks permission(s) ui.click required by button_click"
        in resp.decision.reasons
    )


async def test_live_cap_from_config_downgrades_to_dry_run(start_server: StartServer) -> None:
    s = await start_server(max_concurrent_live=1)
    first = (await s.cp.RequestToolCall(tool_call())).decision
    second = (await s.cp.RequestToolCall(tool_call())).decision
    assert first.mode == types_pb2.EXECUTION_MODE_LIVE
    assert second.mode == types_pb2.EXECUTION_MODE_DRY_RUN
    assert any("LIVE executions are in flight and the cap is 1" in r for r in second.reasons)
    # Reporting the first frees its slot.
    await s.cp.ReportToolResult(
        pb.ReportToolResultRequest(
            decision_id=first.decision_id,
            agent_id="agent1",
            outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
        )
    )
    third = (await s.cp.RequestToolCall(tool_call())).decision
    assert third.mode == types_pb2.EXECUTION_MODE_LIVE


async def test_dry_run_only_switch_caps_live(start_server: StartServer) -> None:
    s = await start_server(dry_run_only=True)
    d = (await s.cp.RequestToolCall(tool_call(confidence=0.99))).decision
    assert d.mode == types_pb2.EXECUTION_MODE_DRY_RUN
    assert "the dry-run-only switch is on, so LIVE is capped at DRY_RUN" in d.reasons


# Bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (tool_call(agent_id=""), grpc.StatusCode.INVALID_ARGUMENT, "agent_id"),
        (tool_call(agent_id="bad agent!"), grpc.StatusCode.INVALID_ARGUMENT, "agent_id"),
        (tool_call(tool=""), grpc.StatusCode.INVALID_ARGUMENT, "tool"),
        (tool_call(confidence=None), grpc.StatusCode.INVALID_ARGUMENT, "confidence"),
        (tool_call(confidence=1.5), grpc.StatusCode.INVALID_ARGUMENT, "confidence"),
        (tool_call(confidence=-0.1), grpc.StatusCode.INVALID_ARGUMENT, "confidence"),
        (tool_call(confidence=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "confidence"),
        (
            tool_call(arguments={"target": "x" * 70000}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "arguments",
        ),
        (tool_call(arguments={}), grpc.StatusCode.INVALID_ARGUMENT, "arguments.target"),
        (tool_call(arguments={"target": 5}), grpc.StatusCode.INVALID_ARGUMENT, "arguments.target"),
        (
            tool_call(
                arguments={"target": "x", "region": {"x": -1, "y": 0, "width": 1, "height": 1}}
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "arguments.region.x",
        ),
        (
            tool_call(arguments={"target": "x", "extra": 1}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "arguments",
        ),
        (tool_call(tool="launch_rocket"), grpc.StatusCode.NOT_FOUND, None),
        (tool_call(agent_id="stranger"), grpc.StatusCode.NOT_FOUND, None),
    ],
)
async def test_bad_requests_get_the_right_status_and_name_the_field(
    server: Running, request_: pb.RequestToolCallRequest, code: grpc.StatusCode, field: str | None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.RequestToolCall(request_)
    assert info.value.code() == code
    reason, violations = details(info.value)
    assert reason
    if field is not None:
        assert field in [f for f, _ in violations], violations
        assert field.split(".")[0] in info.value.details()
    else:
        assert request_.tool in info.value.details() or request_.agent_id in info.value.details()


async def test_several_problems_are_reported_at_once(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.RequestToolCall(tool_call(agent_id="", tool="", confidence=2))
    fields = {f for f, _ in details(info.value)[1]}
    assert fields == {"agent_id", "tool", "confidence"}


async def test_rejected_requests_leave_no_record(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await server.cp.RequestToolCall(tool_call(confidence=3))
    ok = (await server.cp.RequestToolCall(tool_call())).decision
    db = stored_rows(server)
    assert [r[0] for r in db.execute("SELECT decision_id FROM decisions")] == [ok.decision_id]


# Results ---------------------------------------------------------------------


def _report(
    decision_id: str, agent: str = "agent1", outcome: int = types_pb2.TOOL_OUTCOME_SUCCEEDED
):
    req = pb.ReportToolResultRequest(
        decision_id=decision_id,
        agent_id=agent,
        outcome=outcome,
        duration=duration_pb2.Duration(nanos=250_000_000),
    )
    req.output.update({"description": "a blue button"})
    return req


async def test_report_result_records_it(server: Running) -> None:
    d = (await server.cp.RequestToolCall(tool_call())).decision
    r = (await server.cp.ReportToolResult(_report(d.decision_id))).result
    assert r.outcome == types_pb2.TOOL_OUTCOME_SUCCEEDED and r.mode == types_pb2.EXECUTION_MODE_LIVE
    assert r.output["description"] == "a blue button"
    db = stored_rows(server)
    assert db.execute(
        "SELECT outcome FROM results WHERE decision_id=?", (d.decision_id,)
    ).fetchone() == ("SUCCEEDED",)


@pytest.mark.parametrize("case", ["unknown", "other_agent", "twice", "denied", "no_outcome"])
async def test_bad_reports_are_refused(server: Running, case: str) -> None:
    d = (await server.cp.RequestToolCall(tool_call())).decision
    expected = {
        "unknown": grpc.StatusCode.NOT_FOUND,
        "other_agent": grpc.StatusCode.PERMISSION_DENIED,
        "twice": grpc.StatusCode.ALREADY_EXISTS,
        "denied": grpc.StatusCode.FAILED_PRECONDITION,
        "no_outcome": grpc.StatusCode.INVALID_ARGUMENT,
    }[case]
    req = _report(d.decision_id)
    if case == "unknown":
        req.decision_id = "dec_nope"
    elif case == "other_agent":
        req.agent_id = "agent2"
    elif case == "twice":
        await server.cp.ReportToolResult(_report(d.decision_id))
    elif case == "denied":
        denied = (
            await server.cp.RequestToolCall(tool_call("agent1", "button_click", {"selector": "#a"}))
        ).decision
        req.decision_id = denied.decision_id
    elif case == "no_outcome":
        req.outcome = types_pb2.TOOL_OUTCOME_UNSPECIFIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.ReportToolResult(req)
    assert info.value.code() == expected, info.value.details()


# Records, audit, metrics -----------------------------------------------------


async def test_every_decision_and_result_is_recorded_and_audited(server: Running) -> None:
    d = (await server.cp.RequestToolCall(tool_call())).decision
    denied = (
        await server.cp.RequestToolCall(tool_call("agent1", "button_click", {"selector": "#a"}))
    ).decision
    await server.cp.ReportToolResult(_report(d.decision_id, outcome=types_pb2.TOOL_OUTCOME_FAILED))

    log = [
        json.loads(x)
        for x in (server.data_dir / "tool_execution_log.jsonl").read_text().splitlines()
    ]
    assert [(x["kind"], x["decision_id"]) for x in log] == [
        ("decision", d.decision_id),
        ("decision", denied.decision_id),
        ("result", d.decision_id),
    ]
    assert log[0]["policy_revision"] == d.policy_revision and log[0]["input_hash"] == d.input_hash
    assert log[1]["verdict"] == "DENY" and log[2]["outcome"] == "FAILED"

    transitions = [
        json.loads(x)
        for x in (server.data_dir / "execution_state_transitions.jsonl").read_text().splitlines()
    ]
    assert [(t["from_state"], t["to_state"]) for t in transitions] == [
        ("REQUESTED", "DECIDED"),
        ("REQUESTED", "DENIED"),
        ("DECIDED", "FAILED"),
    ]

    db = stored_rows(server)
    events = db.execute("SELECT seq, kind, decision_id FROM events ORDER BY seq").fetchall()
    assert [(k, i) for _, k, i in events] == [
        ("DECISION", d.decision_id),
        ("DECISION", denied.decision_id),
        ("RESULT", d.decision_id),
    ]
    seqs = [s for s, _, _ in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_records_survive_a_restart(start_server: StartServer, tmp_path) -> None:
    data = str(tmp_path / "keep")
    s = await start_server(data_dir=data)
    d = (await s.cp.RequestToolCall(tool_call())).decision
    await s.channel.close()
    await s.server.stop(grace=0.1)
    again = await start_server(data_dir=data)
    r = (await again.cp.ReportToolResult(_report(d.decision_id))).result
    assert r.decision_id == d.decision_id


async def test_metrics_endpoint_counts_decisions_and_rpcs(start_server: StartServer) -> None:
    s = await start_server(metrics_listen="127.0.0.1:0")
    await s.cp.RequestToolCall(tool_call())
    with pytest.raises(grpc.aio.AioRpcError):
        await s.cp.RequestToolCall(tool_call(confidence=7))
    url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
    import asyncio

    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert (
        'interlock_decisions_total{mode="LIVE",tool="vision_inspect",verdict="ALLOW"} 1.0' in text
    )
    assert "interlock_decision_latency_seconds_count 1.0" in text
    assert 'interlock_policy_evaluation_seconds_count{engine="regorus"} 1.0' in text
    assert (
        'interlock_grpc_requests_total{code="INVALID_ARGUMENT",'
        'method="/interlock.v1.ControlPlane/RequestToolCall"} 1.0'
    ) in text
    assert (
        'interlock_grpc_requests_total{code="OK",method="/interlock.v1.ControlPlane/RequestToolCall"} 1.0'
        in text
    )


# Health, reflection, unimplemented --------------------------------------------


async def test_get_health_and_grpc_health_service(server: Running) -> None:
    h = await server.cp.GetHealth(pb.GetHealthRequest())
    assert h.engine == "regorus" and h.engine_available and h.score == 100
    hs = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "interlock.v1.ControlPlane", "interlock.v1.PolicyService"):
        r = await hs.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING


async def test_server_reflection_lists_the_services(server: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for resp in stub.ServerReflectionInfo(requests()):
        names = {s.name for s in resp.list_services_response.service}
        assert {
            "interlock.v1.ControlPlane",
            "interlock.v1.PolicyService",
            "grpc.health.v1.Health",
        } <= names
        break


async def test_evaluate_policy_changes_nothing(server: Running) -> None:
    tc = ppb.ToolCallInput(
        agent_id="agent1", tool="vision_inspect", confidence=0.9, live_in_flight=9
    )
    tc.arguments.update({"target": "x"})
    r = await server.policy.EvaluatePolicy(ppb.EvaluatePolicyRequest(tool_call=tc))
    assert r.verdict == types_pb2.VERDICT_ALLOW and r.mode == types_pb2.EXECUTION_MODE_DRY_RUN
    assert r.input["counts"]["live_in_flight"] == 9
    db = stored_rows(server)
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (0,)


async def test_concurrent_decisions_are_all_recorded_in_commit_order(server: Running) -> None:
    import asyncio

    await server.server.signals.close()  # every event must be a decision: no learning signals
    decisions = await asyncio.gather(
        *(server.cp.RequestToolCall(tool_call(confidence=0.6)) for _ in range(150))
    )
    ids = {r.decision.decision_id for r in decisions}
    assert len(ids) == 150
    db = stored_rows(server)
    by_seq = [i for (i,) in db.execute("SELECT decision_id FROM events ORDER BY seq")]
    assert set(by_seq) == ids
    lines = (server.data_dir / "tool_execution_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["decision_id"] for x in lines] == by_seq


async def test_a_repeated_input_is_answered_from_the_decision_cache(
    start_server: StartServer,
) -> None:
    import asyncio

    s = await start_server(metrics_listen="127.0.0.1:0")
    first = (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision
    second = (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision
    other = (await s.cp.RequestToolCall(tool_call(confidence=0.61))).decision
    assert first.decision_id != second.decision_id, "each call is its own decision"
    assert (second.verdict, second.mode, list(second.reasons)) == (
        first.verdict,
        first.mode,
        list(first.reasons),
    )
    assert second.input_hash == first.input_hash != other.input_hash
    url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert "interlock_policy_cache_hits_total 1.0" in text
    assert 'interlock_policy_evaluation_seconds_count{engine="regorus"} 2.0' in text


async def test_audit_lines_lost_in_a_crash_are_restored_from_the_store(
    start_server: StartServer, tmp_path
) -> None:
    data = tmp_path / "crash"
    s = await start_server(data_dir=str(data))
    ids = [
        (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision.decision_id
        for _ in range(3)
    ]
    await s.channel.close()
    await s.server.stop(grace=0.1)
    log_file = data / "tool_execution_log.jsonl"
    full = log_file.read_text()
    lines = full.splitlines()
    assert [json.loads(x)["decision_id"] for x in lines] == ids
    seqs = [json.loads(x)["seq"] for x in lines]
    assert seqs == sorted(seqs)
    # A power cut: the last line is gone and the one before is torn.
    log_file.write_text("\n".join(lines[:1]) + "\n" + lines[1][: len(lines[1]) // 2])
    again = await start_server(data_dir=str(data))
    await again.cp.RequestToolCall(tool_call(confidence=0.6))
    restored = [
        json.loads(x)
        for x in log_file.read_text().splitlines()
        if x.startswith("{") and x.endswith("}")
    ]
    assert [x["decision_id"] for x in restored][:4] == [*ids, restored[3]["decision_id"]]
    assert restored[1:3] == [json.loads(x) for x in lines[1:3]]


async def test_a_second_server_cannot_take_a_busy_port(start_server: StartServer, tmp_path) -> None:
    first = await start_server()
    with pytest.raises(OSError):
        await start_server(
            listen=f"127.0.0.1:{first.server.port}", data_dir=str(tmp_path / "second")
        )
    # The first keeps answering.
    assert (await first.cp.RequestToolCall(tool_call())).decision.decision_id


async def test_non_finite_numbers_in_arguments_are_refused_by_name(server: Running) -> None:
    req = tool_call(arguments={"target": "x", "region": {"x": 1, "y": 2, "width": 3, "height": 4}})
    req.arguments["region"]["width"] = float("inf")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.cp.RequestToolCall(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value)[1][0][0] == "arguments.region.width"


async def test_the_stored_decision_keeps_the_exact_arguments(server: Running) -> None:
    args = {"form_id": "signup", "fields": {"email": "ä@example.com", "age": "42"}}
    d = (await server.cp.RequestToolCall(tool_call("agent1", "form_fill", args, 0.7))).decision
    db = stored_rows(server)
    (stored,) = db.execute(
        "SELECT arguments FROM decisions WHERE decision_id=?", (d.decision_id,)
    ).fetchone()
    assert json.loads(stored) == args
