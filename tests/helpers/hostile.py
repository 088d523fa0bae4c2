"""Hostile requests and a latency probe, for the request-limit and sandbox tests
(and any torture run that wants them).

:func:`repeated_enum_body` builds a serialized request whose repeated enum
field holds millions of values without building the message in Python;
:func:`send_raw` sends bytes to any unary or server-streaming method;
:func:`decision_latencies` times ordinary RequestToolCall calls, so a test
can compare them with an idle baseline it measured itself;
:func:`heavy_policy_files` is an inline policy set whose decision rule loops.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import grpc
from interlock.v1 import control_plane_pb2_grpc

from tests.helpers.calls import tool_call

HOSTILE_ENUM_FIELDS = {
    "/interlock.v1.ControlPlane/ListSignals": (1, False),
    "/interlock.v1.ControlPlane/WatchEvents": (4, True),
    "/interlock.v1.ControlPlane/ListPlans": (1, False),
}
"""Method -> (the field number of its repeated enum filter, whether it streams)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def repeated_enum_body(field_number: int, count: int, value: int = 1) -> bytes:
    """A request holding only ``field_number`` as a packed repeated enum of
    ``count`` copies of ``value`` (< 128: one byte each, so ``count`` bytes)."""
    assert 0 <= value < 128
    payload = bytes([value]) * count
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def hostile_body(method: str, size: int = 4_000_000, value: int = 1) -> bytes:
    """The finding's request for ``method``: about ``size`` bytes of enum values."""
    number, _ = HOSTILE_ENUM_FIELDS[method]
    return repeated_enum_body(number, size, value)


@dataclass
class RawOutcome:
    code: grpc.StatusCode
    details: str
    seconds: float


async def send_raw(
    channel: grpc.aio.Channel,
    method: str,
    body: bytes,
    *,
    stream: bool = False,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> RawOutcome:
    """Send ``body`` as it is to ``method``; the status and how long the answer took
    (for a stream, until it ended or its first message)."""
    started = time.perf_counter()
    try:
        if stream:
            call = channel.unary_stream(method)(body, timeout=60, metadata=metadata)
            async for _ in call:
                break
            call.cancel()
            code, details = grpc.StatusCode.OK, "a stream was opened"
        else:
            await channel.unary_unary(method)(body, timeout=60, metadata=metadata)
            code, details = grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as err:
        code, details = err.code(), err.details() or ""
    return RawOutcome(code, details, time.perf_counter() - started)


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[98]


async def decision_latencies(
    channel: grpc.aio.Channel,
    *,
    count: int | None = None,
    until: asyncio.Event | None = None,
    agent_id: str = "agent1",
) -> Latencies:
    """Time ordinary RequestToolCall calls one after another: ``count`` of them, or
    until ``until`` is set. Each must be answered ALLOW."""
    stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
    out = Latencies()
    i = 0
    while (count is not None and i < count) or (until is not None and not until.is_set()):
        request = tool_call(agent_id=agent_id, arguments={"target": f"button {i % 50}"})
        started = time.perf_counter()
        response = await stub.RequestToolCall(request, timeout=60)
        out.seconds.append(time.perf_counter() - started)
        assert response.decision.verdict, response
        i += 1
    return out


def heavy_policy_files(base: dict[str, str], steps: int = 3_000_000) -> dict[str, str]:
    """``base`` (a policy set's files) with a decision rule that first counts to
    ``steps``: a playground query that would run for a long time."""
    files = dict(base)
    files["interlock/decision/heavy.rego"] = (
        "package interlock.decision\n\n"
        f"heavy_count := count([x | some x in numbers.range(1, {steps}); x % 7 != 3])\n"
    )
    path = "interlock/decision/decision.rego"
    files[path] = files[path].replace(
        "main := ", "main := _heavy_main if heavy_count > 0\n\n_heavy_main := ", 1
    )
    return files


async def flood(
    address: str, rounds: int, token: str = "", values: tuple[int, ...] = (1, 99)
) -> list[tuple[str, RawOutcome]]:
    """Send :func:`hostile_body` to each method of :data:`HOSTILE_ENUM_FIELDS`,
    ``rounds`` times per value, one after another, on a connection of its own."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    out = []
    async with grpc.aio.insecure_channel(address) as channel:
        for _ in range(rounds):
            for method, (_, stream) in HOSTILE_ENUM_FIELDS.items():
                for value in values:
                    body = hostile_body(method, value=value)
                    outcome = await send_raw(
                        channel, method, body, stream=stream, metadata=metadata
                    )
                    out.append((method, outcome))
    return out


async def flood_from_another_process(
    address: str, rounds: int, token: str = "", *, started: asyncio.Event | None = None
) -> list[tuple[str, RawOutcome]]:
    """:func:`flood` run by a separate Python process (another client, as an
    attacker would be); its outcomes. ``started`` is set once the process has
    started up and begins to send."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.helpers.hostile",
        address,
        str(rounds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "HOSTILE_TOKEN": token},
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    if started is not None:
        started.set()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    stdout = await proc.stdout.read()
    assert await proc.wait() == 0, stdout
    return [(m, RawOutcome(grpc.StatusCode[c], d, t)) for m, c, d, t in json.loads(stdout.decode())]


def _main() -> None:
    address, rounds = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    outcomes = asyncio.run(flood(address, rounds, os.environ.get("HOSTILE_TOKEN", "")))
    print(json.dumps([(m, o.code.name, o.details, o.seconds) for m, o in outcomes]))


if __name__ == "__main__":
    _main()


__all__ = [
    "HOSTILE_ENUM_FIELDS",
    "Latencies",
    "RawOutcome",
    "decision_latencies",
    "flood",
    "flood_from_another_process",
    "heavy_policy_files",
    "hostile_body",
    "repeated_enum_body",
    "send_raw",
]
