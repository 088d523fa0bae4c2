"""A real Prometheus scrapes a live Interlock; every query of the Grafana dashboard
(deploy/grafana/interlock-dashboard.json) must return data.

Needs the ``prometheus`` binary (``make prometheus``; CI installs it) and OPA
(the fail-closed series needs an engine that can go away).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from interlock.v1 import plans_pb2
from interlock.v1 import policy_service_pb2 as ppb

from tests.conftest import ROOT, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.opa import OpaProcess
from tests.helpers.workers import FINISHED, run_refund_plan, wait_plan
from tests.test_plans_api import spec, step

pytestmark = pytest.mark.opa

DASHBOARD = ROOT / "deploy" / "grafana" / "interlock-dashboard.json"
TEMPLATE_VARIABLES = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "1m",
    "${__interval}": "1m",
    "$__range": "1m",
    "${__range}": "1m",
    "${datasource}": "prometheus",
    "$datasource": "prometheus",
    # What Grafana sends for the job and instance variables: the job this test
    # scrapes as, and "All" (the variables' allValue).
    "${job}": "interlock",
    "$job": "interlock",
    "${instance}": ".*",
    "$instance": ".*",
}
METRIC = re.compile(r"\b(?:interlock|process|python)_[a-z_]+\b(\{[^}]*\})?")


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(found).exists():
        pytest.fail("the prometheus binary is missing: run `make prometheus` (CI installs it)")
    return found


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows too."""
    doc = json.loads(DASHBOARD.read_text())
    panels: list[dict[str, Any]] = []
    for panel in doc["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries(substitute: bool = True) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, variables substituted."""
    out = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            if not substitute:
                out.append((panel["title"], expr))
                continue
            for name in sorted(TEMPLATE_VARIABLES, key=len, reverse=True):
                expr = expr.replace(name, TEMPLATE_VARIABLES[name])
            assert "$" not in expr, f"unknown template variable in {expr!r}"
            out.append((panel["title"], expr))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


async def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    return await asyncio.to_thread(get_json, url)


async def query(port: int, expr: str) -> list[Any]:
    doc = await api(port, "/api/v1/query", query=expr)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def test_the_dashboard_has_the_expected_panels() -> None:
    titles = {title for title, _ in dashboard_queries()}
    assert len(titles) >= 12
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 39
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert [v["type"] for v in variables.values()] == ["datasource", "query", "query"]
    assert variables["instance"]["query"]["query"] == (
        'label_values(interlock_build_info{job=~"$job"}, instance)'
    )


def test_every_query_is_scoped_to_the_chosen_job_and_instances() -> None:
    unscoped = [
        f"{title}: {expr}"
        for title, expr in dashboard_queries(substitute=False)
        for match in METRIC.finditer(expr)
        if 'job=~"$job"' not in (match.group(1) or "")
        or 'instance=~"$instance"' not in (match.group(1) or "")
    ]
    assert not unscoped, "series not filtered by $job and $instance:\n" + "\n".join(unscoped)


def test_every_panel_says_what_it_shows() -> None:
    missing = [p["title"] for p in dashboard_panels() if len(p.get("description", "")) < 40]
    assert not missing, f"panels without a description: {missing}"


async def make_load(start_server: StartServer, opa: OpaProcess) -> int:
    """Start Interlock on OPA and exercise every dashboard series; return its metrics port."""
    s = await start_server(
        engine="opa",
        opa_url=opa.url,
        opa_timeout_seconds=0.5,
        metrics_listen="127.0.0.1:0",
        approval_required_for_high_risk=False,
        health_interval_seconds=0.2,
    )
    # Decisions of several modes and verdicts.
    calls = [
        tool_call(),  # LIVE ALLOW
        tool_call(confidence=0.2),  # MOCK ALLOW
        tool_call("agent1", "form_fill", {"form_id": "f", "fields": {"a": "b"}}, 0.75),  # DRY_RUN
        tool_call("agent1", "button_click", {"selector": "#go"}),  # DENY
        tool_call(),  # from the decision cache
    ]
    for call in calls:
        await s.cp.RequestToolCall(call)
    # A plan with a PERMISSION conflict (denied step, plan FAILED) and one rolled back.
    await s.cp.SubmitPlan(
        spec("denied", step("click", "button_click", "agent1", 0.9, {"selector": "#go"}))
    )
    plan = await run_refund_plan(s.channel, s.cp)
    assert plan.state == plans_pb2.PLAN_STATE_ROLLED_BACK, plan.message
    await wait_plan(s.cp, "denied", FINISHED)
    await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    # Fail closed: OPA goes away.
    opa.stop()
    d = (await s.cp.RequestToolCall(tool_call(confidence=0.99))).decision
    assert d.fail_closed
    # The health monitor has published its components.
    await asyncio.sleep(0.5)
    return s.server.metrics_port


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    start_server: StartServer, opa: OpaProcess, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    queries = dashboard_queries()
    metrics_port = await make_load(start_server, opa)

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: interlock\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        scrapes = 0.0
        while scrapes < 4:
            assert proc.returncode is None, f"prometheus exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"prometheus did not scrape Interlock 4 times: {log_path.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.5)
            try:
                targets = await api(port, "/api/v1/targets")
                active = targets["data"]["activeTargets"]
                if not active or active[0]["health"] != "up":
                    continue
                result = await query(port, 'count_over_time(up{job="interlock"}[1m])')
                scrapes = float(result[0]["value"][1]) if result else 0.0
            except OSError:
                continue  # not listening yet
        empty = []
        for title, expr in queries:
            if not await query(port, expr):
                empty.append(f"{title}: {expr}")
        assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
