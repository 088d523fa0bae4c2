"""RequestToolCall and health Check against a bare grpc.aio server, driven by ghz, in one run.

    make bench-ghz        # make install ghz, then: .venv/bin/python bench/bench_ghz.py
    .venv/bin/python bench/bench_ghz.py --seconds 10 --engines embedded --json out.json

Rows (each at every --concurrency, c=1 and c=64 by default):

  bare health        a bare grpc.aio server (bench/servers.py health) answering
                     the standard grpc.health.v1.Health/Check: the floor
  interlock health   `interlock serve` (embedded engine) answering the same Check,
                     its interceptors included
  <engine> same      RequestToolCall with the same arguments on every call (after
                     the first, the decision comes from the decision cache)
  <engine> new       RequestToolCall with new arguments on every call (ghz's
                     {{.RequestNumber}} in them): a Rego evaluation every call

  <engine> wN new    the same, on `interlock serve --workers N` (--workers; N
                     processes on one port and one SQLite file, docs/replicas.md),
                     ghz spreading its calls over 4N connections (one connection
                     stays with one worker); every other row uses one connection

for each engine: embedded; opa (a real `opa run --server` from .tools/bin/opa);
regorus when `interlock serve --engine regorus` starts here (otherwise skipped,
with a note). Every Interlock server is `interlock serve` on its defaults (fsync
on, the development mode) but for a free loopback port, no metrics endpoint, a
temporary data dir, no policy watcher and a copy of the bundle with the tools'
rate_limit_per_minute raised (bench_plans.bench_policies). The call is
bench_decisions.py's: agent1, vision_inspect, confidence 0.6: ALLOW in DRY_RUN,
so no LIVE slot is taken. After each row the server's GetHealth must show only
ALLOW decisions, and ghz must report no failed call, or the run stops.

The run prints the commit, the machine, the table (calls/s, the ratio to the
bare server at the same concurrency, p50, p99, the server's CPU per call) and
the issue-14 goals as met or not, with `opa bench` on decision.main through
bench_policy.py's code. bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench_policy
import grpc

# bench/ is on sys.path when this file runs as a script.
from bench_decisions import BenchError, find_opa, host_cpu_seconds, opa_flags, start_opa
from bench_plans import bench_policies
from bench_replicas import (
    free_port,
    percentile,
    process_cpu,
    run_ghz,
    verdicts,
    wait_serving,
)
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from interlock.v1 import control_plane_pb2, control_plane_pb2_grpc

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
INTERLOCK = Path(sys.executable).parent / "interlock"
GHZ_DEFAULT = REPO / ".tools" / "bin" / "ghz"
HEALTH = "grpc.health.v1.Health.Check"
DECIDE = "interlock.v1.ControlPlane.RequestToolCall"
START_SECONDS = 60.0

# Goals of issue 14 (bench targets, not timed tests).
GOAL_NEW_VS_BARE_C64 = 0.75
GOAL_P50_C1_MS = 1.0
GOAL_P99_C1_MS = 1.5
GOAL_OPA_P99_C1_MS = 2.5
GOAL_OPA_BENCH_US = 50.0
GOAL_EMBEDDED_VS_OPA = 1.5


@dataclass
class Row:
    target: str
    concurrency: int
    calls: int
    seconds: float
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    """The server's CPU (and OPA's, for the opa engine) over the window."""
    host_cpu_s: float
    ratio_to_bare: float | None = None
    latencies: list[float] = field(default_factory=list, repr=False)
    """Every call's latency in ms (not in --json)."""

    @property
    def server_us_per_call(self) -> float:
        return 1e6 * self.server_cpu_s / max(1, self.calls)


# Servers --------------------------------------------------------------------------


