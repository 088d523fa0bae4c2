"""RequestToolCall throughput and latency against a bare grpc.aio echo baseline.

    .venv/bin/python bench/bench_decisions.py [--seconds 5] [--no-fsync] [--json out.json]

Targets, each served by its own subprocess (bench/servers.py) on loopback:

  echo                a bare grpc.aio server, one unary bytes->bytes method
  interlock-embedded  the Interlock server, embedded Rego engine (regopy)
  interlock-embedded-auth
                      the same with a principals file: every call carries a
                      bearer token and is authenticated and authorized
  interlock-opa       the Interlock server, OPA engine (a real `opa run --server`)

This script is the client: grpc.aio, N concurrent tasks sharing one channel
(``--channels`` spreads them over several), a warm-up, then a fixed measured
window. Only calls that complete OK inside the window count; any failed call,
or any decision other than the expected one, stops the benchmark with an error.
bench/README.md explains how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import types_pb2

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SERVERS = BENCH_DIR / "servers.py"
ECHO_METHOD = "/bench.Echo/Echo"
DECIDE_METHOD = "/interlock.v1.ControlPlane/RequestToolCall"
ALL_TARGETS = (
    "echo",
    "interlock-embedded",
    "interlock-embedded-auth",
    "interlock-embedded-distinct",
    "interlock-opa",
    "interlock-opa-distinct",
)
# "-distinct": every call has arguments of its own, so no decision comes from
# the server's decision cache; the plain targets repeat one input (after the
# first call, every policy decision is a cache hit).
DISTINCT_INPUTS = 200_000
# "-auth": the server gets a principals file (one agent principal, AGENT, acting
# as AGENT) and the client sends `authorization: Bearer <token>` on every call,
# so every call is authenticated and authorized (data.interlock.authz.main)
# before its handler runs. Plain loopback, no TLS. The other targets run in the
# development mode: no principals file, no authentication, no authorization.
AUTH_SUFFIX = "-auth"

# The goals this benchmark checks (docs: bench/README.md).
GOAL_THROUGHPUT_PCT = 60.0  # interlock-embedded calls/s as % of echo, at concurrency 64
GOAL_P99_MS = 1.5  # interlock-embedded p99 at concurrency 1
FALLBACK_REPLY_BYTES = 393  # a typical RequestToolCallResponse, when no Interlock target ran

# The call: a LOW-risk tool at confidence 0.6 is ALLOW DRY_RUN every time (no
# LIVE slots are taken, so every call takes the same path through the policy).
AGENT, TOOL, ARGUMENTS, CONFIDENCE = "agent1", "vision_inspect", {"target": "login button"}, 0.6


class BenchError(RuntimeError):
    pass


# Results -------------------------------------------------------------------


@dataclass
class Measurement:
    target: str
    concurrency: int
    channels: int
    seconds: float
    calls: int
    calls_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    client_cpu_pct: float
    """CPU time of this client process over the window, % of one core."""
    server_cpu_pct: float
    """CPU time of the server process (all threads), % of one core."""
    sidecar_cpu_pct: float | None = None
    """CPU time of the OPA process, % of one core (interlock-opa only)."""
    server_cpu_us_per_call: float = 0.0
    host_busy_pct: float = 0.0
    """CPU busy over the whole machine (every process, the kernel), % of one core."""
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond values, in milliseconds."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1] / 1e6


# Processes -----------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (every thread), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine, summed over cores (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process with its stderr captured in a file."""

    def __init__(self, name: str, argv: list[str], *, stdout_pipe: bool = False) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(  # closed in stop()
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
            stderr=self.log,
            cwd=REPO,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or (
                self.proc.poll() is not None and not select.select([fd], [], [], 0)[0]
            ):
                raise BenchError(f"{self.name} did not start:\n{self.stderr_tail()}")
            if select.select([fd], [], [], min(left, 0.2))[0]:
                chunk = os.read(fd, 1)
                if not chunk:
                    raise BenchError(f"{self.name} exited before it served:\n{self.stderr_tail()}")
                buf += chunk
        return buf.decode().strip()

    def stderr_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:]) or "(no stderr output)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def find_opa() -> str:
    for candidate in (os.environ.get("INTERLOCK_OPA_BIN"), str(REPO / ".tools/bin/opa")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("opa")
    if found:
        return found
    raise BenchError(
        "the opa binary was not found (INTERLOCK_OPA_BIN, .tools/bin/opa or PATH); "
        "run `make opa`, or leave it out with --targets echo,interlock-embedded"
    )


_OPA_FLAGS: dict[str, list[str]] = {}


def opa_flags(url: str) -> list[str]:
    """`interlock serve` flags for the OPA start_opa started at url: its URL,
    the bundle server address its configuration polls, the binary."""
    return _OPA_FLAGS[url]


def start_opa(opa: str, timeout: float = 20.0) -> tuple[Process, str]:
    """OPA fed by the server's bundle server (docs/policies.md): start the
    server with opa_flags(url)."""
    port, bundle_port = free_port(), free_port()
    config = tempfile.NamedTemporaryFile(  # kept for the bench run
        "w", prefix="bench-opa-", suffix=".yaml", delete=False
    )
    config.write(
        f"services:\n  interlock:\n    url: http://127.0.0.1:{bundle_port}\n"
        "bundles:\n  interlock:\n    service: interlock\n"
        "    resource: bundles/interlock.tar.gz\n"
        "    polling:\n      min_delay_seconds: 1\n      max_delay_seconds: 2\n"
        "      long_polling_timeout_seconds: 30\n"
    )
    config.close()
    proc = Process(
        "opa",
        [
            opa,
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--config-file",
            config.name,
            "--log-level",
            "error",
            "--skip-version-check",  # no traffic beyond loopback
        ],
    )
    _OPA_FLAGS[f"http://127.0.0.1:{port}"] = [
        "--opa-url",
        f"http://127.0.0.1:{port}",
        "--opa-bundle-listen",
        f"127.0.0.1:{bundle_port}",
        "--opa-bin",
        opa,
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            proc.check_alive()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                    if response.status == 200:
                        return proc, url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"opa did not answer /health within {timeout:.0f}s")
            time.sleep(0.05)
    except BaseException:
        proc.stop()
        proc.cleanup()
        raise


def start_server(
    name: str, args: list[str], loop: str, profile_dir: str | None, timeout: float = 60.0
) -> tuple[Process, int]:
    argv = [sys.executable, str(SERVERS), *args[:1], "--loop", loop, *args[1:]]
    if profile_dir:
        argv += ["--profile", str(Path(profile_dir) / f"{name}.pstats")]
    proc = Process(name, argv, stdout_pipe=True)
    try:
        line = proc.read_line(timeout)
        if not line.startswith("PORT "):
            raise BenchError(f"{name}: unexpected first line {line!r}:\n{proc.stderr_tail()}")
        return proc, int(line.split()[1])
    except BaseException:
        proc.stop()
        proc.cleanup()
        raise


# The load ------------------------------------------------------------------

Call = Callable[[bytes], Awaitable[bytes]]


async def run_load(
    calls: list[Call],
    payloads: list[bytes],
    check: Callable[[bytes], None],
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    cpu_pids: list[int],
) -> tuple[list[int], float, float, list[float], float]:
    """Run ``concurrency`` tasks calling back to back; measure the window.

    Returns the latencies (ns, sorted) of the calls that completed inside the
    window, the window's real length, this process's CPU seconds in it, each
    of ``cpu_pids``' CPU seconds in it, and the whole machine's busy CPU seconds.
    """
    loop = asyncio.get_running_loop()
    perf = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    state = {"measuring": False, "stop": False}
    failures: list[BaseException] = []
    failed = asyncio.Event()

    pool = itertools.cycle(payloads)

    async def worker(call: Call) -> None:
        while not state["stop"]:
            payload = next(pool)
            t0 = perf()
            try:
                reply = await call(payload)
                check(reply)
            except BaseException as exc:
                failures.append(exc)
                state["stop"] = True
                failed.set()
                raise
            if state["measuring"]:
                record(perf() - t0)

    tasks = [
        loop.create_task(worker(calls[i % len(calls)]), name=f"worker-{i}")
        for i in range(concurrency)
    ]
    try:
        await asyncio.sleep(warmup)
        if failures:
            raise failures[0]
        cpu0 = [proc_cpu_seconds(p) for p in cpu_pids]
        own0 = time.process_time()
        host0 = host_cpu_seconds()
        start_ns = perf()
        state["measuring"] = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(failed.wait(), seconds)
        state["measuring"] = False
        end_ns = perf()
        own = time.process_time() - own0
        host = host_cpu_seconds() - host0
        cpu = [proc_cpu_seconds(p) - c for p, c in zip(cpu_pids, cpu0, strict=True)]
        state["stop"] = True
        done, _ = await asyncio.wait(tasks, timeout=30)
        for t in tasks:
            if not t.done():
                t.cancel()
        if failures:
            raise failures[0]
        if len(done) != len(tasks):
            raise BenchError("calls still pending 30s after the window closed")
    finally:
        state["stop"] = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return latencies, (end_ns - start_ns) / 1e9, own, cpu, host


def make_request(target: str = ARGUMENTS["target"], agent: str = AGENT) -> bytes:
    arguments = struct_pb2.Struct()
    arguments.update({**ARGUMENTS, "target": target})
    request = pb.RequestToolCallRequest(
        agent_id=agent, tool=TOOL, arguments=arguments, confidence=CONFIDENCE
    )
    return bytes(request.SerializeToString())


def engine_of(target: str) -> str:
    """The Rego engine of an Interlock target: embedded or opa."""
    return target.removeprefix("interlock-").split("-", 1)[0]


Metadata = tuple[tuple[str, str], ...]


def write_principals(folder: str) -> tuple[str, str]:
    """Write a principals file with one agent principal; return (its path, the token).

    The file maps the SHA-256 of a fresh random token to ``AGENT``, of kind
    agent, acting as ``AGENT`` (docs/security.md).
    """
    token = f"bench_{secrets.token_urlsafe(32)}"
    digest = hashlib.sha256(token.encode()).hexdigest()
    path = Path(folder) / "principals.yaml"
    path.write_text(
        f"tokens:\n  {digest}: {{id: {AGENT}, kind: agent, roles: [], agents: [{AGENT}]}}\n"
    )
    return str(path), token


async def check_auth_enforced(channel: grpc.aio.Channel, metadata: Metadata) -> None:
    """Fail unless the server really authenticates and authorizes every call.

    Without a token, and with a token it does not know, the call must be
    UNAUTHENTICATED; with the right token but as another agent, the
    authorization policy must refuse it (PERMISSION_DENIED).
    """
    call = channel.unary_unary(DECIDE_METHOD, request_serializer=None, response_deserializer=None)
    other = make_request(agent=f"not-{AGENT}")
    probes: list[tuple[str, bytes, Metadata | None, grpc.StatusCode]] = [
        ("no token", make_request(), None, grpc.StatusCode.UNAUTHENTICATED),
        (
            "an unknown token",
            make_request(),
            (("authorization", "Bearer not-a-known-token"),),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        ("the token, as another agent", other, metadata, grpc.StatusCode.PERMISSION_DENIED),
    ]
    for what, payload, md, expected in probes:
        try:
            await call(payload, metadata=md)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != expected:
                raise BenchError(
                    f"a call with {what} failed with {exc.code().name} ({exc.details()}), "
                    f"expected {expected.name}"
                ) from None
        else:
            raise BenchError(f"a call with {what} succeeded, expected {expected.name}")


def decision_checker(engine: str, sizes: list[int]) -> Callable[[bytes], None]:
    allow, dry_run = types_pb2.VERDICT_ALLOW, types_pb2.EXECUTION_MODE_DRY_RUN

    def check(reply: bytes) -> None:
        decision = pb.RequestToolCallResponse.FromString(reply).decision
        if (
            decision.verdict != allow
            or decision.mode != dry_run
            or decision.fail_closed
            or decision.engine != engine
        ):
            raise BenchError(
                f"unexpected decision (expected ALLOW DRY_RUN by {engine}):\n{decision}"
            )
        if len(sizes) < 16:
            sizes.append(len(reply))

    return check


def echo_checker(expected: int) -> Callable[[bytes], None]:
    def check(reply: bytes) -> None:
        if len(reply) != expected:
            raise BenchError(f"echo replied {len(reply)} bytes, expected {expected}")

    return check


async def measure_target(
    target: str,
    port: int,
    payloads: list[bytes],
    check: Callable[[bytes], None],
    args: argparse.Namespace,
    server: Process,
    sidecar: Process | None,
    metadata: Metadata | None = None,
) -> list[Measurement]:
    """Measure one target at every concurrency; ``metadata`` goes with every call."""
    method = ECHO_METHOD if target == "echo" else DECIDE_METHOD
    options: list[tuple[str, Any]] = []
    if args.channels > 1:
        options.append(("grpc.use_local_subchannel_pool", 1))  # one connection per channel
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for _ in range(args.channels)
    ]
    results = []
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 10)
        # Raw bytes both ways for every target: the client does the same work
        # per call whatever the server (the request is serialized once, here).
        stubs = [
            ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            for ch in channels
        ]
        calls: list[Call] = stubs
        if metadata is not None:
            await check_auth_enforced(channels[0], metadata)
            calls = [functools.partial(stub, metadata=metadata) for stub in stubs]
        check(await calls[0](payloads[0]))
        pids = [server.pid] + ([sidecar.pid] if sidecar else [])
        for concurrency in args.concurrency:
            lat, window, own, cpu, host = await run_load(
                calls,
                payloads[1:] if len(payloads) > 1 else payloads,
                check,
                concurrency=concurrency,
                warmup=args.warmup,
                seconds=args.seconds,
                cpu_pids=pids,
            )
            server.check_alive()
            if not lat:
                raise BenchError(f"{target}: no call completed in the window")
            n = len(lat)
            m = Measurement(
                target=target,
                concurrency=concurrency,
                channels=min(len(channels), concurrency),
                seconds=round(window, 3),
                calls=n,
                calls_per_second=n / window,
                p50_ms=percentile(lat, 50),
                p90_ms=percentile(lat, 90),
                p99_ms=percentile(lat, 99),
                max_ms=lat[-1] / 1e6,
                mean_ms=statistics.fmean(lat) / 1e6,
                client_cpu_pct=100 * own / window,
                server_cpu_pct=100 * cpu[0] / window,
                sidecar_cpu_pct=100 * cpu[1] / window if sidecar else None,
                server_cpu_us_per_call=1e6 * cpu[0] / n,
                host_busy_pct=100 * host / window,
            )
            results.append(m)
            print(
                f"  {target:<27} c={concurrency:<3} {m.calls_per_second:8.0f} calls/s  "
                f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms",
                flush=True,
            )
    finally:
        for ch in channels:
            await ch.close()
    return results


