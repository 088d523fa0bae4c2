"""VALIDATION_OUTCOME, the Phase-22 correlation: how a tool's pre-execution
checks (argument schema, DRY_RUN) predicted what happened, against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import jsonschema
import pytest
from interlock.audit import LEARNING_SIGNALS
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import ROOT, Running
from tests.helpers.calls import tool_call
from tests.test_plans_api import spec, step
from tests.test_signals import LIMIT, evidence, wait_signals

VALIDATION = observe_pb2.SIGNAL_KIND_VALIDATION_OUTCOME
OUTCOME = {
    "SUCCEEDED": types_pb2.TOOL_OUTCOME_SUCCEEDED,
    "FAILED": types_pb2.TOOL_OUTCOME_FAILED,
}


async def call(
    s: Running, confidence: float, outcome: str, arguments: dict[str, Any], **where: str
) -> str:
    """Decide a vision_inspect call and report it; returns its mode."""
    d = (
        await s.cp.RequestToolCall(tool_call(confidence=confidence, arguments=arguments, **where))
    ).decision
    assert d.verdict == types_pb2.VERDICT_ALLOW
    await s.cp.ReportToolResult(
        pb.ReportToolResultRequest(
            decision_id=d.decision_id, agent_id="agent1", outcome=OUTCOME[outcome]
        )
    )
    return str(types_pb2.ExecutionMode.Name(d.mode)).removeprefix("EXECUTION_MODE_")


async def test_a_dry_run_success_then_a_live_failure_is_signalled_at_once(server: Running) -> None:
    same = {"target": "checkout button"}
    # vision_inspect (LOW): DRY_RUN from 0.5, LIVE from 0.7.
    assert await call(server, 0.6, "SUCCEEDED", same) == "DRY_RUN"
    assert await call(server, 0.9, "FAILED", same) == "LIVE"
    [signal] = await wait_signals(server, kinds=[VALIDATION])
    assert signal.tool == "vision_inspect"
    assert signal.value == 1.0  # every paired DRY_RUN success failed LIVE
    ev = evidence(signal)
    assert ev["trigger"] == "missed_failure"
    assert ev["outcomes"]["dry_run_succeeded_live_failed"] == 1
    assert ev["paired_by"] == {"plan_step": 0, "arguments": 1}
    assert ev["dry_run_success_live_failure_rate"] == 1.0
    assert ev["missed_failures"][0]["live_outcome"] == "FAILED"

    # The same channels as the other signals: the JSONL file and a SIGNAL event.
    await asyncio.wait_for(server.server.signals.drain(), LIMIT)
    lines = [json.loads(x) for x in (server.data_dir / LEARNING_SIGNALS).read_text().splitlines()]
    assert [r["signal_id"] for r in lines if r["kind"] == "VALIDATION_OUTCOME"] == [
        signal.signal_id
    ]
    schema = json.loads((ROOT / "docs" / "schemas" / "learning_signals.schema.json").read_text())
    for line in lines:
        jsonschema.validate(line, schema)
    stream = server.cp.WatchEvents(
        pb.WatchEventsRequest(after_seq=0, kinds=[observe_pb2.EVENT_KIND_SIGNAL])
    )
    try:
        event = (await asyncio.wait_for(stream.read(), LIMIT)).event
    finally:
        stream.cancel()
    assert event.payload["kind"] == "VALIDATION_OUTCOME"
    assert event.payload["signal_id"] == signal.signal_id


async def test_pairs_by_plan_step_are_counted_and_signalled_every_n(server: Running) -> None:
    server.server.signals.validation_every = 2
    for n in (1, 2):
        where = {"plan_id": "agent_plan", "step_id": f"look{n}"}
        # Different arguments: only the plan step ties the two calls together.
        await call(server, 0.6, "SUCCEEDED", {"target": f"draft {n}"}, **where)
        await call(server, 0.9, "SUCCEEDED", {"target": f"final {n}"}, **where)
    [signal] = await wait_signals(server, kinds=[VALIDATION])
    ev = evidence(signal)
    assert ev["trigger"] == "every"
    assert ev["pairs"] == 2
    assert ev["paired_by"] == {"plan_step": 2, "arguments": 0}
    assert ev["outcomes"]["dry_run_succeeded_live_succeeded"] == 2
    assert signal.value == 0.0
    # A LIVE call nothing checked before is counted apart.
    await call(server, 0.9, "SUCCEEDED", {"target": "never dry-run"})
    await call(server, 0.6, "FAILED", {"target": "x"})
    await call(server, 0.9, "FAILED", {"target": "x"})
    await call(server, 0.6, "SUCCEEDED", {"target": "y"})
    await call(server, 0.9, "SUCCEEDED", {"target": "y"})  # the 4th pair: due again
    found = await wait_signals(server, 2, kinds=[VALIDATION])
    newest = evidence(found[0])
    assert newest["live_unchecked"] == 1
    assert newest["outcomes"]["dry_run_failed_live_failed"] == 1
    assert newest["pairs"] == 4 and newest["trigger"] == "every"


async def test_argument_schema_failures_of_calls_and_plans(server: Running) -> None:
    for _ in range(4):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await server.cp.RequestToolCall(tool_call(arguments={"target": ""}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError):
        await server.cp.SubmitPlan(
            spec("bad_args", step("look", "vision_inspect", "agent1", 0.9, {"region": {}}))
        )
    [signal] = await wait_signals(server, kinds=[VALIDATION], tool="vision_inspect")
    ev = evidence(signal)
    assert ev["trigger"] == "schema_failures"
    assert ev["schema_failures"] == 5
    assert ev["schema_fields"].get("target") == 4
    assert ev["pairs"] == 0


async def test_the_cli_lists_the_new_kind(server: Running) -> None:
    from tests.test_cli import run

    await call(server, 0.6, "SUCCEEDED", {"target": "a"})
    await call(server, 0.9, "FAILED", {"target": "a"})
    await wait_signals(server, kinds=[VALIDATION])
    target = f"127.0.0.1:{server.server.port}"
    result = await run("signals", "--server", target, "--kind", "validation_outcome", "--json")
    assert result.code == 0, result.err
    assert "VALIDATION_OUTCOME" in result.out
