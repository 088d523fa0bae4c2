"""What a grant costs a decision (issue 16, item 1), same run, same server.

    .venv/bin/python bench/bench_grants.py [--seconds 5] [--concurrency 16]

One ``interlock serve`` subprocess (embedded engine, SQLite, loopback, the
shipped policies with the LIVE cap lifted so every row stays in its mode)
and, in this process, grpc.aio clients keeping ``--concurrency`` calls in
flight for a measured window per row:

  plain     vision_inspect, ALLOW LIVE: no approval needed, so no grant is read
  held      send_email, PENDING_APPROVAL: each call creates an approval
  granted   send_email covered by a grant (no use limit): the grants are read,
            the policy evaluated again with input.grants, the use recorded
            under its guards with the decision

Prints calls/s, p50 and p99 per row and each row's ratio to ``plain``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, grants_pb2, grants_pb2_grpc, types_pb2

REPO = Path(__file__).resolve().parent.parent
EMAIL = {"to": ["a@example.com"], "subject": "Your refund", "body": "Done."}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(agent: str, tool: str, arguments: dict[str, Any], confidence: float) -> Any:
    r = pb.RequestToolCallRequest(agent_id=agent, tool=tool, confidence=confidence)
    r.arguments.update(arguments)
    return r


async def measure(
    stub: Any, make: Callable[[int], Any], check: Callable[[Any], None], args: argparse.Namespace
) -> tuple[float, float, float]:
    latencies: list[float] = []
    counter = iter(range(10**12))
    stop_at = 0.0
    measuring = False

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = await stub.RequestToolCall(make(next(counter)), timeout=30)
            check(response)
            if measuring and time.perf_counter() < stop_at:
                latencies.append(time.perf_counter() - started)

    stop_at = time.perf_counter() + args.warmup
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    measuring = True
    begin = time.perf_counter()
    stop_at = begin + args.seconds
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    return len(latencies) / args.seconds, statistics.median(latencies) * 1e3, p99 * 1e3


async def bench(args: argparse.Namespace, address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        grant_req = grants_pb2.CreateGrantRequest(agent_id="mailer", tool="send_email")
        grant_req.expires_at.FromNanoseconds(int((time.time() + 3600) * 1e9))

        def verdict(want: int, granted: bool) -> Callable[[Any], None]:
            def check(response: Any) -> None:
                d = response.decision
                if d.verdict != want or bool(response.grant_id) != granted:
                    raise SystemExit(f"unexpected decision: {d.verdict} {d.mode} {list(d.reasons)}")

            return check

        rows = [
            (
                "plain",
                lambda i: request("agent1", "vision_inspect", {"target": f"t{i % 100}"}, 0.9),
                verdict(types_pb2.VERDICT_ALLOW, False),
            ),
            (
                "held",
                lambda i: request("mailer", "send_email", EMAIL, 0.85),
                verdict(types_pb2.VERDICT_PENDING_APPROVAL, False),
            ),
        ]
        results = {}
        for name, make, check in rows:
            results[name] = await measure(cp, make, check, args)
        await grants_pb2_grpc.GrantServiceStub(channel).CreateGrant(grant_req)
        results["granted"] = await measure(
            cp,
            lambda i: request("mailer", "send_email", EMAIL, 0.85),
            verdict(types_pb2.VERDICT_ALLOW, True),
            args,
        )
    base = results["plain"][0]
    print(f"c={args.concurrency}, {args.seconds:g}s per row, nproc={os.cpu_count()}")
    print(f"{'row':<10}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x plain':>10}")
    for name, (rate, p50, p99) in results.items():
        print(f"{name:<10}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}{rate / base:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per row")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each row")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        shutil.copytree(REPO / "policies", policies)
        config = policies / "interlock" / "config" / "data.yaml"
        doc = yaml.safe_load(config.read_text())
        doc["switches"]["max_concurrent_live"] = 10**9
        config.write_text(yaml.safe_dump(doc))
        address = f"127.0.0.1:{free_port()}"
        interlock = str(Path(sys.executable).parent / "interlock")
        argv_ = [interlock, "serve", "--listen", address, "--metrics-listen", ""]
        argv_ += ["--data-dir", str(Path(tmp) / "data"), "--policy-dir", str(policies)]
        argv_ += ["--policy-watch-interval-seconds", "0", "--engine", "embedded"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        log = open(Path(tmp) / "server.log", "w")
        server = subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            asyncio.run(bench(args, address))
        finally:
            server.terminate()
            server.wait(10)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
