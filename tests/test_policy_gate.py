"""The reload gate: a set's own tests, a replay over recorded decisions, the
LIVE widening budget, and the record of who asked (docs/policies.md, "The gate")."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import orjson
import pytest
from interlock.audit import POLICY_CHANGES
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2
from interlock.v1 import policy_service_pb2 as ppb

from tests.conftest import POLICIES, Running, StartServer
from tests.helpers.calls import details, tool_call
from tests.helpers.security import Team
from tests.test_audit import schema
from tests.test_policy_reload import set_low_live_threshold

CONFIG_TEST = Path("interlock/config/config_test.rego")


def shipped_tests() -> int:
    """The shipped bundle's Rego tests (each issue adds some: counted, not pinned)."""
    rule = re.compile(r"^test_\w+ if", re.M)
    return sum(len(rule.findall(f.read_text())) for f in POLICIES.rglob("*_test.rego"))


# A Rego test of the shipped thresholds.
THRESHOLD_TEST = """package interlock.config_test

import data.interlock.config

test_low_live_threshold if config.thresholds.LOW.live == 0.7

test_high_is_stricter_than_low if config.thresholds.HIGH.live > config.thresholds.LOW.live
"""
DRY_RUN_CONFIDENCE = 0.65
"""Between the LOW-risk thresholds (dry_run 0.5, live 0.7): vision_inspect runs DRY_RUN."""


def audit_lines(s: Running) -> list[dict[str, Any]]:
    """The lines of policy_changes.jsonl, each checked against its schema."""
    path = s.data_dir / POLICY_CHANGES
    if not path.exists():
        return []
    validator = jsonschema.Draft202012Validator(schema(POLICY_CHANGES))
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    for line in lines:
        errors = [e.message for e in validator.iter_errors(line)]
        assert not errors, errors
    return lines


def policy_events(s: Running) -> list[dict[str, Any]]:
    from tests.helpers.stored import stored

    rows = stored(s).execute("SELECT payload FROM events WHERE kind='POLICY' ORDER BY seq")
    return [json.loads(payload) for (payload,) in rows.fetchall()]


async def record_dry_runs(stub: Any, n: int = 3) -> None:
    for _ in range(n):
        d = (await stub.RequestToolCall(tool_call(confidence=DRY_RUN_CONFIDENCE))).decision
        assert d.mode == types_pb2.EXECUTION_MODE_DRY_RUN


async def test_a_failing_rego_test_refuses_the_set_naming_it(
    server: Running, policy_dir: Path
) -> None:
    (policy_dir / CONFIG_TEST).write_text(THRESHOLD_TEST)
    first = await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert not first.changed  # tests are not part of the revision
    good = first.revision

    set_low_live_threshold(policy_dir, 0.8)  # narrows, but breaks test_low_live_threshold
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "interlock.config_test.test_low_live_threshold" in info.value.details()
    assert "test_high_is_stricter_than_low" not in info.value.details()

    status = await server.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == good and "test_low_live_threshold" in status.last_error
    d = (await server.cp.RequestToolCall(tool_call(confidence=0.75))).decision
    assert d.policy_revision == good and d.mode == types_pb2.EXECUTION_MODE_LIVE

    # Fix the test along with the change: the set goes live, its tests counted.
    (policy_dir / CONFIG_TEST).write_text(THRESHOLD_TEST.replace("== 0.7", "== 0.8"))
    ok = await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert ok.changed and ok.tests_passed == shipped_tests() + 2 and ok.tests_skipped == 0
    [refused, applied] = audit_lines(server)
    assert refused["result"] == "refused" and refused["error_reason"] == "POLICY_TESTS_FAILED"
    assert refused["gate"]["tests"]["failed"] == ["interlock.config_test.test_low_live_threshold"]
    assert applied["result"] == "applied"
    assert applied["gate"]["tests"]["passed"] == shipped_tests() + 2
    assert applied["gate"]["tests"]["engine"] == "regorus"


async def test_a_set_widening_live_is_refused_then_accepted_with_a_reason(
    server: Running, policy_dir: Path
) -> None:
    await record_dry_runs(server.cp, 3)
    good = (await server.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision

    set_low_live_threshold(policy_dir, 0.6)  # the three DRY_RUN calls would now run LIVE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(info.value)[0] == "POLICY_WIDENS_LIVE"
    assert "ALLOW DRY_RUN -> ALLOW LIVE (3)" in info.value.details(), info.value.details()
    d = (await server.cp.RequestToolCall(tool_call(confidence=DRY_RUN_CONFIDENCE))).decision
    assert d.policy_revision == good and d.mode == types_pb2.EXECUTION_MODE_DRY_RUN

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest(accept_widening=True))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in info.value.details()

    r = await server.policy.ReloadPolicies(
        ppb.ReloadPoliciesRequest(accept_widening=True, reason="LOW-risk inspections are safe")
    )
    assert r.changed and r.widening_live == 4 and r.replayed_decisions == 4
    assert re.fullmatch(r"[0-9a-f]{64}", r.replay_digest)
    d = (await server.cp.RequestToolCall(tool_call(confidence=DRY_RUN_CONFIDENCE))).decision
    assert d.policy_revision == r.revision and d.mode == types_pb2.EXECUTION_MODE_LIVE

    refused, applied = audit_lines(server)
    assert refused["error_reason"] == "POLICY_WIDENS_LIVE"
    assert refused["gate"]["replay"]["widening_live_transitions"] == [
        {"from": "ALLOW DRY_RUN", "to": "ALLOW LIVE", "count": 3}
    ]
    assert applied["gate"]["accept_widening"] and applied["gate"]["reason"] == (
        "LOW-risk inspections are safe"
    )


