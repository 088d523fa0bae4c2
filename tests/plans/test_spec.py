"""Plan submissions: both formats, the mapping to PlanSpec, and validation."""

from __future__ import annotations

import copy
import math
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from interlock.api.plan_specs import from_proto
from interlock.contracts import Catalog
from interlock.errors import FieldViolation, InvalidArgument
from interlock.plans.model import PlanSpec, StepSpec
from interlock.plans.spec import (
    MAX_VIOLATIONS,
    parse_json_plan,
    parse_phase21,
    parse_spec,
    topological_order,
    validate,
)
from interlock.policy.bundle import PolicySet
from interlock.v1 import control_plane_pb2, plans_pb2

from tests.conftest import POLICIES


def unknown(agent: str, permissions: str) -> str:
    """The unknown-agent problem: where agents are registered and the entry to add."""
    return (
        f"unknown agent {agent!r}: agents are registered in policies/interlock/agents/data.yaml; "
        f"add the entry {agent}: {{description: ..., permissions: [{permissions}]}}"
    )


PHASE21_EXAMPLE: dict[str, Any] = {
    "plan_id": "plan_1",
    "agent_assignments": {"agent1": ["vision_inspect", "form_fill"], "agent2": ["button_click"]},
    "execution_order": ["vision_inspect", "form_fill", "button_click"],
    "confidence_scores": {"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9},
}


def spec_step(step_id: str, tool: str, agent: str, **fields: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "step_id": step_id,
        "tool": tool,
        "agent_id": agent,
        "arguments": ARGUMENTS.get(tool, {}),
        "confidence": 0.9,
    }
    step.update(fields)
    return step


ARGUMENTS: dict[str, dict[str, Any]] = {
    "crm_lookup": {"record_id": "DE-1234"},
    "vision_inspect": {"target": "#signup"},
    "form_fill": {"form_id": "signup", "fields": {"name": "Ada"}},
    "button_click": {"selector": "#submit"},
    "send_email": {"to": ["ada@example.com"], "subject": "Welcome", "body": "Hello"},
}


def parallel_spec() -> dict[str, Any]:
    """look and inspect start together; fill waits for inspect; mail and click for fill."""
    return {
        "plan_id": "plan_2",
        "labels": {"team": "growth"},
        "steps": [
            spec_step("look", "crm_lookup", "mailer"),
            spec_step("inspect", "vision_inspect", "agent1"),
            spec_step("fill", "form_fill", "agent1", depends_on=["inspect"]),
            spec_step("mail", "send_email", "mailer", depends_on=["look", "fill"]),
            spec_step("click", "button_click", "agent2", depends_on=["fill"]),
        ],
    }


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_data(PolicySet.from_dir(POLICIES).data)


def violations(plan: PlanSpec, catalog: Catalog, **kwargs: Any) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as caught:
        validate(plan, catalog, **kwargs)
    err = caught.value
    assert err.reason == "INVALID_PLAN"
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    return err.violations


def problems(doc: Any, catalog: Catalog) -> dict[str, str]:
    """field -> description (the descriptions of a repeated field joined by " | ")."""
    out: dict[str, str] = {}
    for v in violations(parse_json_plan(doc), catalog):
        out[v.field] = f"{out[v.field]} | {v.description}" if v.field in out else v.description
    return out


# Phase-21 -------------------------------------------------------------------


def test_phase21_example_becomes_three_steps_in_order(catalog: Catalog) -> None:
    """The order is a sequence, not declared dependencies: conflict detection
    checks (and may reorder) it, then chains the steps one after another."""
    plan = parse_phase21(PHASE21_EXAMPLE)
    assert plan == PlanSpec(
        plan_id="plan_1",
        steps=(
            StepSpec("vision_inspect", "vision_inspect", "agent1", 0.8, None, ()),
            StepSpec("form_fill", "form_fill", "agent1", 0.75, None, ()),
            StepSpec("button_click", "button_click", "agent2", 0.9, None, ()),
        ),
        labels={},
        source_format="phase21",
    )
    validate(plan, catalog)
    assert topological_order(plan) == ["vision_inspect", "form_fill", "button_click"]


def test_json_plans_pick_their_format() -> None:
    assert parse_json_plan(PHASE21_EXAMPLE).source_format == "phase21"
    assert parse_json_plan(parallel_spec()).source_format == "spec"
    with pytest.raises(InvalidArgument) as caught:
        parse_json_plan({"plan_id": "p", "tasks": []})
    [v] = caught.value.violations
    assert v.field == "plan"
    assert "'steps'" in v.description
    assert "'agent_assignments' and 'execution_order'" in v.description
    with pytest.raises(InvalidArgument, match="must be a JSON object, not array"):
        parse_json_plan([PHASE21_EXAMPLE])


def phase21(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PHASE21_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(phase21(plan_id=None), {"phase21.plan_id": "is required"}, id="no-plan-id"),
        pytest.param(
            phase21(plan_id="plan 1"),
            {"phase21.plan_id": "must be 1-128 characters"},
            id="bad-plan-id",
        ),
        pytest.param(
            phase21(
                agent_assignments={"agent1": ["vision_inspect", "form_fill", "button_click"]},
                execution_order=["vision_inspect", "form_fill", "button_click", "form_fill"],
            ),
            {
                "phase21.execution_order[3]": (
                    "'form_fill' is listed twice (first at phase21.execution_order[1])"
                )
            },
            id="listed-twice",
        ),
        pytest.param(
            phase21(agent_assignments={"agent1": ["vision_inspect", "form_fill"]}),
            {"phase21.execution_order[2]": "'button_click' is assigned to no agent"},
            id="assigned-to-no-agent",
        ),
        pytest.param(
            phase21(
                agent_assignments={
                    "agent1": ["vision_inspect", "form_fill"],
                    "agent2": ["button_click", "form_fill"],
                }
            ),
            {
                "phase21.agent_assignments.agent2[1]": (
                    "'form_fill' is also assigned to agent1; a tool runs under one agent"
                )
            },
            id="assigned-to-two-agents",
        ),
        pytest.param(
            phase21(
                agent_assignments={
                    "agent1": ["vision_inspect", "form_fill", "form_fill"],
                    "agent2": ["button_click"],
                }
            ),
            {"phase21.agent_assignments.agent1[2]": "'form_fill' is listed twice in agent1's"},
            id="assigned-twice-to-one-agent",
        ),
        pytest.param(
            phase21(execution_order=["vision_inspect", "button_click"]),
            {
                "phase21.agent_assignments.agent1[1]": (
                    "'form_fill' is assigned to agent1 but missing from execution_order"
                ),
                "phase21.confidence_scores.form_fill": (
                    "is a score for 'form_fill', which is not in execution_order"
                ),
            },
            id="assigned-but-not-ordered",
        ),
        pytest.param(
            phase21(confidence_scores={"vision_inspect": 0.8, "button_click": 0.9}),
            {
                "phase21.confidence_scores.form_fill": "is required: 'form_fill' is in execution_order"
            },
            id="missing-score",
        ),
        pytest.param(
            phase21(
                confidence_scores={
                    "vision_inspect": 0.8,
                    "form_fill": 0.75,
                    "button_click": 0.9,
                    "send_email": 0.5,
                }
            ),
            {
                "phase21.confidence_scores.send_email": (
                    "is a score for 'send_email', which is not in execution_order"
                )
            },
            id="score-for-a-tool-not-in-the-plan",
        ),
        pytest.param(
            phase21(
                agent_assignments={
                    "agent1": ["vision_inspect", "form_fill"],
                    "agent3": ["button_click"],
                }
            ),
            {"phase21.agent_assignments.agent3": unknown("agent3", "ui.click")},
            id="unknown-agent",
        ),
        pytest.param(
            phase21(
                agent_assignments={
                    "agent1": ["vision_inspect", "form_fill"],
                    "agent2": ["teleport"],
                },
                execution_order=["vision_inspect", "form_fill", "teleport"],
                confidence_scores={"vision_inspect": 0.8, "form_fill": 0.75, "teleport": 0.9},
            ),
            {"phase21.execution_order[2]": "unknown tool 'teleport'"},
            id="unknown-tool",
        ),
        pytest.param(
            phase21(
                confidence_scores={"vision_inspect": 1.2, "form_fill": "high", "button_click": -0.1}
            ),
            {
                "phase21.confidence_scores.vision_inspect": "must be in [0, 1], not 1.2",
                "phase21.confidence_scores.form_fill": "must be a number, not string",
                "phase21.confidence_scores.button_click": "must be in [0, 1], not -0.1",
            },
            id="bad-confidences",
        ),
        pytest.param(
            phase21(
                confidence_scores={"vision_inspect": math.nan, "form_fill": True, "button_click": 1}
            ),
            {
                "phase21.confidence_scores.vision_inspect": "must be a finite number in [0, 1], not nan",
                "phase21.confidence_scores.form_fill": "must be a number, not boolean",
            },
            id="nan-and-boolean-confidence",
        ),
        pytest.param(
            phase21(agent_assignments=["agent1"]),
            {"phase21.agent_assignments": "must be an object, not array"},
            id="assignments-not-an-object",
        ),
        pytest.param(
            phase21(execution_order="vision_inspect"),
            {"phase21.execution_order": "must be an array, not string"},
            id="order-not-a-list",
        ),
        pytest.param(
            phase21(
                agent_assignments={
                    "agent1": ["vision_inspect", "form_fill"],
                    "agent2": "button_click",
                }
            ),
            {
                "phase21.agent_assignments.agent2": "must be an array of tool names, not string",
                "phase21.execution_order[2]": "'button_click' is assigned to no agent",
            },
            id="assignment-not-a-list",
        ),
        pytest.param(
            phase21(execution_order=["vision_inspect", 7, "form_fill", "button_click"]),
            {"phase21.execution_order[1]": "must be a string, not number"},
            id="order-entry-not-a-string",
        ),
        pytest.param(
            phase21(confidence_scores=None),
            {"phase21.confidence_scores": "is required"},
            id="no-scores-reported-once",
        ),
        pytest.param(
            phase21(execution_order=[]),
            {
                "phase21.execution_order": "a plan needs at least one step",
                "phase21.agent_assignments.agent1[0]": "missing from execution_order",
                "phase21.agent_assignments.agent1[1]": "missing from execution_order",
                "phase21.agent_assignments.agent2[0]": "missing from execution_order",
                "phase21.confidence_scores.vision_inspect": "not in execution_order",
                "phase21.confidence_scores.form_fill": "not in execution_order",
                "phase21.confidence_scores.button_click": "not in execution_order",
            },
            id="no-steps",
        ),
        pytest.param(
            {**PHASE21_EXAMPLE, "steps_hint": 3},
            {"phase21.steps_hint": "unknown field; expected plan_id, agent_assignments"},
            id="unknown-field",
        ),
    ],
)
def test_phase21_problems(doc: dict[str, Any], expected: dict[str, str], catalog: Catalog) -> None:
    found = problems(doc, catalog)
    assert set(found) == set(expected)
    for field, text in expected.items():
        assert text in found[field]


