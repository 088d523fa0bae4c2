"""Prometheus conventions: Interlock's own registry carries the process and
platform collectors and ``interlock_build_info``; the shipped alert rules pass
promtool's check and unit tests (``make test`` runs them too)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request

import interlock
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, STORE, StartServer

ALERTS = ROOT / "deploy" / "prometheus"


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The endpoint's samples, by sample name: [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def test_metrics_endpoint_serves_process_platform_and_build_info(
    start_server: StartServer,
) -> None:
    s = await start_server(metrics_listen="127.0.0.1:0")
    samples = await asyncio.to_thread(scrape, s.server.metrics_port)

    assert samples["interlock_build_info"] == [
        ({"version": interlock.__version__, "engine": "regorus", "store": STORE}, 1.0)
    ]
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_gc_collections_total",
    ):
        assert name in samples, name
    [(labels, _)] = samples["python_info"]
    assert labels["implementation"] == "CPython"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make prometheus` (Debian's prometheus package)")
    return found


@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "config", "../prometheus.yml"],
    ],
    ids=["check-rules", "test-rules", "check-config"],
)
def test_alert_rules_pass_promtool(args: list[str]) -> None:
    proc = subprocess.run(
        [promtool(), *args], cwd=ALERTS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
