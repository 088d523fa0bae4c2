"""Plans per second, and WatchEvents fan-out against a bare grpc.aio stream baseline.

    .venv/bin/python bench/bench_plans.py [--plans 200] [--concurrency 1,8,64]
        [--watchers 1000] [--events 100] [--rate 5] [--json out.json]

Two parts, each against servers started as subprocesses by bench/servers.py
(loopback, the same event loop as this client), so the load generator does
not share the server's core:

plans
    A fresh Interlock server (embedded engine) per concurrency level. ``c``
    tasks each submit a 5-step plan (a chain of ``vision_inspect`` steps by
    agent1 at confidence 0.1, so every step is ALLOW MOCK and Interlock
    completes it itself: no worker) and wait for its PLAN_FINISHED event, then
    submit the next, until ``--plans`` plans have run. One WatchEvents stream
    (kinds=PLAN_FINISHED) reports the ends. plans/s = plans / (first submit
    to the last PLAN_FINISHED received); every plan must end SUCCEEDED.
fan-out
    ``--watchers`` WatchEvents streams (kinds=DECISION, only new events) on
    ``--fanout-channels`` connections. A producer makes ``--events`` calls of
    RequestToolCall, each committing one DECISION event that every watcher
    receives: deliveries = events x watchers. The baseline is the same client
    against ``servers.py fanout``: a bare grpc.aio server whose Publish puts
    one message (a WatchEventsResponse of the same size as Interlock's) on
    every open stream. Each target runs twice: a burst (the producer calls
    back to back: deliveries/s at saturation) and paced at ``--rate`` events
    per second (the lag at a load both keep up with). Lag = receipt time here
    minus the event's ``time`` stamped by the server (one machine, one clock).

bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

# bench/ is on sys.path when this file runs as a script.
from bench_decisions import (
    DECIDE_METHOD,
    REPO,
    BenchError,
    Process,
    decision_checker,
    filesystem_of,
    host_cpu_seconds,
    make_request,
    percentile,
    proc_cpu_seconds,
    start_server,
)
from google.protobuf import struct_pb2
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2

SUBMIT_METHOD = "/interlock.v1.ControlPlane/SubmitPlan"
WATCH_METHOD = "/interlock.v1.ControlPlane/WatchEvents"
PUBLISH_METHOD = "/bench.Fanout/Publish"
SUBSCRIBE_METHOD = "/bench.Fanout/Subscribe"
STEPS = 5
AGENT, TOOL, MOCK_CONFIDENCE = "agent1", "vision_inspect", 0.1  # LOW risk: MOCK below 0.5
BENCH_RATE_LIMIT = 1_000_000
"""rate_limit_per_minute of every tool in the benchmark's copy of the bundle (see below)."""


@dataclass
class PlanRow:
    concurrency: int
    plans: int
    seconds: float
    plans_per_second: float
    steps_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float
    server_cpu_ms_per_plan: float
    client_cpu_pct: float
    host_busy_pct: float


@dataclass
class FanoutRow:
    target: str
    mode: str
    """burst (back to back) or paced (``rate`` events/s)."""
    rate: float
    watchers: int
    events: int
    deliveries: int
    seconds: float
    deliveries_per_second: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    message_bytes: int
    server_cpu_pct: float
    client_cpu_pct: float
    host_busy_pct: float


