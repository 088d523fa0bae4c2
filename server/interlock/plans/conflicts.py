"""Conflict detection and resolution for a new plan, before it runs.

:func:`detect` checks a validated plan against itself and against the steps of
other plans that are running or finished recently, and says what the
orchestrator must change before running it. It is pure: no I/O, no clock
(``now`` is given), and the same input always gives the same report.

The six conflict types and what is done about each:

RESOURCE -> serialize
    More calls of one tool could run at once than its ``max_concurrency``
    allows: the new plan's steps of that tool that no dependency orders, plus
    the steps of other plans holding a slot (DECIDED, AWAITING_APPROVAL,
    DISPATCHED). The new plan's steps of the tool are chained one after another
    (``extra_dependencies``); steps of other plans are serialized at run time
    by the orchestrator's per-tool limiter.
ORDERING -> reorder, or reject
    A step would run before a step it must follow: its own ``depends_on``, or
    the contract rule "a step of tool C, the ``compensating_tool`` of tool T,
    runs after every step of T in the plan". For a Phase-21 plan the order is
    the submitted one (the order of ``plan.steps``); for an explicit-steps plan
    it is the ``depends_on`` graph, so a contract dependency it does not imply
    is the conflict. Resolved by running the plan in a topological order that
    keeps the submission order where it can (``order``) and adding the contract
    dependencies the plan does not state (``extra_dependencies``). When the
    dependencies form a cycle no order exists and the plan is rejected.
RATE_LIMIT -> throttle
    The plan's calls of a tool plus the calls of it in the last 60 seconds
    exceed ``rate_limit_per_minute``. Nothing is dropped: the excess steps get
    a ``not_before`` delay (rule in :func:`throttle_delay`).
DUPLICATE_ACTION -> dedupe
    A step of an irreversible tool repeats, with the same arguments, an earlier
    step of the plan or a step of another plan that is unfinished or took
    effect within ``duplicate_window_seconds``. The later step is skipped.
PERMISSION -> deny
    The step's agent lacks a permission the tool requires. The policy would
    deny it at run time too; this records it up front.
TIMEOUT -> cancel
    A step whose throttle delay alone is longer than its tool's
    ``timeout_seconds`` cannot be started within its timeout window; it is
    cancelled (denied up front; it counts as a failure). Steps that run too
    long once started are the orchestrator's business, not this module's.

A step is in at most one of ``skipped``, ``denied`` and ``not_before``.
Skipped and denied steps never run, so they take no concurrency slot, no rate
limit slot, and are never the original a duplicate is matched to. They stay in
``order`` and in the dependency graph. Steps naming a tool the catalog does
not know are left to plan validation: no tool check applies to them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from interlock.contracts import Catalog, ToolContract
from interlock.decisions import sha256_hex
from interlock.plans.model import (
    Conflict,
    ConflictType,
    InFlightStep,
    PlanSpec,
    Resolution,
    StepSpec,
    StepState,
)

RATE_WINDOW_SECONDS = 60.0
"""The window ``rate_limit_per_minute`` counts calls in."""

SLOT_STATES = frozenset({StepState.DECIDED, StepState.AWAITING_APPROVAL, StepState.DISPATCHED})
"""States of another plan's step that hold one of its tool's concurrency slots."""

CALLED_STATES = frozenset(StepState) - {
    StepState.PENDING,
    StepState.SKIPPED,
    StepState.CANCELLED,
}
"""States of another plan's step whose call was decided or made: it counts against
the tool's rate limit while its ``updated_at`` is less than 60 s old."""

UNFINISHED_STATES = frozenset(
    {StepState.PENDING, StepState.DECIDED, StepState.AWAITING_APPROVAL, StepState.DISPATCHED}
)
"""States of another plan's step that is still going to act: it is the original of a
duplicate however old its ``updated_at`` is."""

NO_EFFECT_STATES = frozenset({StepState.FAILED, StepState.CANCELLED, StepState.SKIPPED})
"""States of another plan's step whose action did not happen: never an original."""

