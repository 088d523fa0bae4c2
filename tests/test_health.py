"""The health monitor: score, components, anomalies, system_health.json, gauges."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from interlock.health import HEALTH_FILE, Ewma, detect, linear_score, status_of
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import STORE, Running, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.health import NOT_SERVING, wait_for_health
from tests.helpers.opa import OpaProcess

BUCKET = 0.25


# The pieces ---------------------------------------------------------------


def test_ewma_follows_a_constant_series() -> None:
    e = Ewma(0.3)
    for _ in range(20):
        e.update(0.9)
    assert e.mean == pytest.approx(0.9) and e.var == pytest.approx(0.0)


def test_detector_flags_a_spike_after_warmup_only() -> None:
    noisy = [1.0, 0.98, 1.0, 0.97, 1.0, 0.99, 1.0, 0.98]
    assert detect(noisy, floor=0.05) is None
    hit = detect([*noisy, 0.1], floor=0.05)
    assert hit is not None
    observed, expected, deviation = hit
    assert observed == 0.1 and 0.95 < expected < 1.0 and deviation > 3
    assert detect([1.0, 1.0, 0.0], floor=0.05) is None  # still warming up
    assert detect([*noisy, 0.95], floor=0.05) is None  # within 3 sigmas


def test_score_mappings() -> None:
    assert linear_score(0.02, 0.05, 1.0) == 100
    assert linear_score(0.525, 0.05, 1.0) == pytest.approx(50)
    assert linear_score(2.0, 0.05, 1.0) == 0
    assert status_of(80) == "HEALTHY" and status_of(79.9) == "DEGRADED"
    assert status_of(49.9) == "UNHEALTHY" and status_of(100, engine_available=False) == "UNHEALTHY"


# A real server --------------------------------------------------------------


async def test_a_healthy_server_scores_high(server: Running) -> None:
    for _ in range(5):
        d = (await server.cp.RequestToolCall(tool_call())).decision
        await server.cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id=d.decision_id,
                agent_id="agent1",
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            )
        )
    h = await server.cp.GetHealth(pb.GetHealthRequest())
    assert h.score >= 80 and h.status == observe_pb2.HEALTH_STATUS_HEALTHY
    names = {c.name for c in h.components}
    assert names == {
        "policy_engine",
        "tool_success",
        "decision_latency",
        "fail_closed",
        "conflicts",
        "rollbacks",
        "approval_backlog",
        "store",
        "audit_files",
        "audit_chain",
    } | ({"policy_agreement"} if STORE == "postgresql" else set())  # replicas' revisions
    assert sum(c.weight for c in h.components) == pytest.approx(1.0)
    conditions = {c.name: c for c in h.components if c.weight == 0}
    assert {n: c.score for n, c in conditions.items()} == {
        "store": 100,
        "audit_files": 100,
        "audit_chain": 100,
    } | ({"policy_agreement": 100} if STORE == "postgresql" else {})
    success = next(c for c in h.components if c.name == "tool_success")
    assert success.score == 100 and "5/5" in success.detail
    latency = next(c for c in h.components if c.name == "decision_latency")
    assert "over 5 decisions" in latency.detail
    assert not h.anomalies and h.engine_available and h.engine == "regorus"


async def _report(s: Running, decision_id: str, outcome: int) -> None:
    await s.cp.ReportToolResult(
        pb.ReportToolResultRequest(decision_id=decision_id, agent_id="agent1", outcome=outcome)
    )


async def _decide(s: Running, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        d = (await s.cp.RequestToolCall(tool_call())).decision
        assert d.verdict == types_pb2.VERDICT_ALLOW
        ids.append(d.decision_id)
    return ids


async def test_a_burst_of_failures_lowers_the_score_and_raises_an_anomaly(
    start_server: StartServer,
) -> None:
    s = await start_server(metrics_listen="127.0.0.1:0")
    # On PostgreSQL 30 failures of one (agent, tool) pair take about a second to
    # commit (each moves the pair's trust row under a guard, one after another),
    # so the burst's bucket is wider there: the burst must land in one bucket.
    bucket = BUCKET if STORE == "sqlite" else 2.0
    s.server.health_monitor.configure(bucket_seconds=bucket, window_buckets=200)
    burst = await _decide(s, 30)
    # Warm-up: a few successes in each of 8 buckets.
    for _ in range(8):
        for decision_id in await _decide(s, 3):
            await _report(s, decision_id, types_pb2.TOOL_OUTCOME_SUCCEEDED)
        await asyncio.sleep(bucket)
    before = await s.cp.GetHealth(pb.GetHealthRequest())
    assert before.score >= 80 and not before.anomalies, before

    # Start the burst just after a bucket boundary, so it lands in one bucket.
    await asyncio.sleep(bucket - time.time() % bucket + 0.01)
    await asyncio.gather(*(_report(s, i, types_pb2.TOOL_OUTCOME_FAILED) for i in burst))
    after = await s.cp.GetHealth(pb.GetHealthRequest())

    assert after.score < before.score - 10, (before.score, after.score)
    success = next(c for c in after.components if c.name == "tool_success")
    assert success.score < 50 and "24/54" in success.detail
    anomaly = next(a for a in after.anomalies if a.metric == "success_rate")
    assert anomaly.observed == 0.0 and anomaly.expected > 0.9 and anomaly.deviation > 3
    assert anomaly.window and anomaly.detected_at.seconds > 0

    text = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(f"http://127.0.0.1:{s.server.metrics_port}/metrics")
            .read()
            .decode()
        )
    )
    assert f"interlock_health_score {after.score}" in text
    assert 'interlock_health_component_score{component="tool_success"}' in text
    assert f"interlock_health_anomalies {float(len(after.anomalies))}" in text


async def test_system_health_json_matches_get_health(start_server: StartServer) -> None:
    s = await start_server(health_interval_seconds=0.1)
    path = s.data_dir / HEALTH_FILE
    for _ in range(50):
        if path.exists():
            break
        await asyncio.sleep(0.1)
    assert path.exists()
    await asyncio.sleep(0.2)  # a fresh rewrite
    doc = json.loads(path.read_text())
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    assert doc["status"] == "HEALTHY" == observe_pb2.HealthStatus.Name(h.status)[14:]
    assert doc["score"] == h.score
    assert [(c["name"], c["score"], c["weight"]) for c in doc["components"]] == [
        (c.name, c.score, c.weight) for c in h.components
    ]
    assert doc["anomalies"] == [] and not h.anomalies
    assert doc["policy_revision"] == h.policy_revision and doc["engine"] == h.engine
    assert doc["engine_available"] is True and doc["version"] == h.version
    # Rewrites replace the file whole: once the server stops, no temporary is left.
    await s.server.stop(grace=0.1)
    await asyncio.sleep(0.3)  # a rewrite already on its thread finishes its rename
    assert not list(s.data_dir.glob(f".{HEALTH_FILE}.tmp"))


@pytest.mark.opa
async def test_engine_down_means_unhealthy(start_server: StartServer, opa: OpaProcess) -> None:
    s = await start_server(engine="opa", opa_url=opa.url, opa_timeout_seconds=0.5)
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    assert h.status == observe_pb2.HEALTH_STATUS_HEALTHY and h.score >= 80
    opa.stop()
    await wait_for_health(s.channel, NOT_SERVING)
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    assert h.status == observe_pb2.HEALTH_STATUS_UNHEALTHY and h.score <= 25
    assert not h.engine_available
    engine = next(c for c in h.components if c.name == "policy_engine")
    assert engine.score == 0 and "unavailable" in engine.detail
