"""``interlock trust show|reset``: the trust of (agent, tool) pairs (docs/trust.md)."""

from __future__ import annotations

import argparse
from typing import Any

from interlock.cli.commands import _call
from interlock.cli.common import EXIT_OK
from interlock.cli.output import _table, to_json
from interlock.v1 import trust_pb2


def _state(p: trust_pb2.PairTrust) -> str:
    return str(trust_pb2.TrustState.Name(p.state)).removeprefix("TRUST_STATE_")


def _when(ts: Any) -> str:
    if not ts.seconds:
        return "-"
    return str(ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC"))


def format_pairs(pairs: list[trust_pb2.PairTrust]) -> str:
    if not pairs:
        return "no pairs have outcomes yet: every (agent, tool) pair is TRUSTED"
    rows = [
        [
            p.agent_id,
            p.tool,
            _state(p),
            f"{p.failures}/{p.failures_needed}",
            _when(p.demoted_until) if _state(p) != "TRUSTED" else "-",
            str(p.demotions),
            f"{p.clean_runs}/{p.clean_runs_needed}" if _state(p) == "PROBATION" else "-",
            p.reason or "-",
        ]
        for p in pairs
    ]
    head = ["AGENT", "TOOL", "STATE", "FAILURES", "DEMOTED UNTIL", "DEMOTIONS", "CLEAN", "WHY"]
    return _table(head, rows)


def cmd_show(args: argparse.Namespace) -> int:
    pairs = _call(args, lambda c: c.get_trust(args.agent, args.tool))
    if args.json:
        print(to_json(trust_pb2.GetTrustResponse(pairs=pairs)))
    else:
        print(format_pairs(pairs))
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    pair = _call(args, lambda c: c.reset_trust(args.agent, args.tool, args.reason))
    print(to_json(pair) if args.json else format_pairs([pair]))
    return EXIT_OK


def add_trust_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: list[argparse.ArgumentParser],
) -> None:
    trust = commands.add_parser("trust", help="demoted and trusted (agent, tool) pairs")
    sub = trust.add_subparsers(dest="trust_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show",
        parents=client,
        help="the trust of pairs (all with outcomes, or --agent/--tool)",
        description="The trust of (agent, tool) pairs: TRUSTED, DEMOTED (cooling down) or "
        "PROBATION (earning LIVE back with clean DRY_RUN runs).",
    )
    show.add_argument("--agent", default="", metavar="ID", help="only this agent's")
    show.add_argument("--tool", default="", metavar="NAME", help="only this tool's")
    show.set_defaults(handler=cmd_show, parser=show)
    reset = sub.add_parser(
        "reset",
        parents=client,
        help="promote a pair back to TRUSTED now",
        description="Promote a demoted pair back to TRUSTED at once, as the authenticated "
        "principal (approvers and admins), and forget its demotions. Audited with --reason.",
    )
    reset.add_argument("--agent", required=True, metavar="ID")
    reset.add_argument("--tool", required=True, metavar="NAME")
    reset.add_argument("--reason", required=True, metavar="TEXT", help="why (audited)")
    reset.set_defaults(handler=cmd_reset, parser=reset)


__all__ = ["add_trust_parser", "format_pairs"]
