"""The LIVE cap across replicas: two servers sharing one store (a PostgreSQL
database, or a SQLite file as workers share it) never let more LIVE executions
run at once than the cap (issue 13, item 3; issue 14, lever 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import types_pb2

from tests.conftest import SharedStore, StartServer
from tests.helpers.calls import tool_call

pytestmark = pytest.mark.integration
LIVE = types_pb2.EXECUTION_MODE_LIVE


def set_cap(policy_dir: Path, cap: int) -> None:
    path = policy_dir / "interlock" / "config" / "data.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["switches"]["max_concurrent_live"] = cap
    path.write_text(yaml.safe_dump(doc))


async def test_two_replicas_never_exceed_the_cap_together(
    start_server: StartServer, shared_store: SharedStore, policy_dir: Path, tmp_path: Path
) -> None:
    set_cap(policy_dir, 3)
    store = shared_store.overrides
    a = await start_server(**store, data_dir=str(tmp_path / "a"), replica_id="a")
    b = await start_server(**store, data_dir=str(tmp_path / "b"), replica_id="b")

    async def call(i: int) -> types_pb2.Decision:
        replica = (a, b)[i % 2]
        request = tool_call(arguments={"target": f"screen-{i}"}, confidence=0.95)
        return (await replica.cp.RequestToolCall(request)).decision

    decided = await asyncio.gather(*(call(i) for i in range(40)))
    live = [d for d in decided if d.mode == LIVE]
    assert len(live) == 3, [types_pb2.ExecutionMode.Name(d.mode) for d in decided]
    assert await a.server.journal.live_holds.count(0) == 3

    # A result frees its slot for every replica: the next call on either goes LIVE.
    await a.cp.ReportToolResult(
        pb.ReportToolResultRequest(
            decision_id=live[0].decision_id,
            agent_id="agent1",
            outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
        )
    )
    again = await call(101)  # on replica b
    assert again.mode == LIVE
    assert (await call(102)).mode != LIVE  # full again
