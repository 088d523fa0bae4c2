"""``interlock approvals``, ``interlock auth token`` and the example operator,
run as real processes against a live server that authenticates with tokens."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, StartServer
from tests.helpers.security import Stubs, channel, write_principals
from tests.helpers.signals import signal_a_thread
from tests.test_approvals import EMAIL, TRANSFER, request
from tests.test_cli import INTERLOCK, clean_env, run

OPERATOR = ROOT / "clients" / "python" / "examples" / "approver.py"


async def test_operators_list_approve_and_deny_from_the_cli(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    server = f"127.0.0.1:{s.server.port}"
    async with channel(server, tokens["mailer"]) as m, channel(server, tokens["ops"]) as o:
        email = await request(Stubs(m), "mailer", "send_email", EMAIL, 0.85)
        transfer = await request(Stubs(o), "ops", "transfer_funds", TRANSFER, 0.9)
    alice = tmp_path / "alice.token"
    alice.write_text(tokens["alice"] + "\n")
    base = ("--server", server, "--token-file", str(alice))

    listed = await run("approvals", "list", *base)
    assert listed.code == 0, listed.err
    assert email.approval_id in listed.out and transfer.approval_id in listed.out
    assert "send_email" in listed.out and "0/1" in listed.out and "0/2" in listed.out

    approved = await run("approvals", "approve", email.approval_id, "--reason", "fine", *base)
    assert approved.code == 0, approved.err
    assert f"approval {email.approval_id}: APPROVED" in approved.out
    assert "approved:  alice" in approved.out

    denied = await run("approvals", "deny", transfer.approval_id, *base)
    assert denied.code == 2 and "--reason" in denied.err  # a denial needs a reason
    denied = await run("approvals", "deny", transfer.approval_id, "--reason", "no", *base)
    assert denied.code == 0, denied.err
    assert f"approval {transfer.approval_id}: DENIED" in denied.out

    again = await run("approvals", "approve", email.approval_id, *base, "--json")
    assert again.code == 1 and "FAILED_PRECONDITION" in again.err
    assert "APPROVAL_APPROVED" in again.err

    # The agent may not approve its own call: the CLI says why.
    mailer = tmp_path / "mailer.token"
    mailer.write_text(tokens["mailer"])
    email2 = dict(EMAIL, subject="Another")
    async with channel(server, tokens["mailer"]) as m:
        held = await request(Stubs(m), "mailer", "send_email", email2, 0.85)
    own = await run(
        "approvals", "approve", held.approval_id, "--server", server, "--token-file", str(mailer)
    )
    assert own.code == 1 and "PERMISSION_DENIED" in own.err and "asked for this call" in own.err

    everything = await run("approvals", "list", "--state", "approved", "denied", *base, "--json")
    states = sorted(a["state"] for a in json.loads(everything.out)["approvals"])
    assert states == ["APPROVAL_STATE_APPROVED", "APPROVAL_STATE_DENIED"]

    nobody = await run("approvals", "list", "--server", server)
    assert nobody.code == 1 and "UNAUTHENTICATED" in nobody.err


async def test_a_token_from_the_cli_works_once_added(
    start_server: StartServer, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    write_principals(path)
    made = await run("auth", "token", "--id", "dana", "--kind", "operator", "--role", "approver")
    assert made.code == 0, made.err
    token = made.out.strip()
    entry = yaml.safe_load(made.err.split("(the server re-reads it within a second):\n")[1])
    doc = yaml.safe_load(path.read_text())
    doc["tokens"].update(entry["tokens"])
    path.write_text(yaml.safe_dump(doc))
    s = await start_server(principals_file=str(path))
    listed = await run(
        "approvals", "list", "--server", f"127.0.0.1:{s.server.port}", "--token", token
    )
    assert listed.code == 0, listed.err


async def test_the_example_operator_approves_what_arrives(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    server = f"127.0.0.1:{s.server.port}"
    (tmp_path / "bob.token").write_text(tokens["bob"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(OPERATOR),
        "--server",
        server,
        "--token-file",
        str(tmp_path / "bob.token"),
        "--yes",
        "--count",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # the operator is watching: the request arrives live
    async with channel(server, tokens["mailer"]) as m:
        held = await request(Stubs(m), "mailer", "send_email", EMAIL, 0.85)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        line = json.loads(out.decode().strip())
        assert line["approval_id"] == held.approval_id and line["state"] == "APPROVED"
        run_it = await request(
            Stubs(m), "mailer", "send_email", EMAIL, 0.85, approval_id=held.approval_id
        )
        assert "approved by bob" in run_it.reasons[-1]


async def test_ctrl_c_ends_an_approvals_wait_at_once_with_130(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Even when the kernel hands the SIGINT to one of gRPC's threads.
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    server = f"127.0.0.1:{s.server.port}"
    (tmp_path / "alice.token").write_text(tokens["alice"])
    async with channel(server, tokens["mailer"]) as m:
        held = await request(Stubs(m), "mailer", "send_email", EMAIL, 0.85)
    proc = await asyncio.create_subprocess_exec(
        str(INTERLOCK),
        "approvals",
        "wait",
        held.approval_id,
        "--wait",
        "120",
        "--server",
        server,
        "--token-file",
        str(tmp_path / "alice.token"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        await asyncio.sleep(2.0)  # connected and waiting
        assert proc.returncode is None, "the wait ended by itself"
        assert signal_a_thread(proc.pid, signal.SIGINT), "the CLI runs no other thread"
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, (out + err).decode()
    assert err.decode() == ""