def test_phase21_reports_every_problem_at_once(catalog: Catalog) -> None:
    doc = {
        "plan_id": "plan one",
        "agent_assignments": {
            "agent1": ["vision_inspect", "form_fill", 3],
            "agent3": ["crm_lookup"],
            "agent2": ["form_fill", "delete_record"],
        },
        "execution_order": [
            "vision_inspect",
            "form_fill",
            "teleport",
            "form_fill",
            None,
            "crm_lookup",
        ],
        "confidence_scores": {"vision_inspect": 1.5, "form_fill": "hi", "send_email": 0.3},
        "created_by": "phase21",
    }
    assert list(problems(doc, catalog).items()) == [
        ("phase21.agent_assignments.agent1[2]", "must be a string, not number"),
        (
            "phase21.agent_assignments.agent2[0]",
            "'form_fill' is also assigned to agent1; a tool runs under one agent",
        ),
        (
            "phase21.agent_assignments.agent2[1]",
            "'delete_record' is assigned to agent2 but missing from execution_order",
        ),
        ("phase21.agent_assignments.agent3", unknown("agent3", "crm.read")),
        ("phase21.confidence_scores.crm_lookup", "is required: 'crm_lookup' is in execution_order"),
        ("phase21.confidence_scores.form_fill", "must be a number, not string"),
        (
            "phase21.confidence_scores.send_email",
            "is a score for 'send_email', which is not in execution_order",
        ),
        ("phase21.confidence_scores.teleport", "is required: 'teleport' is in execution_order"),
        ("phase21.confidence_scores.vision_inspect", "must be in [0, 1], not 1.5"),
        (
            "phase21.created_by",
            "unknown field; expected plan_id, agent_assignments, execution_order, confidence_scores",
        ),
        (
            "phase21.execution_order[2]",
            "'teleport' is assigned to no agent in agent_assignments"
            " | unknown tool 'teleport': the catalog has no such tool",
        ),
        (
            "phase21.execution_order[3]",
            "'form_fill' is listed twice (first at phase21.execution_order[1])",
        ),
        ("phase21.execution_order[4]", "must be a string, not null"),
        (
            "phase21.plan_id",
            "must be 1-128 characters of letters, digits and _ . : @ -, starting with a letter or digit",
        ),
    ]


