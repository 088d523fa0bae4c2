"""Tool-call decisions and results: validate, ask the policy, record.

Every decision goes the same way: the request is checked (agent, tool,
confidence, argument size and schema); the policy input is built from the
contract, the agent's grants, the confidence, the counts and the switch
overrides, so the policy is a pure function of it; the engine evaluates it;
and the decision is committed with its event and audit lines before the
caller hears it. When the policy cannot be evaluated the decision is DENY in
MOCK mode with the reason (fail closed), recorded and counted like any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from interlock import logcontext
from interlock.approvals import Approval, Approvals, covers
from interlock.audit import TOOL_EXECUTION_LOG
from interlock.config import ServerConfig
from interlock.contracts import Catalog
from interlock.decision_facts import (
    DecisionMade,
    DecisionRecord,
    ResultRecord,
    ResultReported,
    canonical_json,
)
from interlock.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InterlockError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from interlock.grants import Grant, Grants, GrantTaken
from interlock.journal import Batch, Delete, Guard, Insert, Journal, Recorded
from interlock.journal.trust import PolicyApprovals
from interlock.metrics import Metrics
from interlock.policy.cache import DecisionCache
from interlock.policy.engine import PolicyDecision
from interlock.policy.manager import PolicyManager
from interlock.trust import (
    AMBIGUOUS,
    BAD_OUTCOMES,
    DENIAL,
    TrustBook,
    TrustChange,
    TrustChanged,
    TrustParams,
)

log = logging.getLogger(__name__)

# Decision ids: a random prefix per process and a counter (uuid4 per call
# cost ~15 us of os.urandom on this machine's hot path).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


SHARED_CAP_ATTEMPTS = 50
"""Evaluations of one call before giving up while other replicas keep taking LIVE slots."""
GRANT_ATTEMPTS = 50
"""Decisions of one call before giving up while its grants keep being used up meanwhile."""
POLICY_APPROVAL_WINDOW = 3600.0
"""How far back the policy's count of its own approvals of a pair goes (its rate)."""
HELD_UNTIL_RELEASED = 10 * 365 * 86400.0
"""A plan step's LIVE hold lasts until its step releases it (its row's ``until``)."""


class _CapTaken(Exception):
    """Another replica took the LIVE slot this decision counted on."""


@dataclass(frozen=True)
class _Evaluated:
    """A call's policy answer, with the input it was given."""

    decision: PolicyDecision
    revision: str
    fail_closed: bool
    input_json: str
    """The canonical policy input (kept for replay)."""
    input_hash: str
    grant: Grant | None = None
    """The grant the policy said covers the call (input.grants), if any."""


def new_decision_id() -> str:
    return f"dec_{_ID_PREFIX}{next(_ID_COUNTER):010x}"


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
"""Ids: matched whole (``fullmatch``; ``$`` would let a trailing newline through)."""
OUTCOMES = ("SUCCEEDED", "FAILED", "TIMED_OUT")


def sha256_hex(value: Any) -> str:
    return _hash(canonical_json(value))


def _hash(as_json: str) -> str:
    """SHA-256 (hex) of JSON text already made canonical."""
    return hashlib.sha256(as_json.encode()).hexdigest()


def fail_closed_reason(detail: str) -> str:
    """The reason a decision gives when the policy could not be evaluated."""
    return f"the policy could not be evaluated ({detail}); failing closed: the call is denied"


@dataclass(frozen=True)
class ToolCall:
    agent_id: str
    tool: str
    arguments: Mapping[str, Any]
    confidence: float | None
    plan_id: str = ""
    step_id: str = ""
    check_schema: bool = True
    """False for plan steps submitted without arguments (the Phase-21 format)."""
    approval_id: str = ""
    """An APPROVED approval the call presents (used up if it covers the call)."""
    requested_by: str = ""
    """The authenticated principal asking (recorded on an approval it needs)."""
    orchestrated: bool = False
    """A plan step the orchestrator hands to a worker: a LIVE decision counts
    toward the LIVE cap until the orchestrator releases it (a result, a final
    state, or a new decision at hand-off), not until a timeout runs out."""
    supersedes: str = ""
    """The decision this one replaces (a step checked again at hand-off)."""
    prior_approval: Approval | None = None
    """The approval the superseded decision used: it still covers the same call
    when it covers the policy in force (:func:`~interlock.approvals.covers`)."""


