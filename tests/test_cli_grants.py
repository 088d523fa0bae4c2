"""``interlock grants create|list|revoke`` as real processes against a live
server that authenticates with tokens (docs/grants.md)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import StartServer
from tests.helpers.security import Stubs, channel, write_principals
from tests.test_approvals import EMAIL
from tests.test_cli import run
from tests.test_grants import call


async def test_an_approver_creates_lists_and_revokes_grants_from_the_cli(
    start_server: StartServer, tmp_path: Path
) -> None:
    tokens = write_principals(tmp_path / "p.yaml")
    s = await start_server(principals_file=str(tmp_path / "p.yaml"))
    server = f"127.0.0.1:{s.server.port}"
    alice = tmp_path / "alice.token"
    alice.write_text(tokens["alice"] + "\n")
    base = ("--server", server, "--token-file", str(alice))

    created = await run(
        "grants", "create", "--agent", "mailer", "--tool", "send_email", "--expires-in", "2h",
        "--max-uses", "3", "--arg", "subject=Your refund", "--pattern", "body=Done\\.?",
        "--reason", "refund week", *base, "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    grant = json.loads(created.out)
    assert grant["state"] == "GRANT_STATE_ACTIVE" and grant["max_uses"] == 3
    assert grant["arguments_equal"] == {"subject": "Your refund"}

    async with channel(server, tokens["mailer"]) as m:
        covered = await call(Stubs(m), "mailer", "send_email", EMAIL)
    assert covered.grant_id == grant["grant_id"]

    listed = await run("grants", "list", "--agent", "mailer", *base)
    assert listed.code == 0, listed.err
    assert grant["grant_id"] in listed.out and "ACTIVE" in listed.out and "1/3" in listed.out

    revoked = await run("grants", "revoke", grant["grant_id"], "--reason", "done", *base)
    assert revoked.code == 0, revoked.err
    assert f"grant {grant['grant_id']}: REVOKED" in revoked.out and "by alice" in revoked.out

    # Bad input and refusals come back as the CLI's errors, with the server's words.
    past = await run(
        "grants", "create", "--agent", "mailer", "--tool", "send_email", "--expires-in", "30d",
        *base,
    )  # fmt: skip
    assert past.code == 1 and "grant_max_seconds" in past.err
    mailer = tmp_path / "mailer.token"
    mailer.write_text(tokens["mailer"])
    own = await run(
        "grants", "create", "--agent", "mailer", "--tool", "send_email", "--expires-in", "1h",
        "--server", server, "--token-file", str(mailer),
    )  # fmt: skip
    assert own.code == 1 and "PERMISSION_DENIED" in own.err
