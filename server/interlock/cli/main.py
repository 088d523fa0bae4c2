"""The argument parser and the entry point of the ``interlock`` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from interlock_client import InterlockError
from interlock_client.client import DEFAULT_TARGET, DEFAULT_TIMEOUT, TOKEN_ENV

from interlock import __version__
from interlock.cli.approvals import add_approvals_parser, add_auth_parser
from interlock.cli.audit import add_audit_parser
from interlock.cli.batch import add_parser as add_run_plans_parser
from interlock.cli.commands import (
    _target,
    cmd_decide,
    cmd_health,
    cmd_plan_cancel,
    cmd_plan_get,
    cmd_plan_list,
    cmd_plan_submit,
    cmd_policy_eval,
    cmd_policy_reload,
    cmd_policy_status,
    cmd_report,
    cmd_signals,
    cmd_tools_list,
    cmd_watch,
    read_policy_dir,
)
from interlock.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    OUTCOME_CHOICES,
    SERVER_ENV,
    UsageError,
)
from interlock.cli.grants import add_grants_parser
from interlock.cli.output import print_error
from interlock.cli.replay import add_parser as add_replay_parser
from interlock.cli.serve import _add_config_flags, cmd_serve, run_server, setup_logging
from interlock.cli.shadow import add_parser as add_shadow_parser
from interlock.cli.trust import add_trust_parser
from interlock.v1 import observe_pb2, plans_pb2

# The parser ---------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _whole_below(limit: int) -> Callable[[str], int]:
    """An argparse type for a whole number in [0, limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not 0 <= value < limit:
            raise argparse.ArgumentTypeError(f"must be between 0 and {limit - 1}, not {text}")
        return value

    return parse


_count = _whole_below(2**32)
_seq = _whole_below(2**64)


def _enum_names(enum: Any, prefix: str) -> tuple[str, ...]:
    """An enum's value names without their prefix, UNSPECIFIED left out."""
    return tuple(
        name.removeprefix(prefix) for name in enum.keys() if name != f"{prefix}UNSPECIFIED"
    )


def _enum_choice(names: tuple[str, ...], prefix: str, what: str) -> Callable[[str], str]:
    """An argparse type taking one of ``names``, in any case, with or without the prefix."""

    def parse(text: str) -> str:
        name = text.strip().upper().replace("-", "_").removeprefix(prefix)
        if name not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r} (one of {', '.join(names)})")
        return name

    return parse


EVENT_KINDS = _enum_names(observe_pb2.EventKind, "EVENT_KIND_")
SIGNAL_KINDS = _enum_names(observe_pb2.SignalKind, "SIGNAL_KIND_")
PLAN_STATES = _enum_names(plans_pb2.PlanState, "PLAN_STATE_")
_event_kind = _enum_choice(EVENT_KINDS, "EVENT_KIND_", "event kind")
_signal_kind = _enum_choice(SIGNAL_KINDS, "SIGNAL_KIND_", "signal kind")
_plan_state = _enum_choice(PLAN_STATES, "PLAN_STATE_", "plan state")


