"""``interlock serve --workers N``: serve from N processes on one host.

One Python process runs its Python on one core. With ``workers`` above 1 the
``serve`` process becomes a small supervisor: it starts N ``interlock serve``
processes (the *workers*) and does no gRPC itself. They all listen on the
same address (gRPC servers set SO_REUSEPORT, so the kernel spreads incoming
connections over them; one connection stays with one worker), and they share
the store: on SQLite the same file with ``store_shared`` on, so they
coordinate through it as replicas on PostgreSQL do (docs/replicas.md): the
LIVE cap, approvals, grants, plan work and one global event order hold
across them.

What differs per worker (flags after the resolved configuration, which they
read from ``DATA_DIR/workers/config.yaml``):

- worker 0 keeps ``data_dir`` (its audit files and replica id continue those
  of a single process); worker i > 0 uses ``DATA_DIR/workers/i``;
- ``metrics_listen`` and ``opa_bundle_listen``: the port + i;
- the console runs in worker 0 only;
- a configured ``replica_id`` gains ``-i``.

Workers get SIGTERM when the supervisor dies, however it dies. A worker
that exits unexpectedly is started again after a second; one that
exits within :data:`EARLY_EXIT_SECONDS` of its start (it cannot start: a bad
policy folder, a port taken) stops the others, and the supervisor exits with
its code. SIGINT and SIGTERM are passed on; the supervisor waits for the
workers' graceful stop.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import yaml

from interlock.cli.common import EXIT_FAILED, EXIT_OK, STOP_GRACE_SECONDS, log
from interlock.config import ServerConfig

EARLY_EXIT_SECONDS = 10.0
"""A worker gone this soon after its start could not start: stop, do not loop."""

RESTART_DELAY_SECONDS = 1.0
PR_SET_PDEATHSIG = 1
SIGINT_REACH_SECONDS = 1.0
"""On SIGINT, how long the workers get to begin their stop on their own (Ctrl-C)."""
POLL_SECONDS = 0.2


def worker_count(config: ServerConfig) -> int:
    """``workers``, with 0 meaning one per CPU core."""
    return config.workers or (os.cpu_count() or 1)


def _with_port(address: str, offset: int) -> str:
    """``host:port`` with the port moved by ``offset`` (port 0 stays 0: any free port)."""
    if not address:
        return address
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + offset}"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


def shared_config(config: ServerConfig) -> ServerConfig:
    """What every worker shares: one listen port (a free one chosen now if it
    is 0; ``reuse_port``) and one store (``store_shared`` on SQLite)."""
    listen = config.listen
    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        listen = f"{host}:{_free_port(host)}"
    store_url = config.store_url
    sqlite = not store_url.startswith(("postgresql://", "postgres://"))
    if not store_url:
        store_url = f"sqlite:{Path(config.data_dir).resolve() / 'interlock.db'}"
    return dataclasses.replace(
        config,
        listen=listen,
        store_url=store_url,
        store_shared=sqlite,
        workers=1,
        reuse_port=True,
    )


def worker_flags(config: ServerConfig, i: int) -> list[str]:
    """The flags that make worker ``i`` of a shared configuration itself."""
    data_dir = Path(config.data_dir) if i == 0 else Path(config.data_dir) / "workers" / str(i)
    flags = ["--data-dir", str(data_dir)]
    flags += ["--metrics-listen", _with_port(config.metrics_listen, i)]
    flags += ["--opa-bundle-listen", _with_port(config.opa_bundle_listen, i)]
    if i > 0:
        flags += ["--console-listen", ""]
    if config.replica_id:
        flags += ["--replica-id", f"{config.replica_id}-{i}"]
    return flags


def write_config(config: ServerConfig) -> Path:
    """The resolved configuration, for the workers (owner-only: it may hold a
    database password)."""
    folder = Path(config.data_dir) / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# Written by `interlock serve --workers`: every worker reads it.\n")
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=False)
    return path


def _worker_env() -> dict[str, str]:
    """The environment without INTERLOCK_* settings: the workers' configuration
    is the file (already resolved from them) and their flags."""
    names = {f"INTERLOCK_{f.name.upper()}" for f in dataclasses.fields(ServerConfig)}
    names.add("INTERLOCK_CONFIG")
    return {k: v for k, v in os.environ.items() if k not in names}


def _die_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when the supervisor dies, even by
    SIGKILL (Linux's PR_SET_PDEATHSIG), so no worker outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self.started = time.monotonic()
        self.restart_at = 0.0


def supervise(config: ServerConfig) -> int:
    """Start the workers and keep them running until SIGINT or SIGTERM."""
    n = worker_count(config)
    shared = shared_config(config)
    path = write_config(shared)
    base = [sys.executable, "-m", "interlock", "serve", "--config", str(path)]
    workers = [_Worker(i, base + worker_flags(shared, i)) for i in range(n)]
    env = _worker_env()
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    log.info(
        "interlock: serving from %d workers on %s sharing %s",
        n,
        shared.listen,
        shared.store_url.split("@")[-1],
    )
    code = EXIT_OK
    try:
        for w in workers:
            w.start(env)
        while not stopping:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            for w in workers:
                if w.proc is None:
                    if w.restart_at and now >= w.restart_at:
                        log.warning("interlock: starting worker %d again", w.index)
                        w.start(env)
                    continue
                rc = w.proc.poll()
                if rc is None or stopping:
                    continue
                w.proc = None
                if now - w.started < EARLY_EXIT_SECONDS:
                    log.error(
                        "interlock: worker %d exited with code %d %.1fs after its start; "
                        "stopping the others",
                        w.index,
                        rc,
                        now - w.started,
                    )
                    code = rc or EXIT_FAILED
                    stopping.append(signal.SIGTERM)
                    break
                log.error(
                    "interlock: worker %d exited with code %d; starting it again in %gs",
                    w.index,
                    rc,
                    RESTART_DELAY_SECONDS,
                )
                w.restart_at = now + RESTART_DELAY_SECONDS
    finally:
        code = _stop(workers, code, stopping[0] if stopping else signal.SIGTERM)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def _stop(workers: list[_Worker], code: int, signum: int) -> int:
    """Pass the stop on, wait for the workers' graceful stop, SIGKILL what lingers.

    A Ctrl-C reaches the workers by itself (the terminal signals the whole
    process group), and a second signal would cut a worker's graceful stop
    short; so on SIGINT the supervisor first waits a moment and signals only
    the workers still running."""
    running = [w.proc for w in workers if w.proc is not None]
    if signum == signal.SIGINT:
        deadline = time.monotonic() + SIGINT_REACH_SECONDS
        while time.monotonic() < deadline and any(p.poll() is None for p in running):
            time.sleep(0.05)
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signum)
    deadline = time.monotonic() + STOP_GRACE_SECONDS + 10
    for proc in running:
        try:
            rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("interlock: worker pid %d did not stop; killing it", proc.pid)
            proc.kill()
            rc = proc.wait()
        if code == EXIT_OK and rc not in (0, -signal.SIGTERM, -signal.SIGINT):
            code = EXIT_FAILED
    return code
