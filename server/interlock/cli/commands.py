"""The client commands: each talks to a running server through interlock_client."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from interlock_client import (
    InterlockClient,
    PlanDocumentError,
    credentials_from_files,
    plan_request,
)
from interlock_client.client import DEFAULT_TARGET, DEFAULT_TIMEOUT

from interlock.cli.common import _T, EXIT_OK, SERVER_ENV, UsageError, run_interruptibly
from interlock.cli.output import (
    format_decision,
    format_evaluation,
    format_event,
    format_health,
    format_plan,
    format_plans,
    format_policy_status,
    format_reload,
    format_result,
    format_signals,
    format_tools,
    to_json,
    to_json_line,
)
from interlock.v1 import control_plane_pb2

# Reading input ----------------------------------------------------------------


def _read_text(path: str, flag: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc}") from None


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: must be a JSON object, not {type(value).__name__}")
    return value


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    if args.args_file is not None:
        return _json_object(_read_text(args.args_file, "--args-file"), "--args-file")
    if args.args is not None:
        return _json_object(args.args, "--args")
    return {}


def read_policy_dir(root: str | os.PathLike[str]) -> dict[str, str]:
    """The policy files under root, read the way the server reads its folder."""
    from interlock.errors import PolicyLoadError
    from interlock.policy.bundle import read_dir

    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"--policy-dir: {base} is not a folder")
    try:
        files = read_dir(base)
    except PolicyLoadError as exc:
        raise UsageError(f"--policy-dir: {exc.message}") from None
    if not files:
        raise UsageError(f"--policy-dir: no policy files (*.rego, data.yaml) under {base}")
    return files


# Client commands --------------------------------------------------------------


def _target(args: argparse.Namespace) -> str:
    return getattr(args, "server", None) or os.environ.get(SERVER_ENV) or DEFAULT_TARGET


def connect(args: argparse.Namespace) -> InterlockClient:
    """A client configured by the connection flags (and INTERLOCK_* variables)."""
    ca, cert, key = (getattr(args, f, None) for f in ("ca_file", "cert_file", "key_file"))
    if (cert is None) != (key is None):
        raise UsageError("--cert-file and --key-file go together")
    try:
        token, credentials = credentials_from_files(
            getattr(args, "token_file", None), ca, cert, key
        )
    except OSError as exc:
        raise UsageError(f"cannot read a credentials file: {exc}") from None
    if not getattr(args, "token_file", None):  # --token-file wins over --token, then the env
        token = getattr(args, "token", None) or token
    try:
        return InterlockClient(
            _target(args),
            timeout=getattr(args, "timeout", DEFAULT_TIMEOUT),
            token=token,
            credentials=credentials,
            dev_principal=getattr(args, "dev_principal", None),
        )
    except ValueError as exc:  # a list of replicas that is not IP:PORT,IP:PORT
        raise UsageError(f"--server/--target: {exc}") from None


def _call(args: argparse.Namespace, call: Callable[[InterlockClient], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with connect(args) as client:
            return await call(client)

    return run_interruptibly(run())


def _emit(args: argparse.Namespace, message: Message, human: Callable[[Any], str]) -> int:
    print(to_json(message) if args.json else human(message))
    return EXIT_OK


def cmd_tools_list(args: argparse.Namespace) -> int:
    return _emit(args, _call(args, lambda c: c.list_tools()), format_tools)


def cmd_decide(args: argparse.Namespace) -> int:
    arguments = _arguments(args)
    decision = _call(
        args,
        lambda c: c.request_tool_call(
            args.agent,
            args.tool,
            arguments,
            args.confidence,
            args.plan_id,
            args.step_id,
            getattr(args, "approval", "") or "",
        ),
    )
    return _emit(args, decision, format_decision)


def cmd_report(args: argparse.Namespace) -> int:
    output = _json_object(args.output, "--output") if args.output is not None else None
    result = _call(
        args,
        lambda c: c.report_tool_result(
            args.decision, args.agent, args.outcome, output, args.error, args.duration
        ),
    )
    return _emit(args, result, format_result)


def cmd_policy_status(args: argparse.Namespace) -> int:
    return _emit(args, _call(args, lambda c: c.policy_status()), format_policy_status)


def cmd_policy_reload(args: argparse.Namespace) -> int:
    if args.accept_widening and not args.reason.strip():
        args.parser.error("--accept-widening needs --reason")
    return _emit(
        args,
        _call(
            args,
            lambda c: c.reload_policies(accept_widening=args.accept_widening, reason=args.reason),
        ),
        format_reload,
    )


def cmd_policy_eval(args: argparse.Namespace) -> int:
    raw: dict[str, Any] | None = None
    tool_call = any(
        v is not None for v in (args.agent, args.tool, args.confidence, args.args, args.args_file)
    )
    if args.input is not None or args.input_file is not None:
        if tool_call or args.live_in_flight:
            raise UsageError("give either --input/--input-file or a tool call, not both")
        if args.input_file is not None:
            raw = _json_object(_read_text(args.input_file, "--input-file"), "--input-file")
        else:
            raw = _json_object(args.input, "--input")
    elif not tool_call:
        raise UsageError("give a tool call (--agent, --tool, --confidence, --args) or --input")
    files = read_policy_dir(args.policy_dir) if args.policy_dir else None
    if raw is not None:
        result = _call(args, lambda c: c.evaluate_policy(raw_input=raw, policy_files=files))
    else:
        arguments = _arguments(args)
        result = _call(
            args,
            lambda c: c.evaluate_policy(
                args.agent or "",
                args.tool or "",
                arguments,
                args.confidence,
                live_in_flight=args.live_in_flight,
                policy_files=files,
            ),
        )
    return _emit(args, result, format_evaluation)


def cmd_health(args: argparse.Namespace) -> int:
    return _emit(args, _call(args, lambda c: c.get_health()), format_health)


def cmd_watch(args: argparse.Namespace) -> int:
    """Print events as they come until --limit events, Ctrl-C (both exit 0) or an error."""

    async def show(client: InterlockClient) -> None:
        stream = client.watch_events(
            args.after,
            plan_id=args.plan,
            agent_id=args.agent,
            kinds=args.kind,
            timeout=getattr(args, "timeout", None),
        )
        shown = 0
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                print(to_json_line(event) if args.json else format_event(event), flush=True)
                shown += 1
                if shown == args.limit:
                    return

    try:
        _call(args, show)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_signals(args: argparse.Namespace) -> int:
    response = _call(args, lambda c: c.list_signals(args.kind, args.tool, args.limit))
    return _emit(args, response, format_signals)


# Plans --------------------------------------------------------------------------------

MAX_PAGE = 100
"""The most plans the server sends in one page."""


def read_plan(path: str) -> dict[str, Any]:
    """The plan document in a file (- for stdin); a file that holds no plan the
    SubmitPlan request can carry is a usage error. The server validates the rest."""
    name = "stdin" if path == "-" else path
    try:
        doc = json.loads(_read_text(path, "FILE"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{name}: a plan must be a JSON object, not {type(doc).__name__}")
    try:
        plan_request(doc)
    except PlanDocumentError as exc:
        listed = "".join(f"\n  {f}: {d}" for f, d in exc.field_violations)
        raise UsageError(
            f"{name}: not a plan Interlock can read; nothing was sent:{listed}"
        ) from None
    return doc


def cmd_plan_submit(args: argparse.Namespace) -> int:
    plan = read_plan(args.file)
    return _emit(args, _call(args, lambda c: c.submit_plan(plan)), format_plan)


def cmd_plan_get(args: argparse.Namespace) -> int:
    return _emit(args, _call(args, lambda c: c.get_plan(args.plan_id)), format_plan)


async def collect_plans(
    client: InterlockClient, states: list[str], limit: int, page_size: int = MAX_PAGE
) -> tuple[control_plane_pb2.ListPlansResponse, bool]:
    """Up to ``limit`` plans (0: all), following page tokens; and whether more are left.
    The response's next_page_token continues after the last plan returned."""
    out = control_plane_pb2.ListPlansResponse()
    token = ""
    while True:
        wanted = page_size if not limit else min(page_size, limit - len(out.plans))
        page = await client.list_plans(states, wanted, token)
        out.plans.extend(page.plans)
        token = page.next_page_token
        if not token or not page.plans:
            return out, False
        if limit and len(out.plans) >= limit:
            out.next_page_token = token
            return out, True


def cmd_plan_list(args: argparse.Namespace) -> int:
    response, more = _call(args, lambda c: collect_plans(c, args.state, args.limit))
    return _emit(args, response, lambda r: format_plans(r, more))


def cmd_plan_cancel(args: argparse.Namespace) -> int:
    plan = _call(args, lambda c: c.cancel_plan(args.plan_id, args.reason))
    return _emit(args, plan, format_plan)
