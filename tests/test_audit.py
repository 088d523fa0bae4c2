"""The audit files' hash chains and schemas, against a real server.

``interlock audit verify`` runs as a user runs it (the console script, a
subprocess) on the data directory of a stopped server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from interlock.audit import (
    ACCESS_DENIALS,
    FILES,
    GENESIS,
    LEARNING_SIGNALS,
    POLICY_CHANGES,
    ROLLBACK_EVENTS,
    STATE_TRANSITIONS,
    TOOL_EXECUTION_LOG,
    parts,
    record_hash,
    verify_dir,
)
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import grants_pb2, grants_pb2_grpc, plans_pb2, types_pb2

from tests.conftest import ROOT, Running, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.stored import stored as stored_rows
from tests.helpers.workers import run_refund_plan
from tests.test_approvals import APPROVE, EMAIL
from tests.test_cli import run
from tests.test_plans_api import spec, step
from tests.test_signals import LIMIT, decide_and_report

SCHEMAS = ROOT / "docs" / "schemas"
SUMMARIES = ("orchestration_summary.json", "tool_conflicts.json", "system_health.json")


async def stop(s: Running) -> None:
    await s.channel.close()
    await s.server.stop(grace=0.1)


async def decisions(s: Running, n: int) -> list[str]:
    return [
        (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision.decision_id
        for _ in range(n)
    ]


async def verify(data: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = await run("audit", "verify", str(data), "--json", *extra)
    assert done.code in (0, 1), done.err
    return done.code, json.loads(done.out)


def problem(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [f for f in report["files"] if f["file"] == name]
    assert found["problem"] is not None, found
    return dict(found["problem"])


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# The chain ----------------------------------------------------------------------------


async def test_every_line_is_chained_and_verify_passes(start_server: StartServer) -> None:
    s = await start_server()
    await decisions(s, 4)
    await stop(s)
    log = [json.loads(x) for x in lines_of(s.data_dir / TOOL_EXECUTION_LOG)]
    assert log[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(log):
        assert after["prev_hash"] == before["hash"] and after["seq"] > before["seq"]
    assert all(x["hash"] == record_hash(x) for x in log)
    # The outbox holds exactly the lines appended.
    db = stored_rows(s)
    stored = [
        r[0]
        for r in db.execute(
            "SELECT line FROM audit_outbox WHERE file=? ORDER BY seq", (TOOL_EXECUTION_LOG,)
        )
    ]
    assert stored == [x.rstrip("\n") for x in lines_of(s.data_dir / TOOL_EXECUTION_LOG)]

    rc, report = await verify(s.data_dir)
    assert rc == 0 and report["ok"], report
    done = await run("audit", "verify", str(s.data_dir))
    assert done.code == 0 and "all audit files verify" in done.out


async def test_the_chain_continues_across_restarts(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "again"
    s = await start_server(data_dir=str(data))
    await decisions(s, 2)
    await stop(s)
    s = await start_server(data_dir=str(data))
    await decisions(s, 2)
    await stop(s)
    assert len(lines_of(data / TOOL_EXECUTION_LOG)) == 4
    assert all(r.ok for r in verify_dir(data))


def _truncate_last(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


def _edit_middle(lines: list[str]) -> list[str]:
    record = json.loads(lines[2])
    record["agent_id"] = "mallory"
    return [*lines[:2], json.dumps(record, sort_keys=True) + "\n", *lines[3:]]


def _delete_middle(lines: list[str]) -> list[str]:
    return [*lines[:2], *lines[3:]]


def _swap(lines: list[str]) -> list[str]:
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


@pytest.mark.parametrize(
    ("tamper", "line", "words"),
    [
        (_truncate_last, 6, "not JSON (truncated?)"),
        (_edit_middle, 3, "hash mismatch (edited?)"),
        (_delete_middle, 3, "prev_hash does not match line 2"),
        (_swap, 3, "prev_hash does not match line 2"),
    ],
    ids=["truncated", "edited", "deleted", "reordered"],
)
async def test_tampering_is_found_at_its_line(
    start_server: StartServer, tamper: Any, line: int, words: str
) -> None:
    s = await start_server()
    await decisions(s, 6)
    await stop(s)
    path = s.data_dir / TOOL_EXECUTION_LOG
    path.write_text("".join(tamper(lines_of(path))))

    rc, report = await verify(s.data_dir)
    assert rc == 1 and not report["ok"]
    found = problem(report, TOOL_EXECUTION_LOG)
    assert found["part"] == TOOL_EXECUTION_LOG
    assert found["line"] == line and words in found["message"], found
    # The other files are untouched and still verify.
    assert [f["file"] for f in report["files"] if f["ok"]] == [
        n for n in FILES if n != TOOL_EXECUTION_LOG
    ]
    done = await run("audit", "verify", str(s.data_dir))
    assert done.code == 1
    assert f"FAIL  {TOOL_EXECUTION_LOG}: {TOOL_EXECUTION_LOG} line {line}: {words}" in done.out


async def test_a_removed_first_line_is_found(start_server: StartServer) -> None:
    s = await start_server()
    await decisions(s, 3)
    await stop(s)
    path = s.data_dir / TOOL_EXECUTION_LOG
    path.write_text("".join(lines_of(path)[1:]))
    (report, *_) = verify_dir(s.data_dir)
    assert report.problem is not None and report.problem.line == 1
    assert "start of the chain" in report.problem.message


async def test_verify_refuses_a_missing_directory(tmp_path: Path) -> None:
    done = await run("audit", "verify", str(tmp_path / "nowhere"))
    assert done.code == 2 and "not a directory" in done.err


# Rotation -----------------------------------------------------------------------------


async def test_rotation_keeps_one_chain_across_parts(start_server: StartServer) -> None:
    s = await start_server()
    s.server.audit.rotate_bytes = 2400  # a few lines per part
    ids = await decisions(s, 12)
    await stop(s)
    rotated = parts(s.data_dir, TOOL_EXECUTION_LOG)
    assert len(rotated) >= 2
    assert [p.name for p in rotated] == [
        f"{TOOL_EXECUTION_LOG}.{n}" for n in range(1, len(rotated) + 1)
    ]
    every = [
        json.loads(x) for p in [*rotated, s.data_dir / TOOL_EXECUTION_LOG] for x in lines_of(p)
    ]
    assert [x["decision_id"] for x in every] == ids
    assert all(p.stat().st_size <= 2400 for p in rotated)
    rc, report = await verify(s.data_dir)
    assert rc == 0, report
    (log,) = [f for f in report["files"] if f["file"] == TOOL_EXECUTION_LOG]
    assert log["lines"] == 12 and len(log["parts"]) == len(rotated) + 1

    # A line removed at the seam between two parts is found in the newer part.
    second = rotated[1]
    second.write_text("".join(lines_of(second)[1:]))
    rc, report = await verify(s.data_dir)
    found = problem(report, TOOL_EXECUTION_LOG)
    assert rc == 1 and found["part"] == second.name and found["line"] == 1
    assert f"of {rotated[0].name}" in found["message"]


async def test_a_restart_after_rotation_restores_nothing_twice(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "rotated"
    s = await start_server(data_dir=str(data))
    s.server.audit.rotate_bytes = 2400
    await decisions(s, 8)
    await stop(s)
    (data / TOOL_EXECUTION_LOG).unlink(missing_ok=True)  # rotated just before a crash
    s = await start_server(data_dir=str(data))
    await decisions(s, 1)
    await stop(s)
    assert all(r.ok for r in verify_dir(data)), verify_dir(data)


# Recovery -----------------------------------------------------------------------------


async def test_lines_restored_after_a_crash_verify(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "crash"
    s = await start_server(data_dir=str(data))
    await decisions(s, 3)
    await stop(s)
    log_file = data / TOOL_EXECUTION_LOG
    lines = lines_of(log_file)
    # A power cut: the last line is gone and the one before is torn.
    log_file.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    assert not verify_dir(data)[0].ok
    again = await start_server(data_dir=str(data))
    await decisions(again, 1)
    await stop(again)
    assert lines_of(log_file)[:3] == lines
    rc, report = await verify(data)
    assert rc == 0, report


# Schemas ------------------------------------------------------------------------------


def schema(name: str) -> dict[str, Any]:
    document = json.loads((SCHEMAS / f"{name.rsplit('.', 1)[0]}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return dict(document)


async def test_every_line_and_summary_matches_its_schema(start_server: StartServer) -> None:
    s = await start_server(approval_required_for_high_risk=False)
    # Decisions, results and the signals they give.
    await decide_and_report(s, "vision_inspect", 0.9, 10)
    # A plan with a rollback.
    plan = await run_refund_plan(s.channel, s.cp)
    assert plan.state == plans_pb2.PLAN_STATE_ROLLED_BACK, plan.message
    # Conflicts, repeated into a pattern.
    for i in range(3):
        await s.cp.SubmitPlan(
            spec(
                f"clicks{i}",
                step("c1", "button_click", "agent2", 0.1, {"selector": f"#{i}a"}),
                step("c2", "button_click", "agent2", 0.1, {"selector": f"#{i}b"}),
            )
        )
    # An approval requested, approved and used (dev mode: the dev principal approves).
    held = await s.cp.RequestToolCall(tool_call("mailer", "send_email", EMAIL, 0.85))
    approval_id = held.decision.approval_id
    await s.cp.ResolveApproval(
        pb.ResolveApprovalRequest(approval_id=approval_id, resolution=APPROVE, reason="ok")
    )
    used = tool_call("mailer", "send_email", EMAIL, 0.85)
    used.approval_id = approval_id
    assert (await s.cp.RequestToolCall(used)).decision.verdict == types_pb2.VERDICT_ALLOW
    # A grant created, used by a held call, and revoked (docs/grants.md).
    grants = grants_pb2_grpc.GrantServiceStub(s.channel)
    create = grants_pb2.CreateGrantRequest(agent_id="mailer", tool="send_email", max_uses=1)
    create.expires_at.FromSeconds(int(time.time()) + 600)
    grant = (await grants.CreateGrant(create)).grant
    covered = await s.cp.RequestToolCall(tool_call("mailer", "send_email", EMAIL, 0.85))
    assert covered.grant_id == grant.grant_id
    await grants.RevokeGrant(grants_pb2.RevokeGrantRequest(grant_id=grant.grant_id, reason="done"))
    await asyncio.wait_for(s.server.signals.drain(), LIMIT)
    await s.server.health_monitor.write()
    await stop(s)

    # access_denials.jsonl takes authentication: tests/test_security.py checks its lines;
    # policy_changes.jsonl takes a reload: tests/test_policy_gate.py checks its lines.
    for name in (f for f in FILES if f not in (ACCESS_DENIALS, POLICY_CHANGES)):
        validator = jsonschema.Draft202012Validator(schema(name))
        lines = lines_of(s.data_dir / name)
        assert lines, name
        for number, line in enumerate(lines, start=1):
            errors = [e.message for e in validator.iter_errors(json.loads(line))]
            assert not errors, f"{name} line {number}: {errors}"
    kinds = {json.loads(x)["kind"] for x in lines_of(s.data_dir / LEARNING_SIGNALS)}
    assert {"TOOL_RELIABILITY", "EXECUTION_MODE_ANALYSIS", "CONFLICT_PATTERN"} <= kinds
    assert len(lines_of(s.data_dir / ROLLBACK_EVENTS)) >= 2
    assert len(lines_of(s.data_dir / STATE_TRANSITIONS)) > 10
    for name in SUMMARIES:
        document = json.loads((s.data_dir / name).read_text())
        errors = [
            e.message for e in jsonschema.Draft202012Validator(schema(name)).iter_errors(document)
        ]
        assert not errors, f"{name}: {errors}"
    rc, report = await verify(s.data_dir)
    assert rc == 0, report
