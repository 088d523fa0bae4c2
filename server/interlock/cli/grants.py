"""``interlock grants create|list|revoke``: standing approvals (docs/grants.md)."""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from google.protobuf.json_format import MessageToDict

from interlock.cli.commands import _call, _emit
from interlock.cli.common import EXIT_OK
from interlock.cli.output import _table, _time, to_json
from interlock.grants import STATES
from interlock.v1 import grants_pb2

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _state(g: grants_pb2.Grant) -> str:
    return str(grants_pb2.GrantState.Name(g.state)).removeprefix("GRANT_STATE_")


def _constraint(g: grants_pb2.Grant) -> str:
    parts = [f"{k}={json.dumps(v)}" for k, v in sorted(dict(g.arguments_equal).items())]
    parts += [f"{k}~/{v}/" for k, v in sorted(dict(g.argument_patterns).items())]
    if g.arguments_schema.fields:
        parts.append("schema")
    return ", ".join(parts) or "any arguments"


def format_grant(g: grants_pb2.Grant) -> str:
    uses = f"{g.uses} of {g.max_uses}" if g.max_uses else f"{g.uses} (no limit)"
    lines = [
        f"grant {g.grant_id}: {_state(g)}",
        f"  covers:    {g.tool} by agent {g.agent_id}, "
        + (f"plan {g.plan_id}" if g.plan_id else "any call"),
        f"  arguments: {_constraint(g)}",
        f"  expires:   {_time(g.expires_at)}",
        f"  uses:      {uses}",
        f"  created:   by {g.created_by}, {_time(g.created_at)}"
        + (f", from approval {g.approval_id}" if g.approval_id else "")
        + (f": {g.reason}" if g.reason else ""),
    ]
    if g.arguments_schema.fields:
        schema = json.dumps(dict(_plain(g.arguments_schema)), sort_keys=True)
        lines.append(f"  schema:    {schema}")
    if g.revoked_by:
        lines.append(
            f"  revoked:   by {g.revoked_by}, {_time(g.revoked_at)}"
            + (f": {g.revoke_reason}" if g.revoke_reason else "")
        )
    return "\n".join(lines)


def _plain(struct: Any) -> Any:
    return MessageToDict(struct)


def format_grants(grants: list[grants_pb2.Grant]) -> str:
    if not grants:
        return "no grants"
    rows = [
        [
            g.grant_id,
            _state(g),
            g.tool,
            g.agent_id,
            g.plan_id or "-",
            f"{g.uses}/{g.max_uses}" if g.max_uses else f"{g.uses}/-",
            _time(g.expires_at),
            _constraint(g),
        ]
        for g in grants
    ]
    head = ["GRANT", "STATE", "TOOL", "AGENT", "PLAN", "USES", "EXPIRES", "ARGUMENTS"]
    return _table(head, rows)


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError("must be a duration like 90s, 30m, 8h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("must be NAME=VALUE")
    return name, value


def _json_value(text: str) -> Any:
    """A JSON value, or the text itself when it is not JSON (a bare string)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _state_name(text: str) -> str:
    name = text.strip().upper().removeprefix("GRANT_STATE_")
    if name not in STATES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(STATES)}")
    return name


def cmd_create(args: argparse.Namespace) -> int:
    schema = json.loads(args.schema) if args.schema else None
    if schema is not None and not isinstance(schema, dict):
        raise argparse.ArgumentTypeError("--schema must be a JSON object")
    grant = _call(
        args,
        lambda c: c.create_grant(
            args.agent,
            args.tool,
            expires_at=time.time() + args.expires_in,
            max_uses=args.max_uses,
            arguments_equal={k: _json_value(v) for k, v in args.arg},
            argument_patterns=dict(args.pattern),
            arguments_schema=schema,
            plan_id=args.plan,
            reason=args.reason,
            approval_id=args.approval,
        ),
    )
    return _emit(args, grant, format_grant)


def cmd_list(args: argparse.Namespace) -> int:
    found = _call(args, lambda c: c.list_grants(args.agent, args.tool, args.state))
    if args.json:
        print(to_json(grants_pb2.ListGrantsResponse(grants=found)))
    else:
        print(format_grants(found))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    grant = _call(args, lambda c: c.revoke_grant(args.grant_id, args.reason))
    return _emit(args, grant, format_grant)


def add_grants_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: list[argparse.ArgumentParser],
) -> None:
    grants = commands.add_parser(
        "grants", help="standing approvals: create, list and revoke grants"
    )
    sub = grants.add_subparsers(dest="grants_command", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create",
        parents=client,
        help="let an agent call a tool without a new approval, for a while",
        description="Create a grant as the authenticated principal (an approver or an admin; "
        "never for an agent you act as, nor from an approval you asked for). The call must "
        "match every --arg (exact JSON value, or a string), every --pattern (a regular "
        "expression the whole field matches) and --schema (a JSON Schema subset). Tools the "
        "catalog marks grantable: false are never covered (docs/grants.md).",
    )
    create.add_argument("--agent", default="", metavar="ID", help="the agent it covers")
    create.add_argument("--tool", default="", metavar="NAME", help="the tool it covers")
    create.add_argument(
        "--expires-in",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="how long it lasts, e.g. 30m, 8h, 2d (the server caps it: grant_max_seconds)",
    )
    create.add_argument(
        "--max-uses", type=int, default=0, metavar="N", help="at most N calls [default: no limit]"
    )
    create.add_argument(
        "--arg",
        type=_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument that must equal VALUE (JSON, or a plain string)",
    )
    create.add_argument(
        "--pattern",
        type=_pair,
        action="append",
        default=[],
        metavar="NAME=REGEX",
        help="a string argument the regular expression must match as a whole",
    )
    create.add_argument("--schema", default="", metavar="JSON", help="a JSON Schema (subset)")
    create.add_argument("--plan", default="", metavar="ID", help="only calls of this plan")
    create.add_argument("--approval", default="", metavar="ID", help="made from this approval")
    create.add_argument("--reason", default="", metavar="TEXT", help="why, for the record")
    create.set_defaults(handler=cmd_create, parser=create)
    listing = sub.add_parser("list", parents=client, help="grants, newest first")
    listing.add_argument("--agent", default="", metavar="ID", help="only this agent's")
    listing.add_argument("--tool", default="", metavar="NAME", help="only this tool's")
    listing.add_argument(
        "--state",
        type=_state_name,
        nargs="+",
        action="extend",
        default=[],
        metavar="STATE",
        help=f"only grants in these states ({', '.join(STATES)})",
    )
    listing.set_defaults(handler=cmd_list, parser=listing)
    revoke = sub.add_parser("revoke", parents=client, help="revoke a grant at once")
    revoke.add_argument("grant_id", metavar="ID")
    revoke.add_argument("--reason", default="", metavar="TEXT", help="why, for the record")
    revoke.set_defaults(handler=cmd_revoke, parser=revoke)


__all__ = ["add_grants_parser", "format_grant", "format_grants"]
