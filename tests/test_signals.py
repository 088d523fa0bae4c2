"""Learning signals against a real server: rules, storage, ListSignals, WatchEvents, CLI.

Every wait is bounded (asyncio.wait_for / a deadline); signals are committed
by a background task, so the tests poll ListSignals until they appear.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from interlock.audit import LEARNING_SIGNALS
from interlock.journal import Batch, EventRecord
from interlock.signals import approval_mismatch
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import Running
from tests.helpers.calls import details, tool_call
from tests.test_cli import INTERLOCK, run
from tests.test_plans_api import spec, step

LIMIT = 30.0
RELIABILITY = observe_pb2.SIGNAL_KIND_TOOL_RELIABILITY
MODES = observe_pb2.SIGNAL_KIND_EXECUTION_MODE_ANALYSIS
CONFLICTS = observe_pb2.SIGNAL_KIND_CONFLICT_PATTERN
MISMATCH = observe_pb2.SIGNAL_KIND_APPROVAL_MISMATCH


async def signals(running: Running, **request: Any) -> list[observe_pb2.Signal]:
    response = await running.cp.ListSignals(pb.ListSignalsRequest(**request))
    return list(response.signals)


async def wait_signals(running: Running, n: int = 1, **request: Any) -> list[observe_pb2.Signal]:
    """At least ``n`` signals matching the request, within LIMIT seconds."""
    deadline = time.monotonic() + LIMIT
    while True:
        found = await signals(running, **request)
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} of {n} signals: {found}"
        await asyncio.sleep(0.05)


def evidence(s: observe_pb2.Signal) -> dict[str, Any]:
    return json_format.MessageToDict(s.evidence)


OUTCOMES = ["SUCCEEDED"] * 7 + ["FAILED"] * 2 + ["TIMED_OUT"]


async def decide_and_report(running: Running, tool: str, confidence: float, n: int) -> list[str]:
    """``n`` decisions of a tool; reports the allowed ones with OUTCOMES in turn.
    Returns the decisions' modes (denied / pending_approval for those not allowed)."""
    modes = []
    arguments = {"selector": "#ok"} if tool == "button_click" else None
    for i in range(n):
        d = (
            await running.cp.RequestToolCall(
                tool_call(tool=tool, confidence=confidence, arguments=arguments)
            )
        ).decision
        verdict = types_pb2.Verdict.Name(d.verdict).removeprefix("VERDICT_")
        if verdict == "DENY":
            modes.append("denied")
            continue
        if verdict == "PENDING_APPROVAL":
            modes.append("pending_approval")
            continue
        modes.append(types_pb2.ExecutionMode.Name(d.mode).removeprefix("EXECUTION_MODE_"))
        outcome = OUTCOMES[i % len(OUTCOMES)]
        await running.cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=d.decision_id,
                agent_id="agent1",
                outcome=types_pb2.ToolOutcome.Value(f"TOOL_OUTCOME_{outcome}"),
            )
        )
    return modes


async def test_results_and_decisions_give_reliability_and_mode_signals(server: Running) -> None:
    modes = await decide_and_report(server, "vision_inspect", 0.9, 10)
    assert modes.count("LIVE") + modes.count("DRY_RUN") + modes.count("MOCK") == 10, modes

    (reliability,) = await wait_signals(server, kinds=[RELIABILITY], tool="vision_inspect")
    assert reliability.value == pytest.approx(0.7)
    ev = evidence(reliability)
    assert (ev["successes"], ev["failures"], ev["timeouts"], ev["results"]) == (7, 2, 1, 10)
    assert ev["success_rate"] == pytest.approx(0.7)
    assert sum(m["successes"] for m in ev["by_mode"].values()) == 7
    for mode, counts in ev["by_mode"].items():
        assert modes.count(mode) == counts["successes"] + counts["failures"] + counts["timeouts"]
    assert ev["window"]["results"] == 10 and ev["window"]["since"] <= ev["window"]["until"]

    (analysis,) = await wait_signals(server, kinds=[MODES], tool="vision_inspect")
    ev = evidence(analysis)
    assert ev["decisions"] == 10
    for key in ("MOCK", "DRY_RUN", "LIVE", "denied", "pending_approval"):
        assert ev["counts"][key] == modes.count(key)
    assert ev["escalations"] == modes.count("LIVE")
    assert analysis.value == pytest.approx(modes.count("LIVE") / 10)

    # Another tool, at low confidence: its own counters and signals.
    low = await decide_and_report(server, "button_click", 0.1, 10)
    (other,) = await wait_signals(server, kinds=[MODES], tool="button_click")
    assert other.value == pytest.approx(low.count("LIVE") / 10)
    assert evidence(other)["counts"]["LIVE"] == low.count("LIVE")
    # Nine more results: no new signal before the tenth (the rate holds steady).
    assert len(await signals(server, kinds=[RELIABILITY], tool="vision_inspect")) == 1


