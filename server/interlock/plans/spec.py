"""Plan submissions: the two formats, how each becomes a PlanSpec, and validation.

A plan comes over gRPC (``SubmitPlanRequest``, oneof ``phase21`` | ``spec``;
:mod:`interlock.api.plan_specs` turns it into the documents below) or as a
JSON file (``interlock plan submit FILE``). Both formats become a
:class:`~interlock.plans.model.PlanSpec`.

**Phase-21**, accepted exactly as the Phase-21 planner writes it::

    {"plan_id": "plan_1",
     "agent_assignments": {"agent1": ["vision_inspect", "form_fill"], "agent2": ["button_click"]},
     "execution_order": ["vision_inspect", "form_fill", "button_click"],
     "confidence_scores": {"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9}}

It becomes one step per entry of ``execution_order``:

    step_id     the tool name (so a tool may appear only once)
    tool        the tool name
    agent_id    the one agent whose assignment lists the tool
    confidence  ``confidence_scores[tool]``
    arguments   None: the format has none, so no schema is checked
    depends_on  the previous entry of ``execution_order``: the steps run one after another

**Spec**, explicit steps that may run in parallel::

    {"plan_id": "plan_2", "labels": {"team": "billing"},
     "steps": [{"step_id": "look", "tool": "crm_lookup", "agent_id": "mailer",
                "arguments": {"record_id": "DE-1234"}, "confidence": 0.9, "depends_on": []},
               ...]}

maps field for field; ``labels``, ``arguments`` and ``depends_on`` are optional
(null counts as absent). Unknown keys are refused in both formats, so that a
misspelt ``depends_on`` cannot quietly make a step parallel.

Parsing and validation report every problem at once. The parse functions read
what they can, leave a placeholder where a value has the wrong JSON type, and
note the problem on the side (keyed by the returned plan, which stays exactly
the model's PlanSpec); :func:`validate` reports those notes together with the
catalog and graph problems as one ``InvalidArgument`` (reason ``INVALID_PLAN``).
So a parsed plan must always be validated, and it must be the very object the
parse function returned. Parse functions raise (``InvalidArgument`` only) when
the document is not an object at all.

Field paths name the place in the submission, with the oneof's name first:
``spec.steps[1].tool``, ``spec.steps[0].depends_on[0]``, ``spec.labels.team``;
``phase21.execution_order[2]`` (a step's id and tool),
``phase21.agent_assignments.agent3`` (its agent), ``phase21.agent_assignments.agent1[1]``
(one assignment), ``phase21.confidence_scores.form_fill`` (its confidence). Keys
that are not plain names are quoted: ``spec.labels["a.b"]``. The violations are
listed ordered by path (a step's problems together, steps[2] before steps[10]),
at most MAX_VIOLATIONS of them, the last counting any left out.
"""

from __future__ import annotations

import heapq
import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interlock_client.jsonpaths import json_type, member

from interlock.contracts import AGENTS_FILE, Catalog
from interlock.decisions import check_id
from interlock.errors import FieldViolation, InvalidArgument
from interlock.plans.model import PlanSpec, StepSpec

MAX_STEPS = 256
"""The default limit on a plan's steps."""
MAX_VIOLATIONS = 30
"""Violations listed in one error; the rest are counted (the error travels in gRPC trailers)."""
MAX_ARGUMENT_DEPTH = 64
"""How deeply a step's arguments may nest."""
REASON = "INVALID_PLAN"

PHASE21 = "phase21"
SPEC = "spec"
PHASE21_KEYS = ("plan_id", "agent_assignments", "execution_order", "confidence_scores")
SPEC_KEYS = ("plan_id", "labels", "steps")
STEP_KEYS = ("step_id", "tool", "agent_id", "arguments", "confidence", "depends_on")

_DIGITS = re.compile(r"(\d+)")
_PLAN = -1
"""The step index under which problems with plan-level fields are noted."""


