"""The seed's batch run: ``interlock run-plans`` and ``interlock.batch.run_plans``.

Each test runs a real in-process server with real workers and approver over
gRPC (the CLI ones in a subprocess) and reads the seven files it wrote.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from interlock.batch import FILES, ApprovalRequest, RuleError, parse_fail, parse_rule, run_plans

from tests.conftest import POLICIES
from tests.test_cli import run

SEED_PLAN = {
    "plan_id": "plan_1",
    "agent_assignments": {
        "agent1": ["vision_inspect", "form_fill"],
        "agent2": ["button_click"],
    },
    "execution_order": ["vision_inspect", "form_fill", "button_click"],
    "confidence_scores": {"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9},
}
"""The plan of the seed's Quick Start, as written there."""


def step(step_id: str, tool: str, agent: str, arguments: dict[str, Any], **extra: Any) -> Any:
    return {
        "step_id": step_id,
        "tool": tool,
        "agent_id": agent,
        "confidence": extra.pop("confidence", 0.9),
        "arguments": arguments,
        **extra,
    }


def delete(i: int) -> Any:
    return step(
        f"d{i:02}", "delete_record", "ops", {"record_id": f"AB-{1000 + i}", "reason": "gdpr"}
    )


EMAIL = {"to": ["ana@example.com"], "subject": "Invoice", "body": "Hello"}
CONFLICT_PLANS = [
    # RESOURCE: button_click runs one at a time; two parallel clicks are chained.
    {
        "plan_id": "resource",
        "steps": [
            step("c1", "button_click", "agent2", {"selector": "#save"}),
            step("c2", "button_click", "agent2", {"selector": "#submit"}),
        ],
    },
    # ORDERING: the compensating form_clear was listed before form_fill.
    {
        "plan_id": "ordering",
        "agent_assignments": {"agent1": ["form_clear", "form_fill"]},
        "execution_order": ["form_clear", "form_fill"],
        "confidence_scores": {"form_clear": 0.6, "form_fill": 0.7},
    },
    # RATE_LIMIT and TIMEOUT: 11 deletions, 10 allowed a minute; the 11th would
    # wait 60 s, past delete_record's 30 s timeout, so it is cancelled.
    {"plan_id": "rate_and_timeout", "steps": [delete(i) for i in range(1, 12)]},
    # DUPLICATE_ACTION: the same irreversible email twice; the second is skipped.
    {
        "plan_id": "duplicate",
        "steps": [
            step("e1", "send_email", "mailer", EMAIL),
            step("e2", "send_email", "ops", EMAIL),
        ],
    },
    # PERMISSION: agent1 may not click.
    {"plan_id": "permission", "steps": [step("c1", "button_click", "agent1", {"selector": "#x"})]},
    # A rollback: form_fill runs LIVE, then vision_inspect fails (--fail), so the
    # fill is undone by form_clear.
    {
        "plan_id": "rollback",
        "steps": [
            step("fill", "form_fill", "agent1", {"form_id": "signup", "fields": {"a": "b"}}),
            step("look", "vision_inspect", "agent1", {"target": "#r"}, depends_on=["fill"]),
        ],
    },
]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def run_plans_cli(tmp_path: Path, plans: Any, *args: str, jsonl: bool = False) -> Any:
    source = tmp_path / ("plans.jsonl" if jsonl else "plans.json")
    if jsonl:
        source.write_text("".join(json.dumps(p) + "\n" for p in plans))
    else:
        source.write_text(json.dumps(plans, indent=2))
    out = tmp_path / "out"
    result = await run(
        "run-plans", str(source), "--out", str(out), "--policy-dir", str(POLICIES), *args
    )
    return result, out


