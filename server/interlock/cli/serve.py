"""``interlock serve``: configuration flags, logging, and running the server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from interlock.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, STOP_GRACE_SECONDS, log
from interlock.logcontext import ContextFilter

# serve --------------------------------------------------------------------------

_METAVARS = {
    "listen": "HOST:PORT",
    "metrics_listen": "HOST:PORT",
    "console_listen": "HOST:PORT",
    "policy_dir": "DIR",
    "data_dir": "DIR",
    "opa_url": "URL",
    "opa_bundle_listen": "HOST:PORT",
    "opa_bin": "PATH",
    "store_url": "URL",
    "log_level": "LEVEL",
}


_ALIASES = {"store_url": ("--store",)}
"""Shorter names some flags also answer to."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and
    the request and decision ids of the call being handled, when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "decision_id"):
            value = getattr(record, key, "")
            if value:
                out[key] = value
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
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonLogFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
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
            flags = [flag, *_ALIASES.get(name, ())]
            group.add_argument(*flags, dest=name, default=None, metavar=metavar, help=text)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


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
        await server.start()  # cleans up after itself when it fails
    except ServerError as exc:
        print(f"error: interlock cannot start: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        log.debug("cannot start", exc_info=exc)
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
    from interlock.cli.workers import supervise, worker_count

    if worker_count(config) > 1:  # a supervisor of worker processes (docs/replicas.md)
        return supervise(config)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_server(config))