class Window:
    """CPU of the server, this process and the machine over a measured window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server0 = proc_cpu_seconds(pid)
        self.own0 = time.process_time()
        self.host0 = host_cpu_seconds()

    def close(self, seconds: float) -> tuple[float, float, float, float]:
        """(server CPU seconds, server %, client %, host busy %) over ``seconds``."""
        server = proc_cpu_seconds(self.pid) - self.server0
        own = time.process_time() - self.own0
        host = host_cpu_seconds() - self.host0
        return server, 100 * server / seconds, 100 * own / seconds, 100 * host / seconds


# Servers ---------------------------------------------------------------------


def bench_policies(source: Path, folder: Path) -> Path:
    """Copy the bundle with every tool's rate limit raised to :data:`BENCH_RATE_LIMIT`.

    Steps that ran count against their tool's ``rate_limit_per_minute`` for 60 s
    (MOCK ones too), so at hundreds of plans a second the stock limits (600 a
    minute for vision_inspect) would throttle nearly every plan: the benchmark
    would measure the throttle, not the server. Everything else is unchanged.
    """
    target = folder / "policies"
    shutil.copytree(source, target)
    catalog = target / "interlock" / "catalog" / "data.yaml"
    text, n = re.subn(
        r"(rate_limit_per_minute:\s*)\d+", rf"\g<1>{BENCH_RATE_LIMIT}", catalog.read_text()
    )
    if n == 0:
        raise BenchError(f"no rate_limit_per_minute found in {catalog}")
    catalog.write_text(text)
    return target


@contextlib.asynccontextmanager
async def interlock_server(args: argparse.Namespace, policies: Path, name: str) -> Any:
    data_dir = tempfile.mkdtemp(prefix="bench-plans-", dir=args.data_root)
    argv = ["interlock", "--data-dir", data_dir, "--policy-dir", str(policies)]
    argv += ["--engine", "embedded", "--max-streams", str(args.watchers + 16)]
    if args.no_fsync:
        argv.append("--no-fsync")
    server, port = start_server(name, argv, args.loop, None)
    try:
        yield server, port
    finally:
        stop_process(server)
        shutil.rmtree(data_dir, ignore_errors=True)


def stop_process(proc: Process) -> None:
    proc.stop()
    text = proc.stderr_text()
    if any(w in text for w in ("Traceback", "ERROR ", "CRITICAL ", "FATAL")):
        print(f"warning: {proc.name} logged errors:\n{proc.stderr_tail()}", flush=True)
    proc.cleanup()


def channel(port: int) -> grpc.aio.Channel:
    # One TCP connection per channel (no shared subchannel).
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


# Plans -----------------------------------------------------------------------


def plan_request(plan_id: str) -> bytes:
    steps = []
    for j in range(1, STEPS + 1):
        arguments = struct_pb2.Struct()
        arguments.update({"target": f"{plan_id} element {j}"})
        steps.append(
            plans_pb2.StepSpec(
                step_id=f"s{j}",
                tool=TOOL,
                agent_id=AGENT,
                arguments=arguments,
                confidence=MOCK_CONFIDENCE,
                depends_on=[f"s{j - 1}"] if j > 1 else [],
            )
        )
    spec = plans_pb2.PlanSpec(plan_id=plan_id, steps=steps)
    return bytes(pb.SubmitPlanRequest(spec=spec).SerializeToString())


async def plans_row(args: argparse.Namespace, policies: Path, concurrency: int) -> PlanRow:
    async with interlock_server(args, policies, f"interlock-plans-c{concurrency}") as (
        server,
        port,
    ):
        ch = channel(port)
        try:
            await asyncio.wait_for(ch.channel_ready(), 10)
            return await run_plans(ch, server, concurrency, args.plans)
        finally:
            await ch.close()


async def run_plans(ch: grpc.aio.Channel, server: Process, concurrency: int, total: int) -> PlanRow:
    submit = ch.unary_unary(
        SUBMIT_METHOD,
        request_serializer=None,
        response_deserializer=pb.SubmitPlanResponse.FromString,
    )
    watch = ch.unary_stream(
        WATCH_METHOD,
        request_serializer=pb.WatchEventsRequest.SerializeToString,
        response_deserializer=pb.WatchEventsResponse.FromString,
    )
    waiting: dict[str, asyncio.Future[tuple[str, int]]] = {}
    # From the start (a fresh server): history, then live, so no end is missed
    # while the stream is being set up.
    call = watch(pb.WatchEventsRequest(after_seq=0, kinds=[observe_pb2.EVENT_KIND_PLAN_FINISHED]))

    async def listen() -> None:
        async for response in call:
            event = response.event
            future = waiting.pop(event.plan_id, None)
            if future is not None and not future.done():
                state = event.payload.fields["state"].string_value
                future.set_result((state, time.perf_counter_ns()))

    listener = asyncio.create_task(listen(), name="plan-finished")
    loop = asyncio.get_running_loop()

    async def one(plan_id: str) -> int:
        """Submit a plan, wait for its end; its latency in ns."""
        future: asyncio.Future[tuple[str, int]] = loop.create_future()
        waiting[plan_id] = future
        t0 = time.perf_counter_ns()
        reply = await submit(plan_request(plan_id))
        if reply.plan.plan_id != plan_id:
            raise BenchError(f"SubmitPlan answered {reply.plan.plan_id!r} for {plan_id!r}")
        done = asyncio.ensure_future(future)
        finished, _ = await asyncio.wait(
            {done, listener}, timeout=60, return_when="FIRST_COMPLETED"
        )
        if done not in finished:
            if listener.done():
                listener.result()
                raise BenchError("the PLAN_FINISHED stream ended")
            raise BenchError(f"plan {plan_id} did not finish within 60 s")
        state, t1 = done.result()
        if state != "SUCCEEDED":
            raise BenchError(f"plan {plan_id} ended {state}, expected SUCCEEDED (every step MOCK)")
        return t1 - t0

    try:
        # Warm-up: one plan.
        await one(f"warmup-c{concurrency}")
        counter = iter(range(total))
        latencies: list[int] = []
        window = Window(server.pid)
        start = time.perf_counter_ns()

        async def worker() -> None:
            for i in counter:
                latencies.append(await one(f"bench-c{concurrency}-{i}"))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = (time.perf_counter_ns() - start) / 1e9
        server_cpu, server_pct, client_pct, host_pct = window.close(seconds)
        server.check_alive()
    finally:
        call.cancel()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await listener
    latencies.sort()
    row = PlanRow(
        concurrency=concurrency,
        plans=total,
        seconds=round(seconds, 3),
        plans_per_second=total / seconds,
        steps_per_second=STEPS * total / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] / 1e6,
        server_cpu_pct=server_pct,
        server_cpu_ms_per_plan=1e3 * server_cpu / total,
        client_cpu_pct=client_pct,
        host_busy_pct=host_pct,
    )
    print(
        f"  plans c={concurrency:<3} {row.plans_per_second:7.1f} plans/s  "
        f"p50 {row.p50_ms:7.1f} ms  p99 {row.p99_ms:7.1f} ms",
        flush=True,
    )
    return row


# Fan-out ---------------------------------------------------------------------


class Watchers:
    """``n`` streams; counts what each receives and the lag of the measured messages."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.last_seq = [0] * n
        self.seen = 0  # watchers that received at least one message
        self.all_seen = asyncio.Event()
        self.threshold: int | None = None  # messages with a larger seq are measured
        self.expected = 0
        self.counts = [0] * n
        self.finished = 0
        self.all_done = asyncio.Event()
        self.lags: list[int] = []
        self.last_receipt = 0
        self.size = 0

    async def consume(self, index: int, call: Any) -> None:
        clock = time.time_ns
        async for response in call:
            now = clock()
            event = response.event
            if self.last_seq[index] == 0:
                self.seen += 1
                if self.seen == self.n:
                    self.all_seen.set()
            if event.seq <= self.last_seq[index]:
                raise BenchError(f"watcher {index}: seq {event.seq} after {self.last_seq[index]}")
            self.last_seq[index] = event.seq
            if self.threshold is not None and event.seq > self.threshold:
                self.lags.append(now - event.time.ToNanoseconds())
                self.last_receipt = now
                self.counts[index] += 1
                if self.counts[index] == self.expected:
                    self.finished += 1
                    if self.finished == self.n:
                        self.all_done.set()
                if not self.size:
                    self.size = response.ByteSize()