async def bench(args: argparse.Namespace) -> tuple[list[Measurement], dict[str, Any]]:
    request = make_request()
    reply_sizes: list[int] = []
    results: list[Measurement] = []
    notes: dict[str, Any] = {"request_bytes": len(request)}
    # Interlock targets run first so the echo reply can be sized like a real
    # decision; the table lists echo first all the same.
    order = [t for t in ALL_TARGETS if t != "echo" and t in args.targets]
    if "echo" in args.targets:
        order.append("echo")
    data_root = Path(args.data_root) if args.data_root else None

    for target in order:
        print(f"{target}: starting", flush=True)
        sidecar: Process | None = None
        server: Process | None = None
        data_dir: str | None = None
        auth_dir: str | None = None
        metadata: Metadata | None = None
        try:
            if target == "echo":
                reply_bytes = args.echo_reply_bytes or (
                    max(reply_sizes) if reply_sizes else FALLBACK_REPLY_BYTES
                )
                notes["echo_reply_bytes"] = reply_bytes
                server, port = start_server(
                    "echo", ["echo", "--reply-bytes", str(reply_bytes)], args.loop, args.profile_dir
                )
                check = echo_checker(reply_bytes)
            else:
                engine = engine_of(target)
                data_dir = tempfile.mkdtemp(prefix="bench-interlock-", dir=data_root)
                extra = [
                    "--data-dir",
                    data_dir,
                    "--policy-dir",
                    args.policy_dir,
                    "--engine",
                    engine,
                ]
                if engine == "opa":
                    sidecar, opa_url = start_opa(args.opa_bin)
                    extra += opa_flags(opa_url)
                if args.no_fsync:
                    extra.append("--no-fsync")
                if args.embedded_api != "native":
                    extra += ["--embedded-api", args.embedded_api]
                if target.endswith(AUTH_SUFFIX):
                    # Outside the data dir: the server only reads it.
                    auth_dir = tempfile.mkdtemp(prefix="bench-auth-", dir=data_root)
                    principals, token = write_principals(auth_dir)
                    extra += ["--principals-file", principals]
                    metadata = (("authorization", f"Bearer {token}"),)
                server, port = start_server(
                    target, ["interlock", *extra], args.loop, args.profile_dir
                )
                check = decision_checker(engine, reply_sizes)
            payloads = [request]
            if target.endswith("-distinct"):
                payloads = [make_request(f"button {i}") for i in range(DISTINCT_INPUTS)]
            results += await measure_target(
                target, port, payloads, check, args, server, sidecar, metadata
            )
            if target != "echo" and reply_sizes:
                notes["interlock_reply_bytes"] = max(reply_sizes)
        finally:
            for proc in (server, sidecar):
                if proc is not None:
                    proc.stop()
            for proc in (server, sidecar):
                if proc is None:
                    continue
                text = proc.stderr_text()
                if any(w in text for w in ("Traceback", "ERROR ", "CRITICAL ", "FATAL")):
                    print(f"warning: {proc.name} logged errors:\n{proc.stderr_tail()}", flush=True)
                proc.cleanup()
            for folder in (data_dir, auth_dir):
                if folder:
                    shutil.rmtree(folder, ignore_errors=True)
    return results, notes


