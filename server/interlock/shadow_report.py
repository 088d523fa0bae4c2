"""What a shadow reports and leaves behind (:mod:`interlock.shadow`): its
status as a replay report's fields, summed over every replica's rows, and the
promoted candidate's files written into the policy folder."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from interlock.policy.bundle import is_policy_file, is_test_file, read_dir
from interlock.replay import classify

SAMPLES = 3
"""Sample disagreements per transition in a status."""
ERRORS_SHOWN = 20
"""Candidate errors listed in a status."""

Outcome = tuple[str, str, bool]


def write_policy_dir(policy_dir: Path, row: Mapping[str, Any]) -> None:
    """Make the folder hold the shadow's files: policy files and tests not in
    it removed, each of its files written whole (a temporary file renamed)."""
    files: dict[str, str] = orjson.loads(row["files"])
    for rel, _ in read_dir(policy_dir).items():
        if rel not in files and (is_policy_file(rel) or is_test_file(rel)):
            (policy_dir / rel).unlink(missing_ok=True)
    for rel, content in files.items():
        path = policy_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.shadow-tmp")
        tmp.write_text(content)
        os.replace(tmp, path)


def shadow_report(
    row: Mapping[str, Any],
    replicas: list[dict[str, Any]],
    counts: list[dict[str, Any]],
    disagreements: list[dict[str, Any]],
    engine: str = "embedded",
) -> dict[str, Any]:
    """The shadow and its counts so far, as a replay report's fields (the
    transition matrix by agent and tool, samples with both sets of reasons)
    plus the shadow's own (state, sample, who, replicas, dropped)."""
    transitions: dict[tuple[Outcome, Outcome], dict[str, Any]] = {}
    for c in counts:
        before: Outcome = (c["from_verdict"], c["from_mode"], bool(c["from_approval"]))
        after: Outcome = (c["to_verdict"], c["to_mode"], bool(c["to_approval"]))
        t = transitions.setdefault(
            (before, after),
            {
                "from": _outcome(before),
                "to": _outcome(after),
                "change": classify(before, after),
                "count": 0,
                "by_agent": Counter[str](),
                "by_tool": Counter[str](),
                "samples": [],
            },
        )
        n = int(c["count"])
        t["count"] += n
        t["by_agent"][c["agent_id"]] += n
        t["by_tool"][c["tool"]] += n
    errors: list[dict[str, Any]] = []
    for d in disagreements:
        if d["error"]:
            if len(errors) < ERRORS_SHOWN:
                errors.append(
                    {
                        "decision_id": d["decision_id"],
                        "recorded_revision": d["active_revision"],
                        "agent_id": d["agent_id"],
                        "tool": d["tool"],
                        "message": d["error"],
                    }
                )
            continue
        before = (d["active_verdict"], d["active_mode"], bool(d["active_approval"]))
        after = (d["candidate_verdict"], d["candidate_mode"], bool(d["candidate_approval"]))
        found = transitions.get((before, after))
        if found is not None and len(found["samples"]) < SAMPLES:
            found["samples"].append(
                {
                    "decision_id": d["decision_id"],
                    "recorded_revision": d["active_revision"],
                    "decided_at": float(d["decided_at"]),
                    "agent_id": d["agent_id"],
                    "tool": d["tool"],
                    "confidence": float(d["confidence"]),
                    "recorded_reasons": orjson.loads(d["active_reasons"]),
                    "candidate_reasons": orjson.loads(d["candidate_reasons"]),
                    "reconstructed": False,
                    "input_hash": d["input_hash"],
                    "replica": d["replica"],
                }
            )
    ordered = sorted(
        transitions.values(),
        key=lambda t: (t["change"] == "unchanged", -t["count"], str(t["from"]), str(t["to"])),
    )
    by_change = Counter[str]()
    for t in ordered:
        by_change[t["change"]] += t["count"]
        t["by_agent"] = dict(sorted(t["by_agent"].items()))
        t["by_tool"] = dict(sorted(t["by_tool"].items()))
    total = {
        k: sum(int(r[k]) for r in replicas)
        for k in ("evaluated", "disagreements", "errors", "dropped")
    }
    replayed = total["evaluated"] - total["errors"]
    return {
        "shadow_id": row["shadow_id"],
        "state": row["state"],
        "sample": float(row["sample"]),
        "started_by": row["started_by"],
        "started_at": float(row["started_at"]),
        "active_revision": row["active_revision"],
        "ended_at": float(row["ended_at"]),
        "ended_by": row["ended_by"],
        "dropped": total["dropped"],
        "disagreements": total["disagreements"],
        "replicas": [
            {k: r[k] for k in ("replica", "evaluated", "disagreements", "errors", "dropped")}
            for r in replicas
        ],
        # The fields of a replay report (interlock.replay), so its table and JSON serve here.
        "candidate_revision": row["candidate_revision"],
        "engine": engine,
        "decisions": total["evaluated"],
        "replayed": replayed,
        "distinct_inputs": replayed,
        "unrecorded_inputs": 0,
        "reconstructed": 0,
        "skipped": 0,
        "failures": total["errors"],
        "unchanged": by_change["unchanged"],
        "widening": by_change["widens"],
        "narrowing": by_change["narrows"],
        "transitions": ordered,
        "errors": errors,
        "message": "" if total["evaluated"] else "no sampled decision evaluated yet",
        "seconds": 0.0,
    }


def _outcome(o: Outcome) -> dict[str, Any]:
    return {"verdict": o[0], "mode": o[1], "needs_approval": o[2]}


__all__ = ["shadow_report", "write_policy_dir"]