async def fanout_target(
    args: argparse.Namespace, target: str, port: int, server: Process
) -> list[FanoutRow]:
    channels = [channel(port) for _ in range(args.fanout_channels)]
    tasks: list[asyncio.Task[None]] = []
    calls: list[Any] = []
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 10)
        if target == "interlock":
            publish_call = channels[0].unary_unary(
                DECIDE_METHOD, request_serializer=None, response_deserializer=None
            )
            check = decision_checker("embedded", [])
            request = make_request()

            async def publish() -> None:
                check(await publish_call(request))

            head = 0
            probe = channels[0].unary_stream(
                WATCH_METHOD,
                request_serializer=pb.WatchEventsRequest.SerializeToString,
                response_deserializer=pb.WatchEventsResponse.FromString,
            )

            async def subscribe_request() -> bytes:
                """Watch DECISION events after the newest one: make one and find its seq."""
                nonlocal head
                decision = pb.RequestToolCallResponse.FromString(await publish_call(request))
                call = probe(
                    pb.WatchEventsRequest(after_seq=head, kinds=[observe_pb2.EVENT_KIND_DECISION])
                )
                try:
                    async for response in call:
                        if response.event.decision_id == decision.decision.decision_id:
                            head = response.event.seq
                            break
                finally:
                    call.cancel()
                return bytes(
                    pb.WatchEventsRequest(
                        after_seq=head, kinds=[observe_pb2.EVENT_KIND_DECISION]
                    ).SerializeToString()
                )

            method = WATCH_METHOD
        else:
            bare = channels[0].unary_unary(
                PUBLISH_METHOD, request_serializer=None, response_deserializer=None
            )

            async def publish() -> None:
                await bare(b"")

            async def subscribe_request() -> bytes:
                return b""

            method = SUBSCRIBE_METHOD
        rows = []
        for mode, rate in (("burst", 0.0), ("paced", args.rate)):
            watchers = Watchers(args.watchers)
            calls = []
            start_request = await subscribe_request()
            for i in range(args.watchers):
                ch = channels[i % len(channels)]
                subscribe = ch.unary_stream(
                    method,
                    request_serializer=None,
                    response_deserializer=pb.WatchEventsResponse.FromString,
                )
                call = subscribe(start_request)
                calls.append(call)
                tasks.append(asyncio.create_task(watchers.consume(i, call)))
            await warm_up(watchers, publish, tasks)
            rows.append(await measure_fanout(args, target, mode, rate, watchers, publish, server))
            for call in calls:
                call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            server.check_alive()
        return rows
    finally:
        for call in calls:
            call.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()


