"""``make run-replicas``: a PostgreSQL cluster and three replicas sharing it.

    .venv/bin/python -m interlock.devtools.replicas [--replicas 3] [--port 50051]

Everything lives under ``var/replicas/``: the cluster (``postgres/``, made
with initdb on first use and kept between runs, like ``make run`` keeps its
SQLite file), and each replica's data directory (``r1/``, ``r2/``, ...: its
replica id and its audit files). The replicas listen on 127.0.0.1:50051,
50052, 50053, in the insecure development mode like ``make run``; metrics on
9464, 9465, 9466; the first one serves the console on http://127.0.0.1:8080/.
It runs in the foreground: Ctrl-C (or SIGTERM) stops the replicas, then the
cluster. A replica that exits on its own stops the rest too.

Try them with a list of addresses (calls spread over the replicas)::

    .venv/bin/interlock --target 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 health
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from interlock.devtools.pgcluster import PostgresCluster, free_port

DATABASE = "interlock"
STOP_SECONDS = 15.0


def interlock_bin() -> str:
    """The ``interlock`` script beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "interlock"
    return str(beside) if beside.exists() else "interlock"


def replica_argv(i: int, args: argparse.Namespace, store_url: str, root: Path) -> list[str]:
    argv = [
        interlock_bin(),
        "serve",
        "--store",
        store_url,
        "--listen",
        f"127.0.0.1:{args.port + i}",
        "--metrics-listen",
        f"127.0.0.1:{args.metrics_port + i}" if args.metrics_port else "",
        "--data-dir",
        str(root / f"r{i + 1}"),
    ]
    if i == 0 and args.console_listen:
        argv += ["--console-listen", args.console_listen]
    return argv + list(args.serve_args)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every replica still running, then SIGKILL what outlives STOP_SECONDS."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interlock.devtools.replicas",
        description="Start a PostgreSQL cluster and N Interlock replicas sharing it, "
        "in the foreground; Ctrl-C stops them all.",
    )
    parser.add_argument("--replicas", type=int, default=3, help="how many [default: 3]")
    parser.add_argument("--port", type=int, default=50051, help="the first gRPC port")
    parser.add_argument(
        "--metrics-port", type=int, default=9464, help="the first metrics port; 0 for none"
    )
    parser.add_argument("--console-listen", default="127.0.0.1:8080", help="'' for none")
    parser.add_argument("--root", type=Path, default=Path("var/replicas"), help="state folder")
    parser.add_argument(
        "serve_args", nargs="*", help="more `interlock serve` flags for every replica (after --)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 16:
        parser.error("--replicas: 1 to 16")
    root: Path = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the postgres user reaches its folder through this one

    cluster = PostgresCluster(port=free_port(), base=root / "postgres")
    print(f"run-replicas: PostgreSQL in {cluster.data} on 127.0.0.1:{cluster.port}", flush=True)
    cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        store_url = cluster.ensure_database(DATABASE)
        for i in range(args.replicas):
            procs.append(subprocess.Popen(replica_argv(i, args, store_url, root)))
        listed = ",".join(f"127.0.0.1:{args.port + i}" for i in range(args.replicas))
        print(
            f"run-replicas: {args.replicas} replicas on {listed}, sharing {store_url}\n"
            f"run-replicas: try  .venv/bin/interlock --target {listed} health\n"
            "run-replicas: Ctrl-C stops them all",
            flush=True,
        )
        while not stopping:
            exited = [p for p in procs if p.poll() is not None]
            if exited:
                print(
                    f"run-replicas: a replica exited with {exited[0].returncode}; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            time.sleep(0.2)
        return 0
    finally:
        print("run-replicas: stopping the replicas, then PostgreSQL", flush=True)
        stop_all(procs)
        cluster.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
