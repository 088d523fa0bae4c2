"""Plans from the command line and the client library, worked by the example agent worker.

The server runs in-process (conftest's fixtures, a loopback port); the
``interlock`` console script and ``clients/python/examples/agent_worker.py``
run as subprocesses (asyncio.create_subprocess_exec), so this event loop keeps
serving while they work. Every wait is bounded and every subprocess is ended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import pickle
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from interlock.cli.commands import collect_plans
from interlock.v1 import control_plane_pb2, control_plane_pb2_grpc, plans_pb2, types_pb2
from interlock_client import (
    InterlockClient,
    InterlockError,
    PlanDocumentError,
    SyncInterlockClient,
    plan_request,
)

from tests.conftest import StartServer
from tests.helpers.workers import EXAMPLE, FINISHED
from tests.test_cli import INTERLOCK, REPO, Run, clean_env, field, free_port, run

WORKER = REPO / "clients" / "python" / "examples" / "agent_worker.py"


def example(plan_id: str) -> dict[str, Any]:
    return {**EXAMPLE, "plan_id": plan_id}


def mock_plan(plan_id: str, **extra: Any) -> dict[str, Any]:
    """A one-step spec plan decided MOCK (low confidence): Interlock completes it itself."""
    step: dict[str, Any] = {"step_id": "look", "tool": "vision_inspect", "agent_id": "agent1"}
    step |= {"arguments": {"target": "x"}, "confidence": 0.1}
    return {"plan_id": plan_id, "steps": [step], **extra}


def states(plan: plans_pb2.Plan) -> dict[str, str]:
    return {
        s.step_id: plans_pb2.StepState.Name(s.state).removeprefix("STEP_STATE_") for s in plan.steps
    }


def plan_state(plan: plans_pb2.Plan) -> str:
    return plans_pb2.PlanState.Name(plan.state).removeprefix("PLAN_STATE_")


@pytest.fixture
async def client(target: str) -> AsyncIterator[InterlockClient]:
    async with InterlockClient(target, timeout=10) as c:
        yield c


async def wait_plan(
    client: InterlockClient,
    plan_id: str,
    done: Callable[[plans_pb2.Plan], bool],
    within: float = 20,
) -> plans_pb2.Plan:
    """Poll the plan until ``done`` holds; fail after ``within`` seconds."""

    async def poll() -> plans_pb2.Plan:
        while True:
            plan = await client.get_plan(plan_id)
            if done(plan):
                return plan
            await asyncio.sleep(0.05)

    try:
        return await asyncio.wait_for(poll(), within)
    except TimeoutError:
        raise AssertionError(f"plan {plan_id}: {await client.get_plan(plan_id)}") from None


async def stored(
    client: InterlockClient, state: str, count: int, within: float = 10
) -> control_plane_pb2.ListPlansResponse:
    """Until ListPlans finds ``count`` plans in ``state``: it filters on the stored
    state, which can lag the one GetPlan shows by a commit."""

    async def poll() -> control_plane_pb2.ListPlansResponse:
        while True:
            page = await client.list_plans(states=[state])
            if len(page.plans) >= count:
                return page
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), within)


def finished(plan: plans_pb2.Plan) -> bool:
    return plan.state in FINISHED


def step_rows(text: str) -> dict[str, list[str]]:
    """step id -> [agent, tool, mode, state] from the steps table of the human output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("steps ("))
    assert lines[start + 1].split() == ["STEP", "AGENT", "TOOL", "MODE", "STATE", "MESSAGE"]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("  "):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:5]
    return rows


async def cli(server: str, *args: str) -> Run:
    return await run("--server", server, *args)


