"""The ``interlock`` command: run the server, and talk to one.

    interlock serve [--config FILE] [--listen HOST:PORT] [--engine embedded|opa] ...
    interlock tools list
    interlock decide --agent A --tool T --confidence C [--args JSON | --args-file F]
    interlock report --decision ID --agent A --outcome succeeded|failed|timed_out
    interlock policy status | reload | eval
    interlock health

Every command but ``serve`` is a client of a running server (``--server``,
default ``$INTERLOCK_SERVER`` or 127.0.0.1:50051), built on
:mod:`interlock_client`. Output is for people by default and JSON with
``--json``. Exit status: 0 on success, 1 when the call fails (``error: CODE:
message`` on stderr, then any field violations), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from interlock_client import InterlockClient, InterlockError
from interlock_client.client import DEFAULT_TARGET, DEFAULT_TIMEOUT

from interlock import __version__
from interlock.v1 import observe_pb2, types_pb2

SERVER_ENV = "INTERLOCK_SERVER"
TOKEN_ENV = "INTERLOCK_TOKEN"
STOP_GRACE_SECONDS = 5.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
POLICY_DATA_FILES = ("data.yaml", "data.yml", "data.json")
OUTCOME_CHOICES = ("succeeded", "failed", "timed_out")

_T = TypeVar("_T")

log = logging.getLogger("interlock.cli")


class UsageError(Exception):
    """Bad input on the command line (exit status 2)."""


# Output helpers ---------------------------------------------------------------


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(f"{prefix}_")
    except ValueError:
        return str(value)


def _verdict(value: int) -> str:
    return _enum(types_pb2.Verdict, value, "VERDICT")


def _mode(value: int) -> str:
    return _enum(types_pb2.ExecutionMode, value, "EXECUTION_MODE")


def _time(ts: timestamp_pb2.Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds(d: duration_pb2.Duration) -> str:
    return f"{d.ToNanoseconds() / 1e9:g}s"


def _number(value: float) -> str:
    return f"{value:g}"


def to_json(message: Message) -> str:
    """A message as indented JSON, proto field names, every field present."""
    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(data, indent=2, ensure_ascii=False)


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = []
    for row in (header, *rows):
        cells = [f"{c:<{w}}" for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def _reasons(reasons: Sequence[str]) -> str:
    if not reasons:
        return "reasons    (none)"
    return "reasons\n" + "\n".join(f"  - {r}" for r in reasons)


def format_decision(d: types_pb2.Decision) -> str:
    rows = [
        ("verdict", _verdict(d.verdict)),
        ("mode", _mode(d.mode)),
        ("decision", d.decision_id),
        ("tool", d.tool),
        ("agent", d.agent_id),
        ("confidence", _number(d.confidence)),
    ]
    if d.needs_approval:
        rows.append(("approval", f"needed{f' ({d.approval_id})' if d.approval_id else ''}"))
    if d.fail_closed:
        rows.append(("fail closed", "yes: the policy could not be evaluated"))
    if d.plan_id or d.step_id:
        rows.append(("plan", f"{d.plan_id or '-'} step {d.step_id or '-'}"))
    rows += [
        ("revision", d.policy_revision),
        ("engine", d.engine),
        ("decided", _time(d.decided_at)),
    ]
    return _pairs(rows) + "\n" + _reasons(d.reasons)


def format_tools(response: Any) -> str:
    rows = [
        [
            t.name,
            _enum(types_pb2.RiskLevel, t.risk, "RISK_LEVEL"),
            "yes" if t.reversible else "no",
            t.compensating_tool or "-",
            ",".join(t.required_permissions) or "-",
            _seconds(t.timeout),
            t.description,
        ]
        for t in response.tools
    ]
    header = ["NAME", "RISK", "REVERSIBLE", "UNDONE BY", "PERMISSIONS", "TIMEOUT", "DESCRIPTION"]
    footer = f"{len(rows)} tools; policy revision {response.policy_revision}"
    return (_table(header, rows) + "\n\n" if rows else "") + footer


def format_result(r: types_pb2.ToolResult) -> str:
    rows = [
        ("recorded", _enum(types_pb2.ToolOutcome, r.outcome, "TOOL_OUTCOME")),
        ("decision", r.decision_id),
        ("tool", r.tool),
        ("agent", r.agent_id),
        ("mode", _mode(r.mode)),
        ("duration", _seconds(r.duration)),
    ]
    if r.error_message:
        rows.append(("error", r.error_message))
    rows.append(("reported", _time(r.reported_at)))
    return _pairs(rows)


def format_policy_status(s: Any) -> str:
    rows = [
        ("revision", s.revision),
        ("engine", f"{s.engine} ({'available' if s.engine_available else 'UNAVAILABLE'})"),
        ("source", s.source),
        ("loaded", _time(s.loaded_at)),
        ("tools", str(s.tool_count)),
        ("reloads", f"{s.reloads} ({s.reload_failures} refused)"),
    ]
    if s.last_error:
        rows.append(("last error", f"{s.last_error} (at {_time(s.last_error_at)})"))
    modules = "\n".join(f"  - {m}" for m in s.modules)
    return _pairs(rows) + f"\nmodules ({len(s.modules)})" + (f"\n{modules}" if modules else "")


def format_reload(r: Any) -> str:
    if r.changed:
        return f"reloaded: policy set {r.revision} is live (was {r.previous_revision})"
    return f"unchanged: policy set {r.revision} keeps serving"


def format_evaluation(e: Any) -> str:
    rows = [
        ("verdict", _verdict(e.verdict)),
        ("mode", _mode(e.mode)),
        ("approval", "needed" if e.needs_approval else "not needed"),
        ("revision", e.revision),
        ("engine", e.engine),
    ]
    return _pairs(rows) + "\n" + _reasons(e.reasons)


def format_health(h: Any) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(h.decisions.items())) or "none"
    rows = [
        ("status", _enum(observe_pb2.HealthStatus, h.status, "HEALTH_STATUS")),
        ("score", _number(h.score)),
        ("engine", f"{h.engine} ({'available' if h.engine_available else 'UNAVAILABLE'})"),
        ("revision", h.policy_revision),
        ("version", h.version),
        ("started", _time(h.started_at)),
        ("decisions", counts),
    ]
    out = _pairs(rows)
    if h.components:
        out += "\ncomponents\n" + "\n".join(
            f"  - {c.name}: {_number(c.score)} (weight {_number(c.weight)}) {c.detail}".rstrip()
            for c in h.components
        )
    if h.anomalies:
        out += "\nanomalies\n" + "\n".join(
            f"  - {a.metric}: observed {_number(a.observed)}, expected {_number(a.expected)}"
            f" ({_number(a.deviation)} sd over {a.window or '-'})"
            for a in h.anomalies
        )
    return out


def print_error(err: InterlockError, target: str) -> None:
    lines = [f"error: {err.code.name}: {err.message}"]
    lines += [f"  {field}: {description}" for field, description in err.field_violations]
    if err.reason and err.reason != err.code.name:
        lines.append(f"  reason: {err.reason}")
    if err.code == grpc.StatusCode.UNAVAILABLE:
        lines.append(f"  is the server running at {target}? (--server or ${SERVER_ENV})")
    print("\n".join(lines), file=sys.stderr)


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
    """The policy files under root, by bundle-relative path, as the server reads a folder.

    ``*.rego`` modules (not ``*_test.rego``), ``data.yaml``/``data.yml``/``data.json``
    documents and the ``.manifest``; hidden folders are skipped.
    """
    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"--policy-dir: {base} is not a folder")
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith("_test.rego"):
                continue
            if not (name.endswith(".rego") or name in POLICY_DATA_FILES or name == ".manifest"):
                continue
            path = Path(dirpath, name)
            try:
                files[path.relative_to(base).as_posix()] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--policy-dir: cannot read {path}: {exc}") from None
    if not files:
        raise UsageError(f"--policy-dir: no policy files (*.rego, data.yaml) under {base}")
    return files


# Client commands --------------------------------------------------------------


def _target(args: argparse.Namespace) -> str:
    return getattr(args, "server", None) or os.environ.get(SERVER_ENV) or DEFAULT_TARGET


def _call(args: argparse.Namespace, call: Callable[[InterlockClient], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with InterlockClient(
            _target(args),
            timeout=getattr(args, "timeout", DEFAULT_TIMEOUT),
            token=getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None,
        ) as client:
            return await call(client)

    return asyncio.run(run())


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
            args.agent, args.tool, arguments, args.confidence, args.plan_id, args.step_id
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
    return _emit(args, _call(args, lambda c: c.reload_policies()), format_reload)


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


# serve --------------------------------------------------------------------------

_METAVARS = {
    "listen": "HOST:PORT",
    "metrics_listen": "HOST:PORT",
    "policy_dir": "DIR",
    "data_dir": "DIR",
    "opa_url": "URL",
    "log_level": "LEVEL",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, as_json: bool) -> None:
    """Configure the root logger for ``serve``; raise ValueError for an unknown level."""
    text = level.strip().upper()
    value = int(text) if text.isdigit() else logging.getLevelName(text)
    if not isinstance(value, int):
        raise ValueError(f"log_level: unknown level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=value, handlers=[handler], force=True)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from interlock.config import ENGINES, ServerConfig, describe

    hints = typing.get_type_hints(ServerConfig)
    group = parser.add_argument_group(
        "server configuration",
        "Each flag overrides the environment variable INTERLOCK_<FIELD> and the config file.",
    )
    for name, default, doc in describe():
        flag = "--" + name.replace("_", "-")
        shown = "set by the policy" if default == "None" else default
        text = f"{doc} [default: {shown}]".replace("%", "%%")
        if hints[name] in (bool, bool | None):
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif name == "engine":
            group.add_argument(flag, dest=name, choices=ENGINES, default=None, help=text)
        else:
            metavar = _METAVARS.get(name) or (
                "SECONDS"
                if name.endswith("_seconds")
                else "N"
                if hints[name] in (int, int | None)
                else "NUMBER"
                if hints[name] in (float, float | None)
                else "VALUE"
            )
            group.add_argument(flag, dest=name, default=None, metavar=metavar, help=text)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


async def _stop_quietly(server: Any) -> None:
    with contextlib.suppress(Exception):
        await server.stop(grace=0)


async def run_server(config: Any) -> int:
    """Start the server, serve until SIGINT or SIGTERM, stop gracefully."""
    from interlock.errors import InterlockError as ServerError
    from interlock.server import InterlockServer

    try:
        server = InterlockServer(config)
    except Exception as exc:
        log.debug("cannot start", exc_info=exc)
        print(f"error: interlock cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        await server.start()
    except ServerError as exc:
        await _stop_quietly(server)
        print(f"error: interlock cannot start: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        log.debug("cannot start", exc_info=exc)
        await _stop_quietly(server)
        print(f"error: interlock cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await stop.wait()
    finally:
        # A second signal now takes the default way out.
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info(
        "%s received: stopping (grace %gs)", received[0] if received else "stop", STOP_GRACE_SECONDS
    )
    await server.stop(grace=STOP_GRACE_SECONDS)
    log.info("interlock stopped")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from interlock.config import ConfigError, ServerConfig, load_config

    names = [f.name for f in dataclasses.fields(ServerConfig)]
    overrides = {name: getattr(args, name, None) for name in names}
    try:
        config = load_config(file=args.config, env=os.environ, overrides=overrides)
        setup_logging(config.log_level, config.log_json)
    except (ConfigError, ValueError) as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_server(config))


# The parser ---------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, not {text}")
    return value


def _outcome(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    # Connection flags are accepted before or after the command; SUPPRESS keeps a
    # subcommand from overwriting a value given before it.
    conn = argparse.ArgumentParser(add_help=False)
    group = conn.add_argument_group("connection")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help=f"the server to talk to [default: ${SERVER_ENV} or {DEFAULT_TARGET}]",
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

    health = commands.add_parser("health", parents=client, help="the server's health")
    health.set_defaults(handler=cmd_health, parser=health)
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