POSSIBLE_RESOLUTIONS: Mapping[ConflictType, tuple[Resolution, ...]] = MappingProxyType(
    {
        ConflictType.RESOURCE: (Resolution.SERIALIZE,),
        ConflictType.ORDERING: (Resolution.REORDER, Resolution.REJECT),
        ConflictType.RATE_LIMIT: (Resolution.THROTTLE,),
        ConflictType.DUPLICATE_ACTION: (Resolution.DEDUPE,),
        ConflictType.PERMISSION: (Resolution.DENY,),
        ConflictType.TIMEOUT: (Resolution.CANCEL,),
    }
)
"""The resolutions each conflict type can get, in the order :func:`counts` lists them."""

_TYPE_RANK = {t: i for i, t in enumerate(ConflictType)}


@dataclass(frozen=True)
class ConflictSettings:
    """Tunables of conflict detection."""

    duplicate_window_seconds: float = 300.0
    """How long after its last update a finished step of another plan still makes
    a new step with the same tool and arguments a duplicate (DUPLICATE_ACTION).
    Unfinished steps count whatever their age."""


DEFAULT_SETTINGS = ConflictSettings()


@dataclass(frozen=True)
class Adjustments:
    """What the orchestrator must apply to the plan before running it."""

    order: tuple[str, ...]
    """Every step id, in the order to run them (a topological order of the plan's,
    the contracts' and the serializing dependencies, stable by submission position).
    The submission order when the plan is rejected."""
    extra_dependencies: Mapping[str, tuple[str, ...]]
    """Step -> the steps it must now wait for besides its own ``depends_on``: contract
    dependencies the plan did not state (ORDERING) and serializing chains (RESOURCE)."""
    skipped: Mapping[str, str]
    """Step -> why it is skipped (DUPLICATE_ACTION)."""
    denied: Mapping[str, str]
    """Step -> why it is refused up front (PERMISSION, TIMEOUT)."""
    not_before: Mapping[str, float]
    """Step -> seconds after the plan starts before it may be dispatched (RATE_LIMIT)."""


@dataclass(frozen=True)
class ConflictReport:
    conflicts: tuple[Conflict, ...]
    """Sorted by type (in ConflictType order), then in the order they were found."""
    adjustments: Adjustments
    rejected: bool
    """True when a conflict cannot be resolved: the plan must be refused."""


def detect(
    plan: PlanSpec,
    catalog: Catalog,
    in_flight: Sequence[InFlightStep],
    *,
    now: float,
    settings: ConflictSettings = DEFAULT_SETTINGS,
) -> ConflictReport:
    """Find the plan's conflicts with itself and with other plans' steps, and resolve them.

    ``in_flight`` holds the steps of other plans that are running or finished
    recently (steps of ``plan`` itself in it are ignored).
    """
    w = _Work(plan, catalog, [s for s in in_flight if s.plan_id != plan.plan_id], now, settings)
    contract = _contract_edges(w)
    full = _copy_graph(w.waits)
    for c, t in contract:
        full[c].add(t)
    base_order = _topological(w.ids, full, w.position)

    _check_permissions(w)
    _check_duplicates(w, base_order if base_order is not None else w.ids)
    if base_order is None:
        _reject_cycle(w, full)
        return w.report(order=w.ids, rejected=True)

    _check_ordering(w, contract, full, base_order)
    if plan.source_format == "phase21":
        _chain(w, base_order)
    _check_resources(w, base_order)
    order = _topological(w.ids, w.waits, w.position)
    assert order is not None, "serializing follows a topological order, so adds no cycle"
    _check_rate_limits(w, order)
    _check_timeouts(w)
    return w.report(order=order, rejected=False)


