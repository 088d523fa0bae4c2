"""Scenario 3: the policy engine goes away under load.

``interlock serve --engine opa`` against a real OPA. Three clients hammer
RequestToolCall with repeated inputs (answered from the decision cache while
the engine is up) and new ones; OPA is SIGKILLed (and started again), or hung
with SIGSTOP (and resumed with SIGCONT).

Guarantee (the rule docs/security.md states): once any evaluation or probe has
failed, no cached answer is served until the engine answers again; so no call
sent after the first fail-closed answer gets LIVE while the engine is down,
and no new input ever does. After the engine returns, LIVE answers resume.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
from dataclasses import dataclass, field

import grpc
import pytest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, types_pb2

from tests.helpers.calls import tool_call
from tests.helpers.opa import OpaProcess, opa_binary
from tests.helpers.process import ServerProcess
from tests.torture.figures import Figures

pytestmark = [pytest.mark.torture, pytest.mark.opa]

LIVE = types_pb2.EXECUTION_MODE_LIVE
SCENARIO = "engine outage"
CLIENTS = 3
REPEATED = [f"repeated {k}" for k in range(4)]
DOWN_SECONDS = 2.5
"""How long the engine stays down: longer than the server's engine probe interval."""


@dataclass
class Answer:
    sent: float
    received: float
    repeated: bool
    live: bool
    fail_closed: bool


@dataclass
class Hammer:
    stub: control_plane_pb2_grpc.ControlPlaneStub
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    fresh: itertools.count[int] = field(default_factory=itertools.count)

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            repeated = rng.random() < 0.7
            target = rng.choice(REPEATED) if repeated else f"new {next(self.fresh)}"
            sent = time.monotonic()
            answer = await self.stub.RequestToolCall(
                tool_call(arguments={"target": target}), timeout=10
            )
            d = answer.decision
            self.answers.append(
                Answer(sent, time.monotonic(), repeated, d.mode == LIVE, d.fail_closed)
            )
            self.answered.set()
            if d.mode == LIVE:  # done at once: the LIVE count (part of the input) stays low
                await self.stub.ReportToolResult(
                    pb.ReportToolResultRequest(
                        decision_id=d.decision_id,
                        agent_id="agent1",
                        outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
                    ),
                    timeout=10,
                )

    def live_since(self, start: float, end: float = float("inf")) -> list[Answer]:
        """LIVE answers to calls sent from ``start`` and answered before ``end``
        (a call that waited on a hung OPA and was answered by it once resumed
        got the engine's own answer)."""
        return [a for a in self.answers if a.live and a.sent >= start and a.received < end]


@pytest.mark.parametrize("fault", ["killed", "hung"])
async def test_no_cached_live_answer_once_the_engine_was_seen_down(
    serve: ServerProcess, opa: OpaProcess, fault: str, figures: Figures
) -> None:
    channel = await serve.start(
        "--engine",
        "opa",
        "--opa-url",
        opa.url,
        "--opa-timeout-seconds",
        "0.5",
        "--opa-bundle-listen",
        opa.bundle_listen,
        "--opa-bin",
        opa_binary(),
    )
    hammer = Hammer(control_plane_pb2_grpc.ControlPlaneStub(channel))
    clients = [asyncio.create_task(hammer.client(k)) for k in range(CLIENTS)]
    assert opa.proc is not None
    pid = opa.proc.pid
    try:
        await asyncio.sleep(1.0)  # the cache fills with LIVE answers
        assert any(a.live and a.repeated for a in hammer.answers), "no LIVE answer before"
        if fault == "killed":
            opa.stop()  # SIGKILL, and waits until it is gone
        else:
            os.kill(pid, signal.SIGSTOP)
        faulted = time.monotonic()
        await asyncio.sleep(DOWN_SECONDS)
        restored = time.monotonic()
        if fault == "killed":
            opa.start()  # the same port; it downloads the server's bundle again
        else:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(15):
            while not hammer.live_since(restored):  # LIVE answers again
                hammer.answered.clear()
                await hammer.answered.wait()
        back = min(a.received for a in hammer.live_since(restored)) - restored
    finally:
        if fault == "hung" and opa.proc is not None and opa.proc.poll() is None:
            os.kill(pid, signal.SIGCONT)
        hammer.stop.set()
        done = await asyncio.gather(*clients, return_exceptions=True)
    errors = [e for e in done if isinstance(e, BaseException)]
    assert not errors or not isinstance(errors[0], grpc.aio.AioRpcError), errors[0]

    down = [a for a in hammer.answers if faulted <= a.sent < restored]
    failures = [a.received for a in down if a.fail_closed]
    assert failures, "no call failed closed while the engine was down"
    first_failure = min(failures)
    live_after_failure = hammer.live_since(first_failure, restored)
    new_live = [a for a in hammer.live_since(faulted, restored) if not a.repeated]
    cached_before = hammer.live_since(faulted, first_failure)

    figures.add(SCENARIO, "LIVE answers while the engine was down", len(live_after_failure), "= 0")
    figures.add(SCENARIO, "new inputs answered LIVE while down", len(new_live), "= 0")
    figures.record(SCENARIO, f"OPA {fault}: calls while down", len(down))
    figures.record(
        SCENARIO,
        f"OPA {fault}: cached LIVE before the first failure was seen",
        f"{len(cached_before)} in {(first_failure - faulted) * 1e3:.0f} ms",
    )
    figures.record(SCENARIO, f"OPA {fault}: seconds to LIVE again once back", round(back, 2))

    assert new_live == [], "a new input was answered LIVE while the engine was down"
    assert live_after_failure == [], (
        f"{len(live_after_failure)} LIVE answer(s) to calls sent after the first fail-closed "
        f"answer, while OPA was {fault}: the cache answered for a down engine"
    )
