"""Decisions per second on one SQLite server and on 1, 2 and 3 replicas sharing
PostgreSQL, driven by ghz (a Go load generator), in one run.

    make ghz && .venv/bin/python bench/bench_replicas.py [--seconds 5] [--json out.json]

Setups, each started fresh (``interlock serve`` processes, the embedded engine,
the insecure development mode, ``--no-fsync``):

  sqlite-1   one server on its own SQLite file
  pg-1/2/3   1, 2 or 3 replicas sharing one new database of a throwaway
             PostgreSQL cluster (interlock.devtools.pgcluster: fsync off)

Each row runs ghz against ``RequestToolCall`` with new arguments on every call
(``{{.RequestNumber}}`` in the arguments, a prefix per row and replica), so no
decision comes from a replica's decision cache. Calls spread over the replicas
with one ghz process per replica: at c=64 they run side by side, each with
64/N calls in flight; at c=1 one call is in flight at a time, so the window is
split into N turns, one per replica, one after another (what a round_robin
client at c=1 does, one call at a time). p50/p99 are over every call of the
row. CPU is read from /proc around each measured window: the PostgreSQL
cluster (the postmaster, its live backends, and the backends it reaped), the
replicas, and ghz itself (its rusage); "db share" is the database's part of
all the CPU those three used.

Limits: the per-principal rate limit is off (``--rate-limit-per-second 0``:
every call comes from the one development-mode principal) and every tool's
rate_limit_per_minute is raised in the benchmark's copy of the bundle (as
bench_plans.py does); after each row every replica's GetHealth must show
only ALLOW decisions, and any failed call stops the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

# bench/ is on sys.path when this file runs as a script.
from bench_decisions import BenchError, host_cpu_seconds
from bench_plans import bench_policies
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.devtools.pgcluster import PostgresCluster
from interlock.v1 import control_plane_pb2, control_plane_pb2_grpc

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
INTERLOCK = Path(sys.executable).parent / "interlock"
GHZ_DEFAULT = REPO / ".tools" / "bin" / "ghz"
CALL = "interlock.v1.ControlPlane.RequestToolCall"
SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3))
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_SECONDS = 60.0


@dataclass
class Row:
    setup: str
    concurrency: int
    calls: int
    seconds: float
    decisions_per_s: float
    p50_ms: float
    p99_ms: float
    db_cpu_s: float
    replicas_cpu_s: float
    ghz_cpu_s: float
    host_cpu_s: float

    @property
    def db_share(self) -> float:
        used = self.db_cpu_s + self.replicas_cpu_s + self.ghz_cpu_s
        return 100.0 * self.db_cpu_s / used if used else 0.0


# CPU time from /proc --------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def process_cpu(pid: int, children: bool = False) -> float:
    """utime + stime of pid (and cutime + cstime: its reaped children) in seconds."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def cluster_cpu(postmaster: int) -> float:
    """The cluster's CPU seconds: the postmaster, its reaped backends, its live ones."""
    total = process_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == postmaster:  # ppid (field 4)
                total += process_cpu(int(entry.name))
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Servers ------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"interlock serve exited with {proc.returncode}:\n{log.read_text()}"
                )
            with contextlib.suppress(grpc.RpcError):
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"{address} not SERVING in {START_SECONDS:g}s:\n{log.read_text()}")
            time.sleep(0.1)


@contextlib.contextmanager
def replicas(n: int, store_url: str, policies: Path, work: Path) -> Iterator[list[Any]]:
    """n ``interlock serve`` processes; yields (address, Popen) pairs."""
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for i in range(n):
            address = f"127.0.0.1:{free_port()}"
            data = Path(tempfile.mkdtemp(prefix=f"r{i}-", dir=work))
            argv = [str(INTERLOCK), "serve", "--listen", address, "--metrics-listen", ""]
            argv += ["--data-dir", str(data), "--policy-dir", str(policies)]
            argv += ["--policy-watch-interval-seconds", "0", "--no-fsync"]
            argv += ["--engine", "embedded", "--rate-limit-per-second", "0"]
            if store_url:
                argv += ["--store", store_url]
            log = data / "serve.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            started.append((address, proc))
            wait_serving(address, proc, log)
        yield started
    finally:
        for _, proc in started:
            proc.terminate()
        for _, proc in started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def verdicts(address: str) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        health = stub.GetHealth(control_plane_pb2.GetHealthRequest(), timeout=10)
    return dict(health.decisions)


