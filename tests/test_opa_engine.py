"""The OPA engine against a real `opa run --server` process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2
from interlock.v1 import policy_service_pb2 as ppb

from tests.conftest import StartServer
from tests.helpers.calls import tool_call
from tests.helpers.health import NOT_SERVING, SERVING, wait_for_health
from tests.helpers.opa import OpaProcess

pytestmark = pytest.mark.opa


async def test_decisions_come_from_opa(start_server: StartServer, opa: OpaProcess) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert d.engine == "opa"
    assert (d.verdict, d.mode) == (types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_LIVE)
    assert "confidence 0.9 meets the LIVE threshold 0.7 for LOW-risk tools" in d.reasons
    denied = (
        await s.cp.RequestToolCall(tool_call("agent1", "button_click", {"selector": "#a"}))
    ).decision
    assert denied.verdict == types_pb2.VERDICT_DENY and not denied.fail_closed
    assert "agent agent1 lacks permission(s) ui.click required by button_click" in denied.reasons


async def test_a_reload_reaches_opa_as_its_bundle(
    start_server: StartServer, opa: OpaProcess, policy_dir: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    old = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    cfg = policy_dir / "interlock/config/data.yaml"
    cfg.write_text(cfg.read_text().replace("dry_run_only: false", "dry_run_only: true"))
    # The shipped Rego tests assume the switch off, and the reload gate runs
    # them (tests/test_policy_gate.py); this test is about OPA's bundle.
    for test in await asyncio.to_thread(lambda: list(policy_dir.rglob("*_test.rego"))):
        test.unlink()
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.revision != old
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert d.mode == types_pb2.EXECUTION_MODE_DRY_RUN and d.policy_revision == r.revision

    import json
    import urllib.request

    # OPA holds the new revision at the stable path, and only it.
    url = f"{opa.url}/v1/data/interlock/config/switches?provenance=true"
    body = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
    assert body["provenance"]["bundles"] == {"interlock": {"revision": r.revision}}
    assert body["result"]["dry_run_only"] is True


async def test_a_set_opa_refuses_is_not_swapped_in(
    start_server: StartServer, opa: OpaProcess, policy_dir: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    good = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    (policy_dir / "interlock/decision/bad.rego").write_text(
        "package interlock.decision\n\nx := y\n"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert d.policy_revision == good and d.verdict == types_pb2.VERDICT_ALLOW


async def test_fails_closed_when_opa_is_down_and_recovers(
    start_server: StartServer, opa: OpaProcess
) -> None:
    s = await start_server(
        engine="opa", opa_url=opa.url, opa_timeout_seconds=0.5, metrics_listen="127.0.0.1:0"
    )
    assert (await s.cp.RequestToolCall(tool_call())).decision.mode == types_pb2.EXECUTION_MODE_LIVE
    opa.stop()

    d = (await s.cp.RequestToolCall(tool_call(confidence=0.99))).decision
    assert (
        d.verdict == types_pb2.VERDICT_DENY
        and d.mode == types_pb2.EXECUTION_MODE_MOCK
        and d.fail_closed
    )
    assert "failing closed" in d.reasons[0]

    await wait_for_health(s.channel, NOT_SERVING)
    h = await s.cp.GetHealth(pb.GetHealthRequest())
    assert not h.engine_available and h.status == observe_pb2.HEALTH_STATUS_UNHEALTHY
    # The very input OPA allowed before is not answered from the cache now.
    again = (await s.cp.RequestToolCall(tool_call())).decision
    assert again.verdict == types_pb2.VERDICT_DENY and again.fail_closed

    import urllib.request

    text = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(f"http://127.0.0.1:{s.server.metrics_port}/metrics")
            .read()
            .decode()
        )
    )
    assert 'interlock_policy_fail_closed_total{engine="opa"} 2.0' in text
    assert 'interlock_decisions_total{mode="MOCK",tool="vision_inspect",verdict="DENY"} 2.0' in text

    # A new OPA on the same port has lost the policies; it downloads the bundle again.
    await asyncio.to_thread(opa.start)  # the bundle server runs on this loop
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert d.verdict == types_pb2.VERDICT_ALLOW and not d.fail_closed, list(d.reasons)
    await wait_for_health(s.channel, SERVING)