# Spec -----------------------------------------------------------------------


def test_spec_with_parallel_branches(catalog: Catalog) -> None:
    plan = parse_spec(parallel_spec())
    assert plan.source_format == "spec"
    assert plan.labels == {"team": "growth"}
    assert [s.step_id for s in plan.steps] == ["look", "inspect", "fill", "mail", "click"]
    assert plan.step("mail") == StepSpec(
        step_id="mail",
        tool="send_email",
        agent_id="mailer",
        confidence=0.9,
        arguments=ARGUMENTS["send_email"],
        depends_on=("look", "fill"),
    )
    assert plan.step("look").depends_on == ()
    validate(plan, catalog)
    assert topological_order(plan) == ["look", "inspect", "fill", "mail", "click"]


def test_topological_order_breaks_ties_by_submission_order(catalog: Catalog) -> None:
    doc = {
        "plan_id": "plan_3",
        "steps": [
            spec_step("mail", "send_email", "mailer", depends_on=["fill", "look"]),
            spec_step("look", "crm_lookup", "mailer"),
            spec_step("fill", "form_fill", "agent1", depends_on=["inspect"]),
            spec_step("inspect", "vision_inspect", "agent1"),
            spec_step("click", "button_click", "agent2"),
        ],
    }
    plan = parse_spec(doc)
    validate(plan, catalog)
    assert topological_order(plan) == ["look", "inspect", "fill", "mail", "click"]