# ghz ----------------------------------------------------------------------------


def build_protoset(folder: Path) -> Path:
    """The API's descriptors, compiled by protoc (grpc_tools). ghz's own .proto parser
    predates proto3 ``optional`` and the server's reflection does not resolve a
    method's name, so ghz reads this file set."""
    out = folder / "interlock.protoset"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "protos"), "--include_imports",
         f"--descriptor_set_out={out}", str(REPO / "protos/interlock/v1/control_plane.proto")],
        check=True,
    )  # fmt: skip
    return out


def ghz_argv(
    ghz: Path, protoset: Path, address: str, concurrency: int, seconds: float, prefix: str
) -> list[str]:
    data = {
        "agent_id": "agent1",
        "tool": "vision_inspect",
        "arguments": {"target": f"{prefix} {{{{.RequestNumber}}}}"},
        "confidence": 0.9,
    }
    return [
        str(ghz), "--insecure", "--protoset", str(protoset), "--call", CALL,
        "--data", json.dumps(data),
        "--concurrency", str(concurrency), "--connections", "1", "--duration", f"{seconds}s",
        "--duration-stop", "ignore", "--format", "json", "--cpus", str(os.cpu_count() or 1),
        address,
    ]  # fmt: skip


def run_ghz(argvs: list[list[str]], parallel: bool) -> list[dict[str, Any]]:
    """Run the ghz processes side by side or one after another; their JSON reports."""
    if parallel:
        procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in argvs]
        outs = [p.communicate() for p in procs]
        codes = [p.returncode for p in procs]
    else:
        done = [subprocess.run(a, capture_output=True, check=False) for a in argvs]
        outs = [(d.stdout, d.stderr) for d in done]
        codes = [d.returncode for d in done]
    reports = []
    for code, (out, err) in zip(codes, outs, strict=True):
        if code != 0:
            raise BenchError(f"ghz exited with {code}: {err.decode(errors='replace')}")
        report = json.loads(out)
        failed = {
            k: v for k, v in (report.get("statusCodeDistribution") or {}).items() if k != "OK"
        }
        if failed or report.get("errorDistribution"):
            raise BenchError(f"failed calls: {failed} {report.get('errorDistribution')}")
        reports.append(report)
    return reports


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def measure(
    args: argparse.Namespace,
    setup: str,
    addresses: list[str],
    concurrency: int,
    postmaster: int | None,
    pids: list[int],
) -> Row:
    n = len(addresses)
    per = [concurrency // n + (1 if i < concurrency % n else 0) for i in range(n)]
    parallel = concurrency >= n
    share = args.seconds if parallel else args.seconds / n
    tag = f"{setup}-c{concurrency}"
    warm = [
        ghz_argv(args.ghz, args.protoset, a, max(1, c), args.warmup, f"warm {tag} r{i}")
        for i, (a, c) in enumerate(zip(addresses, per, strict=True))
    ]
    run_ghz(warm, parallel)
    before_verdicts = [verdicts(a) for a in addresses]
    argvs = [
        ghz_argv(args.ghz, args.protoset, a, max(1, c), share, f"{tag} r{i}")
        for i, (a, c) in enumerate(zip(addresses, per, strict=True))
    ]
    db0 = cluster_cpu(postmaster) if postmaster else 0.0
    rep0 = sum(process_cpu(p) for p in pids)
    ghz0 = children_cpu()
    host0 = host_cpu_seconds()
    reports = run_ghz(argvs, parallel)
    db1 = cluster_cpu(postmaster) if postmaster else 0.0
    rep1 = sum(process_cpu(p) for p in pids)
    ghz1 = children_cpu()
    host1 = host_cpu_seconds()
    for a, before in zip(addresses, before_verdicts, strict=True):
        after = verdicts(a)
        other = {k: v - before.get(k, 0) for k, v in after.items() if k != "ALLOW"}
        if any(other.values()):
            raise BenchError(f"{a} decided other than ALLOW: {other}")
    latencies = sorted(d["latency"] / 1e6 for r in reports for d in r.get("details") or [])
    calls = sum(int(r["count"]) for r in reports)
    totals = [r["total"] / 1e9 for r in reports]
    seconds = max(totals) if parallel else sum(totals)
    return Row(
        setup=setup,
        concurrency=concurrency,
        calls=calls,
        seconds=seconds,
        decisions_per_s=calls / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        db_cpu_s=db1 - db0,
        replicas_cpu_s=rep1 - rep0,
        ghz_cpu_s=ghz1 - ghz0,
        host_cpu_s=host1 - host0,
    )


# The run ------------------------------------------------------------------------


def print_table(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> None:
    cores = os.cpu_count() or 1
    print(
        f"\nRequestToolCall, new arguments each call; ghz, {args.seconds:g} s per row; "
        f"{cores} cores shared by the database, the replicas and ghz; "
        f"1-min load average {load[0]:.1f} at the start, {load[1]:.1f} at the end"
    )
    head = (
        f"{'setup':<9} {'c':>3} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'db cores':>9} {'replicas cores':>15} {'ghz cores':>10} {'db share':>9} "
        f"{'server CPU ms/decision':>23} {'host cores':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        db = f"{r.db_cpu_s / r.seconds:.2f}" if r.setup.startswith("pg") else "-"
        share = f"{r.db_share:.0f}%" if r.setup.startswith("pg") else "-"
        print(
            f"{r.setup:<9} {r.concurrency:>3} {r.decisions_per_s:>12,.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {db:>9} {r.replicas_cpu_s / r.seconds:>15.2f} "
            f"{r.ghz_cpu_s / r.seconds:>10.2f} {share:>9} "
            f"{1000 * (r.db_cpu_s + r.replicas_cpu_s) / max(1, r.calls):>23.2f} "
            f"{r.host_cpu_s / r.seconds:>11.2f}"
        )
    print(
        "cores: CPU seconds per second of the window; db share: the database's part of the "
        "CPU the database, the replicas and ghz used; server CPU ms/decision: the replicas' "
        "and the database's CPU per decision (what the load on the machine changes least); "
        "host cores: the whole machine's busy CPU (/proc/stat): well above db + replicas + ghz "
        "means other work was running"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per row (not counted)")
    parser.add_argument("--concurrency", default="1,64", help="calls in flight, comma-separated")
    parser.add_argument("--ghz", type=Path, default=GHZ_DEFAULT, help="the ghz binary (make ghz)")
    parser.add_argument("--policy-dir", type=Path, default=REPO / "policies")
    parser.add_argument("--json", type=Path, help="write the rows as JSON too")
    args = parser.parse_args()
    if not args.ghz.exists():
        print(f"error: no ghz at {args.ghz}: run `make ghz`", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    cluster = PostgresCluster()
    try:
        policies = bench_policies(args.policy_dir, work)
        args.protoset = build_protoset(work)
        load_before = os.getloadavg()[0]
        cluster.start()
        postmaster = cluster.postmaster_pid()
        for number, (store, n) in enumerate(SETUPS):
            setup = f"{'sqlite' if store == 'sqlite' else 'pg'}-{n}"
            url = cluster.create_database(f"bench{number}") if store == "postgresql" else ""
            with replicas(n, url, policies, work) as started:
                addresses = [a for a, _ in started]
                pids = [p.pid for _, p in started]
                for c in levels:
                    pm = postmaster if store == "postgresql" else None
                    row = measure(args, setup, addresses, c, pm, pids)
                    print(f"{setup} c={c}: {row.decisions_per_s:,.0f}/s", flush=True)
                    rows.append(row)
        print_table(rows, args, (load_before, os.getloadavg()[0]))
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
