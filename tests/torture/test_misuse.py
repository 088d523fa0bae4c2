"""Scenario 6: approval misuse, refused and on the record; an edited audit file
noticed at start-up.

A server with bearer-token principals (tests/helpers/security.py). Misuse:
presenting a consumed approval again, presenting one for other arguments, tool
or agent, approving one's own call, approving without the role, approving
twice. Then the server is stopped, one line in the middle of an audit file is
edited, and a server is started on that data directory.

Guarantee: every attempt is refused with its reason, and each one leaves one
access_denials.jsonl line and one ACCESS_DENIED event (counts equal the
attempts); the edited chain is reported in health at start-up.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from interlock.audit import TOOL_EXECUTION_LOG
from interlock.v1 import control_plane_pb2 as pb

from tests.conftest import MakeTeam
from tests.helpers.denials import denial_events, wait_for_denial_lines
from tests.test_approval_misuse import LOOKUP, approved_and_used
from tests.test_approvals import APPROVE, EMAIL, TRANSFER, reason_of, request, resolve
from tests.test_audit_startup import chain_component, edit
from tests.torture.figures import Figures

pytestmark = pytest.mark.torture

SCENARIO = "approval misuse"
MISUSE_CODES = (
    "APPROVAL_NOT_USABLE",
    "APPROVAL_MISMATCH",
    "NOT_AUTHORIZED",
    "ALREADY_APPROVED_BY_YOU",
)
REUSES = 3


async def test_every_refused_misuse_is_on_the_record(make_team: MakeTeam, figures: Figures) -> None:
    team = await make_team()
    used = await approved_and_used(team)
    held = await request(team["mailer"], "mailer", "send_email", EMAIL, 0.85)
    await resolve(team["alice"], held.approval_id, APPROVE)
    money = await request(team["ops"], "ops", "transfer_funds", TRANSFER, 0.9)
    await resolve(team["alice"], money.approval_id, APPROVE)
    other = dict(EMAIL, body="Something else entirely.")
    attempts = [
        *(
            ("APPROVAL_NOT_USABLE", request(team["mailer"], "mailer", "send_email", EMAIL, 0.85, approval_id=used))
            for _ in range(REUSES)
        ),
        ("APPROVAL_MISMATCH", request(team["mailer"], "mailer", "send_email", other, 0.85, approval_id=held.approval_id)),
        ("APPROVAL_MISMATCH", request(team["mailer"], "mailer", "crm_lookup", LOOKUP, 0.85, approval_id=held.approval_id)),
        ("APPROVAL_MISMATCH", request(team["ops"], "ops", "send_email", EMAIL, 0.85, approval_id=held.approval_id)),
        ("NOT_AUTHORIZED", resolve(team["mailer"], held.approval_id, APPROVE)),  # its own call
        ("NOT_AUTHORIZED", resolve(team["olga"], held.approval_id, APPROVE)),  # no approver role
        ("ALREADY_APPROVED_BY_YOU", resolve(team["alice"], money.approval_id, APPROVE)),
    ]  # fmt: skip
    refused = []
    for _, call in attempts:
        try:
            await call
        except grpc.aio.AioRpcError as err:
            refused.append(reason_of(err))
        else:
            refused.append("(accepted)")
    wanted = [code for code, _ in attempts]
    data = team.running.data_dir
    lines = await wait_for_denial_lines(data, len(attempts), *MISUSE_CODES)
    events = await denial_events(team["alice"].cp, len(attempts), *MISUSE_CODES)
    await team.running.channel.close()
    await team.running.server.stop(grace=0.5)

    # An audit line edited while the server was down; a server started on it.
    edit(data / TOOL_EXECUTION_LOG, 1)
    later = await make_team(tokens=team.tokens, data_dir=str(data))
    async with asyncio.timeout(10):
        while True:
            health = await later["alice"].cp.GetHealth(pb.GetHealthRequest())
            if noticed := chain_component(health)[0] == 0:
                break
            await asyncio.sleep(0.05)

    figures.record(SCENARIO, "misuse attempts", len(attempts))
    figures.record(
        SCENARIO,
        "refused with the right reason",
        sum(map(str.__eq__, refused, wanted)),
        f"= {len(attempts)}",
    )
    figures.record(SCENARIO, "access_denials.jsonl lines", len(lines), f"= {len(attempts)}")
    figures.record(SCENARIO, "ACCESS_DENIED events", len(events), f"= {len(attempts)}")
    figures.record(SCENARIO, "edited audit line reported at start-up", "yes" if noticed else "no", "yes")  # fmt: skip

    assert refused == wanted
    assert [line["code"] for line in lines] == wanted
    assert [e.payload["code"] for e in events] == wanted
    assert noticed, chain_component(health)