# Paths and notes ------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class _StepPaths:
    """Where each field of one step was written."""

    step_id: str
    tool: str
    agent_id: str
    confidence: str
    arguments: str
    depends_on: str
    indexed: bool = True
    """True: each dependency has its own path (``depends_on[j]``); False: the
    dependencies are implied (Phase-21), so all share ``depends_on``."""

    def dependency(self, j: int) -> str:
        return f"{self.depends_on}[{j}]" if self.indexed else self.depends_on

    @classmethod
    def spec(cls, base: str) -> _StepPaths:
        return cls(
            step_id=f"{base}.step_id",
            tool=f"{base}.tool",
            agent_id=f"{base}.agent_id",
            confidence=f"{base}.confidence",
            arguments=f"{base}.arguments",
            depends_on=f"{base}.depends_on",
        )

    @classmethod
    def phase21(cls, prefix: str, position: int, tool: str, agent: str) -> _StepPaths:
        place = f"{prefix}.execution_order[{position}]"
        assignments = f"{prefix}.agent_assignments"
        return cls(
            step_id=place,
            tool=place,
            agent_id=member(assignments, agent) if agent else assignments,
            confidence=member(f"{prefix}.confidence_scores", tool),
            arguments=place,
            depends_on=place,
            indexed=False,
        )


@dataclass(frozen=True)
class _Source:
    """What the parse function knew about a plan that the PlanSpec cannot hold."""

    plan_id: str
    steps: str
    step_paths: tuple[_StepPaths, ...]
    problems: tuple[FieldViolation, ...] = ()
    """Problems found while reading."""
    noted: frozenset[tuple[int, str]] = frozenset()
    """(step index or _PLAN, field) already reported: validation skips them,
    as their values are placeholders."""

    @property
    def prefix(self) -> str:
        return self.plan_id.rpartition(".")[0]


_SOURCES: dict[int, _Source] = {}
"""id(plan) -> its source; an entry lives exactly as long as its plan.
(A PlanSpec holds dicts, so it cannot be hashed into a WeakKeyDictionary.)"""


def _remember(plan: PlanSpec, source: _Source) -> PlanSpec:
    key = id(plan)
    _SOURCES[key] = source
    weakref.finalize(plan, _SOURCES.pop, key, None)
    return plan


def _source_of(plan: PlanSpec) -> _Source:
    """The parse function's record, or the paths a plan built in code would have had."""
    known = _SOURCES.get(id(plan))
    if known is not None:
        return known
    if plan.source_format == PHASE21:
        return _Source(
            plan_id=f"{PHASE21}.plan_id",
            steps=f"{PHASE21}.execution_order",
            step_paths=tuple(
                _StepPaths.phase21(PHASE21, i, s.tool, s.agent_id) for i, s in enumerate(plan.steps)
            ),
        )
    return _Source(
        plan_id=f"{SPEC}.plan_id",
        steps=f"{SPEC}.steps",
        step_paths=tuple(_StepPaths.spec(f"{SPEC}.steps[{i}]") for i in range(len(plan.steps))),
    )


class _Notes:
    """Problems found while reading one document, and the fields they leave unusable."""

    def __init__(self) -> None:
        self.problems: list[FieldViolation] = []
        self.noted: set[tuple[int, str]] = set()

    def add(self, path: str, description: str) -> None:
        self.problems.append(FieldViolation(path, description))

    def unknown_keys(self, doc: Mapping[Any, Any], allowed: tuple[str, ...], base: str) -> None:
        for key in doc:
            if key not in allowed:
                self.add(member(base, key), f"unknown field; expected {', '.join(allowed)}")

    def string(self, doc: Mapping[Any, Any], key: str, path: str) -> str | None:
        """A required string, or None (noted) when it is missing or not a string."""
        if key not in doc:
            self.add(path, "is required")
            return None
        value = doc[key]
        if not isinstance(value, str):
            self.add(path, f"must be a string, not {json_type(value)}")
            return None
        return value

    def array(self, doc: Mapping[Any, Any], key: str, path: str, *, required: bool) -> list[Any]:
        """A list, or [] (noted) when it is missing (if required) or not a list."""
        value = doc.get(key)
        if value is None:
            if required:
                self.add(path, "is required" if key not in doc else "must be an array, not null")
            return []
        if not isinstance(value, list | tuple):
            self.add(path, f"must be an array, not {json_type(value)}")
            return []
        return list(value)

    def strings(self, values: list[Any], path: str) -> list[str | None]:
        """Each element as a string, or None (noted) where it is not one."""
        out: list[str | None] = []
        for j, value in enumerate(values):
            if isinstance(value, str):
                out.append(value)
            else:
                self.add(f"{path}[{j}]", f"must be a string, not {json_type(value)}")
                out.append(None)
        return out

    def source(self, plan_id: str, steps: str, paths: list[_StepPaths]) -> _Source:
        return _Source(plan_id, steps, tuple(paths), tuple(self.problems), frozenset(self.noted))


