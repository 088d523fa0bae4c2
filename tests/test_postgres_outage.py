"""PostgreSQL stopped mid-run (issue 13, item 5): the server answers
UNAVAILABLE and fails closed while the database is gone (no decision is
acknowledged that was not committed), says so in health, and recovers by
itself, without a restart, when the database returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from interlock.v1 import types_pb2

from tests.conftest import StartServer
from tests.helpers.calls import tool_call
from tests.helpers.health import NOT_SERVING, SERVING, wait_for_health
from tests.helpers.postgres import PostgresCluster, pg_bindir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL: make postgres"),
]


async def test_the_database_going_away_and_coming_back(
    start_server: StartServer, tmp_path: Path
) -> None:
    cluster = PostgresCluster()
    cluster.start()
    try:
        url = cluster.create_database("outage")
        s = await start_server(store_url=url, data_dir=str(tmp_path / "data"))
        acknowledged: list[str] = []
        for i in range(5):
            d = (await s.cp.RequestToolCall(tool_call(arguments={"target": f"t{i}"}))).decision
            acknowledged.append(d.decision_id)

        cluster.kill()  # a crash of the database, under the server's feet

        async def attempt(i: int) -> grpc.StatusCode | types_pb2.Decision:
            call = tool_call(arguments={"target": f"gone{i}"}, confidence=0.95)
            try:
                return (await s.cp.RequestToolCall(call, timeout=20)).decision
            except grpc.aio.AioRpcError as exc:
                return exc.code()

        answers = await asyncio.gather(*(attempt(i) for i in range(10)))
        refused = sum(a == grpc.StatusCode.UNAVAILABLE for a in answers)
        decided = [a for a in answers if isinstance(a, types_pb2.Decision)]
        acknowledged += [d.decision_id for d in decided]  # answered: so it was committed
        live_answers = sum(d.mode == types_pb2.EXECUTION_MODE_LIVE for d in decided)
        assert refused == 10 and live_answers == 0
        await wait_for_health(s.channel, NOT_SERVING, within=15)

        cluster.start()  # the same data, the same port
        await wait_for_health(s.channel, SERVING, within=30)
        for _ in range(50):  # the read pool may hand out one dead connection first
            try:
                back = (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("decisions did not come back without a restart")
        acknowledged.append(back.decision_id)
        for decision_id in acknowledged:  # everything acknowledged was committed
            assert await s.server.journal.decisions.get(decision_id) is not None
    finally:
        cluster.remove()