def first_failure(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise BenchError(f"a watcher failed: {task.exception()!r}")
        if task.done():
            raise BenchError("a watcher's stream ended early")


async def warm_up(watchers: Watchers, publish: Any, tasks: list[asyncio.Task[None]]) -> None:
    """Publish until every stream has received something, then settle on one seq.

    A stream is only known to be registered once a message reached it. After
    that, every watcher receives every later message, so once all stand at the
    same (highest) seq, the messages after it are the measured ones for all.
    """
    deadline = time.monotonic() + 120
    while not watchers.all_seen.is_set():
        await publish()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watchers.all_seen.wait(), 0.1)
        first_failure(tasks)
        if time.monotonic() > deadline:
            raise BenchError(f"only {watchers.seen} of {watchers.n} streams received anything")
    while len(set(watchers.last_seq)) != 1:
        await asyncio.sleep(0.01)
        first_failure(tasks)
        if time.monotonic() > deadline:
            raise BenchError("the streams did not settle on one seq after the warm-up")
    watchers.threshold = watchers.last_seq[0]


async def measure_fanout(
    args: argparse.Namespace,
    target: str,
    mode: str,
    rate: float,
    watchers: Watchers,
    publish: Any,
    server: Process,
) -> FanoutRow:
    watchers.expected = args.events
    window = Window(server.pid)
    start = time.time_ns()
    for i in range(args.events):
        await publish()
        if rate > 0:
            delay = start / 1e9 + (i + 1) / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
    try:
        await asyncio.wait_for(watchers.all_done.wait(), 300)
    except TimeoutError:
        raise BenchError(
            f"{target}: {sum(watchers.counts)} of {args.events * watchers.n} deliveries "
            "within 300 s"
        ) from None
    seconds = (watchers.last_receipt - start) / 1e9
    _, server_pct, client_pct, host_pct = window.close(seconds)
    lags = sorted(watchers.lags)
    deliveries = len(lags)
    row = FanoutRow(
        target=target,
        mode=mode,
        rate=rate,
        watchers=watchers.n,
        events=args.events,
        deliveries=deliveries,
        seconds=round(seconds, 3),
        deliveries_per_second=deliveries / seconds,
        lag_p50_ms=percentile(lags, 50),
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=lags[-1] / 1e6,
        message_bytes=watchers.size,
        server_cpu_pct=server_pct,
        client_cpu_pct=client_pct,
        host_busy_pct=host_pct,
    )
    print(
        f"  fan-out {target:<9} {mode:<5} {row.deliveries_per_second:8.0f} deliveries/s  "
        f"lag p50 {row.lag_p50_ms:7.1f} ms  p99 {row.lag_p99_ms:7.1f} ms",
        flush=True,
    )
    return row


