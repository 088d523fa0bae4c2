"""OPA fed with bundles (issue 15, item 4), against a real `opa run --server`.

The test's OPA is configured as docs/policies.md says: its bundle service is
the Interlock server's bundle server, long-polled, and its decision logs go
back to it. A decision names the revision OPA reports having evaluated; an
answer from another revision fails closed.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from interlock.policy.bundleserver import BUNDLE_PATH, DECISION_LOG_FILE
from interlock.policy.opa import OpaEngine
from interlock.v1 import policy_service_pb2 as ppb
from interlock.v1 import types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.health import SERVING, wait_for_health
from tests.helpers.opa import OpaProcess

pytestmark = pytest.mark.opa

EXTRA = "interlock/extra/extra.rego"
"""A module that changes the revision without changing any decision, and
reads its data through data["interlock"] (no rewriting to break it)."""


def extra_module(tag: str) -> str:
    return (
        "package interlock.extra\n\n"
        f'tag := "{tag}"\n\n'
        'floor := data["interlock"]["config"]["thresholds"]\n'
    )


def engine_of(s: Running) -> OpaEngine:
    engine = s.server.policies.engine
    assert isinstance(engine, OpaEngine)
    return engine


async def opa_get(opa: OpaProcess, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{opa.url}/v1/data/{path}?provenance=true") as r,
    ):
        body: dict[str, Any] = await r.json()
        return body


async def reload_with(s: Running, policy_dir: Path, tag: str) -> str:
    await asyncio.to_thread((policy_dir / EXTRA).parent.mkdir, exist_ok=True)
    await asyncio.to_thread((policy_dir / EXTRA).write_text, extra_module(tag))
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed
    return str(r.revision)


async def test_a_decision_names_the_revision_opa_evaluated_through_its_bundle(
    start_server: StartServer, opa: OpaProcess
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    active = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert (d.verdict, d.mode) == (types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_LIVE)
    assert d.engine == "opa" and d.policy_revision == active
    # OPA holds that revision as the bundle "interlock", at the stable path.
    body = await opa_get(opa, "interlock/decision")
    assert body["provenance"]["bundles"] == {"interlock": {"revision": active}}
    assert "main" in body["result"]


async def test_a_reload_reaches_opa_and_the_next_decision_names_the_new_revision(
    start_server: StartServer, opa: OpaProcess, policy_dir: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url, metrics_listen="127.0.0.1:0")
    old = (await s.cp.RequestToolCall(tool_call())).decision.policy_revision
    new = await reload_with(s, policy_dir, "v2")
    assert new != old
    # The reload waited for OPA: the very next call is served, on the new revision.
    d = (await s.cp.RequestToolCall(tool_call(confidence=0.91))).decision
    assert not d.fail_closed, list(d.reasons)
    assert d.policy_revision == new and d.mode == types_pb2.EXECUTION_MODE_LIVE
    # data["interlock"] works in a policy: nothing is rewritten under a namespace.
    body = await opa_get(opa, "interlock/extra")
    assert body["provenance"]["bundles"]["interlock"]["revision"] == new
    assert body["result"]["tag"] == "v2" and body["result"]["floor"]["LOW"]["live"] == 0.7
    assert s.server.metrics.stale_revisions._value.get() == 0


async def test_an_opa_one_revision_behind_fails_closed_then_catches_up(
    start_server: StartServer, opa: OpaProcess, policy_dir: Path
) -> None:
    s = await start_server(
        engine="opa",
        opa_url=opa.url,
        opa_revision_wait_seconds=0.5,
        metrics_listen="127.0.0.1:0",
    )
    engine = engine_of(s)
    assert engine.bundles is not None
    old = (await s.cp.RequestToolCall(tool_call())).decision.policy_revision

    # The bundle server withholds the newest revision: OPA stays on the old one.
    await engine.bundles.hold()
    new = await reload_with(s, policy_dir, "held back")
    assert (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision == new
    assert await engine.revision() == old

    answers = [
        (await s.cp.RequestToolCall(tool_call(confidence=0.9 + i / 100))).decision for i in range(5)
    ]
    for d in answers:
        assert d.verdict == types_pb2.VERDICT_DENY and d.mode == types_pb2.EXECUTION_MODE_MOCK
        assert d.fail_closed and d.policy_revision == new
        assert (
            f"OPA evaluated policy revision {old[:12]}, not the active {new[:12]}" in (d.reasons[0])
        ), list(d.reasons)
    assert s.server.metrics.stale_revisions._value.get() == 5
    text = await metrics_text(s)
    assert "interlock_policy_stale_revision_total 5.0" in text

    # Released, OPA catches up (long polling) and decisions are served again.
    await engine.bundles.release()
    assert await engine.wait_for_revision(new, 30)
    await wait_for_health(s.channel, SERVING, within=15)
    d = (await s.cp.RequestToolCall(tool_call(confidence=0.95))).decision
    assert (d.verdict, d.mode) == (types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_LIVE)
    assert d.policy_revision == new and not d.fail_closed


async def metrics_text(s: Running) -> str:
    url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return await r.text()


async def test_the_bundle_server_answers_304_for_the_revision_opa_has(
    start_server: StartServer, opa: OpaProcess, policy_dir: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    engine = engine_of(s)
    assert engine.bundles is not None
    url = engine.bundles.url + BUNDLE_PATH
    revision = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            assert r.status == 200 and r.headers["ETag"] == f'"{revision}"'
            body = await r.read()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
            names = {m.name.lstrip("/") for m in tar.getmembers()}
            member = tar.extractfile("/.manifest")
            assert member is not None
            manifest = json.loads(member.read())
        assert manifest == {"revision": revision, "roots": ["interlock"]}
        assert {"data.json", "interlock/decision/decision.rego"} <= names
        assert not any(n.endswith("_test.rego") for n in names)

        same = {"If-None-Match": f'"{revision}"'}
        async with session.get(url, headers=same) as r:
            assert r.status == 304 and await r.read() == b""
        # A long poll for the revision it has: 304 when the wait is over...
        async with session.get(url, headers={**same, "Prefer": "wait=1"}) as r:
            assert r.status == 304
        # ... or the new bundle as soon as a reload publishes one.
        waiting = asyncio.create_task(
            session.get(url, headers={**same, "Prefer": "modes=snapshot,delta;wait=60"})
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        new = await reload_with(s, policy_dir, "v3")
        async with await asyncio.wait_for(waiting, 30) as r:
            assert r.status == 200 and r.headers["ETag"] == f'"{new}"'
        assert time.monotonic() - started < 30  # answered by the publish, not the wait


async def test_opa_decision_logs_carry_the_revision(
    start_server: StartServer, opa: OpaProcess
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    d = (await s.cp.RequestToolCall(tool_call())).decision
    log_file = s.data_dir / DECISION_LOG_FILE
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if await asyncio.to_thread(log_file.exists):
            lines = (await asyncio.to_thread(log_file.read_text)).splitlines()
            events = [json.loads(line) for line in lines]
            found = [
                e
                for e in events
                if e.get("path") == "interlock/decision/main"
                and e.get("input", {}).get("tool") == "vision_inspect"
            ]
    assert found, f"no decision of OPA's in {log_file} within 30s"
    event = found[0]
    assert event["bundles"] == {"interlock": {"revision": d.policy_revision}}
    assert event["result"]["verdict"] == "ALLOW" and event["result"]["mode"] == "LIVE"
