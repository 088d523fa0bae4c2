"""Replay: recorded decisions evaluated again under a candidate policy set.

Every decision keeps the policy input it was evaluated on (the
``decision_inputs`` table, from schema version 5). Replay reads the recorded
decisions of a range, newest first, gives each recorded input to a candidate
set compiled and checked as a reload would (:meth:`PolicyManager.prepare`),
and counts how each recorded (verdict, mode, needs_approval) becomes the
candidate's: a transition matrix, by agent and by tool, with a few sample
decisions per transition (both sets of reasons, the decision id and the
revision that decided it).

What is of the moment comes from the record: confidence, arguments, the
count of LIVE executions in flight, the switch overrides, the plan. What is
policy comes from the candidate: the catalog is part of the policy set, so
each call gets the candidate's contract for its tool and grants for its
agent. A call whose tool or agent the candidate's catalog no longer has
cannot be evaluated: it is an error, as is an input the decision rule fails
on, and errors count as failures.

A decision recorded before inputs were kept has no input: it is rebuilt
from its row (tool, agent, confidence, arguments, plan) with no LIVE
executions in flight and no switch overrides, and counted as reconstructed;
or, when asked, skipped. The report says how many of each.

A policy is a pure function of its input, so equal inputs are evaluated
once: the key is the part of the input the candidate's modules read (the
top-level input fields they name; the whole input when a module uses
``input`` in a way this can't follow).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.contracts import Catalog
from interlock.errors import FailedPrecondition, InterlockError, InvalidArgument
from interlock.journal import Journal
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import EmbeddedEngine, EmbeddedPolicy
from interlock.policy.engine import CompiledPolicy, PolicyDecision, PolicyEngine
from interlock.policy.prepare import prepare_set
from interlock.policy.regorus_engine import (
    RegorusEngine,
    RegorusPolicy,
    candidate_engine,
    local_engine_name,
)

PAGE = 5000
"""Decisions read per page."""
SAMPLES = 3
"""Sample decisions kept per transition, by default."""
ERROR_SAMPLES = 20
THREADS = 2
"""Threads evaluating on the embedded engine (regopy lets go of the GIL)."""
CHUNK = 256
"""Inputs one thread evaluates at a time."""
MODE_RANK = {"MOCK": 0, "DRY_RUN": 1, "LIVE": 2}
UNRECORDED_COUNTS = {"live_in_flight": 0}

Outcome = tuple[str, str, bool]
"""(verdict, mode, needs_approval)."""


def classify(before: Outcome, after: Outcome) -> str:
    """ "unchanged", "widens" or "narrows".

    Widens: a call that was denied runs (DENY to ALLOW or to PENDING_APPROVAL),
    runs in a higher mode (anything to LIVE), or no longer needs a human
    approval at the same mode or a higher one. Narrows: the reverse. An
    approval dropped while the mode falls (PENDING_APPROVAL LIVE to ALLOW
    DRY_RUN) narrows: nothing runs LIVE any more. A change that widens in one
    respect and narrows in another widens.
    """
    if before == after:
        return "unchanged"
    (bv, bm, bn), (av, am, an) = before, after
    b_runs, a_runs = bv != "DENY", av != "DENY"
    rb, ra = MODE_RANK.get(bm, 0), MODE_RANK.get(am, 0)
    b_human = bv == "PENDING_APPROVAL" or bn
    a_human = av == "PENDING_APPROVAL" or an
    both = a_runs and b_runs
    if (a_runs and not b_runs) or (both and (ra > rb or (b_human and not a_human and ra >= rb))):
        return "widens"
    if (b_runs and not a_runs) or (both and (ra < rb or (a_human and not b_human and ra <= rb))):
        return "narrows"
    return "unchanged"


_INPUT_REFS = re.compile(
    r'"(?:\\.|[^"\\])*"'  # a string
    r"|`[^`]*`"  # a raw string
    r"|#[^\n]*"  # a comment
    r'|object\.get\(\s*input\s*,\s*\[?\s*"(\w+)"'  # object.get(input, "k" | ["k", ...
    r"|(?<![\w.])input\s*\.\s*(\w+)"  # input.k
    r'|(?<![\w.])input\s*\[\s*"(\w+)"'  # input["k"]
    r"|(?<![\w.])(input)\b"  # any other use
)


def input_keys(policy_set: PolicySet) -> frozenset[str] | None:
    """The top-level input fields the set's modules read; None when a module
    uses ``input`` in a way that may read any of them."""
    keys: set[str] = set()
    for source in policy_set.modules.values():
        for m in _INPUT_REFS.finditer(source):
            got, dotted, indexed, bare = m.group(1), m.group(2), m.group(3), m.group(4)
            if bare:
                return None
            name = got or dotted or indexed
            if name:
                keys.add(name)
    return frozenset(keys)


def rebase_input(
    catalog: Catalog, policy_input: dict[str, Any], tool_name: str, agent_id: str
) -> tuple[dict[str, Any] | None, str]:
    """A recorded input with the candidate's contract for its tool and grants
    for its agent (what is policy comes from the candidate, what is of the
    moment from the record); (None, why) when the candidate's catalog lacks either."""
    tool = catalog.tools.get(tool_name)
    agent = catalog.agents.get(agent_id)
    if tool is None:
        return None, f"tool {tool_name!r} is not in the candidate's catalog"
    if agent is None:
        return None, f"agent {agent_id!r} is not in the candidate's catalog"
    policy_input["contract"] = tool.policy_view()
    policy_input["agent"] = {"id": agent.id, "permissions": list(agent.permissions)}
    return policy_input, ""