async def fanout(args: argparse.Namespace, policies: Path) -> list[FanoutRow]:
    rows: list[FanoutRow] = []
    # Interlock first, so the baseline's messages are sized like its events.
    async with interlock_server(args, policies, "interlock-fanout") as (server, port):
        rows += await fanout_target(args, "interlock", port, server)
    size = max(r.message_bytes for r in rows)
    server, port = start_server("fanout", ["fanout", "--message-bytes", str(size)], args.loop, None)
    try:
        rows += await fanout_target(args, "baseline", port, server)
    finally:
        stop_process(server)
    return rows


# Report ----------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> tuple[list[PlanRow], list[FanoutRow]]:
    folder = Path(tempfile.mkdtemp(prefix="bench-policies-", dir=args.data_root))
    try:
        policies = bench_policies(Path(args.policy_dir), folder)
        plan_rows: list[PlanRow] = []
        if "plans" in args.parts:
            print("plans: one fresh server per concurrency level", flush=True)
            for c in args.concurrency:
                plan_rows.append(await plans_row(args, policies, c))
        fan_rows: list[FanoutRow] = []
        if "fanout" in args.parts:
            print(f"fan-out: {args.watchers} watchers, {args.events} events", flush=True)
            fan_rows = await fanout(args, policies)
        return plan_rows, fan_rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(
    plan_rows: list[PlanRow], fan_rows: list[FanoutRow], args: argparse.Namespace
) -> dict[str, Any]:
    import os
    import platform

    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    data_dir = args.data_root or tempfile.gettempdir()
    machine = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "grpc": grpc.__version__,
        "loop": args.loop,
        "fsync": not args.no_fsync,
        "data_dir_fs": filesystem_of(data_dir),
    }
    print()
    print(
        f"machine: nproc={machine['nproc']} ({cpu_model or 'unknown cpu'}), python "
        f"{machine['python']}, grpc {machine['grpc']}, loop {args.loop}, fsync "
        f"{'on' if machine['fsync'] else 'OFF'}, data dir on {machine['data_dir_fs']}"
    )
    ratios: dict[str, Any] = {}
    if plan_rows:
        print()
        print(
            f"plans: {STEPS}-step MOCK plans ({TOOL} chain, confidence {MOCK_CONFIDENCE}), "
            f"{args.plans} per row, embedded engine"
        )
        header = (
            f"{'conc':>4} {'plans/s':>8} {'steps/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'srv CPU%':>9} {'srv ms/plan':>11} {'client CPU%':>11} "
            f"{'host busy%':>10}"
        )
        print(header)
        print("-" * len(header))
        for p in plan_rows:
            print(
                f"{p.concurrency:>4} {p.plans_per_second:>8.1f} {p.steps_per_second:>8.0f} "
                f"{p.p50_ms:>8.1f} {p.p99_ms:>8.1f} {p.max_ms:>8.1f} {p.server_cpu_pct:>9.0f} "
                f"{p.server_cpu_ms_per_plan:>11.2f} {p.client_cpu_pct:>11.0f} "
                f"{p.host_busy_pct:>10.0f}"
            )
    if fan_rows:
        print()
        print(
            f"fan-out: {args.watchers} watchers on {args.fanout_channels} connections, "
            f"{args.events} events per row; burst = back to back, paced = {args.rate:g} events/s"
        )
        header = (
            f"{'target':<9} {'mode':<5} {'deliveries/s':>12} {'lag p50 ms':>10} "
            f"{'lag p99 ms':>10} {'lag max ms':>10} {'msg B':>6} {'srv CPU%':>9} "
            f"{'client CPU%':>11} {'host busy%':>10}"
        )
        print(header)
        print("-" * len(header))
        for f in sorted(fan_rows, key=lambda r: (r.target != "baseline", r.mode)):
            print(
                f"{f.target:<9} {f.mode:<5} {f.deliveries_per_second:>12.0f} "
                f"{f.lag_p50_ms:>10.1f} {f.lag_p99_ms:>10.1f} {f.lag_max_ms:>10.1f} "
                f"{f.message_bytes:>6} {f.server_cpu_pct:>9.0f} {f.client_cpu_pct:>11.0f} "
                f"{f.host_busy_pct:>10.0f}"
            )
        print()

        def find(target: str, mode: str) -> FanoutRow | None:
            return next((r for r in fan_rows if r.target == target and r.mode == mode), None)

        for mode in ("burst", "paced"):
            mine, base = find("interlock", mode), find("baseline", mode)
            if not (mine and base):
                continue
            pct = 100 * mine.deliveries_per_second / base.deliveries_per_second
            lag = mine.lag_p99_ms / base.lag_p99_ms if base.lag_p99_ms > 0 else float("nan")
            ratios[mode] = {"deliveries_pct_of_baseline": pct, "lag_p99_x_baseline": lag}
            print(
                f"interlock vs baseline, {mode}: deliveries/s {pct:.0f}% of the baseline; "
                f"p99 lag {mine.lag_p99_ms:.1f} ms vs {base.lag_p99_ms:.1f} ms ({lag:.1f}x)"
            )
    return {
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "plans": [asdict(p) for p in plan_rows],
        "fanout": [asdict(f) for f in fan_rows],
        "ratios": ratios,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    try:
        import uvloop  # noqa: F401

        default_loop = "uvloop"
    except ImportError:
        default_loop = "asyncio"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plans", type=int, default=200, help="plans per concurrency level (200)")
    p.add_argument(
        "--concurrency",
        type=lambda s: sorted({int(x) for x in s.split(",")}),
        default=[1, 8, 64],
        help="plans in flight, comma-separated (default 1,8,64)",
    )
    p.add_argument("--watchers", type=int, default=1000, help="WatchEvents streams (1000)")
    p.add_argument("--events", type=int, default=100, help="events per fan-out row (100)")
    p.add_argument(
        "--rate", type=float, default=5.0, help="events per second of the paced rows (5)"
    )
    p.add_argument(
        "--fanout-channels", type=int, default=10, help="connections the watchers share (10)"
    )
    p.add_argument(
        "--parts",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["plans", "fanout"],
        help="plans, fanout or both (default plans,fanout)",
    )
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=default_loop)
    p.add_argument("--no-fsync", action="store_true", help="run Interlock with fsync=False")
    p.add_argument("--policy-dir", default=str(REPO / "policies"))
    p.add_argument("--data-root", default=None, help="where temporary data dirs go ($TMPDIR)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if set(args.parts) - {"plans", "fanout"} or not args.parts:
        p.error("--parts: choose from plans, fanout")
    if min(args.concurrency) < 1 or args.plans < 1 or args.watchers < 1 or args.events < 1:
        p.error("--concurrency, --plans, --watchers and --events must be >= 1")
    if args.rate <= 0 or args.fanout_channels < 1:
        p.error("--rate must be positive, --fanout-channels >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data_root:
        Path(args.data_root).mkdir(parents=True, exist_ok=True)
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    try:
        plan_rows, fan_rows = asyncio.run(bench(args))
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(
            f"\nBENCHMARK FAILED: a call failed: {exc.code().name}: {exc.details()}",
            file=sys.stderr,
        )
        return 1
    out = report(plan_rows, fan_rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
