"""Policy replay: recorded decisions per second under a candidate set.

    .venv/bin/python bench/bench_replay.py [--decisions 100000] [--precision 2]
        [--store sqlite|postgresql] [--engine regorus|embedded] [--json out.json]

Fills a fresh journal (SQLite in a temporary folder, or a throwaway
PostgreSQL cluster) with ``--decisions`` decisions recorded directly through
the journal (DecisionMade facts, 1,000 at a time to the group-commit writer, each with its policy
input), then replays them all under a candidate that raises the HIGH-risk
LIVE threshold from 0.85 to 0.95, on ``--engine`` (regorus, the default
engine, or embedded: regopy), as ReplayPolicy does (:func:`interlock.replay.replay_candidate`), and prints decisions/s.

The history: agents of the shipped catalog calling tools they hold the
grants for (one call in ten: any tool), confidences uniform in [0.3, 1]
rounded to ``--precision`` decimals, 0-3 LIVE executions in flight (0 for
60% of calls, 1 for 25%, 2 for 10%, 3 for 5%), arguments unique per call, and
the recorded outcome the shipped policy gives. Equal inputs are evaluated once
(arguments are not read by the policy), so the figure depends on how many
distinct inputs the history holds: the output says how many. With
``--precision 6`` nearly every input is distinct: the figure is then the
engine's evaluation rate.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from interlock.audit import AuditLog  # noqa: E402
from interlock.contracts import Catalog  # noqa: E402
from interlock.decision_facts import DecisionMade, DecisionRecord, canonical_json  # noqa: E402
from interlock.decisions import sha256_hex  # noqa: E402
from interlock.journal import open_journal  # noqa: E402
from interlock.policy.bundle import PolicySet  # noqa: E402
from interlock.policy.embedded import EmbeddedEngine  # noqa: E402
from interlock.policy.manager import PolicyManager  # noqa: E402
from interlock.replay import ReplayQuery, embedded_evaluator, input_keys, replay_candidate  # noqa: E402

PER_COMMIT = 1000


def candidate_of(active: PolicySet) -> PolicySet:
    files = dict(active.files)
    path = "interlock/config/data.yaml"
    old = "  HIGH:\n    dry_run: 0.8\n    live: 0.85\n"
    assert files[path].count(old) == 1, "the shipped thresholds changed; update the bench"
    files[path] = files[path].replace(old, "  HIGH:\n    dry_run: 0.8\n    live: 0.95\n")
    return PolicySet.from_files(files, source="candidate")


def history(catalog: Catalog, n: int, precision: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pairs = list(itertools.product(sorted(catalog.agents), sorted(catalog.tools)))
    granted = [
        (a, t)
        for a, t in pairs
        if set(catalog.tool(t).required_permissions) <= set(catalog.agent(a).permissions)
    ]
    now = time.time() - n
    out = []
    for i in range(n):
        agent_id, tool = rng.choice(granted if rng.random() < 0.9 else pairs)
        agent, contract = catalog.agent(agent_id), catalog.tool(tool)
        out.append(
            {
                "tool": tool,
                "contract": contract.policy_view(),
                "agent": {"id": agent.id, "permissions": list(agent.permissions)},
                "confidence": round(rng.uniform(0.3, 1.0), precision),
                "arguments": {"call": i, "note": f"call {i}"},
                "counts": {"live_in_flight": rng.choices(range(4), (60, 25, 10, 5))[0]},
                "switches": {},
                "plan": {"plan_id": "", "step_id": ""},
                "_at": now + i,
            }
        )
    return out


async def fill(journal: Any, active: PolicySet, inputs: list[dict[str, Any]]) -> float:
    """Record the history with the active policy's outcomes; seconds taken."""
    engine = EmbeddedEngine(threads=2)
    _, compiled = await PolicyManager(engine, ".", watch_interval=0).prepare(active)
    keys = input_keys(active)
    many = embedded_evaluator(compiled, engine)  # type: ignore[arg-type]
    memo: dict[str, Any] = {}
    fresh: dict[str, dict[str, Any]] = {}
    for x in inputs:
        policy_input = {k: v for k, v in x.items() if k != "_at"}
        key = canonical_json({k: v for k, v in policy_input.items() if keys is None or k in keys})
        x["_key"] = key
        fresh.setdefault(key, policy_input)
    answers = await many(list(fresh.values()))
    memo = dict(zip(fresh, answers, strict=True))
    await engine.close()
    started = time.perf_counter()
    for start in range(0, len(inputs), PER_COMMIT):
        facts = []
        for i, x in enumerate(inputs[start : start + PER_COMMIT], start):
            d = memo[x.pop("_key")]
            at = x.pop("_at")
            input_json = canonical_json(x)
            record = DecisionRecord(
                decision_id=f"dec_bench{i:08d}",
                agent_id=x["agent"]["id"],
                tool=x["tool"],
                confidence=x["confidence"],
                verdict=d.verdict,
                mode=d.mode,
                needs_approval=d.needs_approval,
                reasons=list(d.reasons),
                policy_revision=active.revision,
                engine="embedded",
                input_hash=sha256_hex(x),
                decided_at=at,
                arguments=x["arguments"],
            )
            facts.append(
                DecisionMade(record, None, canonical_json(x["arguments"]), input_json=input_json)
            )
        await asyncio.gather(*(journal.record(f) for f in facts))
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--precision", type=int, default=2, help="decimals of the confidences")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--engine", choices=("regorus", "embedded"), default="regorus")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    active = PolicySet.from_dir(ROOT / "policies")
    candidate = candidate_of(active)
    catalog = Catalog.from_data(active.data)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        url = ""
        cluster = None
        if args.store == "postgresql":
            from interlock.devtools.pgcluster import PostgresCluster

            cluster = PostgresCluster(base=data / "pg")
            cluster.start()
            url = cluster.url("interlock")
        try:
            journal = open_journal(url, data, AuditLog(data, fsync=False), fsync=False)
            await journal.start()
            inputs = history(catalog, args.decisions, args.precision)
            fill_seconds = await fill(journal, active, inputs)
            print(f"recorded {args.decisions} decisions in {fill_seconds:.1f}s ({args.store})")

            manager = PolicyManager(EmbeddedEngine(threads=1), ".", watch_interval=0)
            started = time.perf_counter()
            report: dict[str, Any] = {}
            async for item in replay_candidate(
                journal, manager.engine, candidate, engine=args.engine, query=ReplayQuery()
            ):
                if isinstance(item, dict):
                    report = item
            seconds = time.perf_counter() - started
            await journal.close()
        finally:
            if cluster is not None:
                cluster.stop()
    rate = report["decisions"] / seconds
    print(
        f"replayed {report['decisions']} decisions on {report['engine']} "
        f"({report['distinct_inputs']} distinct inputs, "
        f"confidences to {args.precision} decimals) in {seconds:.2f}s: {rate:,.0f} decisions/s; "
        f"widening {report['widening']}, narrowing {report['narrowing']}, "
        f"unchanged {report['unchanged']}, failures {report['failures']}"
    )
    if args.json:
        Path(args.json).write_text(  # noqa: ASYNC240 - once, at the end
            json.dumps(
                {
                    "decisions": report["decisions"],
                    "distinct_inputs": report["distinct_inputs"],
                    "seconds": seconds,
                    "decisions_per_second": rate,
                    "store": args.store,
                    "engine": report["engine"],
                    "precision": args.precision,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