async def test_run_plans_on_the_seeds_example_plan(tmp_path: Path) -> None:
    result, out = await run_plans_cli(tmp_path, [SEED_PLAN])
    assert result.code == 0, result.err
    assert "plan plan_1: SUCCEEDED" in result.out
    assert "steps by mode and outcome: DRY_RUN SUCCEEDED 3" in result.out
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(FILES)

    summary = read_json(out / "orchestration_summary.json")
    assert summary["plans_processed"] == 1 and summary["plans_succeeded"] == 1
    # Without --live nothing runs LIVE, although vision_inspect at 0.8 could.
    assert summary["steps"]["by_mode_and_outcome"] == {"DRY_RUN": {"SUCCEEDED": 3}}
    assert summary["run"]["settings"]["dry_run_only"] is True
    [plan] = summary["plan_results"]
    assert [s["step_id"] for s in plan["steps"]] == ["vision_inspect", "form_fill", "button_click"]

    log = read_jsonl(out / "tool_execution_log.jsonl")
    assert [(r["kind"], r["tool"]) for r in log] == [
        ("decision", "vision_inspect"),
        ("result", "vision_inspect"),
        ("decision", "form_fill"),
        ("result", "form_fill"),
        ("decision", "button_click"),
        ("result", "button_click"),
    ]
    assert {r["mode"] for r in log} == {"DRY_RUN"}
    transitions = read_jsonl(out / "execution_state_transitions.jsonl")
    assert ("RUNNING", "SUCCEEDED") in {(t.get("from_state"), t["to_state"]) for t in transitions}
    conflicts = read_json(out / "tool_conflicts.json")
    assert conflicts["total"] == 0
    assert {t: v["detected"] for t, v in conflicts["by_type"].items()} == dict.fromkeys(
        ("RESOURCE", "ORDERING", "RATE_LIMIT", "DUPLICATE_ACTION", "PERMISSION", "TIMEOUT"), 0
    )
    assert (out / "rollback_events.jsonl").read_text() == ""
    assert isinstance(read_jsonl(out / "learning_signals.jsonl"), list)
    health = read_json(out / "system_health.json")
    assert 0 <= health["score"] <= 100 and health["status"]

    # A second run into the same folder replaces the first one's files.
    again, _ = await run_plans_cli(tmp_path, SEED_PLAN)
    assert again.code == 0, again.err
    assert len(read_jsonl(out / "tool_execution_log.jsonl")) == 6


async def test_plans_raising_every_conflict_type_and_a_rollback(tmp_path: Path) -> None:
    result, out = await run_plans_cli(
        tmp_path,
        CONFLICT_PLANS,
        "--live",
        "--approve",
        "all",
        "--fail",
        "vision_inspect",
        jsonl=True,
    )
    assert result.code == 1
    for plan_id, why in (
        ("rate_and_timeout", "longer than its 30 s timeout"),
        ("permission", "agent agent1 lacks permission ui.click"),
        ("rollback", "simulated failure (--fail vision_inspect)"),
    ):
        assert f"error: plan {plan_id} did not succeed:" in result.err
        assert why in result.err
    for plan_id in ("resource", "ordering", "duplicate"):
        assert f"plan {plan_id}: SUCCEEDED" in result.out
        assert f"error: plan {plan_id}" not in result.err
    assert "plan rollback: ROLLED_BACK" in result.out

    conflicts = read_json(out / "tool_conflicts.json")
    detected = {t: v["detected"] for t, v in conflicts["by_type"].items()}
    assert all(detected[t] >= 1 for t in detected), detected
    assert len(detected) == 6
    assert {(c["plan_id"], c["type"]) for c in conflicts["conflicts"]} >= {
        ("resource", "RESOURCE"),
        ("ordering", "ORDERING"),
        ("rate_and_timeout", "RATE_LIMIT"),
        ("rate_and_timeout", "TIMEOUT"),
        ("duplicate", "DUPLICATE_ACTION"),
        ("permission", "PERMISSION"),
    }

    rollbacks = read_jsonl(out / "rollback_events.jsonl")
    assert rollbacks and {r["plan_id"] for r in rollbacks} == {"rollback"}
    assert any("fill" in json.dumps(r) for r in rollbacks)

    summary = read_json(out / "orchestration_summary.json")
    assert summary["plans_processed"] == 6 and summary["plans_succeeded"] == 3
    assert summary["plans_by_state"] == {"FAILED": 2, "ROLLED_BACK": 1, "SUCCEEDED": 3}
    assert summary["conflicts"]["by_type"] == detected
    assert summary["rollbacks"]["events"] == len(rollbacks)
    assert summary["approvals"]["approved"] >= 3  # two clicks and an email
    assert summary["steps"]["by_mode_and_outcome"]["LIVE"]["ROLLED_BACK"] == 1
    by_plan = {p["plan_id"]: p for p in summary["plan_results"]}
    assert by_plan["duplicate"]["steps"][1]["outcome"] == "SKIPPED"

    log = read_jsonl(out / "tool_execution_log.jsonl")
    assert {r["plan_id"] for r in log} >= {"resource", "duplicate", "rollback", "ordering"}
    assert any(r["mode"] == "LIVE" and r["kind"] == "result" for r in log)
    transitions = read_jsonl(out / "execution_state_transitions.jsonl")
    assert ("rollback", "ROLLED_BACK") in {(t.get("plan_id"), t["to_state"]) for t in transitions}
    assert isinstance(read_jsonl(out / "learning_signals.jsonl"), list)
    health = read_json(out / "system_health.json")
    assert health["score"] == summary["health_score"]