def test_optional_spec_fields_may_be_absent_or_null(catalog: Catalog) -> None:
    step = {"step_id": "look", "tool": "crm_lookup", "agent_id": "mailer", "confidence": 0}
    plan = parse_spec({"plan_id": "p", "steps": [step]})
    assert plan.steps[0].arguments is None and plan.steps[0].depends_on == ()
    assert plan.steps[0].confidence == 0.0 and plan.labels == {}
    validate(plan, catalog)
    nulls = {**step, "arguments": None, "depends_on": None}
    plan = parse_spec({"plan_id": "p", "labels": None, "steps": [nulls]})
    assert plan.steps[0].arguments is None and plan.steps[0].depends_on == ()
    validate(plan, catalog)


def spec(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"plan_id": "plan_s", "steps": list(steps), **fields}


LOOK = spec_step("look", "crm_lookup", "mailer")


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param({"steps": [LOOK]}, {"spec.plan_id": "is required"}, id="no-plan-id"),
        pytest.param(
            spec(LOOK, plan_id="-plan"),
            {"spec.plan_id": "must be 1-128 characters"},
            id="bad-plan-id",
        ),
        pytest.param(
            spec(LOOK, plan_id=42),
            {"spec.plan_id": "must be a string, not number"},
            id="plan-id-type",
        ),
        pytest.param(spec(), {"spec.steps": "a plan needs at least one step"}, id="no-steps"),
        pytest.param(
            {"plan_id": "p", "steps": {"look": LOOK}},
            {"spec.steps": "must be an array, not object"},
            id="steps-not-a-list",
        ),
        pytest.param(
            spec(LOOK, spec_step("look", "crm_lookup", "mailer")),
            {
                "spec.steps[1].step_id": "step id 'look' is listed twice (first at spec.steps[0].step_id)"
            },
            id="duplicate-step-id",
        ),
        pytest.param(
            spec(spec_step("look up", "crm_lookup", "mailer")),
            {"spec.steps[0].step_id": "must be 1-128 characters"},
            id="bad-step-id",
        ),
        pytest.param(
            spec(LOOK, spec_step("zap", "teleport", "mailer", arguments={"x": 1})),
            {"spec.steps[1].tool": "unknown tool 'teleport': the catalog has no such tool"},
            id="unknown-tool",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "ghost")),
            {"spec.steps[0].agent_id": unknown("ghost", "crm.read")},
            id="unknown-agent",
        ),
        pytest.param(
            spec(LOOK, spec_step("mail", "send_email", "mailer", depends_on=["lookup"])),
            {
                "spec.steps[1].depends_on[0]": "unknown step 'lookup': no step of the plan has this id"
            },
            id="unknown-dependency",
        ),
        pytest.param(
            spec(LOOK, spec_step("mail", "send_email", "mailer", depends_on=["look", "mail"])),
            {"spec.steps[1].depends_on[1]": "step 'mail' cannot depend on itself"},
            id="self-dependency",
        ),
        pytest.param(
            spec(LOOK, spec_step("mail", "send_email", "mailer", depends_on=["look", "look"])),
            {"spec.steps[1].depends_on[1]": "'look' is listed twice"},
            id="repeated-dependency",
        ),
        pytest.param(
            spec(
                spec_step("a", "crm_lookup", "mailer", depends_on=["c"]),
                spec_step("b", "send_email", "mailer", depends_on=["a"]),
                spec_step("c", "send_email", "mailer", depends_on=["b"]),
                spec_step("d", "crm_lookup", "mailer", depends_on=["c"]),
            ),
            {
                "spec.steps[0].depends_on[0]": (
                    "dependency cycle: a -> c -> b -> a (each step depends on the next)"
                )
            },
            id="cycle",
        ),
        pytest.param(
            spec(
                spec_step("a", "crm_lookup", "mailer", depends_on=["b"]),
                spec_step("b", "crm_lookup", "mailer", depends_on=["a"]),
                spec_step("c", "crm_lookup", "mailer", depends_on=["a", "d"]),
                spec_step("d", "crm_lookup", "mailer", depends_on=["c"]),
            ),
            {
                "spec.steps[0].depends_on[0]": "dependency cycle: a -> b -> a",
                "spec.steps[2].depends_on[1]": "dependency cycle: c -> d -> c",
            },
            id="two-cycles",
        ),
        pytest.param(
            spec({k: v for k, v in LOOK.items() if k != "confidence"}),
            {"spec.steps[0].confidence": "is required"},
            id="no-confidence",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", confidence="0.9")),
            {"spec.steps[0].confidence": "must be a number, not string"},
            id="confidence-not-a-number",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", confidence=math.nan)),
            {"spec.steps[0].confidence": "must be a finite number in [0, 1], not nan"},
            id="confidence-nan",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", confidence=1.01)),
            {"spec.steps[0].confidence": "must be in [0, 1], not 1.01"},
            id="confidence-out-of-range",
        ),
        pytest.param(
            spec(
                spec_step("look", "crm_lookup", "mailer", arguments={"record_id": "x"}),
                spec_step(
                    "mail", "send_email", "mailer", arguments={"to": [], "subject": "s", "cc": 1}
                ),
            ),
            {
                "spec.steps[0].arguments.record_id": "does not match",
                "spec.steps[1].arguments.body": "'body' is a required property",
                "spec.steps[1].arguments.to": "should be non-empty",
                "spec.steps[1].arguments": "Additional properties are not allowed ('cc' was unexpected)",
            },
            id="arguments-against-the-schema-in-every-step",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", arguments={"record_id": math.inf})),
            {"spec.steps[0].arguments.record_id": "must be a finite number (not NaN or infinity)"},
            id="arguments-infinity",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", arguments={"record_id": {"DE"}})),
            {"spec.steps[0].arguments.record_id": "is not a JSON value (set)"},
            id="arguments-not-json",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", arguments=nested(70))),
            {"spec.steps[0].arguments" + ".a" * 65: "nests deeper than 64 levels"},
            id="arguments-too-deep",
        ),
        pytest.param(
            spec(spec_step("look", "crm_lookup", "mailer", arguments=["DE-1234"])),
            {"spec.steps[0].arguments": "must be an object, not array"},
            id="arguments-not-an-object",
        ),
        pytest.param(
            spec(LOOK, labels={"team": "a", "x.y": 3}),
            {'spec.labels["x.y"]': "must be a string, not number"},
            id="label-not-a-string",
        ),
        pytest.param(
            spec(LOOK, "look"), {"spec.steps[1]": "must be an object, not string"}, id="step-type"
        ),
        pytest.param(
            spec({**LOOK, "depend_on": ["x"]}),
            {"spec.steps[0].depend_on": "unknown field; expected step_id, tool, agent_id"},
            id="misspelt-depends-on",
        ),
        pytest.param(
            spec(spec_step("mail", "send_email", "mailer", depends_on="look"), LOOK),
            {"spec.steps[0].depends_on": "must be an array, not string"},
            id="depends-on-not-a-list",
        ),
    ],
)
def test_spec_problems(doc: dict[str, Any], expected: dict[str, str], catalog: Catalog) -> None:
    found = problems(doc, catalog)
    assert set(found) == set(expected)
    for field, text in expected.items():
        assert text in found[field]


