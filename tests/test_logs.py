"""Log records carry the request id and the decision id of the call that wrote them."""

from __future__ import annotations

import json
import logging

import pytest
from interlock.cli.serve import JsonLogFormatter
from interlock.logcontext import ContextFilter

from tests.conftest import Running
from tests.helpers.calls import tool_call


async def test_a_decision_is_logged_with_its_ids(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.DEBUG, logger="interlock.decisions"):
        response = await server.cp.RequestToolCall(
            tool_call(confidence=0.6), metadata=(("x-request-id", "req-test-1"),)
        )
        other = await server.cp.RequestToolCall(tool_call(confidence=0.6))
    decision = response.decision.decision_id
    (mine,) = [r for r in caplog.records if decision in r.getMessage()]
    assert (mine.request_id, mine.decision_id) == ("req-test-1", decision)  # type: ignore[attr-defined]
    (theirs,) = [r for r in caplog.records if other.decision.decision_id in r.getMessage()]
    assert theirs.request_id.startswith("req_")  # type: ignore[attr-defined]
    assert theirs.request_id != "req-test-1"  # type: ignore[attr-defined]

    line = json.loads(JsonLogFormatter().format(mine))
    assert line["request_id"] == "req-test-1" and line["decision_id"] == decision
    assert line["level"] == "DEBUG" and line["logger"] == "interlock.decisions"