@dataclass(frozen=True)
class ReplayQuery:
    since: float = 0.0
    until: float = 0.0
    agent_id: str = ""
    tool: str = ""
    limit: int = 0
    """The newest N decisions of the range; 0: all of them."""
    samples: int = SAMPLES
    skip_unrecorded: bool = False
    """Skip decisions recorded without their input instead of rebuilding it."""


@dataclass
class _Transition:
    before: Outcome
    after: Outcome
    change: str
    count: int = 0
    by_agent: Counter[str] = field(default_factory=Counter)
    by_tool: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Pending:
    row: dict[str, Any]
    policy_input: dict[str, Any]
    reconstructed: bool


def _outcome_dict(o: Outcome) -> dict[str, Any]:
    return {"verdict": o[0], "mode": o[1], "needs_approval": o[2]}


class Replay:
    """One replay of a range of recorded decisions under a candidate set."""

    def __init__(
        self,
        journal: Journal,
        candidate: PolicySet,
        catalog: Catalog,
        compiled: CompiledPolicy,
        *,
        engine: str,
        query: ReplayQuery,
        evaluate_many: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        self.journal = journal
        self.candidate = candidate
        self.catalog = catalog
        self.compiled = compiled
        self.engine = engine
        self.query = query
        self._evaluate_many = evaluate_many or self._evaluate_async
        self._keys = input_keys(candidate)
        self._transitions: dict[tuple[Outcome, Outcome], _Transition] = {}
        self._errors: list[dict[str, Any]] = []
        self.failures = 0
        self.considered = 0
        self.replayed = 0
        self.unrecorded = 0
        self.reconstructed = 0
        self.skipped = 0
        self.distinct = 0
        self.total = 0
        self._memo: dict[bytes, PolicyDecision | str] = {}

    def check(self) -> None:
        """Refuse filters the candidate's catalog cannot answer for."""
        q = self.query
        if q.tool and q.tool not in self.catalog.tools:
            raise InvalidArgument.field(
                "tool", f"tool {q.tool!r} is not in the candidate's catalog", reason="UNKNOWN_TOOL"
            )
        if q.limit < 0:
            raise InvalidArgument.field("limit", "must not be negative")

    async def _evaluate_async(self, inputs: list[dict[str, Any]]) -> list[PolicyDecision | str]:
        gate = asyncio.Semaphore(8)

        async def one(policy_input: dict[str, Any]) -> PolicyDecision | str:
            async with gate:
                try:
                    return await self.compiled.evaluate(policy_input)
                except InterlockError as exc:
                    return exc.message

        return list(await asyncio.gather(*(one(i) for i in inputs)))

    def _input(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, bool, str]:
        """(the input to give the candidate, reconstructed?, why it can't be built)."""
        raw = row.get("input")
        if raw:
            policy_input = orjson.loads(raw)
            reconstructed = False
        else:
            policy_input = {
                "tool": row["tool"],
                "confidence": row["confidence"],
                "arguments": orjson.loads(row["arguments"]),
                "counts": dict(UNRECORDED_COUNTS),
                "switches": {},
                "plan": {"plan_id": row["plan_id"], "step_id": row["step_id"]},
            }
            reconstructed = True
        rebased, problem = rebase_input(self.catalog, policy_input, row["tool"], row["agent_id"])
        return rebased, reconstructed, problem

    def _key(self, policy_input: dict[str, Any]) -> bytes:
        if self._keys is not None:
            policy_input = {k: v for k, v in policy_input.items() if k in self._keys}
        return orjson.dumps(policy_input, option=orjson.OPT_SORT_KEYS)

    def _error(self, row: dict[str, Any], message: str) -> None:
        self.failures += 1
        if len(self._errors) < ERROR_SAMPLES:
            self._errors.append(
                {
                    "decision_id": row["decision_id"],
                    "recorded_revision": row["policy_revision"],
                    "agent_id": row["agent_id"],
                    "tool": row["tool"],
                    "message": message,
                }
            )

    def _count(self, p: _Pending, decision: PolicyDecision) -> None:
        row = p.row
        before: Outcome = (row["verdict"], row["mode"], bool(row["needs_approval"]))
        after: Outcome = (decision.verdict, decision.mode, decision.needs_approval)
        t = self._transitions.get((before, after))
        if t is None:
            t = _Transition(before, after, classify(before, after))
            self._transitions[(before, after)] = t
        t.count += 1
        t.by_agent[row["agent_id"]] += 1
        t.by_tool[row["tool"]] += 1
        if len(t.samples) < self.query.samples:
            t.samples.append(
                {
                    "decision_id": row["decision_id"],
                    "recorded_revision": row["policy_revision"],
                    "decided_at": row["decided_at"],
                    "agent_id": row["agent_id"],
                    "tool": row["tool"],
                    "confidence": row["confidence"],
                    "recorded_reasons": orjson.loads(row["reasons"]),
                    "candidate_reasons": list(decision.reasons),
                    "reconstructed": p.reconstructed,
                }
            )
        self.replayed += 1

    async def _page(self, rows: Sequence[dict[str, Any]]) -> None:
        pending: list[_Pending] = []
        fresh: dict[bytes, dict[str, Any]] = {}
        keys: list[bytes] = []
        for row in rows:
            self.considered += 1
            if not row.get("input"):
                self.unrecorded += 1
                if self.query.skip_unrecorded:
                    self.skipped += 1
                    continue
            policy_input, reconstructed, problem = self._input(row)
            if policy_input is None:
                self._error(row, problem)
                continue
            self.reconstructed += reconstructed
            key = self._key(policy_input)
            if key not in self._memo and key not in fresh:
                fresh[key] = policy_input
            pending.append(_Pending(row, policy_input, reconstructed))
            keys.append(key)
        if fresh:
            answers = await self._evaluate_many(list(fresh.values()))
            self._memo.update(zip(fresh, answers, strict=True))
            self.distinct += len(fresh)
        for p, key in zip(pending, keys, strict=True):
            answer = self._memo[key]
            if isinstance(answer, str):
                self._error(p.row, answer)
            else:
                self._count(p, answer)

    async def run(self) -> AsyncIterator[tuple[int, int]]:
        """Replay page by page, yielding (decisions done, decisions in range)."""
        q = self.query
        self.total = await self.journal.decisions.count_for_replay(
            since=q.since, until=q.until, agent_id=q.agent_id, tool=q.tool
        )
        if q.limit:
            self.total = min(self.total, q.limit)
        before: tuple[float, str] | None = None
        while self.considered < self.total:
            size = min(PAGE, self.total - self.considered)
            rows = await self.journal.decisions.for_replay(
                since=q.since,
                until=q.until,
                agent_id=q.agent_id,
                tool=q.tool,
                before=before,
                limit=size,
            )
            if not rows:
                break
            await self._page(rows)
            last = rows[-1]
            before = (float(last["decided_at"]), str(last["decision_id"]))
            yield self.considered, self.total

    def report(self, seconds: float) -> dict[str, Any]:
        q = self.query
        transitions = sorted(
            self._transitions.values(),
            key=lambda t: (t.change == "unchanged", -t.count, t.before, t.after),
        )
        counts = Counter[str]()
        for t in transitions:
            counts[t.change] += t.count
        if not self.considered:
            message = "no recorded decisions in the range: nothing to replay"
        else:
            message = ""
        return {
            "candidate_revision": self.candidate.revision,
            "engine": self.engine,
            "filters": {
                "since": q.since,
                "until": q.until,
                "agent_id": q.agent_id,
                "tool": q.tool,
                "limit": q.limit,
            },
            "decisions": self.considered,
            "replayed": self.replayed,
            "distinct_inputs": self.distinct,
            "unrecorded_inputs": self.unrecorded,
            "reconstructed": self.reconstructed,
            "skipped": self.skipped,
            "failures": self.failures,
            "unchanged": counts["unchanged"],
            "widening": counts["widens"],
            "narrowing": counts["narrows"],
            "transitions": [
                {
                    "from": _outcome_dict(t.before),
                    "to": _outcome_dict(t.after),
                    "change": t.change,
                    "count": t.count,
                    "by_agent": dict(sorted(t.by_agent.items())),
                    "by_tool": dict(sorted(t.by_tool.items())),
                    "samples": t.samples,
                }
                for t in transitions
            ],
            "errors": self._errors,
            "message": message,
            "seconds": round(seconds, 3),
        }


async def replay(
    journal: Journal,
    candidate: PolicySet,
    catalog: Catalog,
    compiled: CompiledPolicy,
    *,
    engine: str,
    query: ReplayQuery,
    evaluate_many: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> AsyncIterator[tuple[int, int] | dict[str, Any]]:
    """Progress (done, total) after each page, then the report (a dict)."""
    started = time.perf_counter()
    r = Replay(
        journal,
        candidate,
        catalog,
        compiled,
        engine=engine,
        query=query,
        evaluate_many=evaluate_many,
    )
    r.check()
    async for progress in r.run():
        yield progress
    yield r.report(time.perf_counter() - started)


def local_evaluator(policy: Any, engine: Any) -> Callable[[list[dict[str, Any]]], Any] | None:
    """:func:`embedded_evaluator` for a policy compiled by an in-process engine
    (embedded or regorus: ``evaluate_sync`` and an ``executor``); None for OPA."""
    if isinstance(policy, (EmbeddedPolicy, RegorusPolicy)) and isinstance(
        engine, (EmbeddedEngine, RegorusEngine)
    ):
        return embedded_evaluator(policy, engine)
    return None


def embedded_evaluator(
    policy: EmbeddedPolicy | RegorusPolicy, engine: EmbeddedEngine | RegorusEngine
) -> Callable[[list[dict[str, Any]]], Any]:
    """Evaluate many inputs on the engine's threads, a chunk per task (one
    hop to a thread per chunk, not per input)."""

    def work(chunk: list[dict[str, Any]]) -> list[PolicyDecision | str]:
        out: list[PolicyDecision | str] = []
        for policy_input in chunk:
            try:
                out.append(policy.evaluate_sync(policy_input))
            except InterlockError as exc:
                out.append(exc.message)
        return out

    async def many(inputs: list[dict[str, Any]]) -> list[PolicyDecision | str]:
        loop = asyncio.get_running_loop()
        chunks = [inputs[i : i + CHUNK] for i in range(0, len(inputs), CHUNK)]
        done = await asyncio.gather(
            *(loop.run_in_executor(engine.executor, work, c) for c in chunks)
        )
        return [answer for chunk in done for answer in chunk]

    return many


async def replay_candidate(
    journal: Journal,
    server_engine: PolicyEngine,
    candidate: PolicySet,
    *,
    engine: str,
    query: ReplayQuery,
) -> AsyncIterator[tuple[int, int] | dict[str, Any]]:
    """Compile and check the candidate as a reload would, on an in-process
    engine of its own (``engine``: "embedded" for regopy, "regorus", or "" for
    the one the server's own candidates use, :func:`candidate_engine`) or on
    the server's OPA ("opa"); replay, and release it: nothing of it stays
    loaded. A candidate a reload would refuse raises PolicyLoadError."""
    own: PolicyEngine | None = None
    engine = engine or local_engine_name(server_engine.name)
    if engine == "opa":
        if server_engine.name != "opa":
            raise FailedPrecondition(
                "replay on OPA needs a server running with engine: opa "
                f"(this one runs {server_engine.name})",
                reason="NO_OPA",
            )
        checker: PolicyEngine = server_engine
    else:
        own = candidate_engine(engine, THREADS)
        engine = own.name  # "embedded" where regorus was asked for but is not installed
        checker = own
    try:
        catalog, compiled = await prepare_set(checker, candidate)
        try:
            many = local_evaluator(compiled, own) if own is not None else None
            async for item in replay(
                journal,
                candidate,
                catalog,
                compiled,
                engine=engine,
                query=query,
                evaluate_many=many,
            ):
                yield item
        finally:
            await compiled.release()
    finally:
        if own is not None:
            await own.close()


__all__ = [
    "Replay",
    "ReplayQuery",
    "classify",
    "embedded_evaluator",
    "input_keys",
    "local_evaluator",
    "rebase_input",
    "replay",
    "replay_candidate",
]