def _outcome(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    # Connection flags are accepted before or after the command; SUPPRESS keeps a
    # subcommand from overwriting a value given before it.
    conn = argparse.ArgumentParser(add_help=False)
    group = conn.add_argument_group("connection")
    group.add_argument(
        "--server",
        "--target",
        dest="server",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help="the server to talk to, or replicas' IP:PORT,IP:PORT,... (calls spread over "
        f"them, round_robin) [default: ${SERVER_ENV} or {DEFAULT_TARGET}]",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help=f"deadline of each call [default: {DEFAULT_TIMEOUT:g}]",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help=f"bearer token to send [default: ${TOKEN_ENV}]",
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read the bearer token from FILE",
    )
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="use TLS, trusting the CA certificates in FILE (PEM)",
    )
    group.add_argument(
        "--cert-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="mutual TLS: present this client certificate (PEM; with --key-file)",
    )
    group.add_argument("--key-file", metavar="FILE", default=argparse.SUPPRESS, help="its key")
    group.add_argument(
        "--as",
        dest="dev_principal",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="insecure development mode only: act as NAME (e.g. to approve)",
    )
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON instead of text")
    client = [conn, out]

    parser = argparse.ArgumentParser(
        prog="interlock",
        description="Interlock: a control plane for AI agents' tool calls.",
        epilog="Exit status: 0 ok, 1 the call failed, 2 usage error.",
        parents=[conn],
    )
    parser.add_argument("--version", action="version", version=f"interlock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the Interlock server until SIGINT or SIGTERM. Precedence, lowest "
        "first: defaults, the config file, INTERLOCK_* environment variables, flags.",
    )
    serve.add_argument(
        "--config", metavar="FILE", help="YAML config file [default: $INTERLOCK_CONFIG]"
    )
    _add_config_flags(serve)
    serve.set_defaults(handler=cmd_serve, parser=serve)

    tools = commands.add_parser("tools", help="the tool catalog")
    tools_commands = tools.add_subparsers(dest="tools_command", metavar="COMMAND", required=True)
    tools_list = tools_commands.add_parser(
        "list", parents=client, help="list the tool contracts of the active policy set"
    )
    tools_list.set_defaults(handler=cmd_tools_list, parser=tools_list)

    def add_tool_call(p: argparse.ArgumentParser, *, required: bool) -> None:
        p.add_argument("--agent", required=required, help="the calling agent's id")
        p.add_argument("--tool", required=required, help="the tool, by its catalog name")
        p.add_argument(
            "--confidence", type=float, required=required, help="the agent's confidence, in [0, 1]"
        )
        args = p.add_mutually_exclusive_group()
        args.add_argument("--args", metavar="JSON", help="the call's arguments, a JSON object")
        args.add_argument(
            "--args-file", metavar="FILE", help="read the arguments from a JSON file (- for stdin)"
        )

    decide = commands.add_parser(
        "decide", parents=client, help="ask whether, and in which mode, an agent may call a tool"
    )
    add_tool_call(decide, required=True)
    decide.add_argument("--plan-id", default="", help="the plan the call belongs to")
    decide.add_argument("--step-id", default="", help="the plan step the call belongs to")
    decide.add_argument(
        "--approval",
        default="",
        metavar="ID",
        help="an APPROVED approval covering this exact call (used up by it)",
    )
    decide.set_defaults(handler=cmd_decide, parser=decide)

    report = commands.add_parser(
        "report", parents=client, help="report how a decided tool call ended"
    )
    report.add_argument("--decision", required=True, metavar="ID", help="the decision id")
    report.add_argument("--agent", required=True, help="the agent that ran the call")
    report.add_argument("--outcome", required=True, type=_outcome, choices=OUTCOME_CHOICES)
    report.add_argument("--output", metavar="JSON", help="the call's output, a JSON object")
    report.add_argument("--error", default="", metavar="MESSAGE", help="what went wrong")
    report.add_argument(
        "--duration", type=float, default=0.0, metavar="SECONDS", help="how long the call ran"
    )
    report.set_defaults(handler=cmd_report, parser=report)

    policy = commands.add_parser("policy", help="inspect, reload and try out the policy set")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    status = policy_commands.add_parser("status", parents=client, help="the active policy set")
    status.set_defaults(handler=cmd_policy_status, parser=status)
    reload = policy_commands.add_parser(
        "reload", parents=client, help="re-read the server's policy folder and swap it in"
    )
    reload.add_argument(
        "--accept-widening",
        action="store_true",
        help="make the set live even though it widens what runs LIVE (needs --reason)",
    )
    reload.add_argument("--reason", default="", help="why (kept on the audit line)")
    reload.set_defaults(handler=cmd_policy_reload, parser=reload)
    evaluate = policy_commands.add_parser(
        "eval",
        parents=client,
        help="evaluate a tool call or a raw input, changing nothing",
        description="Evaluate a tool call (as decide would) or a raw policy input against the "
        "active policy set, or against the files of --policy-dir. Nothing is recorded.",
    )
    add_tool_call(evaluate, required=False)
    evaluate.add_argument(
        "--live-in-flight", type=_count, default=0, metavar="N", help="LIVE calls to assume running"
    )
    raw = evaluate.add_mutually_exclusive_group()
    raw.add_argument("--input", metavar="JSON", help="a raw policy input, a JSON object")
    raw.add_argument("--input-file", metavar="FILE", help="read the raw input from a file")
    evaluate.add_argument(
        "--policy-dir",
        metavar="DIR",
        help="evaluate against this folder's policy files instead of the active set",
    )
    evaluate.set_defaults(handler=cmd_policy_eval, parser=evaluate)
    add_replay_parser(policy_commands, client)
    add_shadow_parser(policy_commands, client)

    health = commands.add_parser("health", parents=client, help="the server's health")
    health.set_defaults(handler=cmd_health, parser=health)

    watch = commands.add_parser(
        "watch",
        parents=client,
        help="follow the event stream",
        description="Print the server's events in order, one per line (seq, time, kind, "
        "plan/step/agent, message; one JSON object per line with --json): the history after "
        "--after first, then live ones as they happen, until --limit events or Ctrl-C. "
        "To resume, pass the last seq printed as --after: nothing is skipped or repeated. "
        "--timeout, when given, bounds the whole stream.",
    )
    watch.add_argument(
        "--after", type=_seq, default=0, metavar="SEQ", help="start after this seq [default: 0]"
    )
    watch.add_argument("--plan", default="", metavar="ID", help="only this plan's events")
    watch.add_argument("--agent", default="", metavar="ID", help="only this agent's events")
    watch.add_argument(
        "--kind",
        type=_event_kind,
        nargs="+",
        action="extend",
        default=[],
        metavar="KIND",
        help=f"only these kinds ({', '.join(EVENT_KINDS)})",
    )
    watch.add_argument(
        "--limit", type=_count, default=0, metavar="N", help="stop after N events [default: never]"
    )
    watch.set_defaults(handler=cmd_watch, parser=watch)

    signals = commands.add_parser(
        "signals",
        parents=client,
        help="list learning signals",
        description="List the learning signals the server derived from its events, newest "
        "first, each with its value and evidence (see docs/signals.md).",
    )
    signals.add_argument(
        "--kind",
        type=_signal_kind,
        nargs="+",
        action="extend",
        default=[],
        metavar="KIND",
        help=f"only these kinds ({', '.join(SIGNAL_KINDS)})",
    )
    signals.add_argument("--tool", default="", help="only this tool's signals")
    signals.add_argument(
        "--limit",
        type=_count,
        default=0,
        metavar="N",
        help="show at most N signals (the server allows 1000) [default: 100]",
    )
    signals.set_defaults(handler=cmd_signals, parser=signals)

    plan = commands.add_parser("plan", help="submit, inspect and cancel plans")
    plan_commands = plan.add_subparsers(dest="plan_command", metavar="COMMAND", required=True)
    submit = plan_commands.add_parser(
        "submit",
        parents=client,
        help="submit a plan from a JSON file",
        description="Submit a plan written in JSON, in either format: Phase-21 (plan_id, "
        "agent_assignments, execution_order, confidence_scores) or explicit steps (plan_id, "
        "labels, steps of step_id, tool, agent_id, arguments, confidence, depends_on). "
        "Prints the accepted plan: its state, its steps in the order they run, and the "
        "conflicts found with how each was resolved. The server refuses an invalid plan "
        "(exit 1) listing every problem; a file that is not a plan at all is a usage error "
        "(exit 2).",
    )
    submit.add_argument("file", metavar="FILE", help="the plan's JSON file (- for stdin)")
    submit.set_defaults(handler=cmd_plan_submit, parser=submit)
    get = plan_commands.add_parser(
        "get", parents=client, help="a plan: its state, steps and conflicts"
    )
    get.add_argument("plan_id", metavar="ID", help="the plan's id")
    get.set_defaults(handler=cmd_plan_get, parser=get)
    plan_list = plan_commands.add_parser(
        "list",
        parents=client,
        help="list plans, by id",
        description="List plans in plan id order, one line each, following the server's "
        "pages until --limit plans.",
    )
    plan_list.add_argument(
        "--state",
        type=_plan_state,
        nargs="+",
        action="extend",
        default=[],
        metavar="STATE",
        help=f"only plans in these states ({', '.join(PLAN_STATES)})",
    )
    plan_list.add_argument(
        "--limit",
        type=_count,
        default=100,
        metavar="N",
        help="show at most N plans; 0 for all [default: 100]",
    )
    plan_list.set_defaults(handler=cmd_plan_list, parser=plan_list)
    cancel = plan_commands.add_parser(
        "cancel",
        parents=client,
        help="cancel a plan that has not finished",
        description="Cancel a plan: its steps that have not finished are cancelled; steps "
        "that completed are not undone. Prints the plan.",
    )
    cancel.add_argument("plan_id", metavar="ID", help="the plan's id")
    cancel.add_argument("--reason", default="", metavar="TEXT", help="why, for the record")
    cancel.set_defaults(handler=cmd_plan_cancel, parser=cancel)

    add_approvals_parser(commands, client)
    add_grants_parser(commands, client)
    add_trust_parser(commands, client)
    add_auth_parser(commands)
    add_audit_parser(commands)
    add_run_plans_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        args.parser.error(str(exc))  # exits 2
    except InterlockError as exc:
        print_error(exc, _target(args))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return EXIT_FAILED  # pragma: no cover - parser.error does not return


__all__ = ["build_parser", "main", "read_policy_dir", "run_server", "setup_logging"]
