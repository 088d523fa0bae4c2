"""Replicas: real ``interlock serve`` processes sharing one store: a throwaway
PostgreSQL, and a SQLite file with ``store_shared`` (workers on one host).

What every replica must see the same way (docs/replicas.md): one global event
order that any replica streams and resumes, approvals resolved on another
replica, one use of an approval however many replicas it is presented to,
and the policy revision the replicas serve.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, types_pb2

from tests.conftest import SharedStore
from tests.helpers.calls import tool_call
from tests.helpers.process import ServerProcess
from tests.helpers.security import Stubs, channel, write_principals

EMAIL = {"to": ["a@example.com"], "subject": "Your refund", "body": "Done."}
APPROVE = observe_pb2.APPROVAL_RESOLUTION_APPROVE
RACE_ROUNDS = 5
"""Rounds of the approval race (send_email's rate limit of the shipped bundle allows ~8)."""


Start = Callable[..., Awaitable[list[ServerProcess]]]


@pytest.fixture
async def replicas(
    shared_store: SharedStore, tmp_path: Path, policy_dir: Path
) -> AsyncIterator[Start]:
    """Start N replicas on one new store (their own data dirs, ports and ids)."""
    started: list[ServerProcess] = []
    principals = tmp_path / "principals.yaml"
    tokens = write_principals(principals)

    async def start(n: int, policy_dirs: list[Path] | None = None) -> list[ServerProcess]:
        out = []
        for i in range(n):
            name = f"r{len(started)}"
            proc = ServerProcess(
                tmp_path / name, (policy_dirs or [policy_dir] * n)[i], tmp_path / "logs" / name
            )
            started.append(proc)
            await proc.start(
                *shared_store.argv, "--principals-file", str(principals), "--replica-id", name
            )
            proc.tokens = tokens  # type: ignore[attr-defined]
            out.append(proc)
        return out

    yield start
    for key, stubs in list(_stubs.items()):
        await stubs.channel.close()
        del _stubs[key]
    for proc in started:
        await proc.close()


_stubs: dict[tuple[str, str], Stubs] = {}


def as_(proc: ServerProcess, who: str) -> Stubs:
    """Stubs speaking as ``who`` to a replica (kept: a dropped channel closes)."""
    key = (proc.address, who)
    if key not in _stubs:
        _stubs[key] = Stubs(channel(proc.address, proc.tokens[who]))  # type: ignore[attr-defined]
    return _stubs[key]


async def decide(
    stubs: Stubs, confidence: float = 0.85, arguments: dict[str, Any] = EMAIL
) -> types_pb2.Decision:
    req = pb.RequestToolCallRequest(agent_id="mailer", tool="send_email", confidence=confidence)
    req.arguments.update(arguments)
    return (await stubs.cp.RequestToolCall(req)).decision


async def events_until(call: Any, last_seq: int) -> list[observe_pb2.Event]:
    out: list[observe_pb2.Event] = []
    async with asyncio.timeout(30):
        async for response in call:
            out.append(response.event)
            if response.event.seq >= last_seq:
                return out
    return out


async def highest_seq(stubs: Stubs) -> int:
    """The highest committed seq, by streaming everything once (a test-size log)."""
    seen = 0
    call = stubs.cp.WatchEvents(pb.WatchEventsRequest())
    try:
        while True:
            response = await asyncio.wait_for(call.read(), 2)
            seen = response.event.seq
    except TimeoutError:
        return seen
    finally:
        call.cancel()


async def test_a_watcher_sees_every_replicas_events_in_order_and_resumes_elsewhere(
    replicas: Start,
) -> None:
    a, b, c = await replicas(3)
    on_a, on_b, on_c = as_(a, "mailer"), as_(b, "alice"), as_(c, "alice")
    watch = on_b.cp.WatchEvents(pb.WatchEventsRequest())
    made = []
    for i in range(10):
        made.append(await decide(on_a if i % 2 == 0 else as_(b, "mailer"), 0.95))
    last = await highest_seq(on_a)
    seen = await events_until(watch, last)
    watch.cancel()
    seqs = [e.seq for e in seen]
    assert seqs == list(range(1, last + 1))  # gapless, in one global order
    decided = {e.decision_id for e in seen if e.kind == observe_pb2.EVENT_KIND_DECISION}
    assert {d.decision_id for d in made} <= decided  # both replicas' decisions

    # Switch to replica C half way: it resumes after the last seq seen, no gap.
    half = seqs[len(seqs) // 2]
    for _ in range(4):
        await decide(as_(c, "mailer"), 0.95)
    last = await highest_seq(on_c)
    resumed = await events_until(on_c.cp.WatchEvents(pb.WatchEventsRequest(after_seq=half)), last)
    assert [e.seq for e in resumed] == list(range(half + 1, last + 1))


async def test_an_approval_resolved_on_one_replica_unblocks_await_on_another(
    replicas: Start,
) -> None:
    a, b = await replicas(2)
    held = await decide(as_(b, "mailer"))
    assert held.verdict == types_pb2.VERDICT_PENDING_APPROVAL and held.approval_id

    async def await_on_b() -> pb.AwaitApprovalResponse:
        return await as_(b, "mailer").cp.AwaitApproval(
            pb.AwaitApprovalRequest(approval_id=held.approval_id, timeout={"seconds": 60})
        )

    waiting = asyncio.create_task(await_on_b())
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await as_(a, "alice").cp.ResolveApproval(
        pb.ResolveApprovalRequest(approval_id=held.approval_id, resolution=APPROVE, reason="ok")
    )
    async with asyncio.timeout(30):
        answer = await waiting
    assert answer.approval.state == observe_pb2.APPROVAL_STATE_APPROVED


async def test_two_replicas_racing_to_use_one_approval_exactly_one_wins(
    replicas: Start,
) -> None:
    a, b = await replicas(2)
    agents = [as_(a, "mailer"), as_(b, "mailer")]
    for i in range(RACE_ROUNDS):
        email = {**EMAIL, "subject": f"round {i}"}
        held = await decide(agents[0], arguments=email)
        assert held.approval_id, held
        await as_(a, "alice").cp.ResolveApproval(
            pb.ResolveApprovalRequest(approval_id=held.approval_id, resolution=APPROVE, reason="ok")
        )

        async def present(
            stubs: Stubs, approval_id: str = held.approval_id, email: dict[str, Any] = email
        ) -> str:
            req = pb.RequestToolCallRequest(
                agent_id="mailer", tool="send_email", confidence=0.85, approval_id=approval_id
            )
            req.arguments.update(email)
            try:
                decision = (await stubs.cp.RequestToolCall(req)).decision
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
                return "refused"
            assert decision.verdict == types_pb2.VERDICT_ALLOW
            return "allowed"

        outcomes = await asyncio.gather(*(present(s) for s in agents))
        assert sorted(outcomes) == ["allowed", "refused"]


async def test_replicas_on_different_policy_folders_are_reported_and_the_older_refuses_live(
    replicas: Start, tmp_path: Path, policy_dir: Path
) -> None:
    other = tmp_path / "other-policies"
    shutil.copytree(policy_dir, other)
    data = other / "interlock" / "config" / "data.yaml"
    doc = yaml.safe_load(data.read_text())
    doc["replica_test_marker"] = 1  # another revision of the same rules
    data.write_text(yaml.safe_dump(doc))
    a, b = await replicas(2, [policy_dir, other])

    async def agreement(proc: ServerProcess) -> str:
        async with asyncio.timeout(30):
            while True:
                health = await as_(proc, "alice").cp.GetHealth(pb.GetHealthRequest())
                found = [c.detail for c in health.components if c.name == "policy_agreement"]
                if found and "different policy revisions" in found[0]:
                    return found[0]
                await asyncio.sleep(0.2)

    on_a, on_b = await agreement(a), await agreement(b)
    folders = await asyncio.to_thread(lambda: (str(policy_dir.resolve()), str(other.resolve())))
    assert folders[0] in on_a and folders[1] in on_a
    assert "refuses LIVE" in on_a and "refuses LIVE" not in on_b  # a loaded first: older
    live_on_b = (await as_(b, "agent1").cp.RequestToolCall(tool_call())).decision
    on_older = (await as_(a, "agent1").cp.RequestToolCall(tool_call())).decision
    assert live_on_b.mode == types_pb2.EXECUTION_MODE_LIVE, live_on_b
    assert on_older.verdict == types_pb2.VERDICT_DENY
    assert "not the newest" in " ".join(on_older.reasons)
