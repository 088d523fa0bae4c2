"""One plan, three languages: Go, TypeScript and Python agent workers against one
live server, a Python operator approving, a watcher following the events.

The plan (submitted by the planner principal; every process authenticates with
its own bearer token):

    look   vision_inspect  agent1  Go          LIVE
    fill   form_fill       agent1  Go          LIVE (compensated by form_clear)
    click  button_click    agent2  TypeScript  DRY_RUN
    pay    transfer_funds  ops     Python      LIVE after two approvals (alice, bob:
                                               the example operator, run twice)
    check  crm_lookup      ops     Python      LIVE, fails (--fail crm_lookup)

so the plan fails and rolls back: refund_funds undoes pay, form_clear undoes
fill. Runs on the embedded engine and on a real OPA.

Needs the Go worker (make go-worker) and the compiled TypeScript client
(make ts-build); `make test` builds both first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2, types_pb2

from tests.conftest import ROOT, StartServer
from tests.helpers.opa import OpaProcess
from tests.helpers.process import clean_env
from tests.helpers.security import Stubs, channel, write_principals
from tests.helpers.workers import FINISHED, TRANSFER, wait_plan
from tests.test_plans_api import spec, step

GO_WORKER = ROOT / "clients" / "go" / "bin" / "agent-worker"
TS_WORKER = ROOT / "clients" / "typescript" / "dist" / "examples" / "agent_worker.js"
PY_WORKER = ROOT / "clients" / "python" / "examples" / "agent_worker.py"
OPERATOR = ROOT / "clients" / "python" / "examples" / "approver.py"
FORM = {"form_id": "signup", "fields": {"email": "a@example.com"}}
LIVE, DRY_RUN = types_pb2.EXECUTION_MODE_LIVE, types_pb2.EXECUTION_MODE_DRY_RUN


def plan() -> pb.SubmitPlanRequest:
    return spec(
        "polyglot",
        step("look", "vision_inspect", "agent1", 0.9, {"target": "signup form"}),
        step("fill", "form_fill", "agent1", 0.9, FORM, ("look",)),
        step("click", "button_click", "agent2", 0.7, {"selector": "#submit"}, ("fill",)),
        step("pay", "transfer_funds", "ops", 0.9, TRANSFER, ("look",)),
        step("check", "crm_lookup", "ops", 0.9, {"record_id": "CU-12345"}, ("pay", "click")),
    )


class Proc:
    """A client process: its JSON lines on stdout, its log on stderr."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=clean_env() | {"PYTHONPATH": os.pathsep.join(sys.path)},
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            if raw.strip():
                self.lines.append(json.loads(raw))

    async def wait(self, within: float = 30) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture(params=["embedded", "opa"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    if request.param == "embedded":
        yield {}
        return
    proc = OpaProcess()
    proc.start()
    try:
        yield {"engine": "opa", "opa_url": proc.url}
    finally:
        proc.stop()


def built() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (GO_WORKER, TS_WORKER) if not p.exists()]
    assert not missing, f"missing {', '.join(missing)}: run make go-worker ts-build"


async def test_one_plan_across_go_typescript_and_python(
    start_server: StartServer, tmp_path: Path, engine: dict[str, Any]
) -> None:
    built()
    tokens = write_principals(tmp_path / "principals.yaml")
    for who, token in tokens.items():
        (tmp_path / f"{who}.token").write_text(token)
    s = await start_server(principals_file=str(tmp_path / "principals.yaml"), **engine)
    target = f"127.0.0.1:{s.server.port}"

    def auth(who: str) -> list[str]:
        return ["--target", target, "--token-file", str(tmp_path / f"{who}.token")]

    procs = [
        Proc("go-agent1", [str(GO_WORKER), "--agent", "agent1", *auth("agent1")], tmp_path),
        Proc("ts-agent2", ["node", str(TS_WORKER), "--agent", "agent2", *auth("agent2")], tmp_path),
        Proc(
            "py-ops",
            [
                sys.executable,
                str(PY_WORKER),
                "--agent",
                "ops",
                "--fail",
                "crm_lookup",
                *auth("ops"),
            ],
            tmp_path,
        ),
    ]
    operators = [
        Proc(
            f"operator-{who}",
            [
                sys.executable,
                str(OPERATOR),
                "--server",
                target,
                "--token-file",
                str(tmp_path / f"{who}.token"),
                "--plan",
                "polyglot",
                "--yes",
                "--count",
                "1",
            ],
            tmp_path,
        )
        for who in ("alice", "bob")
    ]
    events: list[observe_pb2.Event] = []
    try:
        for p in procs + operators:
            await p.start()
        async with (
            channel(target, tokens["root"]) as watch_ch,
            channel(target, tokens["planner"]) as plan_ch,
        ):
            watcher = Stubs(watch_ch).cp.WatchEvents(pb.WatchEventsRequest(plan_id="polyglot"))

            async def follow() -> None:
                async for response in watcher:
                    events.append(response.event)
                    if response.event.kind == observe_pb2.EVENT_KIND_PLAN_FINISHED:
                        return

            following = asyncio.create_task(follow())
            await asyncio.sleep(1.0)  # the workers and operators connect
            await Stubs(plan_ch).cp.SubmitPlan(plan())
            final = await wait_plan(Stubs(plan_ch).cp, "polyglot", FINISHED, within=60)
            await asyncio.wait_for(following, 10)
            for op in operators:
                assert await op.wait() == 0, op.log()
            approvals = (
                await Stubs(plan_ch).cp.ListApprovals(
                    pb.ListApprovalsRequest(
                        plan_id="polyglot", states=[observe_pb2.APPROVAL_STATE_USED]
                    )
                )
            ).approvals
    except BaseException:
        for p in procs + operators:
            print(f"--- {p.name}\n{p.log()}")
        raise
    finally:
        for p in procs + operators:
            await p.stop()

    # The plan failed at check and rolled back what ran LIVE.
    assert final.state == plans_pb2.PLAN_STATE_ROLLED_BACK, final.message
    steps = {x.step_id: x for x in final.steps}
    modes = {k: v.decision.mode for k, v in steps.items() if not k.endswith(".undo")}
    assert modes == {"look": LIVE, "fill": LIVE, "click": DRY_RUN, "pay": LIVE, "check": LIVE}
    states = {k: plans_pb2.StepState.Name(v.state) for k, v in steps.items()}
    assert states == {
        "look": "STEP_STATE_ROLLED_BACK",
        "fill": "STEP_STATE_ROLLED_BACK",
        "click": "STEP_STATE_SUCCEEDED",
        "pay": "STEP_STATE_ROLLED_BACK",
        "check": "STEP_STATE_FAILED",
        "fill.undo": "STEP_STATE_SUCCEEDED",
        "pay.undo": "STEP_STATE_SUCCEEDED",
    }
    (used,) = approvals
    assert sorted(used.approved_by) == ["alice", "bob"] and used.step_id == "pay"
    assert used.used_by_decision_id == steps["pay"].decision.decision_id

    # Each language's worker ran its own steps, in the mode granted.
    handled = {
        p.name: sorted((x["step_id"], x["mode"], x["outcome"]) for x in p.lines) for p in procs
    }
    assert handled == {
        "go-agent1": [
            ("fill", "LIVE", "SUCCEEDED"),
            ("fill.undo", "LIVE", "SUCCEEDED"),
            ("look", "LIVE", "SUCCEEDED"),
        ],
        "ts-agent2": [("click", "DRY_RUN", "SUCCEEDED")],
        "py-ops": [
            ("check", "LIVE", "FAILED"),
            ("pay", "LIVE", "SUCCEEDED"),
            ("pay.undo", "LIVE", "SUCCEEDED"),
        ],
    }
    assert sorted(json.dumps(op.lines[0]["resolution"]) for op in operators) == [
        '"APPROVE"',
        '"APPROVE"',
    ]

    # The watcher saw it all, in order.
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = {observe_pb2.EventKind.Name(e.kind).removeprefix("EVENT_KIND_") for e in events}
    assert {"DECISION", "APPROVAL", "DISPATCH", "RESULT", "ROLLBACK", "PLAN_FINISHED"} <= kinds
    actions = [e.payload["action"] for e in events if e.kind == observe_pb2.EVENT_KIND_APPROVAL]
    assert actions == ["REQUESTED", "APPROVED_BY", "APPROVED", "USED"]
    assert events[-1].payload["state"] == "ROLLED_BACK"