def check_id(
    name: str, value: str, violations: list[FieldViolation], *, required: bool = True
) -> None:
    if not value:
        if required:
            violations.append(FieldViolation(name, "is required"))
    elif not ID_PATTERN.fullmatch(value):
        violations.append(
            FieldViolation(
                name,
                "must be 1-128 characters of letters, digits and _ . : @ -, starting with a letter or digit",
            )
        )


class DecisionService:
    def __init__(
        self, config: ServerConfig, policies: PolicyManager, journal: Journal, metrics: Metrics
    ) -> None:
        self.config = config
        self.policies = policies
        self.journal = journal
        self.metrics = metrics
        self._live: dict[str, float] = {}
        self._live_lock = asyncio.Lock()
        self._releases: set[asyncio.Task[None]] = set()
        """Held while a LIVE answer is evaluated again and takes its slot."""
        """LIVE decisions in flight: decision id -> when it stops counting (a
        direct call: its tool's timeout after the decision; an orchestrated
        step: never, until :meth:`release_live`)."""
        self.cache = DecisionCache(config.decision_cache_size)
        self.engine_available = True
        """False from the first failed evaluation or probe until a probe answers:
        while False, no answer comes from the decision cache."""
        self.engine_failures = 0
        """Failed decision evaluations so far: a probe that overlapped one does
        not mark the engine up."""
        self.on_engine_failure: Callable[[str], None] | None = None
        """Told (on the event loop) when an evaluation fails: the server marks
        the engine down at once, without waiting for its next probe."""
        self.live_refusal: Callable[[], str] | None = None
        """Why this replica refuses LIVE now ("" when it does not): replicas
        serving different policy revisions (:mod:`interlock.replicas`)."""
        self.on_decided: Callable[[DecisionRecord, PolicyDecision, str], None] | None = None
        """Told (on the event loop, without awaiting) of each recorded decision:
        the record, the active set's answer and the canonical input (the
        shadow's sampler, :mod:`interlock.shadow`)."""
        self.on_schema_failure: Callable[[str, str, list[str]], None] | None = None
        """Told (on the event loop) when a call is refused for breaking its tool's
        argument schema: (tool, agent, the violations' fields), for the learning signals."""
        engine = policies.engine.name
        self._evaluation_seconds = metrics.policy_evaluation.labels(engine)
        self._fail_closed = metrics.fail_closed.labels(engine)
        self._cache_hits = metrics.decision_cache_hits
        self.decision_counts: dict[str, int] = {}
        self.approvals = Approvals(journal, metrics)
        self.grants = Grants(journal, metrics, max_seconds=config.grant_max_seconds)
        self.trust = TrustBook(journal, metrics)
        self.policy_approvals = PolicyApprovals(journal.backend)
        self.approvals.denied.append(self._approval_denied)

    # Building the input ----------------------------------------------------

    def validate(self, call: ToolCall, catalog: Catalog) -> str:
        """Check a call; return its arguments as canonical JSON."""
        violations: list[FieldViolation] = []
        arguments_json = ""
        check_id("agent_id", call.agent_id, violations)
        if not call.tool:
            violations.append(FieldViolation("tool", "is required"))
        if call.confidence is None:
            violations.append(FieldViolation("confidence", "is required"))
        elif not math.isfinite(call.confidence) or not 0.0 <= call.confidence <= 1.0:
            violations.append(
                FieldViolation("confidence", f"must be in [0, 1], not {call.confidence}")
            )
        check_id("plan_id", call.plan_id, violations, required=False)
        check_id("step_id", call.step_id, violations, required=False)
        arguments_json = canonical_json(call.arguments)
        self._check_size("arguments", arguments_json, violations)
        if violations:
            raise InvalidArgument.of(violations)
        catalog.tool(call.tool)
        catalog.agent(call.agent_id)
        if call.check_schema:
            catalog.check_arguments(call.tool, call.arguments)
        return arguments_json

    def _check_size(self, name: str, as_json: str, violations: list[FieldViolation]) -> None:
        size = len(as_json.encode())
        if size > self.config.max_argument_bytes:
            limit = self.config.max_argument_bytes
            violations.append(FieldViolation(name, f"is {size} bytes; the limit is {limit}"))

    def live_in_flight(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        for decision_id in [d for d, until in self._live.items() if until <= now]:
            del self._live[decision_id]
        self.metrics.live_in_flight.set(len(self._live))
        return len(self._live)

    def hold_live(self, decision_id: str) -> None:
        """Count an orchestrated LIVE step until :meth:`release_live` (restart)."""
        self._live[decision_id] = math.inf
        self.metrics.live_in_flight.set(len(self._live))

    def _forget_live(self, decision_id: str) -> None:
        """Stop counting a LIVE decision in this process (the gauge follows)."""
        if self._live.pop(decision_id, None) is not None:
            self.metrics.live_in_flight.set(len(self._live))

    def release_live(self, decision_id: str) -> None:
        """An orchestrated LIVE step ended (or was decided again): it stops counting."""
        self._forget_live(decision_id)
        if self.journal.shared:  # its hold in the database goes too (the owner may have changed)
            task = asyncio.ensure_future(self._drop_hold(decision_id))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def drop_live(self, decision_id: str) -> None:
        """Like :meth:`release_live`, and on a shared store wait until the hold is
        gone (a step decided again at hand-off must not count itself)."""
        self._forget_live(decision_id)
        if self.journal.shared:
            await self._drop_hold(decision_id)

    async def _drop_hold(self, decision_id: str) -> None:
        try:
            await self.journal.record(
                Recorded(row_list=[Delete("live_holds", {"decision_id": decision_id})])
            )
        except Exception:  # the store is down: the hold stays until its step ends again
            log.exception("could not release the LIVE hold of %s", decision_id)

    def trust_params(self) -> TrustParams:
        """The trust rules of the active policy set (:mod:`interlock.trust`)."""
        active = self.policies.active
        return self.trust.params(active.revision, active.policy_set.data)

    def _auto_approve_on(self) -> bool:
        """Whether the active set's approvals data enables policy-made approvals."""
        data = self.policies.active.policy_set.data
        auto = data.get("interlock", {}).get("config", {}).get("approvals", {})
        auto = auto.get("auto_approve", {}) if isinstance(auto, Mapping) else {}
        return isinstance(auto, Mapping) and auto.get("enabled") is True

    def ambiguous(self, agent_id: str, tool: str) -> None:
        """A LIVE plan step's worker vanished (AMBIGUOUS): a bad outcome of the pair."""
        self.trust.record_later(agent_id, tool, AMBIGUOUS, "LIVE", self.trust_params())

    def _approval_denied(self, approval: Approval) -> None:
        """A human denied what the policy sent to approval: a bad outcome of the pair."""
        self.trust.record_later(
            approval.agent_id, approval.tool, DENIAL, "LIVE", self.trust_params()
        )

    def build_input(
        self,
        call: ToolCall,
        catalog: Catalog,
        *,
        live_in_flight: int | None = None,
        trust: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        tool = catalog.tool(call.tool)
        agent = catalog.agent(call.agent_id)
        return {
            "tool": call.tool,
            "contract": tool.policy_view(),
            "agent": {"id": agent.id, "permissions": list(agent.permissions)},
            "confidence": call.confidence,
            "arguments": dict(call.arguments),
            "counts": {
                "live_in_flight": self.live_in_flight()
                if live_in_flight is None
                else live_in_flight
            },
            "switches": self.config.switch_overrides(),
            "plan": {"plan_id": call.plan_id, "step_id": call.step_id},
            "trust": trust if trust is not None else {"state": "TRUSTED", "failures": 0},
        }

    # Deciding --------------------------------------------------------------

    async def evaluate(
        self,
        policy_input: dict[str, Any],
        input_hash: str | None = None,
        *,
        live: bool = False,
    ) -> tuple[PolicyDecision, str, bool]:
        """Evaluate on the active set; on any failure, a fail-closed DENY.

        With an input hash, a decision the active revision already made for
        the same input comes from the cache (a policy is a pure function),
        except while the engine is known to be down: from the first failed
        evaluation (here) or probe (the server's monitor) until a probe
        answers again, every call goes to the engine and fails closed, as it
        would without a cache. A cached answer is never served after a
        failure was seen. ``live``: a decision's evaluation, whose failure
        marks the engine down (the playground's does not).
        """
        active = self.policies.active
        if input_hash is not None and self.engine_available:
            cached = self.cache.get(active.revision, input_hash)
            if cached is not None:
                self._cache_hits.inc()
                return self._refuse_live(cached, live), active.revision, False
        started = time.perf_counter()
        try:
            decision = await active.compiled.evaluate(policy_input)
            if input_hash is not None:
                self.cache.put(active.revision, input_hash, decision)
            return self._refuse_live(decision, live), active.revision, False
        except InterlockError as exc:
            reason = exc.message
        except Exception as exc:  # an engine bug must not let a call through
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._evaluation_seconds.observe(time.perf_counter() - started)
        self._fail_closed.inc()
        if live:
            self._engine_failed(reason)
        denied = PolicyDecision(
            "DENY",
            "MOCK",
            False,
            (fail_closed_reason(reason),),
        )
        return denied, active.revision, True

    def _refuse_live(self, decision: PolicyDecision, live: bool) -> PolicyDecision:
        """A LIVE answer, while this replica must not answer LIVE (its policy
        revision is not the newest other replicas serve): denied, fail closed."""
        refusal = self.live_refusal() if live and self.live_refusal is not None else ""
        if not refusal or decision.mode != "LIVE":
            return decision
        return PolicyDecision("DENY", "MOCK", False, (refusal,))

    def _engine_failed(self, reason: str) -> None:
        self.engine_failures += 1
        was = self.engine_available
        self.engine_available = False  # from now on, no answer from the cache
        if was:
            log.warning("policy evaluation failed; engine marked down until it answers: %s", reason)
        if self.on_engine_failure is not None:
            self.on_engine_failure(reason)

    async def decide(self, call: ToolCall) -> DecisionRecord:
        started = time.perf_counter()
        catalog = self.policies.active.catalog
        try:
            arguments_json = self.validate(call, catalog)
        except InvalidArgument as exc:
            if exc.reason == "ARGUMENTS_SCHEMA" and self.on_schema_failure is not None:
                self.on_schema_failure(call.tool, call.agent_id, [v.field for v in exc.violations])
            raise
        reserved: Approval | None = None
        if call.approval_id:
            reserved = await self.approvals.reserve(
                call.approval_id, call.agent_id, call.tool, _hash(arguments_json), call.requested_by
            )
        try:
            for _ in range(GRANT_ATTEMPTS):
                try:
                    return await self._decide(call, catalog, arguments_json, reserved, started)
                except GrantTaken:  # used up, revoked or expired meanwhile: decide again
                    continue
            raise Unavailable(
                f"the grants covering this call kept changing over {GRANT_ATTEMPTS} decisions; "
                "try again"
            )
        finally:
            if reserved is not None:
                self.approvals.release(reserved.approval_id)

    async def _decide(
        self,
        call: ToolCall,
        catalog: Catalog,
        arguments_json: str,
        reserved: Approval | None,
        started: float,
    ) -> DecisionRecord:
        if self.journal.shared:
            return await self._decide_shared(call, catalog, arguments_json, reserved, started)
        counted = self.live_in_flight()
        evaluated = await self._evaluate_call(call, catalog, counted)
        # The LIVE cap is exact. A LIVE answer registers below without awaiting
        # anything after this check, so it takes its slot atomically, unless
        # other LIVE decisions registered while it was evaluated (or one is being
        # settled under the lock): then it is evaluated again under the lock with
        # the count as it stands. Nobody registers while the lock is held, and
        # results only lower the count, so one more evaluation is always enough.
        lock: asyncio.Lock | None = None
        if evaluated.decision.mode == "LIVE" and (
            self._live_lock.locked() or self.live_in_flight() > counted
        ):
            await self._live_lock.acquire()
            lock = self._live_lock
            try:
                evaluated = await self._evaluate_call(call, catalog, self.live_in_flight())
            except BaseException:
                lock.release()
                raise
        held = [lock] if lock is not None else []

        def release() -> None:
            """Release the lock once, if this call holds it."""
            while held:
                held.pop().release()

        try:
            return await self._settle(
                call, catalog, arguments_json, reserved, started, evaluated, release
            )
        finally:
            release()

    async def _evaluate_call(self, call: ToolCall, catalog: Catalog, counted: int) -> _Evaluated:
        """The policy's answer for the call with ``counted`` LIVE executions in flight."""
        trust = await self.trust.policy_view(
            call.agent_id, call.tool, self.trust_params(), time.time()
        )
        policy_input = self.build_input(call, catalog, live_in_flight=counted, trust=trust)
        if self._auto_approve_on():  # the count the policy's rate of self-approvals needs
            policy_input["counts"]["policy_approvals"] = await self.policy_approvals.count(
                call.agent_id, call.tool, time.time() - POLICY_APPROVAL_WINDOW
            )
        input_json = canonical_json(policy_input)  # once: hashed, and kept for replay
        input_hash = _hash(input_json)
        decision, revision, fail_closed = await self.evaluate(policy_input, input_hash, live=True)
        if decision.verdict != "PENDING_APPROVAL" or call.approval_id or call.prior_approval:
            return _Evaluated(decision, revision, fail_closed, input_json, input_hash)
        # Only a call that would wait for an approval is offered its grants: the
        # common case costs no read, and the policy decides whether one covers it.
        grants = await self.grants.covering(
            call.agent_id, call.tool, call.plan_id, call.arguments, time.time()
        )
        if not grants:
            return _Evaluated(decision, revision, fail_closed, input_json, input_hash)
        policy_input["grants"] = [g.policy_view() for g in grants]
        input_json = canonical_json(policy_input)
        input_hash = _hash(input_json)
        decision, revision, fail_closed = await self.evaluate(policy_input, input_hash, live=True)
        by_id = {g.grant_id: g for g in grants}
        grant = by_id.get(decision.grant) if decision.verdict == "ALLOW" else None
        if decision.verdict == "ALLOW" and grant is None and decision.grant:
            reason = fail_closed_reason(f"the policy named grant {decision.grant!r}, not offered")
            decision, fail_closed = PolicyDecision("DENY", "MOCK", False, (reason,)), True
        return _Evaluated(decision, revision, fail_closed, input_json, input_hash, grant)

    async def _decide_shared(
        self,
        call: ToolCall,
        catalog: Catalog,
        arguments_json: str,
        reserved: Approval | None,
        started: float,
    ) -> DecisionRecord:
        """The LIVE cap across replicas (PostgreSQL): the count is the database's
        LIVE holds, and a LIVE decision commits its hold with a guard that the
        holds number at most the count the policy saw plus this one. A replica
        that took a slot meanwhile makes the guard fail: evaluate again with the
        count as it is now (it only grows up to the cap, so this ends)."""
        for _ in range(SHARED_CAP_ATTEMPTS):
            counted = await self.journal.live_holds.count(time.time())
            evaluated = await self._evaluate_call(call, catalog, counted)
            try:
                return await self._settle(
                    call,
                    catalog,
                    arguments_json,
                    reserved,
                    started,
                    evaluated,
                    lambda: None,
                    shared_count=counted,
                )
            except _CapTaken:
                continue
        raise Unavailable(
            "the count of LIVE executions across replicas kept changing over "
            f"{SHARED_CAP_ATTEMPTS} evaluations; try again"
        )

    async def _settle(
        self,
        call: ToolCall,
        catalog: Catalog,
        arguments_json: str,
        reserved: Approval | None,
        started: float,
        evaluated: _Evaluated,
        release: Callable[[], None],
        *,
        shared_count: int | None = None,
    ) -> DecisionRecord:
        """Record an evaluated decision; a LIVE one takes its slot before anything awaits."""
        decision, revision = evaluated.decision, evaluated.revision
        fail_closed, input_hash = evaluated.fail_closed, evaluated.input_hash
        input_json = evaluated.input_json
        decision_id = new_decision_id()
        now = time.time()
        approval: Approval | None = None
        approval_batch: Batch | None = None
        prior = call.prior_approval
        if decision.verdict == "PENDING_APPROVAL" and reserved is None and prior is not None:
            if covers(prior, decision.approval, revision):
                who = ", ".join(prior.approved_by)
                decision = PolicyDecision(
                    "ALLOW",
                    decision.mode,
                    False,
                    (
                        *decision.reasons,
                        f"approved by {who} (approval {prior.approval_id}, given before "
                        "this step was handed out)",
                    ),
                )
        elif decision.verdict == "PENDING_APPROVAL" and reserved is not None:
            if not covers(reserved, decision.approval, revision):
                raise FailedPrecondition(
                    f"approval {reserved.approval_id} was given under policy revision "
                    f"{reserved.policy_revision[:12]}; revision {revision[:12]} asks more of it "
                    "(other roles or more approvers): request the call again for a new approval",
                    reason="APPROVAL_POLICY_CHANGED",
                )
            who = ", ".join(reserved.approved_by)
            decision = PolicyDecision(
                "ALLOW",
                decision.mode,
                False,
                (*decision.reasons, f"approved by {who} (approval {reserved.approval_id})"),
            )
            approval, approval_batch = self.approvals.use_batch(reserved, decision_id, now)
        elif decision.verdict == "PENDING_APPROVAL" and decision.approval is not None:
            # The policy approves it itself (never where the catalog wants a
            # human: a hard floor, here too), or it waits for a human.
            by_policy = bool(decision.approval.auto_approve) and (
                catalog.tool(call.tool).human_approval != "required"
            )
            make = self.approvals.approved_by_policy if by_policy else self.approvals.new
            approval, approval_batch = make(
                decision_id=decision_id,
                plan_id=call.plan_id,
                step_id=call.step_id,
                tool=call.tool,
                agent_id=call.agent_id,
                arguments_hash=_hash(arguments_json),
                policy_revision=revision,
                requested_by=call.requested_by or call.agent_id,
                requirement=decision.approval,
                confidence=float(call.confidence or 0.0),
                now=now,
            )
            if by_policy:
                decision = PolicyDecision(
                    "ALLOW",
                    decision.mode,
                    False,
                    (
                        *decision.reasons,
                        f"approved by policy:{revision[:12]} (approval {approval.approval_id}): "
                        f"{decision.approval.auto_approve}",
                    ),
                )
        record = DecisionRecord(
            decision_id=decision_id,
            agent_id=call.agent_id,
            tool=call.tool,
            confidence=float(call.confidence or 0.0),
            verdict=decision.verdict,
            mode=decision.mode,
            needs_approval=decision.needs_approval,
            reasons=list(decision.reasons),
            policy_revision=revision,
            engine=self.policies.engine.name,
            input_hash=input_hash,
            decided_at=now,
            plan_id=call.plan_id,
            step_id=call.step_id,
            fail_closed=fail_closed,
            arguments=dict(call.arguments),
            approval_id=approval.approval_id
            if approval is not None
            else (prior.approval_id if prior is not None and decision.verdict == "ALLOW" else ""),
            supersedes=call.supersedes,
            grant_id=evaluated.grant.grant_id if evaluated.grant is not None else "",
        )
        logcontext.decision_id.set(record.decision_id)
        if fail_closed:
            log.warning(
                "%s for %s by %s failed closed: %s",
                record.decision_id,
                record.tool,
                record.agent_id,
                record.reasons[0],
            )
        else:
            log.debug(
                "%s: %s %s for %s by %s (revision %s)",
                record.decision_id,
                record.verdict,
                record.mode,
                record.tool,
                record.agent_id,
                record.policy_revision[:12],
            )
        live_deadline = None
        if record.verdict == "ALLOW" and record.mode == "LIVE":
            if call.orchestrated:
                self.hold_live(record.decision_id)
            else:
                live_deadline = record.decided_at + catalog.tool(call.tool).timeout_seconds
                self._live[record.decision_id] = live_deadline
        release()  # the slot is taken: others may settle now
        batch = Batch.of(
            DecisionMade(
                record,
                live_deadline,
                arguments_json,
                time.perf_counter() - started,
                input_json=input_json,
            )
        )
        if evaluated.grant is not None and record.verdict == "ALLOW":
            used = self.grants.use_batch(evaluated.grant, record.decision_id, now)
            batch.rows.extend(used.rows)
            batch.events.extend(used.events)
            batch.audit.extend(used.audit)
        if approval_batch is not None:
            batch.rows.extend(approval_batch.rows)
            batch.events.extend(approval_batch.events)
            batch.audit.extend(approval_batch.audit)
        if shared_count is not None and record.verdict == "ALLOW" and record.mode == "LIVE":
            until = live_deadline if live_deadline is not None else now + HELD_UNTIL_RELEASED
            hold = {
                "decision_id": record.decision_id,
                "replica": self.journal.replica,
                "until": until,
            }
            batch.rows += [
                Insert("live_holds", hold),
                Guard(
                    "live_holds", _CapTaken(), at_most=shared_count + 1, newer_than=("until", now)
                ),
            ]
        try:
            await self.journal.commit(batch)
        except BaseException:
            self._live.pop(record.decision_id, None)
            raise
        if approval is not None and approval.state == "USED":
            self.approvals.used(approval)
        elif approval is not None:
            self.approvals.created(approval)
        self.metrics.decisions.labels(record.verdict, record.mode, record.tool).inc()
        self.decision_counts[record.verdict] = self.decision_counts.get(record.verdict, 0) + 1
        if self.on_decided is not None:  # shadow evaluation: queued, never awaited
            self.on_decided(record, evaluated.decision, input_json)
        self.metrics.decision_latency.observe(time.perf_counter() - started)
        return record

    # Results ---------------------------------------------------------------

    async def get_decision(self, decision_id: str) -> dict[str, Any]:
        row = await self.journal.decisions.get(decision_id)
        if row is None:
            raise NotFound(f"unknown decision {decision_id!r}", reason="UNKNOWN_DECISION")
        return row

    async def search(
        self,
        *,
        agent_id: str = "",
        tool: str = "",
        verdict: str = "",
        mode: str = "",
        since: float = 0.0,
        until: float = 0.0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored decisions, newest first; an empty filter matches everything
        (the console's decision explorer)."""
        return await self.journal.decisions.search(
            agent_id=agent_id,
            tool=tool,
            verdict=verdict,
            mode=mode,
            since=since,
            until=until,
            limit=limit,
        )

    async def audit_lines(self, decision_id: str) -> list[dict[str, Any]]:
        """The decision's and its result's lines of the tool execution log, as
        sealed into the hash chain (from the store's copy of the audit lines)."""
        stored = await self.journal.audit_lines.mentioning(TOOL_EXECUTION_LOG, decision_id)
        lines = [orjson.loads(line) for line in stored]
        return [line for line in lines if line.get("decision_id") == decision_id]

    async def stored_result(self, decision_id: str) -> dict[str, Any] | None:
        """The result recorded for a decision, as a plan step keeps it, or None."""
        r = await self.journal.decisions.result(decision_id)
        if r is None:
            return None
        return {
            "outcome": r["outcome"],
            "output": orjson.loads(r["output"]),
            "error_message": r["error_message"],
            "duration_seconds": r["duration_seconds"],
        }

    async def report(
        self,
        *,
        decision_id: str,
        agent_id: str,
        outcome: str,
        output: Mapping[str, Any],
        error_message: str,
        duration_seconds: float,
    ) -> ResultRecord:
        violations: list[FieldViolation] = []
        if not decision_id:
            violations.append(FieldViolation("decision_id", "is required"))
        check_id("agent_id", agent_id, violations)
        if outcome not in OUTCOMES:
            violations.append(FieldViolation("outcome", f"must be one of {', '.join(OUTCOMES)}"))
        if not math.isfinite(duration_seconds) or duration_seconds < 0:
            violations.append(FieldViolation("duration", "must not be negative"))
        limit = self.config.max_string_length
        if len(error_message) > limit:
            violations.append(FieldViolation("error_message", f"is longer than {limit} characters"))
        self._check_size("output", canonical_json(output), violations)
        if violations:
            raise InvalidArgument.of(violations)
        decision = await self.get_decision(decision_id)
        if decision["agent_id"] != agent_id:
            raise PermissionDenied(
                f"decision {decision_id} was made for agent {decision['agent_id']!r}, not {agent_id!r}",
                reason="NOT_YOUR_DECISION",
            )
        if decision["verdict"] != "ALLOW":
            raise FailedPrecondition(
                f"decision {decision_id} is {decision['verdict']}: the call was not allowed to run",
                reason="NOT_ALLOWED",
            )
        result = ResultRecord(
            decision_id=decision_id,
            agent_id=agent_id,
            tool=decision["tool"],
            mode=decision["mode"],
            outcome=outcome,
            output=dict(output),
            error_message=error_message,
            duration_seconds=duration_seconds,
            reported_at=time.time(),
        )
        change = await self._record_result(result, decision)
        if change is not None:
            self.trust.committed(change)
        self._live.pop(decision_id, None)
        self.metrics.results.labels(result.tool, result.mode, result.outcome).inc()
        return result

    async def _record_result(
        self, result: ResultRecord, decision: Mapping[str, Any]
    ) -> TrustChange | None:
        """Commit a result with the change it makes to its pair's trust, in one
        transaction; when another writer changed the pair meanwhile, again."""
        kind = BAD_OUTCOMES.get(result.outcome, "clean")
        params = self.trust_params()
        fresh = False
        while True:
            change = await self.trust.outcome(
                result.agent_id,
                result.tool,
                kind,
                result.mode,
                params,
                result.reported_at,
                fresh=fresh,
            )
            reported = ResultReported(result, decision, release_hold=self.journal.shared)
            try:
                if change is None:
                    await self.journal.record(reported)
                else:
                    await self.journal.record(reported, change)
            except AlreadyExists:
                raise AlreadyExists(
                    f"a result for decision {result.decision_id} was already reported",
                    reason="RESULT_ALREADY_REPORTED",
                ) from None
            except TrustChanged:
                fresh = True
                continue
            return change

    def restore(self) -> None:
        """Rebuild the LIVE-in-flight set from the store after a restart."""
        now = time.time()
        rows = self.journal.decisions.live_unreported(now)
        self._live = {row["decision_id"]: row["live_deadline"] for row in rows}
        self.trust.start()


__all__ = [
    "DecisionRecord",
    "DecisionService",
    "ResultRecord",
    "ToolCall",
    "canonical_json",
    "sha256_hex",
]