@contextlib.contextmanager
def bare_server(work: Path) -> Iterator[tuple[str, list[int]]]:
    log = work / "bare.log"
    argv = [sys.executable, str(BENCH_DIR / "servers.py"), "health", "--loop", "uvloop"]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise BenchError(f"bare server: {line!r}\n{log.read_text()}")
        yield f"127.0.0.1:{line.split()[1]}", [proc.pid]
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def engine_available(engine: str, code: Path | None = None) -> str:
    """'' when ``interlock serve`` offers the engine, else why not."""
    if engine in ("embedded", "opa"):
        return ""
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    out = subprocess.run(
        [str(INTERLOCK), "serve", "--help"], capture_output=True, text=True, env=env
    )
    choices = next((ln for ln in out.stdout.splitlines() if "--engine {" in ln), "")
    if engine not in choices:
        return f"`interlock serve --engine {engine}` is not an option in this build ({choices.strip()})"
    return ""


@contextlib.contextmanager
def interlock_server(
    engine: str,
    policies: Path,
    work: Path,
    args: argparse.Namespace,
    server_dir: Path | None = None,
    workers: int = 1,
) -> Iterator[tuple[str, list[int]]]:
    """``interlock serve`` with ``engine`` (and OPA beside it for opa); yields (address,
    pids); with ``workers`` > 1 the pids are the supervisor's and its workers'."""
    opa = None
    pids: list[int] = []
    data = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=args.data_root or work))
    address = f"127.0.0.1:{free_port()}"
    argv = [str(INTERLOCK), "serve", "--listen", address, "--metrics-listen", ""]
    argv += ["--data-dir", str(data), "--policy-dir", str(policies)]
    argv += ["--policy-watch-interval-seconds", "0", "--engine", engine, "--log-level", "WARNING"]
    if args.no_fsync:
        argv.append("--no-fsync")
    if workers > 1:
        argv += ["--workers", str(workers)]
    argv += args.serve_arg
    proc = None
    try:
        if engine == "opa":
            opa, url = start_opa(args.opa_bin)
            argv += opa_flags(url)
            pids.append(opa.proc.pid)
        log = data / "serve.log"
        with log.open("wb") as out:
            env = None
            if server_dir is not None:  # another commit's server code (--compare)
                env = {**os.environ, "PYTHONPATH": str(server_dir)}
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        pids.insert(0, proc.pid)
        wait_serving(address, proc, log)
        if workers > 1:
            pids += wait_workers(proc.pid, workers)
        yield address, pids
    finally:
        if proc is not None:
            stop(proc)
        if opa is not None:
            opa.stop()
            opa.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def wait_workers(pid: int, n: int) -> list[int]:
    """The pids of a supervisor's ``n`` workers, once each serves (its start-up
    log line: they start together, and the first to serve answers the check)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) >= n:
            time.sleep(3)  # the others finish starting (bench timing only)
            return [int(c) for c in children]
        time.sleep(0.2)
    raise BenchError(f"`interlock serve --workers {n}` did not start {n} workers")


def engine_in_use(address: str) -> str:
    """The engine the server says it decides with (GetHealth)."""
    with grpc.insecure_channel(address) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        return str(stub.GetHealth(control_plane_pb2.GetHealthRequest(), timeout=10).engine)


# ghz ------------------------------------------------------------------------------


def build_protoset(folder: Path) -> Path:
    """Interlock's API and grpc.health.v1 in one descriptor set for ghz (protoc from
    grpc_tools for the API; health.proto is not shipped as a file, so its descriptor
    comes from grpcio-health-checking's compiled module)."""
    out = folder / "bench.protoset"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "protos"), "--include_imports",
         f"--descriptor_set_out={out}", str(REPO / "protos/interlock/v1/control_plane.proto")],
        check=True,
    )  # fmt: skip
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    health = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(health)
    files.file.append(health)
    out.write_bytes(files.SerializeToString())
    return out


def ghz_argv(
    args: argparse.Namespace,
    address: str,
    call: str,
    data: dict[str, Any],
    concurrency: int,
    seconds: float,
    connections: int = 1,
) -> list[str]:
    return [
        str(args.ghz), "--insecure", "--protoset", str(args.protoset), "--call", call,
        "--data", json.dumps(data), "--concurrency", str(concurrency),
        "--connections", str(min(connections, concurrency)), "--duration", f"{seconds}s",
        "--duration-stop", "ignore", "--format", "json", "--cpus", str(os.cpu_count() or 1),
        address,
    ]  # fmt: skip


