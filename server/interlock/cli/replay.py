"""``interlock policy replay CANDIDATE_DIR``: recorded decisions under a candidate set.

The server reads its recorded decisions and evaluates them under the
candidate (ReplayPolicy, :mod:`interlock.replay`); this command sends the
folder's files, shows progress on stderr, and prints the report: a table, or
with ``--json`` the report as JSON. Exit status: 0 when every decision was
evaluated (an empty range included: the report says so), 1 when the
candidate is refused or could not evaluate some decisions (failures).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from interlock.cli.common import EXIT_FAILED, EXIT_OK, UsageError, run_interruptibly
from interlock.v1 import policy_service_pb2 as pb
from interlock.v1 import types_pb2

DESCRIPTION = """\
Evaluate recorded decisions again under the policy files of CANDIDATE_DIR,
changing nothing, and report how each recorded (verdict, mode) would change:
a transition matrix by agent and by tool, the changes that widen what runs
(DENY to ALLOW, a higher mode such as anything to LIVE, an approval no longer
needed) apart from those that narrow it, sample decisions with both sets of
reasons, and the decisions the candidate could not evaluate (failures).
The candidate is compiled and checked as a reload would check it; a refused
candidate loads nothing."""

EPILOG = """\
Times: ISO 8601 (2025-01-31T12:00:00, UTC unless an offset is given), Unix
seconds, or a duration ago (30m, 24h, 7d).
Exit status: 0 every decision replayed (or none in the range), 1 the
candidate was refused or failed on some decisions, 2 usage error."""

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """A time flag's value as Unix seconds."""
    now = time.time() if now is None else now
    m = _AGO.fullmatch(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: ISO 8601, Unix seconds, or a duration ago (24h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def add_parser(policy_commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = policy_commands.add_parser(
        "replay",
        parents=parents,
        help="replay recorded decisions under a candidate policy folder",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("candidate", metavar="CANDIDATE_DIR", help="the candidate policy folder")
    p.add_argument("--since", type=parse_time, metavar="T", help="decisions made at or after T")
    p.add_argument("--until", type=parse_time, metavar="T", help="decisions made before T")
    p.add_argument("--agent", default="", help="only this agent's decisions")
    p.add_argument("--tool", default="", help="only decisions about this tool")
    p.add_argument(
        "--limit", type=int, default=0, metavar="N", help="the newest N decisions [default: all]"
    )
    p.add_argument(
        "--engine",
        choices=("embedded", "regorus", "opa"),
        default="",
        help="evaluate on regopy (embedded), regorus, or the server's OPA [default: the "
        "in-process engine the server checks candidates on: regorus where it decides on "
        "regorus, else embedded]",
    )
    p.add_argument(
        "--samples", type=int, default=3, metavar="N", help="sample decisions per transition"
    )
    p.add_argument(
        "--skip-unrecorded",
        action="store_true",
        help="skip decisions recorded before inputs were kept, instead of rebuilding their input",
    )
    p.set_defaults(handler=cmd_policy_replay, parser=p)


_VERDICT = {v: k.removeprefix("VERDICT_") for k, v in types_pb2.Verdict.items()}
_MODE = {v: k.removeprefix("EXECUTION_MODE_") for k, v in types_pb2.ExecutionMode.items()}
_CHANGE = {
    pb.REPLAY_CHANGE_UNCHANGED: "unchanged",
    pb.REPLAY_CHANGE_WIDENS: "widens",
    pb.REPLAY_CHANGE_NARROWS: "narrows",
}


def _outcome(o: pb.ReplayOutcome) -> dict[str, Any]:
    return {
        "verdict": _VERDICT.get(o.verdict, "?"),
        "mode": _MODE.get(o.mode, "?"),
        "needs_approval": o.needs_approval,
    }


def report_dict(r: pb.ReplayReport) -> dict[str, Any]:
    """The report as JSON data (the server's report, field for field)."""
    return {
        "candidate_revision": r.candidate_revision,
        "engine": r.engine,
        "decisions": r.decisions,
        "replayed": r.replayed,
        "distinct_inputs": r.distinct_inputs,
        "unrecorded_inputs": r.unrecorded_inputs,
        "reconstructed": r.reconstructed,
        "skipped": r.skipped,
        "failures": r.failures,
        "unchanged": r.unchanged,
        "widening": r.widening,
        "narrowing": r.narrowing,
        "transitions": [
            {
                "from": _outcome(t.before),
                "to": _outcome(t.after),
                "change": _CHANGE.get(t.change, "?"),
                "count": t.count,
                "by_agent": dict(sorted(t.by_agent.items())),
                "by_tool": dict(sorted(t.by_tool.items())),
                "samples": [
                    {
                        "decision_id": s.decision_id,
                        "recorded_revision": s.recorded_revision,
                        "decided_at": s.decided_at.ToNanoseconds() / 1e9,
                        "agent_id": s.agent_id,
                        "tool": s.tool,
                        "confidence": s.confidence,
                        "recorded_reasons": list(s.recorded_reasons),
                        "candidate_reasons": list(s.candidate_reasons),
                        "reconstructed": s.reconstructed,
                    }
                    for s in t.samples
                ],
            }
            for t in r.transitions
        ],
        "errors": [
            {
                "decision_id": e.decision_id,
                "recorded_revision": e.recorded_revision,
                "agent_id": e.agent_id,
                "tool": e.tool,
                "message": e.message,
            }
            for e in r.errors
        ],
        "message": r.message,
        "seconds": r.seconds,
    }


def _label(o: dict[str, Any]) -> str:
    text = f"{o['verdict']} {o['mode']}"
    return (
        text + " (approval)" if o["needs_approval"] and o["verdict"] != "PENDING_APPROVAL" else text
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a summary, the transition table, samples, errors."""
    lines = [
        f"candidate {report['candidate_revision'][:12]} on {report['engine']}: "
        f"{report['decisions']} decisions, {report['replayed']} replayed "
        f"({report['distinct_inputs']} distinct inputs) in {report['seconds']:.1f}s",
    ]
    if report["message"]:
        lines.append(report["message"])
        return "\n".join(lines)
    lines.append(
        f"widening {report['widening']}, narrowing {report['narrowing']}, "
        f"unchanged {report['unchanged']}, failures {report['failures']}"
    )
    if report["unrecorded_inputs"]:
        lines.append(
            f"{report['unrecorded_inputs']} decisions were recorded before inputs were kept: "
            f"{report['reconstructed']} replayed on a rebuilt input (no LIVE in flight, no "
            f"switch overrides), {report['skipped']} skipped"
        )
    rows = [("CHANGE", "FROM", "TO", "COUNT", "BY AGENT", "BY TOOL")]
    for t in report["transitions"]:
        rows.append(
            (
                t["change"].upper(),
                _label(t["from"]),
                _label(t["to"]),
                str(t["count"]),
                _counts(t["by_agent"]),
                _counts(t["by_tool"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines.append("")
    for r in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        )
    changed = [t for t in report["transitions"] if t["change"] != "unchanged"]
    for t in changed:
        lines.append("")
        lines.append(f"{t['change']}: {_label(t['from'])} -> {_label(t['to'])}")
        for s in t["samples"]:
            rebuilt = ", input rebuilt" if s["reconstructed"] else ""
            lines.append(
                f"  {s['decision_id']} ({s['agent_id']} {s['tool']} at confidence "
                f"{s['confidence']:g}; revision {s['recorded_revision'][:12]}{rebuilt})"
            )
            lines.append(f"    recorded:  {'; '.join(s['recorded_reasons'])}")
            lines.append(f"    candidate: {'; '.join(s['candidate_reasons'])}")
    if report["errors"]:
        lines.append("")
        lines.append(f"failures ({report['failures']}; the first {len(report['errors'])}):")
        for e in report["errors"]:
            lines.append(f"  {e['decision_id']} ({e['agent_id']} {e['tool']}): {e['message']}")
    return "\n".join(lines)


def cmd_policy_replay(args: argparse.Namespace) -> int:
    from interlock.cli.commands import connect, read_policy_dir

    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    if args.samples < 1:
        raise UsageError("--samples must be at least 1")
    try:
        files = read_policy_dir(args.candidate)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--policy-dir", "CANDIDATE_DIR")) from None
    tty = sys.stderr.isatty()

    async def run() -> dict[str, Any]:
        async with connect(args) as client:
            async for response in client.replay_policy(
                files,
                since=args.since or 0.0,
                until=args.until or 0.0,
                agent_id=args.agent,
                tool=args.tool,
                limit=args.limit,
                engine=args.engine,
                samples=args.samples,
                skip_unrecorded=args.skip_unrecorded,
            ):
                if response.HasField("report"):
                    return report_dict(response.report)
                if tty:
                    p = response.progress
                    print(f"\rreplayed {p.done}/{p.total}", end="", file=sys.stderr, flush=True)
        raise RuntimeError("the server ended the replay without a report")

    report = run_interruptibly(run())
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_report(report))
    return EXIT_FAILED if report["failures"] else EXIT_OK


__all__ = ["add_parser", "cmd_policy_replay", "format_report", "parse_time", "report_dict"]