def _object(doc: object, path: str) -> Mapping[Any, Any]:
    if not isinstance(doc, Mapping):
        raise InvalidArgument.field(path, f"must be an object, not {json_type(doc)}", reason=REASON)
    return doc


# The spec format ------------------------------------------------------------


def parse_spec(doc: Mapping[str, Any], found: Sequence[FieldViolation] = ()) -> PlanSpec:
    """A plan with explicit steps (``source_format="spec"``); validate it next.
    ``found``: problems found before (converting a protobuf message), reported with the rest."""
    return _read_spec(doc, found)


def _read_spec(doc: object, extra: Sequence[FieldViolation]) -> PlanSpec:
    """Read a spec document; ``extra`` are problems found before (converting a proto)."""
    doc = _object(doc, SPEC)
    notes = _Notes()
    notes.problems.extend(extra)
    notes.unknown_keys(doc, SPEC_KEYS, SPEC)
    plan_id = notes.string(doc, "plan_id", f"{SPEC}.plan_id")
    if plan_id is None:
        notes.noted.add((_PLAN, "plan_id"))
    labels = _read_labels(doc.get("labels"), notes)
    raw_steps = notes.array(doc, "steps", f"{SPEC}.steps", required=True)
    if not isinstance(doc.get("steps"), list | tuple):
        notes.noted.add((_PLAN, "steps"))
    steps: list[StepSpec] = []
    paths: list[_StepPaths] = []
    for i, raw in enumerate(raw_steps):
        base = f"{SPEC}.steps[{i}]"
        if not isinstance(raw, Mapping):
            notes.add(base, f"must be an object, not {json_type(raw)}")
            continue
        step, unusable = _read_step(raw, base, notes)
        notes.noted.update((len(steps), name) for name in unusable)
        steps.append(step)
        paths.append(_StepPaths.spec(base))
    plan = PlanSpec(plan_id or "", tuple(steps), labels, source_format=SPEC)
    return _remember(plan, notes.source(f"{SPEC}.plan_id", f"{SPEC}.steps", paths))


def _read_labels(raw: object, notes: _Notes) -> dict[str, str]:
    path = f"{SPEC}.labels"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        notes.add(path, f"must be an object of strings, not {json_type(raw)}")
        return {}
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(key, str) and isinstance(value, str):
            labels[key] = value
        else:
            notes.add(member(path, key), f"must be a string, not {json_type(value)}")
    return labels