def test_spec_reports_every_problem_at_once(catalog: Catalog) -> None:
    doc = {
        "plan_id": "plan 7",
        "labels": {"team": 1},
        "steps": [
            spec_step(
                "a", "crm_lookup", "mailer", arguments={"record_id": "nope"}, depends_on=["c"]
            ),
            spec_step("b", "teleport", "ghost", confidence=True, depends_on=["a", 5, "b", "zz"]),
            spec_step("c", "send_email", "ops", confidence=2, depends_on=["b"]),
            "junk",
            {"step_id": "a", "tool": 7, "agent_id": "agent2", "confidence": None},
        ],
        "owner": "me",
    }
    assert [(v.field, v.description) for v in violations(parse_json_plan(doc), catalog)] == [
        ("spec.labels.team", "must be a string, not number"),
        ("spec.owner", "unknown field; expected plan_id, labels, steps"),
        (
            "spec.plan_id",
            "must be 1-128 characters of letters, digits and _ . : @ -, starting with a letter or digit",
        ),
        ("spec.steps[0].arguments.record_id", "'nope' does not match '^[A-Z]{2}-[0-9]{4,10}$'"),
        (
            "spec.steps[0].depends_on[0]",
            "dependency cycle: a -> c -> b -> a (each step depends on the next)",
        ),
        ("spec.steps[1].agent_id", unknown("ghost", "")),
        ("spec.steps[1].confidence", "must be a number, not boolean"),
        ("spec.steps[1].depends_on[1]", "must be a string, not number"),
        ("spec.steps[1].depends_on[2]", "step 'b' cannot depend on itself"),
        ("spec.steps[1].depends_on[3]", "unknown step 'zz': no step of the plan has this id"),
        ("spec.steps[1].tool", "unknown tool 'teleport': the catalog has no such tool"),
        ("spec.steps[2].confidence", "must be in [0, 1], not 2.0"),
        ("spec.steps[3]", "must be an object, not string"),
        ("spec.steps[4].confidence", "must be a number, not null"),
        ("spec.steps[4].step_id", "step id 'a' is listed twice (first at spec.steps[0].step_id)"),
        ("spec.steps[4].tool", "must be a string, not number"),
    ]


