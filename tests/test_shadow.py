"""Shadow evaluation: a candidate set beside the active one, on live traffic.

A real server answers real calls while a candidate folder is shadowed: the
answers stay the active set's, the candidate's disagreements are counted and
recorded, promote swaps the candidate in through the reload path, and the
shadow survives a SIGKILL and holds across replicas sharing PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
from interlock.audit import POLICY_CHANGES
from interlock.policy.bundle import PolicySet, read_dir
from interlock.v1 import control_plane_pb2_grpc, policy_service_pb2_grpc, types_pb2
from interlock.v1 import policy_service_pb2 as ppb

from tests.conftest import StartServer
from tests.helpers.calls import details, tool_call
from tests.helpers.postgres import PostgresCluster, pg_bindir
from tests.helpers.process import ServerProcess
from tests.helpers.stored import Stored

ALLOW, DRY_RUN, MOCK, LIVE = (
    types_pb2.VERDICT_ALLOW,
    types_pb2.EXECUTION_MODE_DRY_RUN,
    types_pb2.EXECUTION_MODE_MOCK,
    types_pb2.EXECUTION_MODE_LIVE,
)
LOW_DRY_RUN = "  LOW:\n    dry_run: 0.5\n"
"""The shipped LOW-risk DRY_RUN threshold; the candidates raise it to 0.65."""
CALLS = 120
"""Calls of the load test, half at 0.6 (DRY_RUN now, MOCK under the candidate)."""


def candidate(policy_dir: Path, target: Path, old: str = LOW_DRY_RUN, new: str = "") -> Path:
    """A copy of the policy folder with one edit to config/data.yaml (by
    default: LOW-risk calls need 0.65 for DRY_RUN instead of 0.5)."""
    shutil.copytree(policy_dir, target)
    cfg = target / "interlock/config/data.yaml"
    text = cfg.read_text()
    assert text.count(old) == 1
    cfg.write_text(text.replace(old, new or "  LOW:\n    dry_run: 0.65\n"))
    return target


def start_request(folder: Path, sample: float = 1.0) -> ppb.StartShadowRequest:
    request = ppb.StartShadowRequest(sample=sample)
    request.policy_set.files.update(read_dir(folder))
    return request


def revision_of(folder: Path) -> str:
    return PolicySet.from_dir(folder).revision


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    """Wait for a condition (a bound that proves no hang, not a timing)."""
    try:
        async with asyncio.timeout(seconds):
            while not await check():  # noqa: ASYNC110 - polling a server, not a local flag
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:g} s: {what}") from None


def pair(t: ppb.ReplayTransition) -> tuple[tuple[int, int], tuple[int, int]]:
    return (t.before.verdict, t.before.mode), (t.after.verdict, t.after.mode)


async def load(cp: Any, n: int = CALLS) -> list[types_pb2.Decision]:
    """n concurrent calls: vision_inspect by agent1, alternately at 0.6 and 0.9."""

    async def one(i: int) -> types_pb2.Decision:
        confidence = 0.6 if i % 2 == 0 else 0.9
        return (await cp.RequestToolCall(tool_call(confidence=confidence))).decision

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_shadow_counts_disagreements_under_load_while_answers_stay_the_active_sets(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server(metrics_listen="127.0.0.1:0")
    active = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    folder = candidate(policy_dir, tmp_path / "candidate")
    started = await s.policy.StartShadow(start_request(folder))
    assert started.shadow.state == ppb.SHADOW_STATE_RUNNING
    assert started.shadow.candidate_revision == revision_of(folder)
    assert started.shadow.active_revision == active

    decisions = await load(s.cp)

    # The answers are the active set's: 0.6 is DRY_RUN (the candidate says MOCK).
    low = [d for d in decisions if d.confidence == pytest.approx(0.6)]
    assert len(low) == CALLS // 2
    assert {(d.verdict, d.mode) for d in low} == {(ALLOW, DRY_RUN)}
    assert {d.policy_revision for d in decisions} == {active}
    by_id = {d.decision_id: d for d in decisions}
    assert len(by_id) == CALLS

    async def counted() -> bool:
        st = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
        return st.report.decisions + st.dropped == CALLS

    await until(counted, "every sampled decision evaluated")
    status = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert status.dropped == 0 and status.report.failures == 0
    assert status.report.decisions == CALLS
    assert status.disagreements == CALLS // 2
    assert [(r.replica, r.evaluated) for r in status.replicas] == [(s.server.replica_id, CALLS)]
    transitions = {pair(t): t for t in status.report.transitions}
    narrowed = transitions[((ALLOW, DRY_RUN), (ALLOW, MOCK))]
    assert narrowed.change == ppb.REPLAY_CHANGE_NARROWS and narrowed.count == CALLS // 2
    assert dict(narrowed.by_agent) == {"agent1": CALLS // 2}
    assert dict(narrowed.by_tool) == {"vision_inspect": CALLS // 2}
    assert sum(t.count for t in status.report.transitions) == CALLS
    assert status.report.narrowing == CALLS // 2 and status.report.widening == 0
    # Each recorded disagreement is one of the answered decisions, as it was answered.
    assert narrowed.samples
    for sample in narrowed.samples:
        answered = by_id[sample.decision_id]
        assert (answered.verdict, answered.mode) == (ALLOW, DRY_RUN)
        assert sample.recorded_revision == active
        assert any("DRY_RUN" in r for r in sample.recorded_reasons)
        assert any("0.65" in r for r in sample.candidate_reasons)

    # The recorded decisions say what the callers heard.
    rows = Stored(s).execute("SELECT decision_id, verdict, mode FROM decisions").fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        d.decision_id: (
            types_pb2.Verdict.Name(d.verdict)[8:],
            types_pb2.ExecutionMode.Name(d.mode)[15:],
        )
        for d in decisions
    }

    # Metrics, with bounded labels.
    from tests.test_metrics_conventions import scrape

    samples = await asyncio.to_thread(scrape, s.server.metrics_port)
    evaluations = {
        x[0]["result"]: x[1] for x in samples["interlock_policy_shadow_evaluations_total"]
    }
    assert evaluations == {"agreed": CALLS // 2, "disagreed": CALLS // 2, "error": 0, "dropped": 0}
    [(labels, value)] = samples["interlock_policy_shadow_disagreements_total"]
    assert labels == {
        "from_verdict": "ALLOW",
        "from_mode": "DRY_RUN",
        "to_verdict": "ALLOW",
        "to_mode": "MOCK",
    }
    assert value == CALLS // 2

    # The CLI prints the same matrix, as a table and as JSON.
    argv = ["--server", f"127.0.0.1:{s.server.port}", "policy", "shadow", "status"]
    code, out = await run_cli(argv)
    assert code == 0
    assert f"shadow {started.shadow.shadow_id} RUNNING" in out
    assert "NARROWS" in out and "ALLOW DRY_RUN" in out and "ALLOW MOCK" in out
    code, out = await run_cli([*argv, "--json"])
    doc = json.loads(out)
    assert doc["disagreements"] == CALLS // 2
    assert doc["report"]["narrowing"] == CALLS // 2


async def test_a_sample_evaluates_a_share(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    folder = candidate(policy_dir, tmp_path / "candidate")
    await s.policy.StartShadow(start_request(folder, sample=0.1))
    await load(s.cp, 200)

    async def some() -> bool:
        st = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
        return st.report.decisions + st.dropped > 0

    await until(some, "a sampled decision evaluated")
    await asyncio.sleep(1)  # the rest of the queue (a count below 100 either way)
    status = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert status.shadow.sample == pytest.approx(0.1)
    assert 0 < status.report.decisions + status.dropped < 100  # ~20 of 200


async def test_promote_swaps_atomically_with_the_candidates_revision(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    old = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    folder = candidate(policy_dir, tmp_path / "candidate")
    new = revision_of(folder)
    await s.policy.StartShadow(start_request(folder, sample=0.5))
    await load(s.cp, 20)

    stop = asyncio.Event()
    lanes: list[list[types_pb2.Decision]] = [[] for _ in range(8)]

    async def traffic(lane: list[types_pb2.Decision]) -> None:
        while not stop.is_set():
            lane.append((await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision)

    workers = [asyncio.create_task(traffic(lane)) for lane in lanes]
    await asyncio.sleep(0.3)
    promoted = await s.policy.PromoteShadow(ppb.PromoteShadowRequest())
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)

    assert promoted.shadow.state == ppb.SHADOW_STATE_PROMOTED
    assert (promoted.reload.revision, promoted.reload.previous_revision) == (new, old)
    assert promoted.reload.changed
    # No call saw a mix: each answer is whole from one revision (the old one
    # DRY_RUN, the candidate MOCK), and in each lane of calls the revision
    # changes once, old before new.
    seen = [d for lane in lanes for d in lane]
    assert set(Counter((d.policy_revision, d.mode) for d in seen)) == {
        (old, DRY_RUN),
        (new, MOCK),
    }
    for lane in lanes:
        revisions = [d.policy_revision for d in lane]
        first_new = revisions.index(new)
        assert set(revisions[:first_new]) == {old} and set(revisions[first_new:]) == {new}
    status = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert status.revision == new
    # The folder holds the candidate: a restart and the file watcher keep it.
    assert revision_of(policy_dir) == new
    after = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert after.shadow.state == ppb.SHADOW_STATE_PROMOTED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.PromoteShadow(ppb.PromoteShadowRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(info.value)[0] == "NO_SHADOW"


async def test_promote_passes_the_gate_widening_is_refused_without_the_flag(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    old = (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision
    # LOW-risk calls LIVE from 0.55: the recorded 0.6 calls would now run LIVE.
    folder = candidate(policy_dir, tmp_path / "c", "    live: 0.7\n", "    live: 0.55\n")
    await s.policy.StartShadow(start_request(folder))
    await load(s.cp, 10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.PromoteShadow(ppb.PromoteShadowRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(info.value)[0] == "POLICY_WIDENS_LIVE"
    assert "ALLOW DRY_RUN -> ALLOW LIVE" in (info.value.details() or "")
    assert (await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())).revision == old
    running = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert running.shadow.state == ppb.SHADOW_STATE_RUNNING  # it keeps running
    ok = await s.policy.PromoteShadow(
        ppb.PromoteShadowRequest(accept_widening=True, reason="LOW-risk calls are fine at 0.55")
    )
    assert ok.reload.revision == revision_of(folder) and ok.reload.widening_live > 0


async def test_on_opa_the_candidates_tests_run_on_opa_and_promote_goes_through_opa(
    start_server: StartServer, opa: Any, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server(engine="opa", opa_url=opa.url)
    failing = candidate(policy_dir, tmp_path / "failing")
    (failing / "interlock/decision/extra_test.rego").write_text(
        "package interlock.decision_extra_test\n\n"
        "import data.interlock.decision\n\n"
        "test_never_passes if {\n"
        '\tdecision.main.mode == "LIVE" with input as {}\n'
        "}\n"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policy.StartShadow(start_request(failing))
    assert details(info.value)[0] == "POLICY_TESTS_FAILED"
    assert "on the opa engine" in (info.value.details() or "")

    folder = candidate(policy_dir, tmp_path / "candidate")
    await s.policy.StartShadow(start_request(folder))
    decisions = await load(s.cp, 10)
    assert {d.mode for d in decisions if d.confidence < 0.7} == {DRY_RUN}

    async def counted() -> bool:
        st = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
        return st.report.decisions == 10

    await until(counted, "10 evaluated")
    status = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert status.disagreements == 5
    promoted = await s.policy.PromoteShadow(ppb.PromoteShadowRequest())
    assert promoted.reload.revision == revision_of(folder)
    assert promoted.reload.tests_passed > 0  # the shipped tests ran on OPA
    d = (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision
    assert (d.mode, d.policy_revision) == (MOCK, revision_of(folder))


async def test_bad_candidates_load_nothing_and_a_second_shadow_is_refused(
    start_server: StartServer, policy_dir: Path, tmp_path: Path
) -> None:
    s = await start_server()
    before = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())

    async def refused(request: Any, code: grpc.StatusCode, reason: str, text: str) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await request
        assert info.value.code() == code, info.value.details()
        assert details(info.value)[0] == reason
        assert text in (info.value.details() or ""), info.value.details()

    # No shadow yet: status, promote and stop say so.
    for call in (
        s.policy.GetShadowStatus(ppb.GetShadowStatusRequest()),
        s.policy.PromoteShadow(ppb.PromoteShadowRequest()),
        s.policy.StopShadow(ppb.StopShadowRequest()),
    ):
        await refused(
            call, grpc.StatusCode.FAILED_PRECONDITION, "NO_SHADOW", "no shadow is running"
        )

    broken = candidate(policy_dir, tmp_path / "broken")
    (broken / "interlock/decision/bad.rego").write_text("package interlock.decision\n\nx := {\n")
    await refused(
        s.policy.StartShadow(start_request(broken)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "POLICY_INVALID",
        "does not compile",
    )
    failing = candidate(policy_dir, tmp_path / "failing")
    (failing / "interlock/decision/extra_test.rego").write_text(
        "package interlock.decision_extra_test\n\ntest_never_passes if {\n\t1 == 2\n}\n"
    )
    await refused(
        s.policy.StartShadow(start_request(failing)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "POLICY_TESTS_FAILED",
        "test_never_passes",
    )
    unknown = candidate(policy_dir, tmp_path / "unknown")
    catalog = unknown / "interlock/catalog/data.yaml"
    text = catalog.read_text()
    catalog.write_text(
        text.replace("compensating_tool: null", "compensating_tool: launch_rocket", 1)
    )
    await refused(
        s.policy.StartShadow(start_request(unknown)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "POLICY_INVALID",
        "'launch_rocket' is not in the catalog",
    )
    await refused(
        s.policy.StartShadow(start_request(candidate(policy_dir, tmp_path / "s"), sample=1.5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "sample",
    )
    # Nothing was loaded: no shadow, the same active set.
    await refused(
        s.policy.GetShadowStatus(ppb.GetShadowStatusRequest()),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_SHADOW",
        "no shadow is running",
    )
    after = await s.policy.GetPolicyStatus(ppb.GetPolicyStatusRequest())
    assert (after.revision, after.reloads) == (before.revision, 0)

    good = candidate(policy_dir, tmp_path / "good")
    first = await s.policy.StartShadow(start_request(good))
    await refused(
        s.policy.StartShadow(start_request(good)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SHADOW_RUNNING",
        f"shadow {first.shadow.shadow_id}",
    )
    stopped = await s.policy.StopShadow(ppb.StopShadowRequest())
    assert stopped.shadow.state == ppb.SHADOW_STATE_STOPPED
    await load(s.cp, 4)
    last = await s.policy.GetShadowStatus(ppb.GetShadowStatusRequest())
    assert last.shadow.state == ppb.SHADOW_STATE_STOPPED and last.report.decisions == 0
    again = await s.policy.StartShadow(start_request(good))
    assert again.shadow.shadow_id != first.shadow.shadow_id

    # Who started and stopped each shadow is on the audit record, as its schema says.
    from tests.test_audit import schema

    validator = jsonschema.Draft202012Validator(schema(POLICY_CHANGES))
    path = s.data_dir / POLICY_CHANGES

    async def three_lines() -> bool:
        return path.exists() and len(path.read_text().splitlines()) >= 3

    await until(three_lines, "three policy_changes.jsonl lines")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        validator.validate(line)
    assert [(x["result"], x["shadow"]["shadow_id"], x["principal"]) for x in lines] == [
        ("shadow_started", first.shadow.shadow_id, "dev"),
        ("shadow_stopped", first.shadow.shadow_id, "dev"),
        ("shadow_started", again.shadow.shadow_id, "dev"),
    ]


async def test_the_shadow_and_its_counts_survive_a_sigkill(
    policy_dir: Path, tmp_path: Path
) -> None:
    proc = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    try:
        channel = await proc.start()
        cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        policy = policy_service_pb2_grpc.PolicyServiceStub(channel)
        folder = candidate(policy_dir, tmp_path / "candidate")
        started = await policy.StartShadow(start_request(folder))
        await load(cp, 40)

        async def counted() -> bool:
            st = await policy.GetShadowStatus(ppb.GetShadowStatusRequest())
            return st.report.decisions == 40

        await until(counted, "40 evaluated")
        await proc.kill()

        channel = await proc.start()
        cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        policy = policy_service_pb2_grpc.PolicyServiceStub(channel)
        status = await policy.GetShadowStatus(ppb.GetShadowStatusRequest())
        assert status.shadow.shadow_id == started.shadow.shadow_id
        assert status.shadow.state == ppb.SHADOW_STATE_RUNNING
        assert (status.report.decisions, status.disagreements) == (40, 20)

        # It keeps evaluating after the restart, adding to the counts it had.
        await load(cp, 10)

        async def more() -> bool:
            st = await policy.GetShadowStatus(ppb.GetShadowStatusRequest())
            return st.report.decisions == 50

        await until(more, "50 evaluated")
        status = await policy.GetShadowStatus(ppb.GetShadowStatusRequest())
        assert status.disagreements == 25
    finally:
        await proc.close()


@pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL (make postgres)")
async def test_two_replicas_both_shadow_evaluate(
    cluster: PostgresCluster, policy_dir: Path, tmp_path: Path
) -> None:
    url = cluster.create_database(f"s{abs(hash(tmp_path)) % 10**8}")
    procs = [
        ServerProcess(tmp_path / f"r{i}", policy_dir, tmp_path / "logs" / f"r{i}") for i in (0, 1)
    ]
    try:
        stubs = []
        for i, proc in enumerate(procs):
            channel = await proc.start("--store", url, "--replica-id", f"r{i}")
            stubs.append(
                (
                    control_plane_pb2_grpc.ControlPlaneStub(channel),
                    policy_service_pb2_grpc.PolicyServiceStub(channel),
                )
            )
        (cp_a, policy_a), (cp_b, policy_b) = stubs
        folder = candidate(policy_dir, tmp_path / "candidate")
        await policy_a.StartShadow(start_request(folder))

        # r1 learns of the shadow from the journal and evaluates its own traffic.
        async def both_evaluate() -> bool:
            await load(cp_a, 4)
            await load(cp_b, 4)
            st = await policy_b.GetShadowStatus(ppb.GetShadowStatusRequest())
            return len([r for r in st.replicas if r.disagreements > 0]) == 2

        await until(both_evaluate, "both replicas evaluate", 60)
        a = await policy_a.GetShadowStatus(ppb.GetShadowStatusRequest())
        b = await policy_b.GetShadowStatus(ppb.GetShadowStatusRequest())
        assert {r.replica for r in a.replicas} == {"r0", "r1"}
        assert a.shadow.shadow_id == b.shadow.shadow_id
        assert all(r.evaluated >= r.disagreements > 0 for r in a.replicas)

        # Promoted on r1, the candidate becomes active on r0 too.
        promoted = await policy_b.PromoteShadow(ppb.PromoteShadowRequest())
        new = promoted.reload.revision

        async def r0_follows() -> bool:
            st = await policy_a.GetPolicyStatus(ppb.GetPolicyStatusRequest())
            return st.revision == new

        await until(r0_follows, "r0 serves the promoted revision")
        d = (await cp_a.RequestToolCall(tool_call(confidence=0.6))).decision
        assert (d.mode, d.policy_revision) == (MOCK, new)
    finally:
        for proc in procs:
            await proc.close()


async def run_cli(argv: list[str]) -> tuple[int, str]:
    """The ``interlock`` command as a user runs it (a subprocess)."""
    from tests.test_cli import run

    result = await run(*argv)
    return result.code, result.out + result.err


def test_start_flags() -> None:
    from interlock.cli.main import build_parser

    args = build_parser().parse_args(["policy", "shadow", "start", "somewhere", "--sample", "0.5"])
    assert (args.candidate, args.sample) == ("somewhere", 0.5)
