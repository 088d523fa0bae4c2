"""Policy-made approvals (issue 16, item 3), through a real server: with
``config.approvals.auto_approve`` on, the policy approves a held call of a
reversible tool itself; the approval is recorded as approved by
``policy:<revision>``, audited and streamed like a human's, and the call runs
as an approved call; never for a tool whose contract says
``human_approval: required``, below the floor or past the rate."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, policy_service_pb2, types_pb2

from tests.conftest import Running, StartServer
from tests.helpers.calls import tool_call
from tests.test_approvals import TRANSFER

pytestmark = pytest.mark.api

ALLOW = types_pb2.VERDICT_ALLOW
PENDING = types_pb2.VERDICT_PENDING_APPROVAL
LIVE = types_pb2.EXECUTION_MODE_LIVE


def _edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture
def auto(policy_dir: Path) -> Path:
    """Policy-made approvals on (floor 0.85, 2 an hour); form_fill made HIGH-risk,
    so a LIVE call of it waits for an approval (it is reversible)."""
    config = policy_dir / "interlock" / "config" / "data.yaml"
    _edit(
        config,
        lambda d: d["approvals"].update(
            {"auto_approve": {"enabled": True, "min_confidence": 0.85, "max_per_hour": 2}}
        ),
    )
    catalog = policy_dir / "interlock" / "catalog" / "data.yaml"
    _edit(catalog, lambda d: d["tools"]["form_fill"].update({"risk": "HIGH"}))
    return policy_dir


def form(n: int) -> dict[str, Any]:
    return {"form_id": f"signup-{n}", "fields": {"name": "Ada"}}


async def decide(s: Running, n: int, confidence: float = 0.9) -> Any:
    request = tool_call("agent1", "form_fill", form(n), confidence=confidence)
    return (await s.cp.RequestToolCall(request)).decision


async def revision(s: Running) -> str:
    status = await s.policy.GetPolicyStatus(policy_service_pb2.GetPolicyStatusRequest())
    return str(status.revision)


async def test_the_policy_approves_a_held_call_as_its_revision(
    start_server: StartServer, auto: Path
) -> None:
    s = await start_server()
    rev = await revision(s)
    stream = s.cp.WatchEvents(pb.WatchEventsRequest(kinds=[observe_pb2.EVENT_KIND_APPROVAL]))

    d = await decide(s, 1)
    assert (d.verdict, d.mode) == (ALLOW, LIVE)
    assert d.approval_id
    assert d.reasons[-1] == (
        f"approved by policy:{rev[:12]} (approval {d.approval_id}): form_fill is reversible "
        "and confidence 0.9 meets the policy's approval floor 0.85 (0 of 2 policy "
        "approvals in the last hour)"
    )

    # The same approval record as a human's: approved by the revision, used by the call.
    [approval] = (
        await s.cp.ListApprovals(pb.ListApprovalsRequest(states=[observe_pb2.APPROVAL_STATE_USED]))
    ).approvals
    assert approval.approval_id == d.approval_id
    assert list(approval.approved_by) == [f"policy:{rev}"]
    assert approval.resolved_by == f"policy:{rev}"
    assert approval.used_by_decision_id == d.decision_id

    # Streamed as an APPROVAL event, and on the approvals audit log.
    event = (await asyncio.wait_for(stream.read(), 30)).event
    stream.cancel()
    assert event.decision_id == d.decision_id
    assert event.payload["principal"] == f"policy:{rev}"
    assert event.payload["resolution"] == "APPROVE"
    [line] = [
        orjson.loads(x)
        for x in next(s.data_dir.rglob("approvals.jsonl")).read_text().splitlines()
        if x
    ]
    assert (line["action"], line["principal"], line["to_state"]) == (
        "APPROVED",
        f"policy:{rev}",
        "USED",
    )

    # The call runs as an approved call: its result is taken.
    await s.cp.ReportToolResult(
        pb.ReportToolResultRequest(
            decision_id=d.decision_id, agent_id="agent1", outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED
        )
    )


async def test_never_where_the_catalog_requires_a_human(
    start_server: StartServer, auto: Path
) -> None:
    s = await start_server()
    request = tool_call("ops", "transfer_funds", TRANSFER, confidence=0.99)
    d = (await s.cp.RequestToolCall(request)).decision
    assert d.verdict == PENDING
    assert not any("approved by policy" in r for r in d.reasons)
    [approval] = (await s.cp.ListApprovals(pb.ListApprovalsRequest())).approvals
    assert list(approval.approved_by) == []


async def test_not_below_the_floor_nor_past_the_rate(start_server: StartServer, auto: Path) -> None:
    s = await start_server()
    assert (await decide(s, 1, confidence=0.86)).verdict == ALLOW
    assert (await decide(s, 2, confidence=0.851)).verdict == ALLOW  # 2 of 2 used
    third = await decide(s, 3, confidence=0.99)
    assert third.verdict == PENDING  # past the rate: a human decides
    low = await decide(s, 4, confidence=0.84)  # below the floor (and LIVE's 0.85)
    assert low.verdict != ALLOW or low.mode != LIVE


async def test_off_by_default(start_server: StartServer, policy_dir: Path) -> None:
    catalog = policy_dir / "interlock" / "catalog" / "data.yaml"
    _edit(catalog, lambda d: d["tools"]["form_fill"].update({"risk": "HIGH"}))
    s = await start_server()
    assert (await decide(s, 1)).verdict == PENDING