def test_more_steps_than_the_limit(catalog: Catalog) -> None:
    steps = [spec_step(f"s{i}", "crm_lookup", "mailer") for i in range(5)]
    validate(parse_spec(spec(*steps)), catalog, max_steps=5)
    steps.append(spec_step("s5", "crm_lookup", "ghost"))
    assert [
        (v.field, v.description) for v in violations(parse_spec(spec(*steps)), catalog, max_steps=5)
    ] == [("spec.steps", "has 6 steps; the limit is 5")]


def test_a_long_report_is_cut_and_counted(catalog: Catalog) -> None:
    steps = [spec_step(f"s{i}", "crm_lookup", "ghost") for i in range(100)]
    found = violations(parse_spec(spec(*steps)), catalog)
    assert len(found) == MAX_VIOLATIONS
    assert found[0] == FieldViolation("spec.steps[0].agent_id", unknown("ghost", "crm.read"))
    assert found[-2].field == f"spec.steps[{MAX_VIOLATIONS - 2}].agent_id"
    assert found[-1] == FieldViolation(
        "spec", f"{100 - MAX_VIOLATIONS + 1} more problems not listed"
    )


def test_plans_built_in_code_get_the_paths_of_their_format(catalog: Catalog) -> None:
    spec_plan = PlanSpec("p", (StepSpec("a", "crm_lookup", "mailer", 7.0, None, ("b",)),))
    assert [v.field for v in violations(spec_plan, catalog)] == [
        "spec.steps[0].confidence",
        "spec.steps[0].depends_on[0]",
    ]
    phase21_plan = PlanSpec(
        "p",
        (
            StepSpec("form_fill", "form_fill", "agent1", 0.5),
            StepSpec("button_click", "button_click", "agent9", 0.5, None, ("form_fill",)),
        ),
        source_format="phase21",
    )
    assert [(v.field, v.description) for v in violations(phase21_plan, catalog)] == [
        ("phase21.agent_assignments.agent9", unknown("agent9", "ui.click"))
    ]