def _chain(w: _Work, order: Sequence[str]) -> None:
    """A Phase-21 plan runs its execution order one step at a time: each step
    waits for the one before it in the (possibly reordered) order. The order
    is a sequence, not a set of declared dependencies, so a contract rule the
    submitted order breaks is resolved by reordering rather than refused."""
    for before, after in itertools.pairwise(order):
        if not w.reaches(after, before):
            w.add_dependency(after, before)


def counts(conflicts: Iterable[Conflict]) -> dict[str, dict[str, int]]:
    """Detections and resolutions per conflict type, every type and resolution listed.

    ``{"RESOURCE": {"detected": 1, "serialize": 1}, "ORDERING": {"detected": 0,
    "reorder": 0, "reject": 0}, ...}``
    """
    out = {
        t.value: {"detected": 0, **{r.value: 0 for r in POSSIBLE_RESOLUTIONS[t]}}
        for t in ConflictType
    }
    for c in conflicts:
        row = out[c.type.value]
        row["detected"] += 1
        row[c.resolution.value] = row.get(c.resolution.value, 0) + 1
    return out


def arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 of the canonical JSON of a step's arguments, "" when it has none.

    Steps without arguments (the Phase-21 format carries none) are never
    deduplicated: nothing shows that two of them are the same action.
    """
    if arguments is None:
        return ""
    return sha256_hex(_plain(arguments))


def throttle_delay(excess_index: int, limit_per_minute: int) -> float:
    """The ``not_before`` of the k-th call (1-based) beyond a tool's free rate slots.

    The free slots are ``limit - calls in the last 60 s``; the first calls of
    the plan (in run order) take them with no delay. The k-th call after them
    waits ``ceil(k / limit) * 60`` seconds: at most ``limit`` calls start in
    each following minute, so, with every call dispatched at its
    ``not_before``, no 60-second window holds more than ``limit`` calls.
    """
    return math.ceil(excess_index / limit_per_minute) * RATE_WINDOW_SECONDS


# --- the working state -------------------------------------------------------------


@dataclass
class _Work:
    plan: PlanSpec
    catalog: Catalog
    others: list[InFlightStep]
    now: float
    settings: ConflictSettings
    ids: tuple[str, ...] = ()
    position: dict[str, int] = field(default_factory=dict)
    waits: dict[str, set[str]] = field(default_factory=dict)
    """Every dependency so far: step -> the steps it waits for."""
    extra: dict[str, set[str]] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    denied: dict[str, str] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = tuple(s.step_id for s in self.plan.steps)
        self.position = {sid: i for i, sid in enumerate(self.ids)}
        self.waits = {
            s.step_id: {d for d in s.depends_on if d in self.position} for s in self.plan.steps
        }

    def step(self, step_id: str) -> StepSpec:
        return self.plan.steps[self.position[step_id]]

    def contract(self, step: StepSpec) -> ToolContract | None:
        return self.catalog.tools.get(step.tool)

    def runs(self, step: StepSpec) -> bool:
        """Whether the step is still going to run (not skipped or denied)."""
        return step.step_id not in self.skipped and step.step_id not in self.denied

    def add_dependency(self, step_id: str, on: str) -> None:
        self.waits[step_id].add(on)
        self.extra.setdefault(step_id, set()).add(on)

    def reaches(self, step_id: str, target: str) -> bool:
        """Whether ``step_id`` waits for ``target``, directly or through other steps."""
        return target in self.closure(step_id)

    def closure(self, step_id: str) -> set[str]:
        """Every step ``step_id`` waits for, directly or through other steps."""
        seen: set[str] = set()
        stack = [step_id]
        while stack:
            for d in self.waits[stack.pop()]:
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen

    def record(
        self,
        kind: ConflictType,
        resolution: Resolution,
        description: str,
        step_ids: Iterable[str],
        plan_ids: Iterable[str] = (),
    ) -> None:
        self.conflicts.append(
            Conflict(
                type=kind,
                resolution=resolution,
                description=description,
                step_ids=tuple(sorted(set(step_ids), key=self.position.__getitem__)),
                plan_ids=tuple(sorted(set(plan_ids))),
                detected_at=self.now,
            )
        )

    def report(self, *, order: Sequence[str], rejected: bool) -> ConflictReport:
        conflicts = sorted(self.conflicts, key=lambda c: _TYPE_RANK[c.type])
        extra = {} if rejected else self.extra
        adjustments = Adjustments(
            order=tuple(order),
            extra_dependencies=_frozen({k: tuple(sorted(v)) for k, v in extra.items()}),
            skipped=_frozen(self.skipped),
            denied=_frozen(self.denied),
            not_before=_frozen({} if rejected else self.not_before),
        )
        return ConflictReport(tuple(conflicts), adjustments, rejected)


# --- PERMISSION --------------------------------------------------------------------


def _check_permissions(w: _Work) -> None:
    for step in w.plan.steps:
        contract = w.contract(step)
        if contract is None:
            continue
        agent = w.catalog.agents.get(step.agent_id)
        held = set(agent.permissions) if agent is not None else set()
        missing = [p for p in contract.required_permissions if p not in held]
        if not missing:
            continue
        who = f"agent {step.agent_id}" + ("" if agent is not None else " (not in the catalog)")
        reason = (
            f"{who} lacks permission {', '.join(missing)} that {step.tool} requires; "
            f"step {step.step_id} is denied"
        )
        w.denied[step.step_id] = reason
        w.record(ConflictType.PERMISSION, Resolution.DENY, reason, [step.step_id])


# --- DUPLICATE_ACTION ----------------------------------------------------------------


def _check_duplicates(w: _Work, order: Sequence[str]) -> None:
    """Skip each later repeat of an irreversible action, in run order."""
    first: dict[tuple[str, str], StepSpec] = {}
    for step in (w.step(sid) for sid in order):
        contract = w.contract(step)
        if contract is None or contract.reversible or not w.runs(step):
            continue
        digest = arguments_hash(step.arguments)
        if not digest:
            continue
        earlier = _earlier_action(w, step.tool, digest)
        if earlier is not None:
            age = w.now - earlier.updated_at
            original = (
                f"step {earlier.step_id} of plan {earlier.plan_id} "
                f"(by {earlier.agent_id}, {earlier.state.value} {age:.0f} s ago)"
            )
            _skip_duplicate(w, step, original, [earlier.plan_id])
        elif (step.tool, digest) in first:
            prior = first[(step.tool, digest)]
            _skip_duplicate(w, step, f"step {prior.step_id} of this plan (by {prior.agent_id})")
        else:
            first[(step.tool, digest)] = step


def _earlier_action(w: _Work, tool: str, digest: str) -> InFlightStep | None:
    window = w.settings.duplicate_window_seconds
    matches = [
        s
        for s in w.others
        if s.tool == tool
        and s.arguments_hash == digest
        and s.state not in NO_EFFECT_STATES
        and (s.state in UNFINISHED_STATES or w.now - s.updated_at <= window)
    ]
    return min(matches, key=lambda s: (s.updated_at, s.plan_id, s.step_id), default=None)


def _skip_duplicate(w: _Work, step: StepSpec, original: str, plan_ids: Sequence[str] = ()) -> None:
    reason = (
        f"step {step.step_id} ({step.tool} by {step.agent_id}) repeats {original} "
        f"with the same arguments; {step.tool} is irreversible, so {step.step_id} is skipped"
    )
    w.skipped[step.step_id] = reason
    w.record(ConflictType.DUPLICATE_ACTION, Resolution.DEDUPE, reason, [step.step_id], plan_ids)


# --- ORDERING --------------------------------------------------------------------------


def _contract_edges(w: _Work) -> list[tuple[str, str]]:
    """(c, t) for each step c whose tool compensates the tool of step t in the plan."""
    edges = []
    for c in w.plan.steps:
        for t in w.plan.steps:
            contract = w.contract(t)
            if contract is not None and contract.compensating_tool == c.tool != t.tool:
                edges.append((c.step_id, t.step_id))
    return edges


def _edge_reason(w: _Work, step_id: str, on: str) -> str:
    if on in w.step(step_id).depends_on:
        return "its depends_on"
    return f"{w.step(step_id).tool} compensates {w.step(on).tool}"


def _check_ordering(
    w: _Work,
    contract: Sequence[tuple[str, str]],
    full: Mapping[str, set[str]],
    base_order: Sequence[str],
) -> None:
    """Phase-21: steps submitted before a step they wait for. Both formats: contract
    dependencies the plan's own do not imply are added; for an explicit-steps plan,
    whose order is its dependencies, each such step is a conflict."""
    if w.plan.source_format == "phase21":
        _check_submitted_order(w, full)
    # The compensated step that runs last first: the earlier ones often wait for it.
    rank = {sid: i for i, sid in enumerate(base_order)}
    unstated: dict[str, list[str]] = {}
    before: dict[str, set[str]] = {}
    for c, t in sorted(contract, key=lambda e: (w.position[e[0]], -rank[e[1]])):
        waited = before.setdefault(c, w.closure(c))
        if t not in waited:
            w.add_dependency(c, t)
            unstated.setdefault(c, []).append(t)
            waited |= w.closure(t) | {t}
    if w.plan.source_format != "phase21":
        for c, ts in unstated.items():
            _record_unordered_compensation(w, c, ts)


def _check_submitted_order(w: _Work, full: Mapping[str, set[str]]) -> None:
    """A Phase-21 step submitted before a step it must wait for."""
    for sid in w.ids:
        later = sorted(
            (d for d in full[sid] if w.position[d] > w.position[sid]), key=w.position.__getitem__
        )
        if not later:
            continue
        step = w.step(sid)
        needs = "; ".join(f"{_name(w.step(d))} ({_edge_reason(w, sid, d)})" for d in later)
        description = (
            f"step {_name(step)} was submitted before the steps it must wait for: {needs}; "
            f"reordered to run after them"
        )
        w.record(ConflictType.ORDERING, Resolution.REORDER, description, [sid, *later])


def _record_unordered_compensation(w: _Work, c: str, ts: Sequence[str]) -> None:
    step = w.step(c)
    targets = sorted(ts, key=w.position.__getitem__)
    undone = ", ".join(_name(w.step(t)) for t in targets)
    description = (
        f"step {_name(step)} compensates {undone}, but the plan's dependencies let it run "
        f"before them; {c} now waits for {', '.join(targets)}"
    )
    w.record(ConflictType.ORDERING, Resolution.REORDER, description, [c, *targets])


def _reject_cycle(w: _Work, full: Mapping[str, set[str]]) -> None:
    cycle = _find_cycle(w.ids, full, w.position)
    links = [
        f"{_name(w.step(a))} waits for {b} ({_edge_reason(w, a, b)})"
        for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)
    ]
    description = (
        f"dependency cycle: {'; '.join(links)}; no order can run the plan, so it is rejected"
    )
    w.record(ConflictType.ORDERING, Resolution.REJECT, description, cycle)


# --- RESOURCE --------------------------------------------------------------------------


def _check_resources(w: _Work, order: Sequence[str]) -> None:
    for tool in sorted({s.tool for s in w.plan.steps}):
        contract = w.catalog.tools.get(tool)
        if contract is None:
            continue
        mine = [sid for sid in order if w.step(sid).tool == tool and w.runs(w.step(sid))]
        if not mine:
            continue
        running = sorted(
            (s for s in w.others if s.tool == tool and s.state in SLOT_STATES),
            key=lambda s: (s.plan_id, s.step_id),
        )
        together = _largest_unordered_set(w, mine)
        if together + len(running) > contract.max_concurrency:
            _serialize(w, contract, mine, together, running)


def _serialize(
    w: _Work,
    contract: ToolContract,
    mine: Sequence[str],
    together: int,
    running: Sequence[InFlightStep],
) -> None:
    for before, after in itertools.pairwise(mine):
        if not w.reaches(after, before):
            w.add_dependency(after, before)
    names = ", ".join(f"{sid} by {w.step(sid).agent_id}" for sid in mine)
    holders = ", ".join(
        f"{s.plan_id}/{s.step_id} by {s.agent_id} ({s.state.value})" for s in running
    )
    others = f"{len(running)} step(s) of other plans hold a slot ({holders})"
    if together > 1:
        demand = f"{together} steps of this plan could run together ({names})"
        demand += f" while {others}" if running else ""
    else:
        demand = f"{others} when this plan's {names} runs"
    actions = []
    if len(mine) > 1:
        actions.append(
            f"this plan's {contract.name} steps run one after another ({' -> '.join(mine)})"
        )
    if running:
        actions.append("steps of other plans are serialized at run time by the per-tool limiter")
    description = (
        f"{contract.name} allows {contract.max_concurrency} call(s) at a time, but {demand}; "
        f"serialized: {'; '.join(actions)}"
    )
    w.record(
        ConflictType.RESOURCE,
        Resolution.SERIALIZE,
        description,
        mine,
        [s.plan_id for s in running],
    )


def _largest_unordered_set(w: _Work, steps: Sequence[str]) -> int:
    """The most of ``steps`` that no dependency orders against each other.

    By Dilworth's theorem the largest such set (antichain) has as many steps as
    the fewest chains covering them: the steps minus a maximum matching of
    "a waits for b" pairs (found with augmenting paths, iteratively).
    """
    closures = {a: w.closure(a) for a in steps}
    after = {a: [b for b in steps if b != a and b in closures[a]] for a in steps}
    match_left: dict[str, str] = {}
    match_right: dict[str, str] = {}
    for start in steps:
        _augment(start, after, match_left, match_right)
    return len(steps) - len(match_left)


def _augment(
    start: str,
    after: Mapping[str, Sequence[str]],
    match_left: dict[str, str],
    match_right: dict[str, str],
) -> bool:
    parent: dict[str, str] = {}
    queue = [start]
    for left in queue:
        for right in after[left]:
            if right in parent:
                continue
            parent[right] = left
            if right not in match_right:
                _flip(right, parent, match_left, match_right)
                return True
            queue.append(match_right[right])
    return False


def _flip(
    right: str | None,
    parent: Mapping[str, str],
    match_left: dict[str, str],
    match_right: dict[str, str],
) -> None:
    while right is not None:
        left = parent[right]
        previous = match_left.get(left)
        match_left[left] = right
        match_right[right] = left
        right = previous


# --- RATE_LIMIT and TIMEOUT ---------------------------------------------------------


def _check_rate_limits(w: _Work, order: Sequence[str]) -> None:
    for tool in sorted({s.tool for s in w.plan.steps}):
        contract = w.catalog.tools.get(tool)
        if contract is None:
            continue
        mine = [sid for sid in order if w.step(sid).tool == tool and w.runs(w.step(sid))]
        recent = [
            s
            for s in w.others
            if s.tool == tool
            and s.state in CALLED_STATES
            and w.now - s.updated_at < RATE_WINDOW_SECONDS
        ]
        limit = contract.rate_limit_per_minute
        if len(mine) + len(recent) <= limit:
            continue
        free = max(0, limit - len(recent))
        delays = {
            sid: throttle_delay(i - free + 1, limit) for i, sid in enumerate(mine[free:], free)
        }
        w.not_before.update(delays)
        throttled = ", ".join(f"{sid} +{delays[sid]:.0f} s" for sid in delays)
        description = (
            f"{tool} allows {limit} call(s) a minute, but this plan makes {len(mine)} "
            f"({', '.join(f'{sid} by {w.step(sid).agent_id}' for sid in mine)})"
            f"{_recent_text(recent)}; throttled, none dropped: {throttled}"
        )
        w.record(
            ConflictType.RATE_LIMIT,
            Resolution.THROTTLE,
            description,
            delays,
            [s.plan_id for s in recent],
        )


def _recent_text(recent: Sequence[InFlightStep]) -> str:
    if not recent:
        return ""
    plans = ", ".join(sorted({s.plan_id for s in recent}))
    return f" and {len(recent)} call(s) of it were made in the last 60 s (plans {plans})"


def _check_timeouts(w: _Work) -> None:
    for sid in sorted(w.not_before, key=w.position.__getitem__):
        step = w.step(sid)
        contract = w.contract(step)
        delay = w.not_before[sid]
        if contract is None or delay <= contract.timeout_seconds:
            continue
        reason = (
            f"step {_name(step)} would wait {delay:.0f} s for the {step.tool} rate limit, "
            f"longer than its {contract.timeout_seconds:g} s timeout; cancelled (counts as failed)"
        )
        del w.not_before[sid]
        w.denied[sid] = reason
        w.record(ConflictType.TIMEOUT, Resolution.CANCEL, reason, [sid])


# --- graphs and helpers ---------------------------------------------------------------


def _topological(
    ids: Sequence[str], waits: Mapping[str, set[str]], position: Mapping[str, int]
) -> list[str] | None:
    """A topological order stable by submission position, or None on a cycle."""
    order = _kahn(ids, waits, position)
    return order if len(order) == len(ids) else None


def _kahn(
    ids: Sequence[str], waits: Mapping[str, set[str]], position: Mapping[str, int]
) -> list[str]:
    """Kahn's algorithm, taking the earliest submitted ready step first. Steps on or
    behind a dependency cycle are left out."""
    pending = {sid: len(waits[sid]) for sid in ids}
    dependents: dict[str, list[str]] = {sid: [] for sid in ids}
    for sid in ids:
        for d in waits[sid]:
            dependents[d].append(sid)
    ready = [position[sid] for sid in ids if pending[sid] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        sid = ids[heapq.heappop(ready)]
        order.append(sid)
        for nxt in dependents[sid]:
            pending[nxt] -= 1
            if pending[nxt] == 0:
                heapq.heappush(ready, position[nxt])
    return order


def _find_cycle(
    ids: Sequence[str], waits: Mapping[str, set[str]], position: Mapping[str, int]
) -> list[str]:
    """One dependency cycle, starting at its earliest submitted step.

    Every step Kahn's algorithm leaves out waits for another left-out step, so
    following those waits from any of them must come back round.
    """
    ordered = set(_kahn(ids, waits, position))
    path: list[str] = []
    seen: dict[str, int] = {}
    sid = next(s for s in ids if s not in ordered)
    while sid not in seen:
        seen[sid] = len(path)
        path.append(sid)
        sid = min((d for d in waits[sid] if d not in ordered), key=position.__getitem__)
    cycle = path[seen[sid] :]
    start = min(range(len(cycle)), key=lambda i: position[cycle[i]])
    return cycle[start:] + cycle[:start]


def _copy_graph(waits: Mapping[str, set[str]]) -> dict[str, set[str]]:
    return {k: set(v) for k, v in waits.items()}


def _name(step: StepSpec) -> str:
    return f"{step.step_id} ({step.tool} by {step.agent_id})"


def _plain(value: Any) -> Any:
    """Mappings as dicts and sequences as lists, so the canonical JSON can encode them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(d.items())))


__all__ = [
    "CALLED_STATES",
    "DEFAULT_SETTINGS",
    "NO_EFFECT_STATES",
    "POSSIBLE_RESOLUTIONS",
    "RATE_WINDOW_SECONDS",
    "SLOT_STATES",
    "UNFINISHED_STATES",
    "Adjustments",
    "ConflictReport",
    "ConflictSettings",
    "arguments_hash",
    "counts",
    "detect",
    "throttle_delay",
]
