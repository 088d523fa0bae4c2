"""Shadow evaluation's cost: decisions/s with and without a shadow, in one run.

    .venv/bin/python bench/shadow.py [--seconds 5] [--concurrency 32] [--json out.json]

One ``interlock serve`` (embedded engine, SQLite, development mode) on
loopback; this script is the client (grpc.aio, N concurrent tasks on one
channel). Every call has arguments of its own, so neither the active set's
decision cache nor anything else hides an evaluation. The rows, each after a
warm-up, on the same server one after the other:

  baseline      no shadow
  shadow 0.1    a shadow of a candidate (LOW-risk DRY_RUN threshold 0.65)
                sampling 10% of the decisions
  shadow 1.0    the same, every decision
  baseline      no shadow again (the drift of the machine over the run)
  ...           --rounds times (0.1, 1.0, baseline)

Each shadow row's ratio is against the mean of the baselines either side of it. After each shadow row the
shadow's status says how many sampled decisions it evaluated and how many it
dropped (its queue was full: a shadow never slows the answer by waiting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.policy.bundle import read_dir
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, policy_service_pb2_grpc
from interlock.v1 import policy_service_pb2 as ppb

REPO = Path(__file__).resolve().parent.parent
INTERLOCK = Path(sys.executable).parent / "interlock"
LOW_DRY_RUN = "  LOW:\n    dry_run: 0.5\n"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_candidate(policy_dir: Path, target: Path) -> Path:
    shutil.copytree(policy_dir, target)
    cfg = target / "interlock/config/data.yaml"
    text = cfg.read_text()
    if text.count(LOW_DRY_RUN) != 1:
        raise SystemExit(f"{cfg}: the LOW-risk DRY_RUN threshold is not the shipped 0.5")
    cfg.write_text(text.replace(LOW_DRY_RUN, "  LOW:\n    dry_run: 0.65\n"))
    return target


async def wait_serving(channel: grpc.aio.Channel, proc: subprocess.Popen[bytes]) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"interlock serve exited with {proc.returncode}")
        with contextlib.suppress(grpc.aio.AioRpcError):
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("interlock serve did not become SERVING within 60 s")


async def measure(
    cp: control_plane_pb2_grpc.ControlPlaneStub,
    counter: itertools.count[int],
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
) -> float:
    """Decisions/s over the window (calls completed inside it)."""
    done = 0
    measuring = False
    stop_at = time.monotonic() + warmup + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            n = next(counter)
            req = pb.RequestToolCallRequest(
                agent_id="agent1",
                tool="vision_inspect",
                confidence=0.6 if n % 2 else 0.9,
            )
            req.arguments.update({"target": f"button {n}"})
            await cp.RequestToolCall(req)
            if measuring:
                done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.monotonic() - started
    await asyncio.gather(*tasks)
    return done / elapsed


def start_server(argv: list[str], log: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def head_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="interlock-bench-shadow-"))
    policy_dir = root / "policies"
    shutil.copytree(args.policy_dir, policy_dir)
    candidate = read_dir(make_candidate(args.policy_dir, root / "candidate"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    argv = [
        str(INTERLOCK),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-listen",
        "",
        "--data-dir",
        str(root / "data"),
        "--policy-dir",
        str(policy_dir),
        "--policy-watch-interval-seconds",
        "0",
    ]
    log = (root / "serve.log").open("wb")
    proc = start_server(argv, log, env)
    rows: list[dict[str, Any]] = []
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await wait_serving(channel, proc)
        cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        policy = policy_service_pb2_grpc.PolicyServiceStub(channel)
        counter = itertools.count()
        opts = {"seconds": args.seconds, "warmup": args.warmup, "concurrency": args.concurrency}
        plan = [("baseline", 0.0)]
        for _ in range(args.rounds):
            plan += [("shadow 0.1", 0.1), ("shadow 1.0", 1.0), ("baseline", 0.0)]
        for name, sample in plan:
            if sample:
                request = ppb.StartShadowRequest(sample=sample)
                request.policy_set.files.update(candidate)
                await policy.StartShadow(request)
            rate = await measure(cp, counter, **opts)
            row: dict[str, Any] = {"row": name, "sample": sample, "decisions_per_s": rate}
            if sample:
                await asyncio.sleep(1.0)  # let the queue drain before counting
                st = await policy.GetShadowStatus(ppb.GetShadowStatusRequest())
                row.update(
                    evaluated=st.report.decisions,
                    disagreements=st.disagreements,
                    dropped=st.dropped,
                )
                await policy.StopShadow(ppb.StopShadowRequest())
            rows.append(row)
            print(f"  {name:<11} {rate:8.0f} decisions/s", file=sys.stderr, flush=True)
        await channel.close()
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    # Each shadow row against the mean of the baselines either side of it.
    baselines = [i for i, r in enumerate(rows) if not r["sample"]]
    for i, row in enumerate(rows):
        before = max(b for b in baselines if b <= i)
        after = min((b for b in baselines if b >= i), default=before)
        base = (rows[before]["decisions_per_s"] + rows[after]["decisions_per_s"]) / 2
        row["ratio"] = row["decisions_per_s"] / base if base else 0.0
    summary = {}
    for name in ("shadow 0.1", "shadow 1.0"):
        ratios = [r["ratio"] for r in rows if r["row"] == name]
        summary[name] = sum(ratios) / len(ratios)
    return {
        "commit": head_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "rows": rows,
        "mean_ratio": summary,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"shadow evaluation, commit {result['commit']}, {result['machine']}, "
        f"c={result['concurrency']}, {result['seconds']:g} s per row",
        "",
        "| row | decisions/s | x baseline | shadow evaluated | dropped | disagreements |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        extra = (
            f"{r['evaluated']} | {r['dropped']} | {r['disagreements']}"
            if r["sample"]
            else "- | - | -"
        )
        lines.append(f"| {r['row']} | {r['decisions_per_s']:.0f} | {r['ratio']:.2f} | {extra} |")
    lines.append("")
    lines.append(
        "mean x baseline (the baselines either side of each row): "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["mean_ratio"].items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per row")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each row")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    p.add_argument(
        "--rounds", type=int, default=2, help="rounds of (0.1, 1.0, baseline) after a baseline"
    )
    p.add_argument("--policy-dir", type=Path, default=REPO / "policies")
    p.add_argument("--json", type=Path, help="write the result as JSON too")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
