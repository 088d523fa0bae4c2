"""``interlock policy shadow start|status|promote|stop``: a candidate beside the active set.

``start CANDIDATE_DIR [--sample 0.1]`` sends the folder's files (tests
included) to StartShadow; ``status`` prints the transition matrix so far as
``interlock policy replay`` prints its report (a table, or ``--json``), with
the shadow's own lines (who started it, the sample rate, each replica's
counts, dropped evaluations); ``promote [--accept-widening --reason R]``
makes the candidate active through the reload gate; ``stop`` drops it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import orjson

from interlock.cli.common import EXIT_OK, UsageError, run_interruptibly
from interlock.cli.output import format_reload
from interlock.cli.replay import format_report, report_dict
from interlock.v1 import policy_service_pb2 as pb

_STATE = {v: k.removeprefix("SHADOW_STATE_") for k, v in pb.ShadowState.items()}


def add_parser(policy_commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    shadow = policy_commands.add_parser(
        "shadow",
        help="evaluate a candidate policy folder beside the active set on live traffic",
        description="A candidate set evaluated beside the active one on a sampled share of "
        "live decisions, off the answer path: answers never change or wait. Each "
        "disagreement is recorded with both answers; promote it when the matrix says so.",
    )
    sub = shadow.add_subparsers(dest="shadow_command", metavar="COMMAND", required=True)
    start = sub.add_parser("start", parents=parents, help="start a shadow of CANDIDATE_DIR")
    start.add_argument("candidate", metavar="CANDIDATE_DIR", help="the candidate policy folder")
    start.add_argument(
        "--sample",
        type=float,
        default=0.1,
        metavar="P",
        help="the share of live decisions the candidate also evaluates, in (0, 1] [default: 0.1]",
    )
    start.set_defaults(handler=cmd_shadow_start, parser=start)
    status = sub.add_parser("status", parents=parents, help="the transition matrix so far")
    status.set_defaults(handler=cmd_shadow_status, parser=status)
    promote = sub.add_parser(
        "promote", parents=parents, help="make the candidate active (through the reload gate)"
    )
    promote.add_argument(
        "--accept-widening",
        action="store_true",
        help="make it live even though it widens what runs LIVE (needs --reason)",
    )
    promote.add_argument("--reason", default="", help="why (kept on the audit line)")
    promote.set_defaults(handler=cmd_shadow_promote, parser=promote)
    stop = sub.add_parser("stop", parents=parents, help="drop the running shadow")
    stop.set_defaults(handler=cmd_shadow_stop, parser=stop)


def _when(ts: Any) -> str:
    seconds = ts.ToNanoseconds() / 1e9
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shadow_dict(s: pb.Shadow) -> dict[str, Any]:
    return {
        "shadow_id": s.shadow_id,
        "state": _STATE.get(s.state, "?"),
        "candidate_revision": s.candidate_revision,
        "active_revision": s.active_revision,
        "sample": s.sample,
        "started_by": s.started_by,
        "started_at": s.started_at.ToNanoseconds() / 1e9,
        "ended_by": s.ended_by,
        "ended_at": s.ended_at.ToNanoseconds() / 1e9 if s.HasField("ended_at") else 0.0,
    }


def _shadow_line(s: pb.Shadow) -> str:
    line = (
        f"shadow {s.shadow_id} {_STATE.get(s.state, '?')}: candidate {s.candidate_revision[:12]} "
        f"beside {s.active_revision[:12]}, sample {s.sample:g}, started by "
        f"{s.started_by or '?'} at {_when(s.started_at)}"
    )
    if s.HasField("ended_at"):
        line += f"; ended by {s.ended_by or '?'} at {_when(s.ended_at)}"
    return line


def status_dict(r: pb.GetShadowStatusResponse) -> dict[str, Any]:
    return {
        "shadow": shadow_dict(r.shadow),
        "disagreements": r.disagreements,
        "dropped": r.dropped,
        "replicas": [
            {
                "replica": x.replica,
                "evaluated": x.evaluated,
                "disagreements": x.disagreements,
                "errors": x.errors,
                "dropped": x.dropped,
            }
            for x in r.replicas
        ],
        "report": report_dict(r.report),
    }


def format_status(r: pb.GetShadowStatusResponse) -> str:
    lines = [_shadow_line(r.shadow)]
    replicas = ", ".join(
        f"{x.replica} {x.evaluated} evaluated ({x.disagreements} disagreed, {x.errors} errors, "
        f"{x.dropped} dropped)"
        for x in r.replicas
    )
    lines.append(f"replicas: {replicas or 'none has evaluated yet'}")
    lines.append(
        f"{r.report.decisions} sampled decisions evaluated, {r.disagreements} disagreements, "
        f"{r.dropped} dropped (the queue was full)"
    )
    # The replay report's table and samples (its first line is about a replay's run).
    lines.extend(format_report(report_dict(r.report)).split("\n")[1:])
    return "\n".join(lines)


def _run(args: argparse.Namespace, call: Any) -> Any:
    from interlock.cli.commands import connect

    async def run() -> Any:
        async with connect(args) as client:
            return await call(client)

    return run_interruptibly(run())


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if args.json else text)
    return EXIT_OK


def cmd_shadow_start(args: argparse.Namespace) -> int:
    from interlock.cli.commands import read_policy_dir

    if not 0.0 < args.sample <= 1.0:
        raise UsageError("--sample must be above 0 and at most 1")
    try:
        files = read_policy_dir(args.candidate)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--policy-dir", "CANDIDATE_DIR")) from None
    r = _run(args, lambda c: c.start_shadow(files, sample=args.sample))
    return _print(args, {"shadow": shadow_dict(r.shadow)}, _shadow_line(r.shadow))


def cmd_shadow_status(args: argparse.Namespace) -> int:
    r = _run(args, lambda c: c.shadow_status())
    return _print(args, status_dict(r), format_status(r))


def cmd_shadow_promote(args: argparse.Namespace) -> int:
    if args.accept_widening and not args.reason.strip():
        args.parser.error("--accept-widening needs --reason")
    r = _run(
        args,
        lambda c: c.promote_shadow(accept_widening=args.accept_widening, reason=args.reason),
    )
    data = {
        "shadow": shadow_dict(r.shadow),
        "reload": {
            "revision": r.reload.revision,
            "previous_revision": r.reload.previous_revision,
            "changed": r.reload.changed,
            "replay_digest": r.reload.replay_digest,
            "replayed_decisions": r.reload.replayed_decisions,
            "widening_live": r.reload.widening_live,
            "tests_passed": r.reload.tests_passed,
            "tests_skipped": r.reload.tests_skipped,
        },
    }
    return _print(args, data, _shadow_line(r.shadow) + "\n" + format_reload(r.reload))


def cmd_shadow_stop(args: argparse.Namespace) -> int:
    r = _run(args, lambda c: c.stop_shadow())
    return _print(args, {"shadow": shadow_dict(r.shadow)}, _shadow_line(r.shadow))


__all__ = ["add_parser", "format_status", "status_dict"]
