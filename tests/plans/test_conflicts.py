"""Conflict detection between plans: each type found, resolved, and described."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from interlock.contracts import Catalog
from interlock.decisions import sha256_hex
from interlock.plans.conflicts import (
    ConflictReport,
    ConflictSettings,
    arguments_hash,
    counts,
    detect,
    throttle_delay,
)
from interlock.plans.model import (
    ConflictType,
    InFlightStep,
    PlanSpec,
    Resolution,
    StepSpec,
    StepState,
)
from interlock.policy.bundle import PolicySet

from tests.conftest import POLICIES

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_data(PolicySet.from_dir(POLICIES).data)


def step(
    step_id: str,
    tool: str,
    agent: str,
    arguments: Mapping[str, Any] | None = None,
    depends_on: Sequence[str] = (),
) -> StepSpec:
    return StepSpec(step_id, tool, agent, 0.9, arguments, tuple(depends_on))


def plan(*steps: StepSpec, source_format: str = "spec", plan_id: str = "p-new") -> PlanSpec:
    return PlanSpec(plan_id, tuple(steps), source_format=source_format)


def other(
    step_id: str,
    tool: str,
    *,
    state: StepState = StepState.DISPATCHED,
    age: float = 5.0,
    arguments: Mapping[str, Any] | None = None,
    agent: str = "ops",
    plan_id: str = "p-other",
) -> InFlightStep:
    return InFlightStep(plan_id, step_id, tool, agent, state, arguments_hash(arguments), NOW - age)


def run(
    catalog: Catalog,
    p: PlanSpec,
    in_flight: Sequence[InFlightStep] = (),
    settings: ConflictSettings | None = None,
) -> ConflictReport:
    if settings is None:
        return detect(p, catalog, in_flight, now=NOW)
    return detect(p, catalog, in_flight, now=NOW, settings=settings)


def of_type(report: ConflictReport, kind: ConflictType) -> list[Any]:
    return [c for c in report.conflicts if c.type == kind]


def click(step_id: str, selector: str, agent: str = "agent2", **kw: Any) -> StepSpec:
    return step(step_id, "button_click", agent, {"selector": selector}, **kw)


def transfer(step_id: str, amount: float, **kw: Any) -> StepSpec:
    args = {"from_account": "DE12345678", "to_account": "FR87654321", "amount": amount}
    return step(step_id, "transfer_funds", "ops", {**args, "currency": "EUR"}, **kw)


def email(step_id: str, subject: str, agent: str = "mailer", **kw: Any) -> StepSpec:
    args = {"to": ["ana@example.com"], "subject": subject, "body": "Hello"}
    return step(step_id, "send_email", agent, args, **kw)


def delete(step_id: str, record: str) -> StepSpec:
    return step(step_id, "delete_record", "ops", {"record_id": record, "reason": "gdpr request"})


# --- a clean plan ----------------------------------------------------------------------


def test_a_clean_plan_has_no_conflicts(catalog: Catalog) -> None:
    p = plan(
        step("look", "crm_lookup", "mailer", {"record_id": "AB-12345"}),
        email("mail", "Your order", depends_on=["look"]),
        step("see", "vision_inspect", "agent1", {"target": "#total"}),
    )
    in_flight = [other("x", "send_email", state=StepState.SUCCEEDED, arguments={"a": 1})]
    report = run(catalog, p, in_flight)
    assert report.conflicts == ()
    assert not report.rejected
    a = report.adjustments
    assert a.order == ("look", "mail", "see")
    assert a.extra_dependencies == {} and a.skipped == {} and a.denied == {}
    assert a.not_before == {}


# --- RESOURCE --------------------------------------------------------------------------


def test_parallel_steps_over_max_concurrency_are_chained(catalog: Catalog) -> None:
    p = plan(
        click("c1", "#save"),
        click("c2", "#submit", agent="agent2"),
        click("c3", "#next", depends_on=["c1"]),
    )
    report = run(catalog, p)
    [conflict] = report.conflicts
    assert conflict.type == ConflictType.RESOURCE
    assert conflict.resolution == Resolution.SERIALIZE
    assert conflict.step_ids == ("c1", "c2", "c3")
    assert conflict.plan_ids == ()
    assert conflict.detected_at == NOW
    # c3 already waits for c1; c2 now waits for c1 and c3 for c2.
    assert report.adjustments.extra_dependencies == {"c2": ("c1",), "c3": ("c2",)}
    assert report.adjustments.order == ("c1", "c2", "c3")
    assert "button_click allows 1 call(s) at a time" in conflict.description
    assert "2 steps of this plan could run together (c1 by agent2" in conflict.description
    assert "c1 -> c2 -> c3" in conflict.description


def test_steps_within_max_concurrency_or_already_ordered_are_left_alone(
    catalog: Catalog,
) -> None:
    fill = {"form_id": "signup", "fields": {"name": "Ana"}}
    two_fills = plan(
        step("f1", "form_fill", "agent1", fill), step("f2", "form_fill", "agent2", fill)
    )
    assert run(catalog, two_fills).conflicts == ()
    chained = plan(click("c1", "#a"), click("c2", "#b", depends_on=["c1"]))
    assert run(catalog, chained).conflicts == ()


def test_three_fills_over_a_limit_of_two(catalog: Catalog) -> None:
    fill = {"form_id": "signup", "fields": {"name": "Ana"}}
    p = plan(*(step(f"f{i}", "form_fill", "agent1", fill) for i in (1, 2, 3)))
    [conflict] = run(catalog, p).conflicts
    assert conflict.type == ConflictType.RESOURCE
    assert "form_fill allows 2 call(s) at a time, but 3 steps" in conflict.description


def test_steps_holding_slots_in_other_plans_count(catalog: Catalog) -> None:
    fill = {"form_id": "signup", "fields": {"name": "Ana"}}
    p = plan(step("f1", "form_fill", "agent1", fill), step("f2", "form_fill", "agent2", fill))
    in_flight = [
        other("x", "form_fill", agent="agent2", plan_id="p-a"),
        other("y", "form_fill", state=StepState.AWAITING_APPROVAL, plan_id="p-b"),
        other("z", "form_fill", state=StepState.SUCCEEDED, plan_id="p-c"),  # holds no slot
        other("w", "form_fill", state=StepState.PENDING, plan_id="p-d"),  # holds no slot
    ]
    report = run(catalog, p, in_flight)
    [conflict] = report.conflicts
    assert conflict.type == ConflictType.RESOURCE
    assert conflict.plan_ids == ("p-a", "p-b")
    assert report.adjustments.extra_dependencies == {"f2": ("f1",)}
    d = conflict.description
    assert "2 step(s) of other plans hold a slot (p-a/x by agent2 (DISPATCHED)" in d
    assert "p-b/y by ops (AWAITING_APPROVAL)" in d
    assert "serialized at run time by the per-tool limiter" in d


def test_one_step_against_a_running_step_of_another_plan(catalog: Catalog) -> None:
    p = plan(click("c1", "#save"))
    report = run(catalog, p, [other("x", "button_click", agent="agent2")])
    [conflict] = report.conflicts
    assert (conflict.type, conflict.resolution) == (ConflictType.RESOURCE, Resolution.SERIALIZE)
    assert conflict.step_ids == ("c1",) and conflict.plan_ids == ("p-other",)
    assert report.adjustments.extra_dependencies == {}
    assert "when this plan's c1 by agent2 runs" in conflict.description


def test_steps_of_the_same_plan_in_flight_are_ignored(catalog: Catalog) -> None:
    p = plan(click("c1", "#save"))
    assert run(catalog, p, [other("c0", "button_click", plan_id="p-new")]).conflicts == ()


# --- ORDERING --------------------------------------------------------------------------


def test_phase21_compensation_submitted_first_is_reordered(catalog: Catalog) -> None:
    p = plan(
        step("clear", "form_clear", "agent1"),
        step("fill", "form_fill", "agent1"),
        source_format="phase21",
    )
    report = run(catalog, p)
    [conflict] = report.conflicts
    assert (conflict.type, conflict.resolution) == (ConflictType.ORDERING, Resolution.REORDER)
    assert conflict.step_ids == ("clear", "fill")
    assert report.adjustments.order == ("fill", "clear")
    assert report.adjustments.extra_dependencies == {"clear": ("fill",)}
    assert not report.rejected
    assert conflict.description == (
        "step clear (form_clear by agent1) was submitted before the steps it must wait for: "
        "fill (form_fill by agent1) (form_clear compensates form_fill); "
        "reordered to run after them"
    )


def test_phase21_step_before_its_own_dependency_is_reordered(catalog: Catalog) -> None:
    p = plan(
        step("mail", "send_email", "mailer", depends_on=["look"]),
        step("look", "crm_lookup", "mailer"),
        step("see", "vision_inspect", "agent1"),
        source_format="phase21",
    )
    report = run(catalog, p)
    [conflict] = report.conflicts
    assert conflict.type == ConflictType.ORDERING
    assert "look (crm_lookup by mailer) (its depends_on)" in conflict.description
    assert report.adjustments.order == ("look", "mail", "see")
    # The Phase-21 order runs one step at a time: "see" now waits for "mail".
    assert report.adjustments.extra_dependencies == {"see": ("mail",)}


def test_phase21_in_the_right_order_gets_the_contract_dependency_only(catalog: Catalog) -> None:
    p = plan(
        step("fill", "form_fill", "agent1"),
        step("clear", "form_clear", "agent2"),
        source_format="phase21",
    )
    report = run(catalog, p)
    assert report.conflicts == ()
    assert report.adjustments.order == ("fill", "clear")
    assert report.adjustments.extra_dependencies == {"clear": ("fill",)}


def test_spec_compensation_not_ordered_after_what_it_undoes(catalog: Catalog) -> None:
    p = plan(
        transfer("refund_prep", 10.0),
        step("refund", "refund_funds", "ops"),
        transfer("pay", 25.0),
    )
    report = run(catalog, p)
    [ordering] = of_type(report, ConflictType.ORDERING)
    assert ordering.resolution == Resolution.REORDER
    assert ordering.step_ids == ("refund_prep", "refund", "pay")
    assert "refund (refund_funds by ops) compensates refund_prep" in ordering.description
    assert "refund now waits for refund_prep, pay" in ordering.description
    assert report.adjustments.extra_dependencies["refund"] == ("pay", "refund_prep")
    assert report.adjustments.order.index("refund") == 2


def test_spec_compensation_already_ordered_is_fine(catalog: Catalog) -> None:
    p = plan(step("refund", "refund_funds", "ops", depends_on=["pay"]), transfer("pay", 25.0))
    report = run(catalog, p)
    assert report.conflicts == ()
    assert report.adjustments.order == ("pay", "refund")


def test_a_cycle_through_a_contract_dependency_is_rejected(catalog: Catalog) -> None:
    p = plan(
        step("fill", "form_fill", "agent1", depends_on=["clear"]),
        step("clear", "form_clear", "agent1"),
        step("buy", "button_click", "agent1"),  # denied too: the report says everything
    )
    report = run(catalog, p)
    assert report.rejected
    [cycle] = of_type(report, ConflictType.ORDERING)
    assert cycle.resolution == Resolution.REJECT
    assert cycle.step_ids == ("fill", "clear")
    assert cycle.description == (
        "dependency cycle: fill (form_fill by agent1) waits for clear (its depends_on); "
        "clear (form_clear by agent1) waits for fill (form_clear compensates form_fill); "
        "no order can run the plan, so it is rejected"
    )
    assert [c.type for c in report.conflicts] == [ConflictType.ORDERING, ConflictType.PERMISSION]
    assert report.adjustments.order == ("fill", "clear", "buy")
    assert report.adjustments.extra_dependencies == {}


def test_a_cycle_of_depends_on_is_rejected_and_named(catalog: Catalog) -> None:
    p = plan(
        step("a", "crm_lookup", "ops"),
        step("b", "crm_lookup", "ops", depends_on=["d"]),
        step("c", "crm_lookup", "ops", depends_on=["b"]),
        step("d", "crm_lookup", "ops", depends_on=["c", "a"]),
        step("e", "crm_lookup", "ops", depends_on=["d"]),
    )
    report = run(catalog, p)
    assert report.rejected
    [cycle] = report.conflicts
    assert cycle.step_ids == ("b", "c", "d")
    assert cycle.description.startswith(
        "dependency cycle: b (crm_lookup by ops) waits for d (its depends_on); "
        "d (crm_lookup by ops) waits for c (its depends_on); "
        "c (crm_lookup by ops) waits for b (its depends_on)"
    )


# --- RATE_LIMIT ------------------------------------------------------------------------


def test_calls_over_the_rate_limit_are_throttled_not_dropped(catalog: Catalog) -> None:
    p = plan(*(transfer(f"t{i}", float(i)) for i in range(1, 9)))  # 8 > 6 a minute
    report = run(catalog, p)
    [rate] = of_type(report, ConflictType.RATE_LIMIT)
    assert rate.resolution == Resolution.THROTTLE
    assert rate.step_ids == ("t7", "t8")
    assert report.adjustments.not_before == {"t7": 60.0, "t8": 60.0}
    assert report.adjustments.skipped == {} and report.adjustments.denied == {}
    assert "transfer_funds allows 6 call(s) a minute, but this plan makes 8" in rate.description
    assert "throttled, none dropped: t7 +60 s, t8 +60 s" in rate.description
    # transfer_funds runs one at a time too, so the plan's transfers are chained.
    assert of_type(report, ConflictType.RESOURCE)[0].step_ids == tuple(f"t{i}" for i in range(1, 9))


def test_recent_calls_of_other_plans_use_up_the_rate(catalog: Catalog) -> None:
    p = plan(*(transfer(f"t{i}", float(i)) for i in range(1, 5)))
    in_flight = [
        other("a", "transfer_funds", state=StepState.SUCCEEDED, age=10, plan_id="p-a"),
        other("b", "transfer_funds", state=StepState.FAILED, age=20, plan_id="p-b"),
        other("c", "transfer_funds", state=StepState.DISPATCHED, age=59, plan_id="p-a"),
        other("old", "transfer_funds", state=StepState.SUCCEEDED, age=61, plan_id="p-c"),
        other("queued", "transfer_funds", state=StepState.PENDING, age=1, plan_id="p-d"),
        other("dropped", "transfer_funds", state=StepState.CANCELLED, age=1, plan_id="p-e"),
    ]
    report = run(catalog, p, in_flight)
    [rate] = of_type(report, ConflictType.RATE_LIMIT)
    assert rate.plan_ids == ("p-a", "p-b")
    assert rate.step_ids == ("t4",)
    assert report.adjustments.not_before == {"t4": 60.0}
    assert "3 call(s) of it were made in the last 60 s (plans p-a, p-b)" in rate.description


def test_throttle_rule() -> None:
    assert [throttle_delay(k, 6) for k in (1, 6, 7, 12, 13)] == [60, 60, 120, 120, 180]


# --- TIMEOUT ---------------------------------------------------------------------------


def test_a_throttle_delay_longer_than_the_timeout_cancels_the_step(catalog: Catalog) -> None:
    p = plan(*(delete(f"d{i}", f"AB-{1000 + i}") for i in range(1, 12)))  # 11 > 10 a minute
    report = run(catalog, p)
    [timeout] = of_type(report, ConflictType.TIMEOUT)
    assert (timeout.resolution, timeout.step_ids) == (Resolution.CANCEL, ("d11",))
    assert report.adjustments.not_before == {}
    assert report.adjustments.denied == {"d11": timeout.description}
    assert timeout.description == (
        "step d11 (delete_record by ops) would wait 60 s for the delete_record rate limit, "
        "longer than its 30 s timeout; cancelled (counts as failed)"
    )
    assert of_type(report, ConflictType.RATE_LIMIT)[0].step_ids == ("d11",)


def test_a_delay_within_the_timeout_is_kept(catalog: Catalog) -> None:
    # transfer_funds: 6 a minute, 60 s timeout: the 7th to 12th wait 60 s, the 13th 120 s.
    p = plan(*(transfer(f"t{i:02}", float(i)) for i in range(1, 14)))
    report = run(catalog, p)
    assert report.adjustments.not_before == {f"t{i:02}": 60.0 for i in range(7, 13)}
    assert list(report.adjustments.denied) == ["t13"]


def test_recent_clicks_of_another_plan_push_a_click_past_its_timeout(catalog: Catalog) -> None:
    in_flight = [
        other(f"x{i}", "button_click", state=StepState.SUCCEEDED, age=30, agent="agent2")
        for i in range(60)
    ]
    report = run(catalog, plan(click("c1", "#buy")), in_flight)
    assert [c.type for c in report.conflicts] == [ConflictType.RATE_LIMIT, ConflictType.TIMEOUT]
    assert report.conflicts[0].plan_ids == ("p-other",)
    assert "longer than its 15 s timeout" in report.adjustments.denied["c1"]


# --- DUPLICATE_ACTION ------------------------------------------------------------------


def test_a_repeated_irreversible_action_in_the_plan_is_skipped(catalog: Catalog) -> None:
    p = plan(
        email("e1", "Invoice"),
        email("e2", "Invoice", agent="ops"),
        email("e3", "Receipt"),
    )
    report = run(catalog, p)
    [dup] = report.conflicts
    assert (dup.type, dup.resolution) == (ConflictType.DUPLICATE_ACTION, Resolution.DEDUPE)
    assert dup.step_ids == ("e2",) and dup.plan_ids == ()
    assert report.adjustments.skipped == {
        "e2": "step e2 (send_email by ops) repeats step e1 of this plan (by mailer) with the "
        "same arguments; send_email is irreversible, so e2 is skipped"
    }


def test_the_later_step_in_dependency_order_is_the_duplicate(catalog: Catalog) -> None:
    p = plan(email("e1", "Invoice", depends_on=["e2"]), email("e2", "Invoice"))
    assert list(run(catalog, p).adjustments.skipped) == ["e1"]


def test_reversible_tools_and_steps_without_arguments_are_not_deduplicated(
    catalog: Catalog,
) -> None:
    fill = {"form_id": "signup", "fields": {"name": "Ana"}}
    p = plan(
        step("f1", "form_fill", "agent1", fill),
        step("f2", "form_fill", "agent1", fill),
        step("c1", "button_click", "agent2"),
        step("c2", "button_click", "agent2", depends_on=["c1"]),
        source_format="phase21",
    )
    report = run(catalog, p)
    assert report.adjustments.skipped == {}
    assert of_type(report, ConflictType.DUPLICATE_ACTION) == []


def test_a_repeat_of_another_plans_recent_action_is_skipped(catalog: Catalog) -> None:
    args = {"to": ["ana@example.com"], "subject": "Invoice", "body": "Hello"}
    in_flight = [other("sent", "send_email", state=StepState.SUCCEEDED, age=100, arguments=args)]
    report = run(catalog, plan(email("e1", "Invoice")), in_flight)
    [dup] = report.conflicts
    assert dup.plan_ids == ("p-other",) and dup.step_ids == ("e1",)
    assert report.adjustments.skipped["e1"] == (
        "step e1 (send_email by mailer) repeats step sent of plan p-other (by ops, SUCCEEDED "
        "100 s ago) with the same arguments; send_email is irreversible, so e1 is skipped"
    )


@pytest.mark.parametrize(
    ("state", "age", "window", "skipped"),
    [
        (StepState.SUCCEEDED, 299, 300, True),
        (StepState.SUCCEEDED, 400, 300, False),  # outside the window
        (StepState.SUCCEEDED, 400, 600, True),  # a longer window
        (StepState.AMBIGUOUS, 10, 300, True),  # it may have happened
        (StepState.PENDING, 4000, 300, True),  # still going to happen
        (StepState.DISPATCHED, 4000, 300, True),
        (StepState.FAILED, 10, 300, False),
        (StepState.CANCELLED, 10, 300, False),
        (StepState.SKIPPED, 10, 300, False),
    ],
)
def test_which_steps_of_other_plans_count_as_the_original(
    catalog: Catalog, state: StepState, age: float, window: float, skipped: bool
) -> None:
    p = plan(delete("d1", "AB-1234"))
    args = {"record_id": "AB-1234", "reason": "gdpr request"}
    in_flight = [other("d0", "delete_record", state=state, age=age, arguments=args)]
    settings = ConflictSettings(duplicate_window_seconds=window)
    report = run(catalog, p, in_flight, settings)
    assert ("d1" in report.adjustments.skipped) is skipped


def test_arguments_hash_is_the_canonical_sha256() -> None:
    args = {"b": [1, {"y": 2, "x": 1}], "a": "z"}
    assert arguments_hash(args) == sha256_hex({"a": "z", "b": [1, {"x": 1, "y": 2}]})
    assert arguments_hash(None) == ""


# --- PERMISSION ------------------------------------------------------------------------


def test_a_step_whose_agent_lacks_a_permission_is_denied(catalog: Catalog) -> None:
    p = plan(
        click("c1", "#buy", agent="agent1"),
        click("c2", "#save"),
        delete("d1", "AB-1234"),
        step("d2", "delete_record", "readonly", {"record_id": "AB-9999", "reason": "test"}),
        step("g", "crm_lookup", "ghost", {"record_id": "AB-1234"}),
    )
    report = run(catalog, p)
    perms = of_type(report, ConflictType.PERMISSION)
    assert [c.step_ids for c in perms] == [("c1",), ("d2",), ("g",)]
    assert {c.resolution for c in perms} == {Resolution.DENY}
    denied = report.adjustments.denied
    assert denied["c1"] == (
        "agent agent1 lacks permission ui.click that button_click requires; step c1 is denied"
    )
    assert "agent readonly lacks permission crm.delete that delete_record" in denied["d2"]
    assert "agent ghost (not in the catalog) lacks permission crm.read" in denied["g"]
    # A denied click takes no concurrency slot: c2 runs alone.
    assert of_type(report, ConflictType.RESOURCE) == []


def test_a_denied_step_is_not_the_original_of_a_duplicate(catalog: Catalog) -> None:
    p = plan(email("e1", "Invoice", agent="agent1"), email("e2", "Invoice"))
    report = run(catalog, p)
    assert list(report.adjustments.denied) == ["e1"]
    assert report.adjustments.skipped == {}


# --- determinism and counts ------------------------------------------------------------


def busy_plan() -> tuple[PlanSpec, list[InFlightStep]]:
    p = plan(
        step("clear", "form_clear", "agent1"),
        step("fill", "form_fill", "agent1", {"form_id": "f", "fields": {"a": "b"}}),
        click("c1", "#buy", agent="agent1"),
        email("e1", "Invoice"),
        email("e2", "Invoice"),
        *(delete(f"d{i:02}", f"AB-{1000 + i}") for i in range(1, 13)),
        source_format="phase21",
    )
    in_flight = [
        other("x", "delete_record", plan_id="p-b"),
        other("y", "send_email", state=StepState.SUCCEEDED, age=30, plan_id="p-a"),
    ]
    return p, in_flight


def test_the_report_is_deterministic(catalog: Catalog) -> None:
    p, in_flight = busy_plan()
    first = run(catalog, p, in_flight)
    again = run(catalog, p, list(reversed(in_flight)))
    assert first == again
    assert list(first.adjustments.denied) == sorted(first.adjustments.denied)
    kinds = [c.type for c in first.conflicts]
    assert kinds == sorted(kinds, key=list(ConflictType).index)


def test_counts_gives_detections_and_resolutions_per_type(catalog: Catalog) -> None:
    p, in_flight = busy_plan()
    report = run(catalog, p, in_flight)
    assert counts(report.conflicts) == {
        "RESOURCE": {"detected": 1, "serialize": 1},
        "ORDERING": {"detected": 1, "reorder": 1, "reject": 0},
        "RATE_LIMIT": {"detected": 1, "throttle": 1},
        "DUPLICATE_ACTION": {"detected": 1, "dedupe": 1},
        "PERMISSION": {"detected": 1, "deny": 1},
        "TIMEOUT": {"detected": 3, "cancel": 3},
    }
    assert counts([])["ORDERING"] == {"detected": 0, "reorder": 0, "reject": 0}