async def test_a_sharp_change_in_success_rate_emits_early(start_server: Any) -> None:
    s = await start_server()
    await decide_and_report(s, "vision_inspect", 0.9, 10)
    await wait_signals(s, kinds=[RELIABILITY])
    # Failures only: 7 of 16 (0.44) is more than 0.2 below 0.7, before the 20th result.
    for _ in range(6):
        d = (await s.cp.RequestToolCall(tool_call(confidence=0.9))).decision
        await s.cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=d.decision_id, agent_id="agent1", outcome=types_pb2.TOOL_OUTCOME_FAILED
            )
        )
    newest, first = (await wait_signals(s, 2, kinds=[RELIABILITY]))[:2]
    assert evidence(newest)["trigger"] == "rate_change"
    assert newest.value < first.value - 0.2


async def test_repeated_conflicts_give_a_conflict_pattern(start_server: Any) -> None:
    s = await start_server(approval_required_for_high_risk=False)
    plans = [f"clicks{i}" for i in range(3)]
    for plan_id in plans:
        await s.cp.SubmitPlan(
            spec(
                plan_id,
                step("c1", "button_click", "agent2", 0.1, {"selector": f"#{plan_id}a"}),
                step("c2", "button_click", "agent2", 0.1, {"selector": f"#{plan_id}b"}),
            )
        )
    await asyncio.wait_for(s.server.signals.drain(), LIMIT)
    found = await wait_signals(s, kinds=[CONFLICTS], tool="button_click")
    (pattern, *_) = [p for p in found if evidence(p)["type"] == "RESOURCE"]
    assert pattern.value >= 3
    ev = evidence(pattern)
    assert ev["type"] == "RESOURCE"
    assert ev["count"] == pattern.value
    assert set(plans) <= set(ev["plans"])
    assert {"plan_id": "clicks0", "step_ids": ["c1", "c2"]} in ev["steps"]
    assert ev["agents"] == ["agent2"] and pattern.agent_id == "agent2"


async def test_signals_are_events_and_audit_lines(server: Running) -> None:
    await decide_and_report(server, "vision_inspect", 0.9, 10)
    found = await wait_signals(server, 2)
    await asyncio.wait_for(server.server.signals.drain(), LIMIT)
    found = await signals(server)

    call = server.cp.WatchEvents(
        pb.WatchEventsRequest(after_seq=0, kinds=[observe_pb2.EVENT_KIND_SIGNAL])
    )
    events = []
    try:
        while len(events) < len(found):
            response = await asyncio.wait_for(call.read(), LIMIT)
            assert response is not grpc.aio.EOF
            events.append(response.event)
    finally:
        call.cancel()
    by_id = {e.payload["signal_id"]: e for e in events}
    assert set(by_id) == {s.signal_id for s in found}
    for s in found:
        assert by_id[s.signal_id].tool == s.tool
        assert by_id[s.signal_id].payload["kind"] == observe_pb2.SignalKind.Name(
            s.kind
        ).removeprefix("SIGNAL_KIND_")

    lines = (server.data_dir / LEARNING_SIGNALS).read_text().splitlines()
    assert len(lines) == len(found)
    records = [json.loads(line) for line in lines]
    seqs = {e.payload["signal_id"]: e.seq for e in events}
    for record in records:
        assert record["seq"] == seqs[record["signal_id"]]
        assert record["kind"] in ("TOOL_RELIABILITY", "EXECUTION_MODE_ANALYSIS")
        assert set(record) >= {"tool", "value", "evidence", "created_at"}
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)