def decide_data(target: str) -> dict[str, Any]:
    """The RequestToolCall of a row; ``target`` holds {{.RequestNumber}} for new arguments."""
    return {
        "agent_id": "agent1",
        "tool": "vision_inspect",
        "arguments": {"target": target},
        "confidence": 0.6,
    }


def measure(
    args: argparse.Namespace,
    name: str,
    address: str,
    pids: list[int],
    call: str,
    data: Any,
    concurrency: int,
    connections: int = 1,
) -> Row:
    """One row: warm-up, then the measured window (data: a dict, or a function of the
    phase giving one, so warm-up and window get arguments of their own)."""
    pick = data if callable(data) else (lambda _phase: data)
    warm = ghz_argv(args, address, call, pick("warm"), concurrency, args.warmup, connections)
    run_ghz([warm], False)
    decides = call == DECIDE
    before = verdicts(address) if decides else {}
    argv = ghz_argv(args, address, call, pick("run"), concurrency, args.seconds, connections)
    spy = start_py_spy(args, name, concurrency, pids[0])
    cpu0 = sum(process_cpu(p) for p in pids)
    host0 = host_cpu_seconds()
    (report,) = run_ghz([argv], False)
    cpu1 = sum(process_cpu(p) for p in pids)
    host1 = host_cpu_seconds()
    if spy is not None:
        spy.wait(timeout=args.seconds + 60)
    if decides:
        after = verdicts(address)
        other = {k: v - before.get(k, 0) for k, v in after.items() if k != "ALLOW"}
        if any(other.values()):
            raise BenchError(f"{name}: decisions other than ALLOW: {other}")
    latencies = sorted(d["latency"] / 1e6 for d in report.get("details") or [])
    calls = int(report["count"])
    seconds = report["total"] / 1e9
    return Row(
        target=name,
        concurrency=concurrency,
        calls=calls,
        seconds=seconds,
        calls_per_s=calls / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        server_cpu_s=cpu1 - cpu0,
        host_cpu_s=host1 - host0,
        latencies=latencies,
    )