# Report --------------------------------------------------------------------


def filesystem_of(path: str) -> str:
    best, fstype = "", "?"
    real = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1]
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(
                best
            ):
                best, fstype = mount, parts[2]
    return fstype


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    opa_version = None
    if any(t.startswith("interlock-opa") for t in args.targets):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [args.opa_bin, "version"], capture_output=True, text=True, timeout=10
            ).stdout
            opa_version = out.splitlines()[0].split(":", 1)[1].strip() if out else None
    data_dir = args.data_root or tempfile.gettempdir()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpc": grpc.__version__,
        "loop": args.loop,
        "fsync": not args.no_fsync,
        "data_dir": data_dir,
        "data_dir_fs": filesystem_of(data_dir),
        "opa": opa_version,
    }


def report(
    results: list[Measurement],
    machine: dict[str, Any],
    notes: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    print()
    print(
        f"machine: nproc={machine['nproc']} ({machine['cpu_model'] or 'unknown cpu'}), "
        f"python {machine['python']}, grpc {machine['grpc']}, loop {machine['loop']}, "
        f"{machine['platform']}"
    )
    print(
        f"run: {args.seconds:g}s measured after {args.warmup:g}s warm-up per row, "
        f"{args.channels} channel(s), fsync {'on' if machine['fsync'] else 'OFF (--no-fsync)'}, "
        f"data dir on {machine['data_dir_fs']} ({machine['data_dir']})"
        + (f", opa {machine['opa']}" if machine["opa"] else "")
        + (
            f", embedded engine via {args.embedded_api}'s API"
            if args.embedded_api != "native"
            else ""
        )
    )
    print(
        f"payload: request {notes['request_bytes']} B; reply "
        f"{notes.get('interlock_reply_bytes', '?')} B (interlock), "
        f"{notes.get('echo_reply_bytes', '?')} B (echo)"
    )
    print()
    header = (
        f"{'target':<27} {'conc':>4} {'calls/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'srv CPU%':>9} {'srv us/call':>11} {'opa CPU%':>9} {'client CPU%':>11} "
        f"{'host busy%':>10}"
    )
    print(header)
    print("-" * len(header))
    order = {t: i for i, t in enumerate(ALL_TARGETS)}
    for m in sorted(results, key=lambda r: (order[r.target], r.concurrency)):
        sidecar = f"{m.sidecar_cpu_pct:9.0f}" if m.sidecar_cpu_pct is not None else f"{'-':>9}"
        print(
            f"{m.target:<27} {m.concurrency:>4} {m.calls_per_second:>9.0f} {m.p50_ms:>8.3f} "
            f"{m.p90_ms:>8.3f} {m.p99_ms:>8.3f} {m.max_ms:>8.2f} {m.server_cpu_pct:>9.0f} "
            f"{m.server_cpu_us_per_call:>11.0f} {sidecar} {m.client_cpu_pct:>11.0f} "
            f"{m.host_busy_pct:>10.0f}"
        )

    def find(target: str, concurrency: int) -> Measurement | None:
        return next(
            (r for r in results if r.target == target and r.concurrency == concurrency), None
        )

    print()
    ratios: dict[str, Any] = {}
    hi = max(args.concurrency)
    lo = min(args.concurrency)
    echo_hi = find("echo", hi)
    for target in ALL_TARGETS[1:]:
        m_hi, m_lo = find(target, hi), find(target, lo)
        entry: dict[str, Any] = {}
        if m_hi and echo_hi:
            pct = 100 * m_hi.calls_per_second / echo_hi.calls_per_second
            entry["throughput_pct_of_echo"] = pct
            entry["throughput_goal_met"] = pct >= GOAL_THROUGHPUT_PCT
            print(
                f"{target}: throughput at c={hi} is {pct:.0f}% of echo "
                f"(target >= {GOAL_THROUGHPUT_PCT:.0f}%) -> {'MET' if pct >= GOAL_THROUGHPUT_PCT else 'NOT MET'}"
            )
        if m_lo:
            echo_lo = find("echo", lo)
            entry["p99_ms_at_low_concurrency"] = m_lo.p99_ms
            entry["p99_goal_met"] = m_lo.p99_ms <= GOAL_P99_MS
            floor = f" (echo p99 {echo_lo.p99_ms:.3f} ms)" if echo_lo else ""
            print(
                f"{target}: p99 at c={lo} is {m_lo.p99_ms:.3f} ms{floor} "
                f"(target <= {GOAL_P99_MS} ms) -> {'MET' if m_lo.p99_ms <= GOAL_P99_MS else 'NOT MET'}"
            )
        if entry:
            ratios[target] = entry
    auth_cost = auth_comparison(find, hi, lo)
    if auth_cost:
        ratios.setdefault("interlock-embedded-auth", {})["vs_interlock_embedded"] = auth_cost
    if len(ratios) > 1:
        print(
            "(the targets apply to interlock-embedded; the others are shown for comparison;"
            " -distinct rows never hit the decision cache)"
        )
    if any(m.target.endswith(AUTH_SUFFIX) for m in results):
        print(
            "(interlock-embedded-auth: interlock-embedded with a principals file: every call"
            " carries 'authorization: Bearer <token>' (plain loopback, no TLS) and is\n"
            " authenticated and authorized by data.interlock.authz.main before its handler;"
            " the input repeats, so the authorization answer and the decision come from"
            " their caches; the other rows run unauthenticated)"
        )
    return {
        "machine": machine,
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "channels": args.channels,
            "targets": args.targets,
            "call": {
                "agent_id": AGENT,
                "tool": TOOL,
                "arguments": ARGUMENTS,
                "confidence": CONFIDENCE,
            },
        },
        "payload": notes,
        "goals": {
            "throughput_pct_of_echo": GOAL_THROUGHPUT_PCT,
            "p99_ms_at_concurrency_1": GOAL_P99_MS,
        },
        "results": [asdict(m) for m in results],
        "ratios": ratios,
    }