async def test_fail_makes_the_nth_call_of_a_tool_fail(tmp_path: Path) -> None:
    fills = [
        step(f"f{i}", "form_fill", "agent1", {"form_id": f"form{i}", "fields": {"a": "b"}})
        for i in (1, 2, 3)
    ]
    fills[1]["depends_on"], fills[2]["depends_on"] = ["f1"], ["f2"]
    result, out = await run_plans_cli(
        tmp_path, {"plan_id": "fills", "steps": fills}, "--fail", "form_fill:2"
    )
    assert result.code == 1
    assert "error: plan fills did not succeed: FAILED:" in result.err
    assert "simulated failure (--fail form_fill:2): call 2 of form_fill" in result.err
    [plan] = read_json(out / "orchestration_summary.json")["plan_results"]
    assert [(s["step_id"], s["outcome"]) for s in plan["steps"]] == [
        ("f1", "SUCCEEDED"),
        ("f2", "FAILED"),
        ("f3", "CANCELLED"),
    ]

    bad = await run("run-plans", str(tmp_path / "plans.json"), "--fail", "form_fill:0")
    assert bad.code == 2 and "N must be a whole number from 1" in bad.err


def held_plans() -> list[Any]:
    """Two calls that need an approval when LIVE (irreversible), at 0.9 and 0.85."""
    return [
        {"plan_id": "mail", "steps": [step("e", "send_email", "mailer", EMAIL, confidence=0.9)]},
        {
            "plan_id": "click",
            "steps": [step("c", "button_click", "agent2", {"selector": "#b"}, confidence=0.85)],
        },
    ]


async def test_approve_rules_answer_the_approval_gate(tmp_path: Path) -> None:
    result, out = await run_plans_cli(
        tmp_path, held_plans(), "--live", "--approve", "confidence>0.88 and risk!=HIGH"
    )
    assert result.code == 1
    assert "plan mail: SUCCEEDED" in result.out
    assert "error: plan click did not succeed:" in result.err
    assert "confidence>0.88 and risk!=HIGH" in result.err  # the denial names the rule
    summary = read_json(out / "orchestration_summary.json")
    assert summary["approvals"] == {"approved": 1, "denied": 1, "unanswered": 0}
    mail = next(p for p in summary["plan_results"] if p["plan_id"] == "mail")
    assert mail["steps"][0]["mode"] == "LIVE"

    everything = await run_plans_cli(tmp_path, held_plans(), "--live", "--approve", "all")
    assert everything[0].code == 0, everything[0].err
    nothing = await run_plans_cli(tmp_path, held_plans(), "--live")  # default: none
    assert nothing[0].code == 1
    assert "plan mail did not succeed" in nothing[0].err

    for rule, message in (
        ("confidence>>0.8", "expected a value"),
        ("__import__('os').system('x')", "cannot read"),
        ("risk>HIGH", "compared with == or !="),
        ("confidence>0.8 or tool==x", "expected 'and'"),
        ("colour==red", "unknown field 'colour'"),
    ):
        bad = await run("run-plans", str(tmp_path / "plans.json"), "--approve", rule)
        assert bad.code == 2, rule
        assert message in bad.err, (rule, bad.err)


def test_approval_rules_and_fail_specs() -> None:
    request = ApprovalRequest("apr_1", "send_email", "MEDIUM", 0.85, "mailer", {})
    assert parse_rule("all")(request) and not parse_rule("none")(request)
    assert parse_rule("confidence>0.8")(request)
    assert not parse_rule("confidence >= 0.9")(request)
    assert parse_rule("tool==send_email and risk!=high")(request)
    assert not parse_rule('tool=="send_email" and agent_id==ops')(request)
    with pytest.raises(RuleError):
        parse_rule("confidence>nan")
    with pytest.raises(RuleError):
        parse_rule("")
    assert str(parse_fail("form_fill:3")) == "form_fill:3"
    assert parse_fail("form_fill").fails("form_fill", 7)
    assert not parse_fail("form_fill:3").fails("form_fill", 2)