def start_py_spy(
    args: argparse.Namespace, name: str, concurrency: int, pid: int
) -> subprocess.Popen[bytes] | None:
    """py-spy on the server over the window of a new-arguments row (--py-spy DIR)."""
    if not args.py_spy or not name.endswith(" new"):
        return None
    spy = Path(sys.executable).parent / "py-spy"
    out = Path(args.py_spy) / f"{name.replace(' ', '-')}-c{concurrency}.txt"
    argv = [str(spy), "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
    argv += ["--format", "raw", "--threads", "--idle", "--rate", "250", "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # py-spy attaches before the window opens
    return proc


# The run --------------------------------------------------------------------------


def commit() -> str:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "server", "policies"],
        capture_output=True,
    ).returncode
    return head + (" (server/ or policies/ differ from it)" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        out = done.stdout or done.stderr  # ghz --version prints on stderr
    except OSError:
        return "-"
    return out.splitlines()[0].removeprefix("Version: ") if out else "-"


def ghz_version(ghz: Path) -> str:
    """What the binary says (``dev`` when built by ``go install``), and the Makefile's pin."""
    said = tool_version([str(ghz), "--version"])
    makefile = (REPO / "Makefile").read_text()
    pin = next(
        (ln.split(":=")[1].strip() for ln in makefile.splitlines() if "GHZ_VERSION :=" in ln), ""
    )
    return f"{said} (make ghz pins {pin})" if pin and pin not in said else said


def table(rows: list[Row]) -> list[str]:
    head = (
        f"{'target':<18} {'c':>3} {'calls/s':>8} {'x bare':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv us/call':>11} {'host cores':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "-" if r.ratio_to_bare is None else f"{r.ratio_to_bare:.2f}"
        lines.append(
            f"{r.target:<18} {r.concurrency:>3} {r.calls_per_s:>8,.0f} {ratio:>7} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.server_us_per_call:>11,.0f} "
            f"{r.host_cpu_s / r.seconds:>10.2f}"
        )
    return lines


def markdown(rows: list[Row]) -> list[str]:
    lines = [
        "| target | c | calls/s | x bare | p50 ms | p99 ms | server µs/call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = "-" if r.ratio_to_bare is None else f"{r.ratio_to_bare:.2f}"
        lines.append(
            f"| {r.target} | {r.concurrency} | {r.calls_per_s:,.0f} | {ratio} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.server_us_per_call:,.0f} |"
        )
    return lines


def find(rows: list[Row], target: str, c: int) -> Row | None:
    return next((r for r in rows if r.target == target and r.concurrency == c), None)


def goals(
    rows: list[Row], policy: tuple[float | None, float | None, float | None], fsync: bool
) -> list[str]:
    out = []
    top, low = 64, 1  # the goals' concurrencies: lines only for rows run at them

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    for engine in ("embedded", "opa", "regorus"):
        new = find(rows, f"{engine} new", top)
        if new is not None and new.ratio_to_bare is not None:
            out.append(
                f"{engine} new args, c={top}: {new.ratio_to_bare:.2f}x the bare server's calls/s "
                f"(goal >= {GOAL_NEW_VS_BARE_C64}x) -> {verdict(new.ratio_to_bare >= 0.75)}"
            )
    for engine in ("embedded", "regorus"):
        new = find(rows, f"{engine} new", low)
        if new is not None:
            ok = new.p50_ms <= GOAL_P50_C1_MS and new.p99_ms <= GOAL_P99_C1_MS
            out.append(
                f"{engine} new args, c={low}, fsync {'on' if fsync else 'OFF'}: p50 "
                f"{new.p50_ms:.2f} ms, p99 {new.p99_ms:.2f} ms (goal p50 <= {GOAL_P50_C1_MS}, "
                f"p99 <= {GOAL_P99_C1_MS} ms, fsync on) -> {verdict(ok and fsync)}"
            )
    opa_new = find(rows, "opa new", low)
    if opa_new is not None:
        out.append(
            f"opa new args, c={low}: p99 {opa_new.p99_ms:.2f} ms (goal <= {GOAL_OPA_P99_C1_MS} ms)"
            f" -> {verdict(opa_new.p99_ms <= GOAL_OPA_P99_C1_MS)}"
        )
    opa_us, emb_us, rgs_us = policy
    if opa_us is not None:
        out.append(
            f"opa bench, decision.main (dry-run): median {opa_us:.1f} µs "
            f"(goal <= {GOAL_OPA_BENCH_US:g} µs) -> {verdict(opa_us <= GOAL_OPA_BENCH_US)}"
        )
        if emb_us is not None:
            out.append(
                f"embedded engine, decision.main (dry-run): {emb_us:.1f} µs, {emb_us / opa_us:.2f}x "
                f"OPA (goal <= {GOAL_EMBEDDED_VS_OPA}x) -> "
                f"{verdict(emb_us <= GOAL_EMBEDDED_VS_OPA * opa_us)}"
            )
        if rgs_us is not None:
            out.append(
                f"regorus engine (the default in-process engine), decision.main (dry-run): "
                f"{rgs_us:.1f} µs, {rgs_us / opa_us:.2f}x OPA (goal <= {GOAL_EMBEDDED_VS_OPA}x) -> "
                f"{verdict(rgs_us <= GOAL_EMBEDDED_VS_OPA * opa_us)}"
            )
    return out


def policy_bench(args: argparse.Namespace) -> tuple[float | None, float | None, float | None]:
    """bench_policy.py's figures for decision.main (dry-run): (opa, embedded, regorus µs)."""
    engines = ",".join(e for e in ("opa", "embedded", "regorus") if e in args.engines)
    ns = argparse.Namespace(
        policy_dir=[str(args.policy_dir)], engines=engines, cases="decision.main", count=3,
        seconds=2.0,
    )  # fmt: skip
    for r in bench_policy.run(ns):
        if r.input == "dry-run":
            return r.opa_us[0], r.embedded_us[0], r.regorus_us[0] if r.regorus_us else None
    return None, None, None


def merged(name: str, parts: list[Row]) -> Row:
    """One row from several windows of the same target and concurrency."""
    latencies = sorted(x for r in parts for x in r.latencies)
    calls = sum(r.calls for r in parts)
    seconds = sum(r.seconds for r in parts)
    return Row(
        target=name,
        concurrency=parts[0].concurrency,
        calls=calls,
        seconds=seconds,
        calls_per_s=calls / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        server_cpu_s=sum(r.server_cpu_s for r in parts),
        host_cpu_s=sum(r.host_cpu_s for r in parts),
        latencies=latencies,
    )


def export(rev: str, work: Path) -> tuple[str, Path, Path]:
    """The server code and policies of a commit, in a folder: (short hash, server, policies)."""
    short = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    folder = work / f"rev-{short}"
    (folder / "tree").mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "server", "policies"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(folder / "tree")], input=archive, check=True)
    return short, folder / "tree" / "server", bench_policies(folder / "tree" / "policies", folder)


def compare(args: argparse.Namespace, work: Path, levels: list[int]) -> list[Row]:
    """--compare A,B: the embedded engine on two commits' server code, side by side.

    Both servers run at once; the bare server and each commit's rows take turns
    in --rounds short windows (bare, A, B, bare, A, B, ...), so load that comes
    and goes on the machine touches them alike. Each commit runs with its own
    policies/ (as of that commit).
    """
    revs = [export(rev, work) for rev in args.compare.split(",")]
    window = args.seconds / args.rounds
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        bare = stack.enter_context(bare_server(work))
        servers = [
            (short, stack.enter_context(interlock_server("embedded", pol, work, args, code)))
            for short, code, pol in revs
        ]
        health: dict[str, Any] = {"service": ""}
        for c in levels:
            parts: dict[str, list[Row]] = {}
            for _, (address, _pids) in servers:  # warm-up, not counted
                warm = decide_data("warm {{.RequestNumber}}")
                run_ghz([ghz_argv(args, address, DECIDE, warm, c, args.warmup)], False)
            fast = args.warmup
            args.warmup = 0.2
            for n in range(args.rounds):
                saved, args.seconds = args.seconds, window
                try:
                    part = measure(args, "bare health", bare[0], bare[1], HEALTH, health, c)
                    parts.setdefault("bare health", []).append(part)
                    for short, (address, pids) in servers:
                        for kind in ("same", "new"):
                            tag = f"{short} c{c} round{n}"
                            data: Any = decide_data("login button")
                            if kind == "new":

                                def data(phase: str, tag: str = tag) -> dict[str, Any]:
                                    return decide_data(f"{phase} {tag} {{{{.RequestNumber}}}}")

                            name = f"{short} {kind}"
                            part = measure(args, name, address, pids, DECIDE, data, c)
                            parts.setdefault(name, []).append(part)
                finally:
                    args.seconds = saved
            args.warmup = fast
            for name, windows in parts.items():
                rows.append(merged(name, windows))
                print(f"{name} c={c}: {rows[-1].calls_per_s:,.0f}/s", flush=True)
    return rows


def workers_rows(
    args: argparse.Namespace,
    engine: str,
    policies: Path,
    work: Path,
    levels: list[int],
    code: Path | None,
) -> list[Row]:
    """New arguments on `interlock serve --workers N`, over 4N connections."""
    rows = []
    name = f"{engine} w{args.workers} new"
    with interlock_server(engine, policies, work, args, code, args.workers) as (address, pids):
        for c in levels:

            def fresh(phase: str, tag: str = f"{engine} w c{c}") -> dict[str, Any]:
                return decide_data(f"{phase} {tag} {{{{.RequestNumber}}}}")

            rows.append(measure(args, name, address, pids, DECIDE, fresh, c, 4 * args.workers))
            print(f"{name} c={c}: {rows[-1].calls_per_s:,.0f}/s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per row (not counted)")
    parser.add_argument("--concurrency", default="1,64", help="calls in flight, comma-separated")
    parser.add_argument(
        "--engines", default="embedded,opa,regorus", help="engines to run (regorus if available)"
    )
    parser.add_argument("--ghz", type=Path, default=GHZ_DEFAULT, help="the ghz binary (make ghz)")
    parser.add_argument("--opa-bin", default="", help="the OPA binary (default: the pinned one)")
    parser.add_argument("--policy-dir", type=Path, default=REPO / "policies")
    parser.add_argument("--no-fsync", action="store_true", help="run Interlock with --no-fsync")
    parser.add_argument("--data-root", default="", help="where the servers' data dirs go")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="one more `interlock serve` argument for every Interlock server (repeatable)",
    )
    parser.add_argument(
        "--no-policy-bench", action="store_true", help="skip the opa bench / embedded goal lines"
    )
    parser.add_argument(
        "--py-spy", default="", metavar="DIR", help="py-spy the new-arguments rows into DIR"
    )
    parser.add_argument(
        "--compare",
        default="",
        metavar="REV,REV",
        help="before/after: the embedded engine on two commits' server code, in turns",
    )
    parser.add_argument(
        "--rev",
        default="",
        help="run a commit's server code and policies (git archive), not the working tree's",
    )
    parser.add_argument("--rounds", type=int, default=10, help="--compare: turns per row")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="the <engine> wN rows: `interlock serve --workers N` on regorus (embedded "
        "without it) (0 or 1: no such rows)",
    )
    parser.add_argument("--json", type=Path, help="write the run as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table and goals as markdown")
    args = parser.parse_args()
    if not args.ghz.exists():
        print(f"error: no ghz at {args.ghz}: run `make ghz`", file=sys.stderr)
        return 2
    args.engines = [e for e in args.engines.split(",") if e]
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    notes: list[str] = []
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="bench-ghz-"))
    try:
        if "opa" in args.engines:
            args.opa_bin = args.opa_bin or find_opa()
        info = machine()
        head = {
            "commit": commit(),
            **info,
            "ghz": ghz_version(args.ghz),
            "opa": tool_version([args.opa_bin, "version"]) if "opa" in args.engines else "-",
            "fsync": not args.no_fsync,
            "load_start": os.getloadavg()[0],
        }
        code: Path | None = None
        if args.rev:  # a commit's server code and policies, not the working tree's
            short, code, policies = export(args.rev, work)
            head["commit"] = f"{short} (--rev {args.rev})"
            args.policy_dir = policies.parent / "tree" / "policies"
        else:
            policies = bench_policies(args.policy_dir, work)
        print(
            f"# commit {head['commit']}; nproc {info['nproc']}, {info['cpu']}, Python "
            f"{info['python']}; ghz {head['ghz']}, OPA {head['opa']}; fsync "
            f"{'on' if head['fsync'] else 'off'}; 1-min load average {head['load_start']:.2f}",
            flush=True,
        )
        args.protoset = build_protoset(work)
        if args.compare:
            rows = compare(args, work, levels)
            for r in rows:
                bare = find(rows, "bare health", r.concurrency)
                r.ratio_to_bare = r.calls_per_s / bare.calls_per_s if bare else None
            title = (
                f"--compare {args.compare}: embedded engine, {args.rounds} turns of "
                f"{args.seconds / args.rounds:g} s per row, {info['nproc']} cores, fsync "
                f"{'on' if head['fsync'] else 'off'}, 1-min load average {head['load_start']:.1f} "
                f"at the start, {os.getloadavg()[0]:.1f} at the end"
            )
            print(f"\n{title}")
            print("\n".join(table(rows)))
            if args.markdown:
                args.markdown.write_text("\n".join([title, "", *markdown(rows)]) + "\n")
            return 0
        health: dict[str, Any] = {"service": ""}
        with bare_server(work) as (address, pids):
            for c in levels:
                rows.append(measure(args, "bare health", address, pids, HEALTH, health, c))
                print(f"bare health c={c}: {rows[-1].calls_per_s:,.0f}/s", flush=True)
        for engine in args.engines:
            why = engine_available(engine, code)
            if why:
                notes.append(f"{engine}: skipped: {why}")
                print(notes[-1], flush=True)
                continue
            try:
                server = interlock_server(engine, policies, work, args, code)
                address, pids = server.__enter__()
            except BenchError as exc:
                if engine in ("embedded", "opa"):
                    raise
                notes.append(f"{engine}: skipped: `interlock serve` did not start: {exc}"[:400])
                print(notes[-1], flush=True)
                continue
            serving = engine_in_use(address)
            if serving != engine:  # e.g. regorus without its binding falls back to embedded
                server.__exit__(None, None, None)
                if engine in ("embedded", "opa"):
                    raise BenchError(f"--engine {engine} serves with engine {serving!r}")
                notes.append(f"{engine}: skipped: `interlock serve --engine {engine}` fell back "
                             f"to engine {serving!r} (see the server's log)")  # fmt: skip
                print(notes[-1], flush=True)
                continue
            try:
                plan: list[tuple[str, str, Any]] = []
                if engine == args.engines[0]:
                    plan.append(("interlock health", HEALTH, health))
                plan.append((f"{engine} same", DECIDE, decide_data("login button")))
                for c in levels:
                    for name, call, data in plan:
                        rows.append(measure(args, name, address, pids, call, data, c))
                        print(f"{name} c={c}: {rows[-1].calls_per_s:,.0f}/s", flush=True)
                    name = f"{engine} new"

                    def fresh(phase: str, tag: str = f"{engine} c{c}") -> dict[str, Any]:
                        return decide_data(f"{phase} {tag} {{{{.RequestNumber}}}}")

                    rows.append(measure(args, name, address, pids, DECIDE, fresh, c))
                    print(f"{name} c={c}: {rows[-1].calls_per_s:,.0f}/s", flush=True)
            finally:
                server.__exit__(None, None, None)
        served = {r.target.split()[0] for r in rows}
        inproc = [e for e in ("regorus", "embedded") if e in args.engines and e in served]
        if args.workers > 1 and inproc:
            rows += workers_rows(args, inproc[0], policies, work, levels, code)
        for r in rows:
            bare = find(rows, "bare health", r.concurrency)
            if bare is not None and bare.calls_per_s:
                r.ratio_to_bare = r.calls_per_s / bare.calls_per_s
        order = ["bare health", "interlock health"]
        order += [f"{e} {k}" for e in args.engines for k in ("same", "new", f"w{args.workers} new")]
        rows.sort(key=lambda r: (order.index(r.target), r.concurrency))
        policy: tuple[float | None, float | None, float | None] = (None, None, None)
        if not args.no_policy_bench:
            print("bench_policy: decision.main", flush=True)
            policy = policy_bench(args)
        head["load_end"] = os.getloadavg()[0]
        title = (
            f"ghz, {args.seconds:g} s per row (+{args.warmup:g} s warm-up), commit "
            f"{head['commit']}, {info['nproc']} cores ({info['cpu']}), fsync "
            f"{'on' if head['fsync'] else 'off'}, 1-min load average {head['load_start']:.1f} "
            f"at the start, {head['load_end']:.1f} at the end"
        )
        lines = table(rows)
        met = goals(rows, policy, not args.no_fsync)
        print(f"\n{title}")
        print("\n".join(lines))
        for note in notes:
            print(note)
        print("\n".join(met))
        if args.json:
            doc = {
                "run": head,
                "rows": [
                    {k: v for k, v in asdict(r).items() if k != "latencies"}
                    | {"server_us_per_call": r.server_us_per_call}
                    for r in rows
                ],
                "policy_bench_us": {"opa": policy[0], "embedded": policy[1]},
                "goals": met,
                "notes": notes,
            }
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        if args.markdown:
            text = [title, "", *markdown(rows), "", *(f"- {x}" for x in notes + met)]
            args.markdown.write_text("\n".join(text) + "\n")
        return 0
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