async def test_the_record_carries_the_digest_and_who_asked(
    make_team: Any, policy_dir: Path
) -> None:
    team: Team = await make_team()
    await record_dry_runs(team["agent1"].cp, 2)
    set_low_live_threshold(policy_dir, 0.6)
    r = await team["root"].policy.ReloadPolicies(
        ppb.ReloadPoliciesRequest(accept_widening=True, reason="change 42")
    )
    assert r.changed and r.widening_live == 2
    s = team.running
    [line] = audit_lines(s)
    [event] = policy_events(s)
    for record in (line, event):
        gate = record["gate"]
        assert record["principal"] == "root" and gate["principal"] == "root"
        assert gate["replay"]["digest"] == r.replay_digest
        assert gate["replay"]["replayed"] == 2 and gate["replay"]["widening_live"] == 2
        assert gate["tests"]["failed"] == [] and gate["tests"]["engine"] == "regorus"
        assert gate["candidate_revision"] == r.revision
    # The event keeps the whole report; the digest is its canonical JSON's SHA-256.
    report = event["gate"]["report"]
    assert "report" not in line["gate"] and report["replayed"] == 2
    canonical = orjson.dumps(report, option=orjson.OPT_SORT_KEYS)
    assert hashlib.sha256(canonical).hexdigest() == r.replay_digest
    [transition] = [t for t in report["transitions"] if t["change"] == "widens"]
    assert transition["count"] == 2 and transition["to"]["mode"] == "LIVE"


async def test_a_neutral_change_passes(server: Running, policy_dir: Path) -> None:
    await record_dry_runs(server.cp, 2)
    path = policy_dir / "interlock/decision/decision.rego"
    path.write_text(path.read_text() + "\n# a comment: nothing changes\n")
    r = await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.widening_live == 0 and r.replayed_decisions == 2
    [line] = audit_lines(server)
    assert line["result"] == "applied" and line["principal"] == "dev"
    assert line["gate"]["replay"]["unchanged"] == 2


async def test_the_watcher_refuses_a_widening_set_and_the_old_one_keeps_serving(
    start_server: StartServer, policy_dir: Path
) -> None:
    s = await start_server(policy_watch_interval_seconds=0.1)
    await record_dry_runs(s.cp, 2)
    good = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    set_low_live_threshold(policy_dir, 0.6)
    for _ in range(300):  # the refusal's record is written just after it is counted
        if audit_lines(s):
            break
        await asyncio.sleep(0.05)
    status = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == good and "widens what runs LIVE" in status.last_error
    [line] = audit_lines(s)
    assert line["principal"] == "file watcher" and line["trigger"] == "file change"
    assert line["error_reason"] == "POLICY_WIDENS_LIVE"
    health = await s.cp.GetHealth(pb.GetHealthRequest())
    [condition] = [c for c in health.components if c.name == "policy_reload"]
    assert condition.score < 100 and "widens what runs LIVE" in condition.detail
    assert health.status != observe_pb2.HEALTH_STATUS_HEALTHY

    r = await s.policy.ReloadPolicies(
        ppb.ReloadPoliciesRequest(accept_widening=True, reason="seen the report")
    )
    assert r.changed
    health = await s.cp.GetHealth(pb.GetHealthRequest())
    [condition] = [c for c in health.components if c.name == "policy_reload"]
    assert condition.score == 100 and r.revision[:12] in condition.detail


async def test_replay_off_lets_a_widening_set_through(
    start_server: StartServer, policy_dir: Path
) -> None:
    s = await start_server(reload_replay_decisions=0)
    await record_dry_runs(s.cp, 2)
    set_low_live_threshold(policy_dir, 0.6)
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.replay_digest == "" and r.replayed_decisions == 0
    [line] = audit_lines(s)
    assert line["gate"]["replay"] is None


# A test that states its input with `with input as` (as every shipped test
# does): regopy aborts on it, so it only runs on regorus and OPA.
WITH_INPUT_TEST = """package interlock.mode_test

import data.interlock.escalation

test_a_confident_crm_lookup_runs_live if {
	escalation.mode == "LIVE" with input as {
		"tool": "crm_lookup", "confidence": 0.75,
		"contract": {"risk": "LOW", "reversible": true},
	}
}
"""


