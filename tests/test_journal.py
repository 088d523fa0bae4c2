"""The journal: versioned migrations on both backends, a newer schema refused,
an old SQLite file adopted, and store URLs that cannot work refused at start-up."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest
from interlock.audit import AuditLog
from interlock.journal import SCHEMA_VERSION, Journal, SchemaTooNew, open_journal
from interlock.journal.schema import MIGRATIONS

from tests.conftest import POLICIES, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.postgres import PostgresCluster, pg_bindir
from tests.helpers.process import clean_env, free_port

pytestmark = pytest.mark.integration

needs_postgres = pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL: make postgres")


def journal_on(url: str, data: Path) -> Journal:
    return open_journal(url, data, AuditLog(data, fsync=False), fsync=False)


async def versions(journal: Journal) -> list[int]:
    rows = await journal.backend.fetch("SELECT version FROM schema_version ORDER BY version")
    return [int(r["version"]) for r in rows]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
async def test_a_new_database_gets_every_migration_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("cluster").create_database("fresh")
    else:
        url = ""
    for _ in range(2):  # the second start finds it done
        journal = journal_on(url, tmp_path)
        await journal.start()
        try:
            assert await versions(journal) == [m.version for m in MIGRATIONS]
            assert await journal.events.highest() == 0
        finally:
            await journal.close()


async def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    journal = journal_on("", tmp_path)
    await journal.start()
    await journal.close()
    db = sqlite3.connect(tmp_path / "interlock.db")
    db.execute(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, 'future', 0)",
        (SCHEMA_VERSION + 5,),
    )
    db.commit()
    db.close()
    journal = journal_on("", tmp_path)
    with pytest.raises(SchemaTooNew) as refused:
        await journal.start()
    assert f"version {SCHEMA_VERSION + 5}" in str(refused.value)
    assert f"up to {SCHEMA_VERSION}" in str(refused.value)


async def test_a_sqlite_file_of_0_1_is_adopted_and_migrated(tmp_path: Path) -> None:
    """A file written before versions were recorded (no schema_version, no
    plans.submitted_by, no decisions.supersedes) keeps its rows."""
    db = sqlite3.connect(tmp_path / "interlock.db")
    for statement in MIGRATIONS[0].sqlite:
        db.execute(statement)
    db.execute("ALTER TABLE plans DROP COLUMN submitted_by")
    db.execute("INSERT INTO events (time, kind, message) VALUES (1.0, 'POLICY', 'from 0.1')")
    db.commit()
    db.close()
    journal = journal_on("", tmp_path)
    await journal.start()
    try:
        assert await versions(journal) == [m.version for m in MIGRATIONS]
        assert [r["message"] for r in await journal.events.after(0)] == ["from 0.1"]
        columns = {r["name"] for r in await journal.backend.fetch("PRAGMA table_info(plans)")}
        assert "submitted_by" in columns
    finally:
        await journal.close()


async def run_serve(*args: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock",
        "serve",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--metrics-listen",
        "",
        "--policy-dir",
        str(POLICIES),
        "--data-dir",
        str(cwd / "data"),
        *args,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return await proc.wait(), err.decode()


async def test_a_malformed_store_url_is_a_usage_error(tmp_path: Path) -> None:
    code, err = await run_serve("--store", "mysql://somewhere/db", cwd=tmp_path)
    assert code == 2
    assert "store_url: must be empty (SQLite in data_dir), sqlite:PATH or postgresql://" in err


async def test_an_unreachable_postgresql_stops_the_start(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/interlock"
    code, err = await run_serve("--store", url, cwd=tmp_path)
    assert code == 1
    assert "cannot start" in err and "cannot reach PostgreSQL at" in err
    assert not (tmp_path / "data" / "interlock.db").exists()  # no half-started SQLite either


@needs_postgres
async def test_a_server_on_postgresql_keeps_its_state_across_a_restart(
    start_server: StartServer, cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("restart")
    first = await start_server(store_url=url, data_dir=str(tmp_path / "one"))
    decided = (await first.cp.RequestToolCall(tool_call())).decision
    seq = await first.server.journal.events.highest()
    await first.channel.close()
    await first.server.stop(grace=0.5)
    second = await start_server(store_url=url, data_dir=str(tmp_path / "one"))
    assert (await second.server.journal.decisions.get(decided.decision_id)) is not None
    again = (await second.cp.RequestToolCall(tool_call(confidence=0.6))).decision
    assert again.decision_id != decided.decision_id
    assert await second.server.journal.events.highest() == seq + 1
    assert second.server.journal.dialect == "postgresql"
