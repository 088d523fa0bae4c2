"""Replay: recorded decisions evaluated again under a candidate policy set.

A real server records real decisions first; ReplayPolicy (and ``interlock
policy replay``) then reports how a candidate folder would change them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from interlock.decision_facts import DecisionMade, DecisionRecord
from interlock.decisions import sha256_hex
from interlock.v1 import policy_service_pb2 as ppb
from interlock.v1 import types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import details, tool_call
from tests.helpers.stored import Stored

DELETE = {"record_id": "CU-12345", "reason": "GDPR erasure"}
HIGH_LIVE = "    live: 0.85\n"


def candidate(policy_dir: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the server's policy folder with one edit to config/data.yaml."""
    import shutil

    target = tmp_path / "candidate"
    shutil.copytree(policy_dir, target)
    cfg = target / "interlock/config/data.yaml"
    text = cfg.read_text()
    assert text.count(old) == 1
    cfg.write_text(text.replace(old, new))
    return target


def files_of(folder: Path) -> dict[str, str]:
    from interlock.policy.bundle import read_dir

    return read_dir(folder)


async def replay(s: Running, folder: Path, **fields: Any) -> tuple[list[Any], ppb.ReplayReport]:
    request = ppb.ReplayPolicyRequest(**fields)
    request.policy_set.files.update(files_of(folder))
    progress, report = [], None
    async for response in s.policy.ReplayPolicy(request):
        if response.HasField("report"):
            report = response.report
        else:
            progress.append((response.progress.done, response.progress.total))
    assert report is not None
    return progress, report


async def record_history(s: Running) -> dict[str, list[str]]:
    """Real decisions: HIGH-risk deletes at 0.9 (approval, LIVE) and 0.82
    (DRY_RUN), a LOW-risk inspection at 0.9 (LIVE). Their ids by kind."""
    ids: dict[str, list[str]] = {"delete_live": [], "delete_dry": [], "inspect": []}
    for _ in range(2):
        d = (await s.cp.RequestToolCall(tool_call("ops", "delete_record", DELETE, 0.9))).decision
        assert d.verdict == types_pb2.VERDICT_PENDING_APPROVAL and d.needs_approval
        ids["delete_live"].append(d.decision_id)
    d = (await s.cp.RequestToolCall(tool_call("ops", "delete_record", DELETE, 0.82))).decision
    assert (d.verdict, d.mode) == (types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_DRY_RUN)
    ids["delete_dry"].append(d.decision_id)
    d = (await s.cp.RequestToolCall(tool_call())).decision
    assert (d.verdict, d.mode) == (types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_LIVE)
    ids["inspect"].append(d.decision_id)
    return ids


def outcome(o: ppb.ReplayOutcome) -> tuple[str, str, bool]:
    return (
        types_pb2.Verdict.Name(o.verdict),
        types_pb2.ExecutionMode.Name(o.mode),
        o.needs_approval,
    )