async def test_on_the_default_engine_every_shipped_test_runs_and_a_failing_one_refuses(
    server: Running, policy_dir: Path
) -> None:
    path = policy_dir / "interlock/decision/decision.rego"
    path.write_text(path.read_text() + "\n# a comment: nothing changes\n")
    r = await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.tests_passed == shipped_tests() and r.tests_skipped == 0

    (policy_dir / "interlock/mode_test.rego").write_text(WITH_INPUT_TEST)
    set_low_live_threshold(policy_dir, 0.8)  # narrows: 0.75 is no longer LIVE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "the set's tests fail on the regorus engine" in info.value.details()
    assert "interlock.mode_test.test_a_confident_crm_lookup_runs_live" in info.value.details()
    status = await server.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == r.revision


async def test_on_regopy_the_tests_it_can_run_gate_and_the_others_are_skipped_and_counted(
    start_server: StartServer, policy_dir: Path
) -> None:
    """engine: embedded (regopy 1.5.2 aborts on `with input as`): a test module
    without it runs at every reload, in a child process; one with it is
    skipped and counted, never run."""
    s = await start_server(engine="embedded")
    (policy_dir / CONFIG_TEST).write_text(THRESHOLD_TEST)
    (policy_dir / "interlock/mode_test.rego").write_text(WITH_INPUT_TEST)
    path = policy_dir / "interlock/decision/decision.rego"
    path.write_text(path.read_text() + "\n# a comment: nothing changes\n")
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.tests_passed == 2 and r.tests_skipped == shipped_tests() + 1

    set_low_live_threshold(policy_dir, 0.8)  # breaks test_low_live_threshold
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "the set's tests fail on the embedded engine" in info.value.details()
    assert "interlock.config_test.test_low_live_threshold" in info.value.details()
    # The `with input as` test would fail too, but regopy never ran it.
    assert "mode_test" not in info.value.details()


async def test_on_opa_the_shipped_tests_run_and_a_failing_one_refuses_the_set(
    start_server: StartServer, opa: Any, policy_dir: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    path = policy_dir / "interlock/decision/decision.rego"
    path.write_text(path.read_text() + "\n# a comment: nothing changes\n")
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.tests_passed == shipped_tests() and r.tests_skipped == 0

    (policy_dir / CONFIG_TEST).write_text(THRESHOLD_TEST)
    set_low_live_threshold(policy_dir, 0.8)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "interlock.config_test.test_low_live_threshold" in info.value.details()
    status = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == r.revision


async def test_on_opa_the_kill_switch_and_the_cap_in_data_yaml_pass_the_gate(
    start_server: StartServer, opa: Any, policy_dir: Path
) -> None:
    """The shipped tests pin the values they assume, so an operator's edit of
    data.yaml (the kill switch on, a lower cap, another threshold) is not
    refused for failing them: narrowing what runs LIVE is never blocked."""
    s = await start_server(engine="opa", opa_url=opa.url)
    path = policy_dir / "interlock/config/data.yaml"
    text = path.read_text()
    edited = text.replace("  dry_run_only: false", "  dry_run_only: true")
    edited = edited.replace("  max_concurrent_live: 5", "  max_concurrent_live: 2")
    assert edited != text
    path.write_text(edited)
    r = await s.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert r.changed and r.tests_passed == shipped_tests() and r.tests_skipped == 0
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert d.mode == types_pb2.EXECUTION_MODE_DRY_RUN and d.policy_revision == r.revision


async def test_the_cli_reload_says_accept_widening_with_a_reason(
    server: Running, policy_dir: Path
) -> None:
    from tests.test_cli import run

    address = ("--server", f"127.0.0.1:{server.server.port}")
    await record_dry_runs(server.cp, 2)
    set_low_live_threshold(policy_dir, 0.6)
    refused = await run(*address, "policy", "reload")
    assert refused.code == 1 and "POLICY_WIDENS_LIVE" in refused.err, refused
    assert "ALLOW DRY_RUN -> ALLOW LIVE (2)" in refused.err
    no_reason = await run(*address, "policy", "reload", "--accept-widening")
    assert no_reason.code == 2 and "--accept-widening needs --reason" in no_reason.err
    done = await run(*address, "policy", "reload", "--accept-widening", "--reason", "CHG-7")
    assert done.code == 0 and "2 widened to LIVE" in done.out, done
    [refusal, applied] = audit_lines(server)
    assert refusal["result"] == "refused" and applied["gate"]["reason"] == "CHG-7"
    assert applied["gate"]["replay"]["digest"] in done.out


async def test_a_test_module_that_does_not_parse_refuses_the_set(
    server: Running, policy_dir: Path
) -> None:
    good = (await server.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    (policy_dir / CONFIG_TEST).write_text("package interlock.config_test\n\ntest_broken if {\n")
    set_low_live_threshold(policy_dir, 0.8)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.policy.ReloadPolicies(ppb.ReloadPoliciesRequest())
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "interlock/config/config_test.rego" in info.value.details(), info.value.details()
    status = await server.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == good
