"""``interlock approvals list|show|approve|deny|wait`` and ``interlock auth token``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from interlock.auth import KINDS, new_token, token_hash
from interlock.cli.commands import _call, _emit
from interlock.cli.common import EXIT_OK
from interlock.cli.output import _table, _time, to_json
from interlock.v1 import control_plane_pb2, observe_pb2

STATES = ("PENDING", "APPROVED", "DENIED", "EXPIRED", "USED", "CANCELLED")


def _state(a: observe_pb2.Approval) -> str:
    return str(observe_pb2.ApprovalState.Name(a.state)).removeprefix("APPROVAL_STATE_")


def format_approval(a: observe_pb2.Approval) -> str:
    where = f"{a.plan_id}/{a.step_id}" if a.plan_id else "(a single call)"
    lines = [
        f"approval {a.approval_id}: {_state(a)}",
        f"  call:      {a.tool} by agent {a.agent_id} at confidence {a.confidence:g}, {where}",
        f"  asked by:  {a.requested_by}, {_time(a.created_at)}; decision {a.decision_id}",
        f"  needs:     {a.approvals_required} of role {' or '.join(a.approver_roles)}"
        + (f" (escalated {a.escalation_level}x)" if a.escalation_level else ""),
        f"  approved:  {', '.join(a.approved_by) or 'nobody yet'}",
        f"  expires:   {_time(a.expires_at)}",
        f"  covers:    arguments sha256 {a.arguments_hash}, policy {a.policy_revision[:12]}",
    ]
    if a.resolved_by or a.reason:
        lines.append(f"  resolved:  {a.resolved_by or '-'}: {a.reason or '-'}")
    if a.used_by_decision_id:
        lines.append(f"  used by:   decision {a.used_by_decision_id}")
    return "\n".join(lines)


def format_approvals(approvals: list[observe_pb2.Approval]) -> str:
    if not approvals:
        return "no approvals"
    rows = [
        [
            a.approval_id,
            _state(a),
            a.tool,
            a.agent_id,
            f"{a.plan_id}/{a.step_id}" if a.plan_id else "-",
            f"{len(a.approved_by)}/{a.approvals_required}",
            ",".join(a.approver_roles),
            _time(a.expires_at),
        ]
        for a in approvals
    ]
    head = ["APPROVAL", "STATE", "TOOL", "AGENT", "PLAN/STEP", "OK", "ROLES", "EXPIRES"]
    return _table(head, rows)


def _state_name(text: str) -> str:
    name = text.strip().upper().removeprefix("APPROVAL_STATE_")
    if name not in STATES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(STATES)}")
    return name


def cmd_list(args: argparse.Namespace) -> int:
    found = _call(args, lambda c: c.list_approvals(args.state, args.plan, args.agent, args.tool))
    if args.json:
        print(to_json(control_plane_pb2.ListApprovalsResponse(approvals=found)))
    else:
        print(format_approvals(found))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    approval = _call(args, lambda c: c.await_approval(args.approval_id, 0))
    return _emit(args, approval, format_approval)


def cmd_resolve(args: argparse.Namespace) -> int:
    approve = args.approvals_command == "approve"
    approval = _call(args, lambda c: c.resolve_approval(args.approval_id, approve, args.reason))
    return _emit(args, approval, format_approval)


def cmd_wait(args: argparse.Namespace) -> int:
    approval = _call(args, lambda c: c.await_approval(args.approval_id, args.wait))
    return _emit(args, approval, format_approval)


def cmd_token(args: argparse.Namespace) -> int:
    """Make a token; print it once, and the entry for the principals file."""
    token = new_token()
    entry: dict[str, Any] = {"id": args.id, "kind": args.kind}
    if args.role:
        entry["roles"] = args.role
    if args.agent:
        entry["agents"] = args.agent
    snippet = {"tokens": {token_hash(token): entry}}
    if args.json:
        print(json.dumps({"token": token, "sha256": token_hash(token), "principal": entry}))
        return EXIT_OK
    print(token)
    print(
        "\n# Give the token above to its holder (it is shown only now) and add this to\n"
        "# the principals file (the server re-reads it within a second):\n"
        + yaml.safe_dump(snippet, sort_keys=False),
        file=sys.stderr,
        end="",
    )
    return EXIT_OK


def add_approvals_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: list[argparse.ArgumentParser],
) -> None:
    approvals = commands.add_parser("approvals", help="list, approve and deny held calls")
    sub = approvals.add_subparsers(dest="approvals_command", metavar="COMMAND", required=True)
    listing = sub.add_parser(
        "list",
        parents=client,
        help="approvals, oldest first (PENDING unless --state)",
        description="List approvals, oldest first: PENDING ones unless --state says otherwise.",
    )
    listing.add_argument(
        "--state",
        type=_state_name,
        nargs="+",
        action="extend",
        default=[],
        metavar="STATE",
        help=f"only approvals in these states ({', '.join(STATES)})",
    )
    listing.add_argument("--plan", default="", metavar="ID", help="only this plan's")
    listing.add_argument("--agent", default="", metavar="ID", help="only this agent's")
    listing.add_argument("--tool", default="", metavar="NAME", help="only this tool's")
    listing.set_defaults(handler=cmd_list, parser=listing)
    show = sub.add_parser("show", parents=client, help="one approval in full")
    show.add_argument("approval_id", metavar="ID")
    show.set_defaults(handler=cmd_show, parser=show)
    for name, text in (("approve", "approve a held call"), ("deny", "deny a held call")):
        resolve = sub.add_parser(
            name,
            parents=client,
            help=text,
            description=f"{text.capitalize()} as the authenticated principal (never the one "
            "who asked for it). A denial needs --reason.",
        )
        resolve.add_argument("approval_id", metavar="ID")
        resolve.add_argument(
            "--reason", default="", metavar="TEXT", required=name == "deny", help="why"
        )
        resolve.set_defaults(handler=cmd_resolve, parser=resolve)
    wait = sub.add_parser(
        "wait", parents=client, help="wait until an approval is resolved or expires"
    )
    wait.add_argument("approval_id", metavar="ID")
    wait.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS", help="at most [default: 60]"
    )
    wait.set_defaults(handler=cmd_wait, parser=wait)


def add_auth_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = commands.add_parser("auth", help="issue bearer tokens")
    sub = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)
    token = sub.add_parser(
        "token",
        help="make a new bearer token and its principals-file entry",
        description="Print a new random token on stdout and, on stderr, the entry that maps "
        "its SHA-256 to the principal in the principals file. The server stores only "
        "the hash.",
    )
    token.add_argument("--id", required=True, help="the principal's id")
    token.add_argument("--kind", required=True, choices=KINDS, help="agent, operator or admin")
    token.add_argument(
        "--role", nargs="+", action="extend", default=[], metavar="ROLE", help="its roles"
    )
    token.add_argument(
        "--agent",
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="catalog agents it acts as [default: its id, for an agent]",
    )
    token.add_argument("--json", action="store_true", help="print JSON instead")
    token.set_defaults(handler=cmd_token, parser=token)


__all__ = ["add_approvals_parser", "add_auth_parser", "format_approval", "format_approvals"]