async def test_the_python_api_with_an_approval_callable(tmp_path: Path) -> None:
    seen: list[ApprovalRequest] = []

    def approve(a: ApprovalRequest) -> bool:
        seen.append(a)
        return a.confidence > 0.88

    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(held_plans()))
    result = await asyncio.to_thread(
        run_plans,
        str(plans),
        out_dir=str(tmp_path / "out"),
        approve=approve,
        live=True,
        policy_dir=str(POLICIES),
    )
    assert not result.ok
    assert result.failures[0][0] == "click"
    s = result.summary
    assert s["plans_processed"] == 2 and s["plans_succeeded"] == 1
    assert s["steps"]["by_mode"] == {"LIVE": 1, "UNDECIDED": 1} or "LIVE" in s["steps"]["by_mode"]
    assert s["approvals"] == {"approved": 1, "denied": 1, "unanswered": 0}
    assert set(s["conflicts"]["by_type"]) == {
        "RESOURCE",
        "ORDERING",
        "RATE_LIMIT",
        "DUPLICATE_ACTION",
        "PERMISSION",
        "TIMEOUT",
    }
    assert {"rollbacks", "signals", "health_score"} <= set(s)
    by_tool = {a.tool: a for a in seen}
    assert by_tool["send_email"].risk == "MEDIUM" and by_tool["send_email"].agent_id == "mailer"
    assert by_tool["send_email"].arguments == EMAIL
    assert by_tool["button_click"].confidence == pytest.approx(0.85)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == sorted(FILES)


async def test_an_unanswered_approval_expires_and_the_plan_says_so(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    config = policies / "interlock" / "config" / "data.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["approvals"]["default"]["ttl_seconds"] = 1
    doc["approvals"]["default"]["escalation"] = []
    config.write_text(yaml.safe_dump(doc))
    plans = [held_plans()[0]]
    result = await asyncio.to_thread(
        run_plans,
        plans,
        out_dir=str(tmp_path / "out"),
        approve=lambda a: None,
        live=True,
        policy_dir=str(policies),
        timeout=60.0,
    )
    [(plan_id, why)] = result.failures
    assert plan_id == "mail"
    assert "expired" in why.lower(), why
    assert result.summary["approvals"]["unanswered"] == 1


UNKNOWN_AGENT_PLAN = {
    "plan_id": "scan",
    "steps": [step("look", "vision_inspect", "scanner", {"target": "#x"})],
}


async def test_an_unknown_agent_is_refused_with_the_entry_to_add(tmp_path: Path) -> None:
    result, out = await run_plans_cli(tmp_path, UNKNOWN_AGENT_PLAN)
    assert result.code == 1
    assert "error: plan scan did not succeed: refused: INVALID_ARGUMENT" in result.err
    assert "agents are registered in policies/interlock/agents/data.yaml" in result.err
    assert "scanner: {description: ..., permissions: [screen.read]}" in result.err
    summary = read_json(out / "orchestration_summary.json")
    assert summary["plans_by_state"] == {"REFUSED": 1}
    assert all((out / name).exists() for name in FILES)


async def test_grants_add_an_agent_for_one_run(tmp_path: Path) -> None:
    shipped = (POLICIES / "interlock" / "agents" / "data.yaml").read_text()
    grants = tmp_path / "grants.yaml"
    grants.write_text("scanner:\n  description: a test scanner\n  permissions: [screen.read]\n")
    result, _ = await run_plans_cli(tmp_path, UNKNOWN_AGENT_PLAN, "--grants", str(grants))
    assert result.code == 0, result.err
    assert "plan scan: SUCCEEDED" in result.out
    assert (POLICIES / "interlock" / "agents" / "data.yaml").read_text() == shipped
    # The next run without --grants does not know the agent.
    again, _ = await run_plans_cli(tmp_path, UNKNOWN_AGENT_PLAN)
    assert again.code == 1 and "unknown agent 'scanner'" in again.err


async def test_the_config_file_takes_the_same_switches(tmp_path: Path) -> None:
    config = tmp_path / "batch.yaml"
    config.write_text(
        "dry_run_only: false\nmax_live: 2\nlive_confidence_floor: 0.5\n"
        "approval_required_for_high_risk: false\nrollback_on_failure: false\n"
        "approve: confidence>0.88\nfail: [vision_inspect:1]\n"
    )
    result = await asyncio.to_thread(
        run_plans,
        [SEED_PLAN],
        out_dir=str(tmp_path / "out"),
        config_file=str(config),
        policy_dir=str(POLICIES),
    )
    settings = read_json(tmp_path / "out" / "orchestration_summary.json")["run"]["settings"]
    assert settings["dry_run_only"] is True  # no --live: a config file cannot turn it off
    assert settings["max_live"] == 2 and settings["live_confidence_floor"] == 0.5
    assert settings["approval_required_for_high_risk"] is False
    assert settings["rollback_on_failure"] is False
    assert settings["approve"] == "confidence>0.88" and settings["fail"] == ["vision_inspect:1"]
    [(plan_id, why)] = result.failures
    assert plan_id == "plan_1" and "--fail vision_inspect:1" in why