async def test_list_signals_filters_orders_and_checks_the_limit(server: Running) -> None:
    await decide_and_report(server, "vision_inspect", 0.9, 10)
    await decide_and_report(server, "button_click", 0.1, 10)
    await wait_signals(server, 3)
    await asyncio.wait_for(server.server.signals.drain(), LIMIT)

    everything = await signals(server)
    ids = [s.signal_id for s in everything]
    times = [s.created_at.ToNanoseconds() for s in everything]
    assert times == sorted(times, reverse=True)  # newest first
    assert [s.signal_id for s in await signals(server, limit=1)] == ids[:1]
    assert {s.tool for s in await signals(server, tool="button_click")} == {"button_click"}
    assert {s.kind for s in await signals(server, kinds=[MODES])} == {MODES}
    assert await signals(server, kinds=[MISMATCH]) == []
    assert len(await signals(server, limit=1000)) == len(everything)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await signals(server, limit=1001)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details(err.value)[1]] == ["limit"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await signals(server, kinds=[observe_pb2.SIGNAL_KIND_UNSPECIFIED])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details(err.value)[1]] == ["kinds[0]"]


def test_the_approval_mismatch_rule() -> None:
    assert approval_mismatch("APPROVE", 0.2) == "approved_at_low_confidence"
    assert approval_mismatch("APPROVAL_RESOLUTION_APPROVE", 0.49) == "approved_at_low_confidence"
    assert approval_mismatch("APPROVE", 0.5) is None
    assert approval_mismatch("DENY", 0.95) == "denied_at_high_confidence"
    assert approval_mismatch("deny", 0.9) == "denied_at_high_confidence"
    assert approval_mismatch("DENY", 0.89) is None
    assert approval_mismatch("APPROVE", 0.95) is None
    assert approval_mismatch("DENY", 0.1) is None
    assert approval_mismatch("", 0.1) is None
    assert approval_mismatch("APPROVE", 0.7, low=0.8) == "approved_at_low_confidence"


async def test_approval_events_give_approval_mismatch_signals(server: Running) -> None:
    for resolution, confidence in (("APPROVE", 0.2), ("APPROVE", 0.8), ("DENY", 0.97)):
        await server.server.journal.commit(
            Batch(
                events=[
                    EventRecord(
                        kind="APPROVAL",
                        tool="refund_funds",
                        agent_id="agent3",
                        decision_id=f"d-{resolution}-{confidence}",
                        payload={"resolution": resolution, "confidence": confidence},
                    )
                ]
            )
        )
    found = await wait_signals(server, 2, kinds=[MISMATCH])
    assert [(s.value, evidence(s)["rule"]) for s in found] == [
        (pytest.approx(0.97), "denied_at_high_confidence"),
        (pytest.approx(0.2), "approved_at_low_confidence"),
    ]
    assert {(s.tool, s.agent_id) for s in found} == {("refund_funds", "agent3")}


async def test_the_cli_prints_signals(server: Running) -> None:
    await decide_and_report(server, "vision_inspect", 0.9, 10)
    await wait_signals(server, 2)
    address = f"127.0.0.1:{server.server.port}"
    text = await run("--server", address, "signals", "--kind", "tool-reliability")
    assert text.code == 0, text.err
    header, row = text.out.splitlines()
    assert header.split()[:5] == ["CREATED", "KIND", "TOOL", "AGENT", "VALUE"]
    assert "TOOL_RELIABILITY" in row and "vision_inspect" in row and " 0.7 " in row

    as_json = await run(
        "--server", address, "signals", "--tool", "vision_inspect", "--limit", "5", "--json"
    )
    assert as_json.code == 0, as_json.err
    listed = json.loads(as_json.out)["signals"]
    assert {s["kind"] for s in listed} == {
        "SIGNAL_KIND_TOOL_RELIABILITY",
        "SIGNAL_KIND_EXECUTION_MODE_ANALYSIS",
    }
    bad = await run("--server", address, "signals", "--kind", "nope")
    assert bad.code == 2 and "unknown signal kind" in bad.err
    assert INTERLOCK.exists()