def auth_comparison(
    find: Callable[[str, int], Measurement | None], hi: int, lo: int
) -> dict[str, float]:
    """Print and return what authentication + authorization add to interlock-embedded."""
    base_hi, auth_hi = find("interlock-embedded", hi), find("interlock-embedded-auth", hi)
    base_lo, auth_lo = find("interlock-embedded", lo), find("interlock-embedded-auth", lo)
    out: dict[str, float] = {}
    parts: list[str] = []
    if base_hi and auth_hi:
        out["throughput_pct_of_interlock_embedded"] = (
            100 * auth_hi.calls_per_second / base_hi.calls_per_second
        )
        out["server_us_per_call_added"] = (
            auth_hi.server_cpu_us_per_call - base_hi.server_cpu_us_per_call
        )
        parts.append(
            f"at c={hi} {out['throughput_pct_of_interlock_embedded']:.0f}% of its calls/s, "
            f"{out['server_us_per_call_added']:+.0f} us server CPU per call"
        )
    if base_lo and auth_lo:
        out["p50_ms_added_at_low_concurrency"] = auth_lo.p50_ms - base_lo.p50_ms
        out["p99_ms_added_at_low_concurrency"] = auth_lo.p99_ms - base_lo.p99_ms
        parts.append(
            f"at c={lo} p50 {out['p50_ms_added_at_low_concurrency']:+.3f} ms, "
            f"p99 {out['p99_ms_added_at_low_concurrency']:+.3f} ms"
        )
    if parts:
        print(f"interlock-embedded-auth vs interlock-embedded: {'; '.join(parts)}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    try:
        import uvloop  # noqa: F401

        default_loop = "uvloop"
    except ImportError:
        default_loop = "asyncio"
    p = argparse.ArgumentParser(
        description="Interlock RequestToolCall vs a bare grpc.aio echo: calls/s and p50/p99."
    )
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per row (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each row (default 1)")
    p.add_argument(
        "--concurrency",
        type=lambda s: sorted({int(x) for x in s.split(",")}),
        default=[1, 64],
        help="comma-separated concurrent calls in flight (default 1,64)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=1,
        help="spread the tasks over this many channels (default 1)",
    )
    p.add_argument(
        "--targets",
        type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
        default=list(ALL_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)}",
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=default_loop,
        help=f"event loop of the client and every server (default {default_loop})",
    )
    p.add_argument(
        "--no-fsync", action="store_true", help="run Interlock with fsync=False (default: fsync on)"
    )
    p.add_argument("--policy-dir", default=str(REPO / "policies"))
    p.add_argument(
        "--embedded-api",
        choices=("native", "regopy"),
        default="regopy",
        help="the embedded engine's call path: regopy's public API (the server's default) "
        "or rego-cpp's C API (embedded_native; for before/after figures)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="where the servers' temporary data dirs go (default $TMPDIR)",
    )
    p.add_argument(
        "--opa-bin", default=None, help="opa binary (default $INTERLOCK_OPA_BIN, .tools/bin/opa)"
    )
    p.add_argument(
        "--echo-reply-bytes",
        type=int,
        default=0,
        help="echo reply size (default: the Interlock reply size seen in this run)",
    )
    p.add_argument(
        "--profile-dir",
        metavar="DIR",
        help="cProfile each server's event-loop thread into DIR/<target>.pstats",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    unknown = [t for t in args.targets if t not in ALL_TARGETS]
    if unknown or not args.targets:
        p.error(f"--targets: unknown {unknown}; choose from {', '.join(ALL_TARGETS)}")
    if args.seconds <= 0 or args.warmup < 0 or args.channels < 1 or min(args.concurrency) < 1:
        p.error("--seconds must be positive, --warmup >= 0, --channels and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if any(t.startswith("interlock-opa") for t in args.targets):
            args.opa_bin = args.opa_bin or find_opa()
        for folder in (args.profile_dir, args.data_root):
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
        machine = machine_info(args)
        if args.loop == "uvloop":
            import uvloop

            uvloop.install()
        results, notes = asyncio.run(bench(args))
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(
            f"\nBENCHMARK FAILED: a call failed: {exc.code().name}: {exc.details()}",
            file=sys.stderr,
        )
        return 1
    out = report(results, machine, notes, args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
