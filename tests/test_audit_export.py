"""`interlock audit export`: the merged trail of every replica, from the journal."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import STORE, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.postgres import PostgresCluster
from tests.helpers.process import clean_env

pytestmark = pytest.mark.integration


async def export(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock",
        "audit",
        "export",
        *args,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return await proc.wait(), out.decode()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x]


async def test_two_replicas_trails_merge_in_seq_order(
    start_server: StartServer, cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("export")
    a = await start_server(store_url=url, data_dir=str(tmp_path / "a"), replica_id="a")
    b = await start_server(store_url=url, data_dir=str(tmp_path / "b"), replica_id="b")
    for i in range(5):
        for r in (a, b):
            await r.cp.RequestToolCall(tool_call(arguments={"target": f"t{i}"}))
    for r in (a, b):
        await r.channel.close()
        await r.server.stop(grace=0.5)
    out = tmp_path / "merged"
    code, text = await export("--store", url, "--out", str(out))
    assert code == 0, text
    merged = lines(out / "tool_execution_log.jsonl")
    own = lines(tmp_path / "a" / "tool_execution_log.jsonl") + lines(
        tmp_path / "b" / "tool_execution_log.jsonl"
    )
    assert len(merged) == len(own) == 10  # a line per decision
    assert [x["seq"] for x in merged] == sorted(x["seq"] for x in own)  # type: ignore[type-var]
    assert {x["replica"] for x in merged} == {"a", "b"}
    assert "every replica's chain verifies" in text


@pytest.mark.skipif(STORE != "sqlite", reason="edits the SQLite file of an in-process server")
async def test_an_edited_line_in_the_store_fails_the_export(
    start_server: StartServer, tmp_path: Path
) -> None:
    s = await start_server()
    await s.cp.RequestToolCall(tool_call())
    await s.channel.close()
    await s.server.stop(grace=0.5)
    import sqlite3

    db = sqlite3.connect(s.data_dir / "interlock.db")
    db.execute("UPDATE audit_outbox SET line = replace(line, 'agent1', 'agent9')")
    db.commit()
    db.close()
    code, text = await export("--data-dir", str(s.data_dir), "--out", str(tmp_path / "m"))
    assert code == 1
    assert "does not continue its chain" in text