# Protos ---------------------------------------------------------------------


def test_phase21_proto_maps_like_its_json(catalog: Catalog) -> None:
    request = control_plane_pb2.SubmitPlanRequest(
        phase21=plans_pb2.Phase21Plan(
            plan_id="plan_1",
            agent_assignments={
                "agent2": plans_pb2.Phase21Plan.ToolList(tools=["button_click"]),
                "agent1": plans_pb2.Phase21Plan.ToolList(tools=["vision_inspect", "form_fill"]),
            },
            execution_order=["vision_inspect", "form_fill", "button_click"],
            confidence_scores={"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9},
        )
    )
    plan = from_proto(request)
    assert plan == parse_phase21(PHASE21_EXAMPLE)
    validate(plan, catalog)


def test_spec_proto_tells_absent_arguments_from_empty_ones(catalog: Catalog) -> None:
    request = control_plane_pb2.SubmitPlanRequest(
        spec=plans_pb2.PlanSpec(
            plan_id="plan_p",
            labels={"team": "ops"},
            steps=[
                plans_pb2.StepSpec(
                    step_id="look",
                    tool="crm_lookup",
                    agent_id="mailer",
                    arguments={"record_id": "DE-1234"},
                    confidence=0.9,
                ),
                plans_pb2.StepSpec(
                    step_id="mail",
                    tool="send_email",
                    agent_id="mailer",
                    confidence=0.6,
                    depends_on=["look"],
                ),
                plans_pb2.StepSpec(
                    step_id="clear",
                    tool="form_clear",
                    agent_id="agent1",
                    arguments=struct_pb2.Struct(),
                    confidence=0.5,
                ),
            ],
        )
    )
    plan = from_proto(request)
    assert plan.labels == {"team": "ops"} and plan.source_format == "spec"
    assert plan.step("look").arguments == {"record_id": "DE-1234"}
    assert plan.step("mail").arguments is None
    assert plan.step("mail").depends_on == ("look",)
    assert plan.step("clear").arguments == {}
    assert [(v.field, v.description) for v in violations(plan, catalog)] == [
        ("spec.steps[2].arguments.form_id", "'form_id' is a required property")
    ]


def test_spec_proto_reports_a_nan_argument_with_the_other_problems(catalog: Catalog) -> None:
    arguments = struct_pb2.Struct()
    arguments.update({"record_id": math.nan})
    request = control_plane_pb2.SubmitPlanRequest(
        spec=plans_pb2.PlanSpec(
            plan_id="",
            steps=[
                plans_pb2.StepSpec(
                    step_id="look",
                    tool="crm_lookup",
                    agent_id="nobody",
                    arguments=arguments,
                    confidence=0.5,
                )
            ],
        )
    )
    plan = from_proto(request)
    assert [(v.field, v.description) for v in violations(plan, catalog)] == [
        ("spec.plan_id", "is required"),
        ("spec.steps[0].agent_id", unknown("nobody", "crm.read")),
        ("spec.steps[0].arguments.record_id", "must be a finite number (not NaN or infinity)"),
    ]


def test_a_request_without_a_plan() -> None:
    with pytest.raises(InvalidArgument) as caught:
        from_proto(control_plane_pb2.SubmitPlanRequest())
    assert caught.value.violations == [FieldViolation("plan", "is required: set phase21 or spec")]


# Topological order ----------------------------------------------------------


def test_topological_order_refuses_a_cycle() -> None:
    plan = parse_spec(
        spec(
            spec_step("a", "crm_lookup", "mailer"),
            spec_step("b", "crm_lookup", "mailer", depends_on=["a", "d"]),
            spec_step("c", "crm_lookup", "mailer", depends_on=["b"]),
            spec_step("d", "crm_lookup", "mailer", depends_on=["c"]),
        )
    )
    with pytest.raises(InvalidArgument) as caught:
        topological_order(plan)
    assert caught.value.reason == "INVALID_PLAN"
    assert caught.value.violations == [
        FieldViolation(
            "spec.steps[1].depends_on[1]",
            "dependency cycle: b -> d -> c -> b (each step depends on the next)",
        )
    ]


@pytest.mark.parametrize(
    ("steps", "field", "text"),
    [
        ((StepSpec("a", "t", "x", 1.0, None, ("a",)),), "spec.steps[0].depends_on[0]", "a -> a"),
        (
            (StepSpec("a", "t", "x", 1.0, None, ("z",)),),
            "spec.steps[0].depends_on[0]",
            "unknown step",
        ),
        (
            (StepSpec("a", "t", "x", 1.0), StepSpec("a", "t", "x", 1.0)),
            "spec.steps[1].step_id",
            "twice",
        ),
    ],
)
def test_topological_order_refuses_an_invalid_graph(
    steps: tuple[StepSpec, ...], field: str, text: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        topological_order(PlanSpec("p", steps))
    [v] = caught.value.violations
    assert v.field == field and text in v.description


# Malformed documents --------------------------------------------------------

ODD_VALUES: list[Any] = ["x", "", 3, -1.5, math.nan, None, True, [], [None, 1], {}, {"a": None}]


def positions(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document where a value sits."""
    out = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += positions(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += positions(value, (*path, i))
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


MALFORMED = [
    (f"{name}:{'/'.join(map(str, path)) or 'root'}={value!r}", replaced(doc, path, value), value)
    for name, doc in [("phase21", PHASE21_EXAMPLE), ("spec", parallel_spec())]
    for path in positions(doc)
    for value in ODD_VALUES
]


@pytest.mark.parametrize(
    ("doc", "value"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_documents_only_ever_raise_invalid_argument(
    doc: Any, value: Any, catalog: Catalog
) -> None:
    try:
        validate(parse_json_plan(doc), catalog)
    except InvalidArgument as err:
        assert err.reason == "INVALID_PLAN"
        assert err.violations and all(v.field and v.description for v in err.violations)
    else:
        # Only a replacement that still fits passes: a string for a string, a
        # null or an empty object or array for an optional field.
        assert value in ("x", "", None, [], {})


@pytest.mark.parametrize(
    ("parse", "field"),
    [(parse_phase21, "phase21"), (parse_spec, "spec"), (parse_json_plan, "plan")],
)
@pytest.mark.parametrize(
    ("doc", "kind"), [("plan", "string"), (3, "number"), (None, "null"), ([], "array")]
)
def test_a_document_that_is_not_an_object(parse: Any, field: str, doc: Any, kind: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(doc)
    [v] = caught.value.violations
    assert v.field == field
    assert v.description.startswith("must be a") and v.description.endswith(f"object, not {kind}")