def _read_step(raw: Mapping[Any, Any], base: str, notes: _Notes) -> tuple[StepSpec, set[str]]:
    """One step, and the names of the fields that hold placeholders."""
    paths = _StepPaths.spec(base)
    unusable: set[str] = set()
    notes.unknown_keys(raw, STEP_KEYS, base)

    def text(key: str, path: str) -> str:
        value = notes.string(raw, key, path)
        if value is None:
            unusable.add(key)
        return value or ""

    step_id = text("step_id", paths.step_id)
    tool = text("tool", paths.tool)
    agent_id = text("agent_id", paths.agent_id)
    confidence = _read_confidence(raw, paths.confidence, notes)
    if confidence is None:
        unusable.add("confidence")
    arguments = raw.get("arguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        notes.add(paths.arguments, f"must be an object, not {json_type(arguments)}")
        arguments = None
    depends_on: list[str] = []
    raw_depends = notes.array(raw, "depends_on", paths.depends_on, required=False)
    for j, dep in enumerate(notes.strings(raw_depends, paths.depends_on)):
        if dep is None:
            unusable.add(f"depends_on[{j}]")
        depends_on.append(dep or "")
    step = StepSpec(
        step_id=step_id,
        tool=tool,
        agent_id=agent_id,
        confidence=math.nan if confidence is None else confidence,
        arguments=arguments,
        depends_on=tuple(depends_on),
    )
    return step, unusable


def _read_confidence(raw: Mapping[Any, Any], path: str, notes: _Notes) -> float | None:
    """The confidence as a float, or None (noted) when it is missing or not a number.
    NaN and the range are validation's business."""
    if "confidence" not in raw:
        notes.add(path, "is required")
        return None
    value = raw["confidence"]
    if not _is_number(value):
        notes.add(path, f"must be a number, not {json_type(value)}")
        return None
    return float(value)


# The Phase-21 format --------------------------------------------------------


def parse_phase21(doc: Mapping[str, Any]) -> PlanSpec:
    """A Phase-21 plan (``source_format="phase21"``): one step per entry of
    execution_order, each depending on the one before; validate it next."""
    doc = _object(doc, PHASE21)
    notes = _Notes()
    notes.unknown_keys(doc, PHASE21_KEYS, PHASE21)
    plan_id = notes.string(doc, "plan_id", f"{PHASE21}.plan_id")
    if plan_id is None:
        notes.noted.add((_PLAN, "plan_id"))
    owners = _read_assignments(doc, notes)
    order = _read_order(doc, notes)
    scores = _read_scores(doc, notes)
    if owners is not None:
        _check_owners(owners, notes)
    if order is None:
        notes.noted.add((_PLAN, "steps"))
    else:
        _check_unplanned(owners or {}, scores or {}, {tool for _, tool in order}, notes)
    steps: list[StepSpec] = []
    paths: list[_StepPaths] = []
    for position, tool in order or []:
        step, step_paths = _phase21_step(position, tool, owners, scores, steps, notes)
        steps.append(step)
        paths.append(step_paths)
    plan = PlanSpec(plan_id or "", tuple(steps), {}, source_format=PHASE21)
    return _remember(plan, notes.source(f"{PHASE21}.plan_id", f"{PHASE21}.execution_order", paths))


def _phase21_step(
    position: int,
    tool: str,
    owners: Mapping[str, list[tuple[str, int]]] | None,
    scores: Mapping[str, float | None] | None,
    earlier: list[StepSpec],
    notes: _Notes,
) -> tuple[StepSpec, _StepPaths]:
    """The step for one entry of execution_order. A missing assignments or scores
    object was reported once already, so its steps are not reported again."""
    index = len(earlier)
    agents = (owners or {}).get(tool, [])
    agent = agents[0][0] if agents else ""
    paths = _StepPaths.phase21(PHASE21, position, tool, agent)
    if not agents:
        notes.noted.add((index, "agent_id"))
        if owners is not None:
            notes.add(paths.tool, f"{tool!r} is assigned to no agent in agent_assignments")
    confidence = (scores or {}).get(tool)
    if confidence is None:
        notes.noted.add((index, "confidence"))
        if scores is not None and tool not in scores:
            notes.add(paths.confidence, f"is required: {tool!r} is in execution_order")
    step = StepSpec(
        step_id=tool,
        tool=tool,
        agent_id=agent,
        confidence=math.nan if confidence is None else confidence,
        arguments=None,
        # The execution order runs one step at a time; the orchestrator chains
        # the steps in that order once conflict detection has checked it
        # (so an order that breaks a contract rule can be reordered).
        depends_on=(),
    )
    return step, paths


def _read_assignments(
    doc: Mapping[Any, Any], notes: _Notes
) -> dict[str, list[tuple[str, int]]] | None:
    """tool -> every (agent, index) that lists it, in document order; None (noted)
    when there is no assignments object."""
    path = f"{PHASE21}.agent_assignments"
    raw = _phase21_object(doc, "agent_assignments", notes)
    if raw is None:
        return None
    owners: dict[str, list[tuple[str, int]]] = {}
    for agent, tools in raw.items():
        agent_path = member(path, agent)
        if not isinstance(agent, str):
            notes.add(agent_path, "agent ids must be strings")
            continue
        if not isinstance(tools, list | tuple):
            notes.add(agent_path, f"must be an array of tool names, not {json_type(tools)}")
            continue
        for j, tool in enumerate(notes.strings(list(tools), agent_path)):
            if tool is not None:
                owners.setdefault(tool, []).append((agent, j))
    return owners


def _read_order(doc: Mapping[Any, Any], notes: _Notes) -> list[tuple[int, str]] | None:
    """(position, tool) for each usable entry of execution_order (a repeat is noted
    and left out); None (noted) when there is no list."""
    path = f"{PHASE21}.execution_order"
    raw = notes.array(doc, "execution_order", path, required=True)
    if not isinstance(doc.get("execution_order"), list | tuple):
        return None
    first: dict[str, int] = {}
    order: list[tuple[int, str]] = []
    for position, tool in enumerate(notes.strings(raw, path)):
        if tool is None:
            continue
        if tool in first:
            notes.add(
                f"{path}[{position}]",
                f"{tool!r} is listed twice (first at {path}[{first[tool]}])",
            )
            continue
        first[tool] = position
        order.append((position, tool))
    return order


def _read_scores(doc: Mapping[Any, Any], notes: _Notes) -> dict[str, float | None] | None:
    """tool -> score, None (noted) where the score is not a number; None (noted)
    when there is no scores object."""
    path = f"{PHASE21}.confidence_scores"
    raw = _phase21_object(doc, "confidence_scores", notes)
    if raw is None:
        return None
    scores: dict[str, float | None] = {}
    for tool, score in raw.items():
        if not isinstance(tool, str):
            notes.add(member(path, tool), "tool names must be strings")
            continue
        if _is_number(score):
            scores[tool] = float(score)
        else:
            notes.add(member(path, tool), f"must be a number, not {json_type(score)}")
            scores[tool] = None
    return scores


def _phase21_object(doc: Mapping[Any, Any], key: str, notes: _Notes) -> Mapping[Any, Any] | None:
    raw = doc.get(key)
    if isinstance(raw, Mapping):
        return raw
    path = f"{PHASE21}.{key}"
    if key not in doc:
        notes.add(path, "is required")
    else:
        notes.add(path, f"must be an object, not {json_type(raw)}")
    return None


def _check_owners(owners: Mapping[str, list[tuple[str, int]]], notes: _Notes) -> None:
    """A tool runs under exactly one agent: note every assignment after the first."""
    path = f"{PHASE21}.agent_assignments"
    for tool, listed in owners.items():
        first_agent = listed[0][0]
        for agent, j in listed[1:]:
            where = f"{member(path, agent)}[{j}]"
            if agent == first_agent:
                notes.add(where, f"{tool!r} is listed twice in {agent}'s assignment")
            else:
                notes.add(
                    where,
                    f"{tool!r} is also assigned to {first_agent}; a tool runs under one agent",
                )


def _check_unplanned(
    owners: Mapping[str, list[tuple[str, int]]],
    scores: Mapping[str, float | None],
    planned: set[str],
    notes: _Notes,
) -> None:
    """Assignments and scores for tools that execution_order does not list."""
    assignments = f"{PHASE21}.agent_assignments"
    for tool, listed in owners.items():
        if tool not in planned:
            for agent, j in listed:
                notes.add(
                    f"{member(assignments, agent)}[{j}]",
                    f"{tool!r} is assigned to {agent} but missing from execution_order",
                )
    for tool in scores:
        if tool not in planned:
            notes.add(
                member(f"{PHASE21}.confidence_scores", tool),
                f"is a score for {tool!r}, which is not in execution_order",
            )


# Choosing the format --------------------------------------------------------


def parse_json_plan(doc: Any) -> PlanSpec:
    """A plan read from JSON in either format: one with "steps" is a spec plan, one
    with "agent_assignments" or "execution_order" a Phase-21 plan."""
    if not isinstance(doc, Mapping):
        raise InvalidArgument.field(
            "plan", f"must be a JSON object, not {json_type(doc)}", reason=REASON
        )
    if "steps" in doc:
        return parse_spec(doc)
    if "agent_assignments" in doc or "execution_order" in doc:
        return parse_phase21(doc)
    raise InvalidArgument.field(
        "plan",
        "is neither format: expected 'steps' (a spec plan) or "
        "'agent_assignments' and 'execution_order' (a Phase-21 plan)",
        reason=REASON,
    )


# Validation -----------------------------------------------------------------


class _Report:
    """Collects validation problems, skipping fields whose problem was noted while parsing."""

    def __init__(
        self, source: _Source, plan: PlanSpec, schema_failed: SchemaFailed | None = None
    ) -> None:
        self.source = source
        self.plan = plan
        self.schema_failed = schema_failed
        self.violations: list[FieldViolation] = list(source.problems)

    def usable(self, index: int, name: str) -> bool:
        return (index, name) not in self.source.noted

    def add(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def error(self) -> InvalidArgument | None:
        """One error for everything found, ordered by place (steps in order, their
        fields together), or None."""
        unique = sorted(dict.fromkeys(self.violations), key=lambda v: _path_key(v.field))
        if not unique:
            return None
        if len(unique) > MAX_VIOLATIONS:
            more = len(unique) - (MAX_VIOLATIONS - 1)
            unique = [
                *unique[: MAX_VIOLATIONS - 1],
                FieldViolation(self.source.prefix, f"{more} more problems not listed"),
            ]
        return InvalidArgument.of(unique, reason=REASON)


def _path_key(path: str) -> list[str]:
    """Sorts paths with their numbers compared as numbers: steps[2] before steps[10].
    (Splitting on a captured group puts the digit runs at the odd places.)"""
    return [part.zfill(20) if k % 2 else part for k, part in enumerate(_DIGITS.split(path))]


def agent_entry(agent_id: str, permissions: list[str]) -> str:
    """The one-line YAML entry that registers ``agent_id`` with ``permissions``."""
    return f"{agent_id}: {{description: ..., permissions: [{', '.join(permissions)}]}}"


def unknown_agent(agent_id: str, plan: PlanSpec, catalog: Catalog) -> str:
    """Why ``agent_id`` is refused, where agents are registered, and the entry to add
    (with the permissions the plan's steps of that agent require)."""
    needed = sorted(
        {
            p
            for step in plan.steps
            if step.agent_id == agent_id and step.tool in catalog.tools
            for p in catalog.tools[step.tool].required_permissions
        }
    )
    return (
        f"unknown agent {agent_id!r}: agents are registered in {AGENTS_FILE}; "
        f"add the entry {agent_entry(agent_id, needed)}"
    )


SchemaFailed = Callable[[str, str, list[str]], None]
"""Told of each step refused for breaking its tool's argument schema: (tool, agent, fields)."""


def validate(
    plan: PlanSpec,
    catalog: Catalog,
    *,
    max_steps: int = MAX_STEPS,
    schema_failed: SchemaFailed | None = None,
) -> None:
    """Raise one InvalidArgument (reason INVALID_PLAN) naming every problem of the plan.

    A plan with more than ``max_steps`` steps is refused without looking at its steps.
    ``schema_failed`` is told of each step whose arguments break its tool's schema.
    """
    source = _source_of(plan)
    report = _Report(source, plan, schema_failed)
    if report.usable(_PLAN, "plan_id"):
        check_id(source.plan_id, plan.plan_id, report.violations)
    if not plan.steps and report.usable(_PLAN, "steps"):
        report.add(source.steps, "a plan needs at least one step")
    if len(plan.steps) > max_steps:
        report.add(source.steps, f"has {len(plan.steps)} steps; the limit is {max_steps}")
    else:
        first_at: dict[str, int] = {}
        for i, step in enumerate(plan.steps):
            _check_step(i, step, catalog, report)
            if step.step_id and step.step_id in first_at:
                first = source.step_paths[first_at[step.step_id]].step_id
                report.add(
                    source.step_paths[i].step_id,
                    f"step id {step.step_id!r} is listed twice (first at {first})",
                )
            first_at.setdefault(step.step_id, i)
        for i, step in enumerate(plan.steps):
            _check_dependencies(i, step, first_at, report)
        _check_cycles(plan, report)
    error = report.error()
    if error is not None:
        raise error


def _check_step(i: int, step: StepSpec, catalog: Catalog, report: _Report) -> None:
    paths = report.source.step_paths[i]
    if report.usable(i, "step_id"):
        check_id(paths.step_id, step.step_id, report.violations)
    tool_known = step.tool in catalog.tools
    if report.usable(i, "tool"):
        if not step.tool:
            report.add(paths.tool, "is required")
        elif not tool_known:
            report.add(paths.tool, f"unknown tool {step.tool!r}: the catalog has no such tool")
    if report.usable(i, "agent_id"):
        if not step.agent_id:
            report.add(paths.agent_id, "is required")
        elif step.agent_id not in catalog.agents:
            report.add(paths.agent_id, unknown_agent(step.agent_id, report.plan, catalog))
    if report.usable(i, "confidence"):
        _check_confidence(step.confidence, paths.confidence, report)
    if step.arguments is not None:
        _check_arguments(step, paths.arguments, catalog if tool_known else None, report)


def _check_confidence(value: object, path: str, report: _Report) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        report.add(path, f"must be a number, not {json_type(value)}")
    elif not math.isfinite(value):
        report.add(path, f"must be a finite number in [0, 1], not {value}")
    elif not 0.0 <= value <= 1.0:
        report.add(path, f"must be in [0, 1], not {value}")


def _check_arguments(step: StepSpec, path: str, catalog: Catalog | None, report: _Report) -> None:
    """JSON values first; then, for a known tool, the tool's schema."""
    arguments = step.arguments
    if not isinstance(arguments, Mapping):
        report.add(path, f"must be an object, not {json_type(arguments)}")
        return
    problems: list[FieldViolation] = []
    _check_json(arguments, path, 0, problems)
    report.violations.extend(problems)
    if problems or catalog is None:
        return
    try:
        catalog.check_arguments(step.tool, arguments, prefix=path)
    except InvalidArgument as err:
        report.violations.extend(err.violations)
        if report.schema_failed is not None:
            report.schema_failed(step.tool, step.agent_id, [v.field for v in err.violations])


def _check_json(value: object, path: str, depth: int, problems: list[FieldViolation]) -> None:
    """Note every value that JSON (and so a protobuf Struct) could not carry."""
    if depth > MAX_ARGUMENT_DEPTH:
        problems.append(FieldViolation(path, f"nests deeper than {MAX_ARGUMENT_DEPTH} levels"))
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(FieldViolation(path, "must be a finite number (not NaN or infinity)"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_json(item, member(path, key), depth + 1, problems)
            else:
                problems.append(FieldViolation(member(path, key), "keys must be strings"))
    elif isinstance(value, list | tuple):
        for j, item in enumerate(value):
            _check_json(item, f"{path}[{j}]", depth + 1, problems)
    elif value is not None and not isinstance(value, str | int | float):
        problems.append(FieldViolation(path, f"is not a JSON value ({json_type(value)})"))


def _check_dependencies(i: int, step: StepSpec, known: Mapping[str, int], report: _Report) -> None:
    paths = report.source.step_paths[i]
    seen: set[str] = set()
    for j, dep in enumerate(step.depends_on):
        path = paths.dependency(j)
        if not report.usable(i, f"depends_on[{j}]"):
            continue
        if not dep:
            report.add(path, "must name a step")
        elif dep == step.step_id:
            report.add(path, f"step {dep!r} cannot depend on itself")
        elif dep not in known:
            report.add(path, f"unknown step {dep!r}: no step of the plan has this id")
        elif dep in seen:
            report.add(path, f"{dep!r} is listed twice")
        seen.add(dep)


def _check_cycles(plan: PlanSpec, report: _Report) -> None:
    deps = _dependency_graph(plan.steps)
    for cycle in _cycles(deps):
        head, after = plan.steps[cycle[0]], plan.steps[cycle[1]]
        j = head.depends_on.index(after.step_id)
        report.add(
            report.source.step_paths[cycle[0]].dependency(j),
            _cycle_text([plan.steps[k].step_id for k in cycle]),
        )


def _cycle_text(ids: list[str]) -> str:
    loop = " -> ".join([*ids, ids[0]])
    return f"dependency cycle: {loop} (each step depends on the next)"


# The dependency graph -------------------------------------------------------


def _dependency_graph(steps: tuple[StepSpec, ...]) -> list[list[int]]:
    """deps[i]: the indices of the steps that step i depends on. A repeated step id
    names its first step; unknown names, self-references and repeats are left out."""
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        index.setdefault(step.step_id, i)
    deps: list[list[int]] = []
    for i, step in enumerate(steps):
        targets = [index[d] for d in step.depends_on if d in index and index[d] != i]
        deps.append(list(dict.fromkeys(targets)))
    return deps


def _kahn(deps: list[list[int]], nodes: set[int]) -> list[int]:
    """The nodes in dependency order, ties by index; those left out are on a cycle
    or depend on one."""
    pending = {n: sum(1 for d in deps[n] if d in nodes) for n in nodes}
    dependents: dict[int, list[int]] = {n: [] for n in nodes}
    for n in nodes:
        for d in deps[n]:
            if d in nodes:
                dependents[d].append(n)
    ready = [n for n in nodes if pending[n] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for m in dependents[n]:
            pending[m] -= 1
            if pending[m] == 0:
                heapq.heappush(ready, m)
    return order


def _cycles(deps: list[list[int]]) -> list[list[int]]:
    """Cycles of the graph, each starting at its earliest step, until none is left."""
    remaining = set(range(len(deps)))
    remaining -= set(_kahn(deps, remaining))
    cycles: list[list[int]] = []
    while remaining:
        # Every remaining node depends on another remaining one: walking the
        # first such dependency from any of them must come back around.
        walk = [min(remaining)]
        seen = {walk[0]: 0}
        while True:
            node = next(d for d in deps[walk[-1]] if d in remaining)
            if node in seen:
                cycle = walk[seen[node] :]
                break
            seen[node] = len(walk)
            walk.append(node)
        start = cycle.index(min(cycle))
        cycles.append(cycle[start:] + cycle[:start])
        remaining -= set(cycle)
        remaining -= set(_kahn(deps, remaining))
    return cycles


def topological_order(plan: PlanSpec) -> list[str]:
    """The step ids in dependency order, ties broken by submission order.

    Raises InvalidArgument (INVALID_PLAN) on a cycle, a repeated step id or an
    unknown dependency; a validated plan has none.
    """
    source = _source_of(plan)
    ids = [s.step_id for s in plan.steps]
    known: set[str] = set()
    for i, step_id in enumerate(ids):
        if step_id in known:
            raise InvalidArgument.field(
                source.step_paths[i].step_id, f"step id {step_id!r} is listed twice", reason=REASON
            )
        known.add(step_id)
    for i, step in enumerate(plan.steps):
        for j, dep in enumerate(step.depends_on):
            if dep == step.step_id:
                raise InvalidArgument.field(
                    source.step_paths[i].dependency(j), _cycle_text([dep]), reason=REASON
                )
            if dep not in known:
                raise InvalidArgument.field(
                    source.step_paths[i].dependency(j), f"unknown step {dep!r}", reason=REASON
                )
    deps = _dependency_graph(plan.steps)
    order = _kahn(deps, set(range(len(deps))))
    if len(order) < len(deps):
        cycle = _cycles(deps)[0]
        head, after = plan.steps[cycle[0]], plan.steps[cycle[1]]
        path = source.step_paths[cycle[0]].dependency(head.depends_on.index(after.step_id))
        raise InvalidArgument.field(
            path, _cycle_text([plan.steps[k].step_id for k in cycle]), reason=REASON
        )
    return [ids[n] for n in order]


__all__ = [
    "AGENTS_FILE",
    "MAX_STEPS",
    "SchemaFailed",
    "agent_entry",
    "parse_json_plan",
    "parse_phase21",
    "parse_spec",
    "topological_order",
    "unknown_agent",
    "validate",
]