async def test_a_raised_high_risk_threshold_shows_the_exact_transitions(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    ids = await record_history(s)
    revision = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    folder = candidate(
        policy_dir,
        tmp_path,
        "  HIGH:\n    dry_run: 0.8\n" + HIGH_LIVE,
        "  HIGH:\n    dry_run: 0.8\n    live: 0.95\n",
    )

    progress, report = await replay(s, folder)

    assert progress[-1] == (4, 4)
    assert (report.decisions, report.replayed, report.failures) == (4, 4, 0)
    assert (report.unrecorded_inputs, report.reconstructed, report.skipped) == (0, 0, 0)
    assert (report.widening, report.narrowing, report.unchanged) == (0, 2, 2)
    by_pair = {(outcome(t.before), outcome(t.after)): t for t in report.transitions}
    assert set(by_pair) == {
        (
            ("VERDICT_PENDING_APPROVAL", "EXECUTION_MODE_LIVE", True),
            ("VERDICT_ALLOW", "EXECUTION_MODE_DRY_RUN", False),
        ),
        (
            ("VERDICT_ALLOW", "EXECUTION_MODE_DRY_RUN", False),
            ("VERDICT_ALLOW", "EXECUTION_MODE_DRY_RUN", False),
        ),
        (
            ("VERDICT_ALLOW", "EXECUTION_MODE_LIVE", False),
            ("VERDICT_ALLOW", "EXECUTION_MODE_LIVE", False),
        ),
    }
    narrowed = report.transitions[0]  # changes first
    assert narrowed.change == ppb.REPLAY_CHANGE_NARROWS and narrowed.count == 2
    assert dict(narrowed.by_agent) == {"ops": 2} and dict(narrowed.by_tool) == {"delete_record": 2}
    assert {x.decision_id for x in narrowed.samples} == set(ids["delete_live"])
    sample = narrowed.samples[0]
    assert sample.recorded_revision == revision
    assert (
        "confidence 0.9 meets the LIVE threshold 0.85 for HIGH-risk tools"
        in sample.recorded_reasons
    )
    assert (
        "confidence 0.9 meets the DRY_RUN threshold 0.8 but not the LIVE threshold 0.95 "
        "for HIGH-risk tools" in sample.candidate_reasons
    )
    assert report.candidate_revision != revision

    # The CLI prints the same report, as JSON and as a table; exit 0.
    argv = ["--server", f"127.0.0.1:{s.server.port}", "policy", "replay", str(folder)]
    code, out = await run_cli([*argv, "--json"])
    assert code == 0
    doc = json.loads(out)
    assert (doc["narrowing"], doc["widening"], doc["unchanged"]) == (2, 0, 2)
    first = doc["transitions"][0]
    assert (first["from"], first["to"], first["change"], first["count"]) == (
        {"verdict": "PENDING_APPROVAL", "mode": "LIVE", "needs_approval": True},
        {"verdict": "ALLOW", "mode": "DRY_RUN", "needs_approval": False},
        "narrows",
        2,
    )
    code, out = await run_cli([*argv, "--tool", "delete_record"])
    assert code == 0
    assert "widening 0, narrowing 2, unchanged 1, failures 0" in out
    assert re.search(
        r"NARROWS +PENDING_APPROVAL LIVE +ALLOW DRY_RUN +2 +ops 2 +delete_record 2", out
    )
    assert ids["delete_live"][0] in out or ids["delete_live"][1] in out


async def test_lowering_a_threshold_widens(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    await record_history(s)
    folder = candidate(
        policy_dir, tmp_path, "  HIGH:\n    dry_run: 0.8\n", "  HIGH:\n    dry_run: 0.9\n"
    )
    _, report = await replay(s, folder, tool="delete_record")
    assert (report.decisions, report.narrowing, report.widening) == (3, 1, 0)
    folder2 = tmp_path / "c2"
    folder.rename(folder2)
    widened = candidate(policy_dir, tmp_path, HIGH_LIVE, "    live: 0.8\n")
    _, report = await replay(s, widened, agent_id="ops")
    assert (report.decisions, report.widening, report.narrowing) == (3, 1, 0)
    t = report.transitions[0]
    assert t.change == ppb.REPLAY_CHANGE_WIDENS
    assert outcome(t.before) == ("VERDICT_ALLOW", "EXECUTION_MODE_DRY_RUN", False)
    assert outcome(t.after) == ("VERDICT_PENDING_APPROVAL", "EXECUTION_MODE_LIVE", True)


async def test_each_decision_keeps_the_input_it_was_evaluated_on(start_server: StartServer) -> None:
    s = await start_server()
    d = (await s.cp.RequestToolCall(tool_call("ops", "delete_record", DELETE, 0.9))).decision
    row = (
        Stored(s)
        .execute("SELECT input FROM decision_inputs WHERE decision_id = ?", (d.decision_id,))
        .fetchone()
    )
    assert row is not None
    recorded = orjson.loads(row[0])
    assert sha256_hex(recorded) == d.input_hash
    assert recorded["arguments"] == DELETE and recorded["counts"] == {"live_in_flight": 0}
    assert recorded["contract"]["risk"] == "HIGH" and recorded["agent"]["id"] == "ops"


async def test_decisions_recorded_without_their_input_are_rebuilt_or_skipped(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    await record_history(s)
    old = DecisionRecord(
        decision_id="dec_from_before_inputs",
        agent_id="ops",
        tool="delete_record",
        confidence=0.9,
        verdict="PENDING_APPROVAL",
        mode="LIVE",
        needs_approval=True,
        reasons=["recorded long ago"],
        policy_revision="0" * 64,
        engine="embedded",
        input_hash="0" * 64,
        decided_at=time.time() - 3600,
    )
    await s.server.journal.record(DecisionMade(old, None, orjson.dumps(DELETE).decode()))
    folder = candidate(policy_dir, tmp_path, HIGH_LIVE, "    live: 0.95\n")

    _, report = await replay(s, folder)
    assert (report.decisions, report.unrecorded_inputs, report.reconstructed) == (5, 1, 1)
    assert report.narrowing == 3  # the two recorded 0.9 deletes and the rebuilt one
    samples = [x for t in report.transitions for x in t.samples if x.reconstructed]
    assert [x.decision_id for x in samples] == ["dec_from_before_inputs"]

    _, report = await replay(s, folder, skip_unrecorded=True)
    assert (report.decisions, report.replayed, report.skipped, report.narrowing) == (5, 4, 1, 2)

    code, out = await run_cli(
        ["--server", f"127.0.0.1:{s.server.port}", "policy", "replay", str(folder)]
    )
    assert code == 0
    assert "1 decisions were recorded before inputs were kept" in out


async def test_an_empty_range_says_so_and_exits_0(
    start_server: StartServer, policy_dir: Path
) -> None:
    s = await start_server()
    await record_history(s)
    _, report = await replay(s, policy_dir, agent_id="mailer")
    assert report.decisions == 0 and report.message == (
        "no recorded decisions in the range: nothing to replay"
    )
    code, out = await run_cli(
        [
            "--server",
            f"127.0.0.1:{s.server.port}",
            "policy",
            "replay",
            str(policy_dir),
            "--since",
            "2999-01-01",
        ]
    )
    assert code == 0 and "no recorded decisions in the range" in out


async def test_a_candidate_that_does_not_check_is_refused_and_nothing_is_loaded(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    await record_history(s)
    before = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    broken = candidate(policy_dir, tmp_path, HIGH_LIVE, "    live: 0.95\n")
    (broken / "interlock/decision/bad.rego").write_text("package interlock.decision\n\nx := {\n")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay(s, broken)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not compile" in (info.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay(s, policy_dir, tool="launch_rocket")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'launch_rocket' is not in the candidate's catalog" in (info.value.details() or "")
    assert details(info.value)[0] == "UNKNOWN_TOOL"

    after = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert after.revision == before.revision and after.reloads == 0

    code, _ = await run_cli(
        ["--server", f"127.0.0.1:{s.server.port}", "policy", "replay", str(broken)]
    )
    assert code == 1


async def test_a_candidate_without_a_tool_fails_on_its_decisions(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    await record_history(s)
    folder = candidate(policy_dir, tmp_path, HIGH_LIVE, HIGH_LIVE)
    agents = folder / "interlock/agents/data.yaml"
    text = agents.read_text()
    cut = text.index("ops:")
    agents.write_text(text[:cut] + text[text.index("readonly:") :])
    _, report = await replay(s, folder)
    assert (report.decisions, report.replayed, report.failures) == (4, 1, 3)
    assert report.errors[0].message == "agent 'ops' is not in the candidate's catalog"
    code, out = await run_cli(
        ["--server", f"127.0.0.1:{s.server.port}", "policy", "replay", str(folder)]
    )
    assert code == 1 and "failures (3; the first 3)" in out


async def run_cli(argv: list[str]) -> tuple[int, str]:
    """The ``interlock`` command as a user runs it (a subprocess), minus the
    leading ``--server HOST:PORT`` it is given."""
    from tests.test_cli import run

    result = await run(*argv)
    return result.code, result.out + result.err