async def cli_with_input(server: str, data: bytes, *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(INTERLOCK),
        "--server",
        server,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Run(await proc.wait(), out.decode(), err.decode())


def write_plan(tmp_path: Path, doc: object, name: str = "plan.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


# The example worker, as a subprocess --------------------------------------------------


class WorkerProcess:
    """``agent_worker.py`` running; its log lines (stderr) are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, server: str, *args: str) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "--server",
            server,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(),
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode().rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, text: str, count: int = 1, within: float = 20) -> None:
        """Until ``count`` log lines contain ``text``."""

        def seen() -> bool:
            return sum(text in line for line in self.lines) >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(seen), within)
            except TimeoutError:
                raise AssertionError(f"no {text!r} in the worker's log:\n{self.log}") from None

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 15) -> int:
        """Signal the worker and wait for it to exit; kill it if it does not."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            await asyncio.wait_for(self._reader, within)
        return code


@contextlib.asynccontextmanager
async def worker(server: str, agent: str = "agent1", *args: str) -> AsyncIterator[WorkerProcess]:
    running = await WorkerProcess.start(server, "--agent", agent, *args)
    try:
        yield running
    finally:
        if running.proc.returncode is None:
            running.proc.kill()
            await running.proc.wait()
        running._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running._reader


# The CLI with the example worker ------------------------------------------------------


async def test_the_phase21_example_from_a_file_runs_on_the_example_worker(
    target: str, client: InterlockClient, tmp_path: Path
) -> None:
    async with worker(target, "agent1") as agent1:
        submitted = await cli(target, "plan", "submit", write_plan(tmp_path, EXAMPLE))

        assert submitted.code == 0, submitted.err
        assert field(submitted.out, "plan") == "plan_1"
        assert field(submitted.out, "state") in {"PENDING", "RUNNING"}
        rows = step_rows(submitted.out)
        assert list(rows) == ["vision_inspect", "form_fill", "button_click"]
        assert [(agent, tool) for agent, tool, *_ in rows.values()] == [
            ("agent1", "vision_inspect"),
            ("agent1", "form_fill"),
            ("agent2", "button_click"),
        ]
        assert "conflicts (0)" in submitted.out

        # button_click is irreversible: it waits for an approval, with no worker needed.
        await wait_plan(
            client,
            "plan_1",
            lambda p: (
                states(p)
                == {
                    "vision_inspect": "SUCCEEDED",
                    "form_fill": "SUCCEEDED",
                    "button_click": "AWAITING_APPROVAL",
                }
            ),
        )
        got = await cli(target, "plan", "get", "plan_1")
        as_json = await cli(target, "plan", "get", "plan_1", "--json")
        listed = await cli(target, "plan", "list")
        none_succeeded = await cli(target, "plan", "list", "--state", "succeeded")
        cancelled = await cli(target, "plan", "cancel", "plan_1", "--reason", "no approver")
        again = await cli(target, "plan", "cancel", "plan_1")
        code = await agent1.stop()

    assert got.code == 0, got.err
    assert field(got.out, "state") == "RUNNING"
    assert step_rows(got.out) == {
        "vision_inspect": ["agent1", "vision_inspect", "LIVE", "SUCCEEDED"],
        "form_fill": ["agent1", "form_fill", "DRY_RUN", "SUCCEEDED"],
        "button_click": ["agent2", "button_click", "LIVE", "AWAITING_APPROVAL"],
    }
    assert "irreversible" in got.out
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert data["state"] == "PLAN_STATE_RUNNING"
    vision = data["steps"][0]
    assert vision["result"]["outcome"] == "TOOL_OUTCOME_SUCCEEDED"
    assert vision["result"]["output"]["receipt"].startswith("rcpt_")
    assert data["steps"][1]["result"]["output"] == {"mode": "DRY_RUN", "validated": True}

    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[0].split()[:3] == ["PLAN", "STATE", "STEPS"]
    assert listed.out.splitlines()[1].split()[:2] == ["plan_1", "RUNNING"]
    assert listed.out.rstrip().endswith("1 plan")
    assert none_succeeded.code == 0 and none_succeeded.out.strip() == "0 plans"

    assert cancelled.code == 0, cancelled.err
    assert field(cancelled.out, "state") == "CANCELLED"
    assert field(cancelled.out, "message") == "no approver"
    assert step_rows(cancelled.out)["button_click"][3] == "CANCELLED"
    assert again.code == 1
    assert again.err.startswith("error: FAILED_PRECONDITION: ")
    assert "reason: PLAN_FINISHED" in again.err

    assert code == 0, agent1.log
    assert "LIVE vision_inspect" in agent1.log and "receipt rcpt_" in agent1.log
    assert "DRY_RUN form_fill" in agent1.log
    assert agent1.lines[-1].endswith("stopped")


async def test_an_invalid_plan_exits_1_listing_every_problem(target: str, tmp_path: Path) -> None:
    bad = {
        **EXAMPLE,
        "plan_id": "bad_1",
        "agent_assignments": {"agent1": ["vision_inspect", "launch_rocket"], "agent2": []},
        "confidence_scores": {"vision_inspect": 1.7, "form_fill": 0.5, "button_click": 0.9},
    }
    result = await cli(target, "plan", "submit", write_plan(tmp_path, bad))
    missing = await cli(target, "plan", "get", "bad_1")

    assert result.code == 1
    assert result.out == ""
    first, *rest = result.err.splitlines()
    assert first.startswith("error: INVALID_ARGUMENT: ")
    violations = [line.strip() for line in rest if line.startswith("  ") and ": " in line]
    fields = [line.split(": ", 1)[0] for line in violations]
    assert "phase21.confidence_scores.vision_inspect" in fields
    assert any("1.7" in line for line in violations)
    assert any("launch_rocket" in line for line in violations)
    assert any("button_click" in line for line in violations)  # assigned to no agent
    assert "  reason: INVALID_PLAN" in rest
    assert missing.code == 1
    assert missing.err.startswith("error: NOT_FOUND: ")


async def test_a_file_that_is_not_a_plan_is_a_usage_error(target: str, tmp_path: Path) -> None:
    not_json = tmp_path / "broken.json"
    not_json.write_text("{nope")
    typed = {
        "plan_id": "typed",
        "steps": [
            {"step_id": "a", "tool": "vision_inspect", "agent_id": "agent1", "confidence": "high"},
            {"step_id": "b", "tool": "vision_inspect", "agent_id": "agent1", "dependson": ["a"]},
        ],
    }

    broken = await cli(target, "plan", "submit", str(not_json))
    array = await cli(target, "plan", "submit", write_plan(tmp_path, [EXAMPLE], "list.json"))
    neither = await cli(target, "plan", "submit", write_plan(tmp_path, {"plan_id": "x"}, "x.json"))
    wrong = await cli(target, "plan", "submit", write_plan(tmp_path, typed, "typed.json"))
    absent = await cli(target, "plan", "submit", str(tmp_path / "absent.json"))
    bad_state = await cli(target, "plan", "list", "--state", "sleeping")
    nothing = await cli(target, "plan", "list", "--json")

    for result in (broken, array, neither, wrong, absent, bad_state):
        assert result.code == 2, result
        assert result.out == ""
    assert "broken.json: not valid JSON" in broken.err
    assert "must be a JSON object, not list" in array.err
    assert "plan: is neither format" in neither.err
    assert "nothing was sent" in wrong.err
    assert "  spec.steps[0].confidence: must be a number, not string" in wrong.err
    assert "  spec.steps[1].dependson: unknown field" in wrong.err
    assert "  spec.steps[1].confidence: is required" in wrong.err
    assert "cannot read" in absent.err
    assert "unknown plan state 'sleeping'" in bad_state.err
    assert nothing.code == 0, nothing.err
    assert json.loads(nothing.out)["plans"] == []


async def test_a_spec_plan_from_stdin(target: str, client: InterlockClient) -> None:
    doc = mock_plan("from_stdin", labels={"team": "billing"})
    submitted = await cli_with_input(target, json.dumps(doc).encode(), "plan", "submit", "-")
    plan = await wait_plan(client, "from_stdin", finished)
    got = await cli(target, "plan", "get", "from_stdin", "--json")

    assert submitted.code == 0, submitted.err
    assert field(submitted.out, "labels") == "team=billing"
    assert plan_state(plan) == "SUCCEEDED"
    assert got.code == 0, got.err
    data = json.loads(got.out)
    assert data["labels"] == {"team": "billing"}
    assert data["steps"][0]["arguments"] == {"target": "x"}
    assert data["steps"][0]["decision"]["mode"] == "EXECUTION_MODE_MOCK"


async def test_failing_tools_fail_the_plan(
    target: str, client: InterlockClient, tmp_path: Path
) -> None:
    async with worker(target, "agent1", "--fail", "vision_inspect") as agent1:
        submitted = await cli(target, "plan", "submit", write_plan(tmp_path, example("failing")))
        plan = await wait_plan(client, "failing", finished)
        got = await cli(target, "plan", "get", "failing")
        code = await agent1.stop(signal.SIGINT)

    assert submitted.code == 0, submitted.err
    assert plan_state(plan) == "FAILED", plan.message
    assert states(plan) == {
        "vision_inspect": "FAILED",
        "form_fill": "CANCELLED",
        "button_click": "CANCELLED",
    }
    assert plan.steps[0].result.outcome == types_pb2.TOOL_OUTCOME_FAILED
    assert plan.steps[0].result.error_message == "simulated failure of vision_inspect (--fail)"
    assert field(got.out, "state") == "FAILED"
    assert "--fail" in field(got.out, "message")
    assert code == 0, agent1.log
    assert "vision_inspect" in agent1.log and "FAILED" in agent1.log


async def test_the_worker_runs_compensations(target: str, client: InterlockClient) -> None:
    fill = {"form_id": "f1", "fields": {"name": "Ada"}}
    doc = {
        "plan_id": "undo",
        "steps": [
            {"step_id": "fill", "tool": "form_fill", "agent_id": "agent1"}
            | {"arguments": fill, "confidence": 0.95},
            {"step_id": "look", "tool": "vision_inspect", "agent_id": "agent1"}
            | {"arguments": {"target": "x"}, "confidence": 0.9, "depends_on": ["fill"]},
        ],
    }
    async with worker(target, "agent1", "--fail", "vision_inspect") as agent1:
        await client.submit_plan(doc)
        plan = await wait_plan(client, "undo", finished)
        await agent1.stop()

    assert plan_state(plan) == "ROLLED_BACK", plan.message
    assert states(plan) == {"fill": "ROLLED_BACK", "look": "FAILED", "fill.undo": "SUCCEEDED"}
    undo = next(s for s in plan.steps if s.step_id == "fill.undo")
    assert undo.tool == "form_clear"
    assert undo.result.output["undone"] == "fill.undo"
    assert "UNDO form_clear" in agent1.log


async def test_the_worker_reconnects_when_the_server_comes_and_goes(
    start_server: StartServer, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with worker(address, "agent1") as agent1:
        await agent1.wait_for_line("reconnecting in", count=2)  # nobody listens yet
        first = await start_server(listen=address, data_dir=str(tmp_path / "one"))
        async with InterlockClient(address, timeout=10) as c:
            await c.submit_plan(example("before"))
            await wait_plan(c, "before", lambda p: states(p)["form_fill"] == "SUCCEEDED")

        await first.server.stop(grace=0.5)  # ends the work stream
        await agent1.wait_for_line("the server ended the work stream")
        await start_server(listen=address, data_dir=str(tmp_path / "two"))
        async with InterlockClient(address, timeout=10) as c:
            await c.submit_plan(example("after"))
            after = await wait_plan(c, "after", lambda p: states(p)["form_fill"] == "SUCCEEDED")
        code = await agent1.stop()

    assert states(after)["vision_inspect"] == "SUCCEEDED"
    assert code == 0, agent1.log
    assert "work stream unavailable" in agent1.log


async def test_a_worker_for_an_unknown_agent_exits_1(target: str) -> None:
    async with worker(target, "nobody") as lost:
        code = await asyncio.wait_for(lost.proc.wait(), 30)
        await asyncio.wait_for(lost._reader, 10)

    assert code == 1
    assert "NOT_FOUND" in lost.log


async def test_plan_list_follows_pages_up_to_the_limit(
    target: str, client: InterlockClient
) -> None:
    for i in range(5):
        await client.submit_plan(mock_plan(f"p{i}"))
    for i in range(5):
        await wait_plan(client, f"p{i}", finished)
    await stored(client, "SUCCEEDED", 5)

    three = await cli(target, "plan", "list", "--limit", "3")
    every = await cli(target, "plan", "list", "--limit", "0", "--json")
    succeeded = await cli(target, "plan", "list", "--state", "SUCCEEDED", "--state", "failed")
    paged, more = await collect_plans(client, [], 4, page_size=2)
    whole, rest = await collect_plans(client, ["SUCCEEDED"], 0, page_size=2)

    assert three.code == 0, three.err
    assert [line.split()[0] for line in three.out.splitlines()[1:4]] == ["p0", "p1", "p2"]
    assert three.out.rstrip().endswith("3 plans (more: raise --limit)")
    assert every.code == 0 and succeeded.code == 0, every.err + succeeded.err
    assert [p["plan_id"] for p in json.loads(every.out)["plans"]] == [f"p{i}" for i in range(5)]
    assert succeeded.out.rstrip().endswith("5 plans")
    assert [p.plan_id for p in paged.plans] == ["p0", "p1", "p2", "p3"]
    assert more and paged.next_page_token
    assert [p.plan_id for p in whole.plans] == [f"p{i}" for i in range(5)]
    assert not rest and not whole.next_page_token


# The client library ---------------------------------------------------------------------


async def test_client_submits_reads_lists_and_cancels_plans(client: InterlockClient) -> None:
    plan = await client.submit_plan(EXAMPLE)

    assert plan.plan_id == "plan_1"
    assert [(s.step_id, s.agent_id) for s in plan.steps] == [
        ("vision_inspect", "agent1"),
        ("form_fill", "agent1"),
        ("button_click", "agent2"),
    ]
    assert plan.steps[0].confidence == pytest.approx(0.8)
    got = await wait_plan(client, "plan_1", lambda p: p.state == plans_pb2.PLAN_STATE_RUNNING)
    assert got.submitted_at.seconds > 0

    running = await stored(client, "RUNNING", 1)
    assert [p.plan_id for p in running.plans] == ["plan_1"]
    assert not running.next_page_token
    assert (await client.list_plans(states=[plans_pb2.PLAN_STATE_SUCCEEDED])).plans == []

    cancelled = await client.cancel_plan("plan_1", "changed my mind")

    assert cancelled.state == plans_pb2.PLAN_STATE_CANCELLED
    assert cancelled.message == "changed my mind"
    with pytest.raises(InterlockError) as again:
        await client.cancel_plan("plan_1")
    assert again.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert again.value.reason == "PLAN_FINISHED"
    with pytest.raises(InterlockError) as unknown:
        await client.get_plan("no_such_plan")
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(InterlockError) as twice:
        await client.submit_plan(EXAMPLE)
    assert twice.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(ValueError, match="unknown plan state 'asleep'"):
        await client.list_plans(states=["asleep"])


async def test_client_submits_a_spec_plan(client: InterlockClient) -> None:
    doc = mock_plan("spec_1", labels={"team": "ui", "a.b": "c"})
    doc["steps"].append(
        {
            "step_id": "again",
            "tool": "vision_inspect",
            "agent_id": "agent2",
            "arguments": {"target": "y", "region": {"x": 0, "y": 0, "width": 5, "height": 5}},
            "confidence": 0.2,
            "depends_on": ["look"],
        }
    )

    plan = await client.submit_plan(doc)
    done = await wait_plan(client, "spec_1", finished)

    assert dict(plan.labels) == {"team": "ui", "a.b": "c"}
    assert list(plan.steps[1].depends_on) == ["look"]
    assert json_format.MessageToDict(plan.steps[1].arguments)["region"]["width"] == 5
    assert done.state == plans_pb2.PLAN_STATE_SUCCEEDED


async def test_the_server_reports_what_is_wrong_with_a_plan(client: InterlockClient) -> None:
    doc = mock_plan("bad spec")  # not an id
    doc["steps"][0] |= {"tool": "launch_rocket", "confidence": 1.5, "depends_on": ["nope"]}

    with pytest.raises(InterlockError) as caught:
        await client.submit_plan(doc)

    err = caught.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_PLAN"
    fields = [f for f, _ in err.field_violations]
    assert "spec.plan_id" in fields
    assert "spec.steps[0].tool" in fields
    assert "spec.steps[0].confidence" in fields
    assert "spec.steps[0].depends_on[0]" in fields


def test_plan_documents_become_requests() -> None:
    phase21 = plan_request(EXAMPLE)
    spec = plan_request(
        {
            "plan_id": "p",
            "labels": None,
            "steps": [
                {"step_id": "a", "tool": "t", "agent_id": "x", "confidence": 1, "arguments": {}},
                {"step_id": "b", "tool": "t", "agent_id": "x", "confidence": 0.5},
            ],
        }
    )

    assert phase21.WhichOneof("plan") == "phase21"
    assert list(phase21.phase21.agent_assignments["agent1"].tools) == [
        "vision_inspect",
        "form_fill",
    ]
    assert list(phase21.phase21.execution_order) == EXAMPLE["execution_order"]
    assert dict(phase21.phase21.confidence_scores) == pytest.approx(EXAMPLE["confidence_scores"])
    assert spec.WhichOneof("plan") == "spec"
    assert spec.spec.steps[0].HasField("arguments")  # {} is an empty object ...
    assert not spec.spec.steps[1].HasField("arguments")  # ... absent is "no arguments"
    assert spec.spec.steps[0].confidence == 1.0


def test_plan_documents_the_request_cannot_carry_are_refused() -> None:
    with pytest.raises(TypeError, match="mapping"):
        plan_request([EXAMPLE])  # type: ignore[arg-type]
    with pytest.raises(PlanDocumentError) as neither:
        plan_request({"plan_id": "x", "execution": []})
    with pytest.raises(PlanDocumentError) as phase21:
        plan_request(
            {
                **EXAMPLE,
                "agent_assignments": {"agent1": "vision_inspect"},
                "confidence_scores": {"form_fill": "high", "vision_inspect": True},
                "execution_order": ["vision_inspect", 7],
                "extra": 1,
            }
        )
    with pytest.raises(PlanDocumentError) as spec:
        plan_request(
            {
                "plan_id": 12,
                "labels": {"team": 5},
                "steps": [
                    "step",
                    {"step_id": "a", "tool": "t", "agent_id": "x", "arguments": [1]},
                    {"step_id": "b", "confidence": 0.5, "arguments": {"when": object()}},
                    {"step_id": "c", "confidence": None, "depends_on": "a", "arguments": {1: 2}},
                ],
            }
        )

    assert isinstance(neither.value, ValueError)
    assert neither.value.field_violations[0][0] == "plan"
    assert dict(phase21.value.field_violations) == {
        "phase21.extra": "unknown field; expected plan_id, agent_assignments, execution_order, "
        "confidence_scores",
        "phase21.agent_assignments.agent1": "must be an array of tool names, not string",
        "phase21.execution_order[1]": "must be a string, not number",
        "phase21.confidence_scores.form_fill": "must be a number, not string",
        "phase21.confidence_scores.vision_inspect": "must be a number, not boolean",
    }
    assert dict(spec.value.field_violations) == {
        "spec.plan_id": "must be a string, not number",
        "spec.labels.team": "must be a string, not number",
        "spec.steps[0]": "must be an object, not string",
        "spec.steps[1].confidence": "is required",
        "spec.steps[1].arguments": "must be an object, not array",
        "spec.steps[2].arguments.when": "is not a JSON value (object)",
        "spec.steps[3].confidence": "is required",
        "spec.steps[3].depends_on": "must be an array, not string",
        "spec.steps[3].arguments.1": "keys must be strings",
    }
    assert "spec.plan_id: must be a string" in str(spec.value)
    copy = pickle.loads(pickle.dumps(spec.value))
    assert copy.field_violations == spec.value.field_violations


async def test_pull_work_and_report_work(client: InterlockClient) -> None:
    await client.submit_plan(EXAMPLE)
    async with contextlib.aclosing(client.pull_work("agent1")) as stream:
        vision = await asyncio.wait_for(anext(stream), 10)
        assert (vision.plan_id, vision.step_id) == ("plan_1", "vision_inspect")
        assert vision.tool == "vision_inspect"
        assert vision.mode == types_pb2.EXECUTION_MODE_LIVE
        assert vision.decision_id.startswith("dec_") and vision.work_id
        assert vision.attempt == 1 and not vision.compensation
        assert vision.deadline.seconds > 0 and vision.agent_id == "agent1"

        with pytest.raises(InterlockError) as foreign:
            await client.report_work(vision, "SUCCEEDED", agent_id="agent2")
        assert foreign.value.code == grpc.StatusCode.PERMISSION_DENIED
        result = await client.report_work(
            vision, "succeeded", {"receipt": "r-1"}, duration_seconds=0.25
        )
        assert result.outcome == types_pb2.TOOL_OUTCOME_SUCCEEDED
        assert dict(result.output) == {"receipt": "r-1"}
        assert result.duration.ToNanoseconds() == 250_000_000
        with pytest.raises(InterlockError) as twice:
            await client.report_work(vision, "SUCCEEDED", agent_id="agent1")
        assert twice.value.code == grpc.StatusCode.NOT_FOUND

        form = await asyncio.wait_for(anext(stream), 10)
        assert (form.tool, form.mode) == ("form_fill", types_pb2.EXECUTION_MODE_DRY_RUN)
        await client.report_work(form, "SUCCEEDED")

    plan = await wait_plan(
        client, "plan_1", lambda p: states(p)["button_click"] == "AWAITING_APPROVAL"
    )
    assert plan.steps[0].result.output["receipt"] == "r-1"
    with pytest.raises(ValueError, match="names no agent"):
        await client.report_work(plans_pb2.WorkItem(work_id="wk_elsewhere"), "SUCCEEDED")
    with pytest.raises(InterlockError) as unknown:
        async for _ in client.pull_work("nobody"):
            pass
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND


async def test_the_blocking_client_does_plans_and_work(target: str) -> None:
    def use() -> tuple[str, str, list[str], str]:
        with SyncInterlockClient(target, timeout=10) as c:
            c.submit_plan(example("sync_1"))
            items = c.pull_work("agent1")
            item = next(items)
            c.report_work(item, "SUCCEEDED", {"ok": True})
            items.close()
            listed = c.list_plans(states=["RUNNING"], page_size=5)
            got = c.get_plan("sync_1")
            cancelled = c.cancel_plan("sync_1", "done")
            return (
                item.tool,
                plans_pb2.StepState.Name(got.steps[0].state),
                [p.plan_id for p in listed.plans],
                plans_pb2.PlanState.Name(cancelled.state),
            )

    tool, first, listed, state = await asyncio.wait_for(asyncio.to_thread(use), 60)

    assert tool == "vision_inspect"
    assert first == "STEP_STATE_SUCCEEDED"
    assert listed == ["sync_1"]
    assert state == "PLAN_STATE_CANCELLED"


# Retries, against a fake server -----------------------------------------------------------


class FlakyPlans(control_plane_pb2_grpc.ControlPlaneServicer):
    """Answers UNAVAILABLE twice per method, then succeeds."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    async def _count(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[name] += 1
        if self.calls[name] <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")

    async def GetPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("GetPlan", context)
        return control_plane_pb2.GetPlanResponse(plan=plans_pb2.Plan(plan_id=request.plan_id))

    async def ListPlans(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("ListPlans", context)
        return control_plane_pb2.ListPlansResponse(next_page_token="more")

    async def SubmitPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("SubmitPlan", context)
        return control_plane_pb2.SubmitPlanResponse()

    async def CancelPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("CancelPlan", context)
        return control_plane_pb2.CancelPlanResponse()

    async def ReportToolResult(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("ReportToolResult", context)
        return control_plane_pb2.ReportToolResultResponse()

    async def PullWork(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._count("PullWork", context)
        yield control_plane_pb2.PullWorkResponse()


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, FlakyPlans]]:
    servicer = FlakyPlans()
    server = grpc.aio.server()
    control_plane_pb2_grpc.add_ControlPlaneServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


async def test_plan_reads_are_retried_and_writes_are_not(flaky: tuple[str, FlakyPlans]) -> None:
    target, servicer = flaky
    async with InterlockClient(target, retries=2, timeout=5) as c:
        assert (await c.get_plan("p")).plan_id == "p"
        assert (await c.list_plans()).next_page_token == "more"
        for call in (
            c.submit_plan(EXAMPLE),
            c.cancel_plan("p"),
            c.report_work(plans_pb2.WorkItem(work_id="wk_1"), "SUCCEEDED", agent_id="agent1"),
        ):
            with pytest.raises(InterlockError) as caught:
                await call
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(InterlockError) as pulled:
            await asyncio.wait_for(anext(c.pull_work("agent1")), 10)
        assert pulled.value.code == grpc.StatusCode.UNAVAILABLE

    assert servicer.calls == {
        "GetPlan": 3,
        "ListPlans": 3,
        "SubmitPlan": 1,
        "CancelPlan": 1,
        "ReportToolResult": 1,
        "PullWork": 1,
    }
