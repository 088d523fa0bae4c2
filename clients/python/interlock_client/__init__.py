"""Interlock client library.

An asyncio client (:class:`InterlockClient`) and a blocking one
(:class:`SyncInterlockClient`) for the Interlock control plane. Both return
the server's protobuf messages (:mod:`interlock_client.v1`, the generated stubs this distribution ships) and raise
:class:`InterlockError` (status code, message, ErrorInfo reason, field
violations) when a call fails::

    from interlock_client import InterlockClient, InterlockError
    from interlock_client.v1 import types_pb2

    async with InterlockClient("127.0.0.1:50051") as client:
        decision = await client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)
        if decision.verdict == types_pb2.VERDICT_ALLOW:
            ...  # run the tool in decision.mode, then:
            await client.report_tool_result(decision.decision_id, "agent1", "SUCCEEDED")

Plans are submitted as the JSON documents planners write (either format), and
an agent's worker pulls the plan's work for its agent and reports each item::

    plan = await client.submit_plan(json.load(open("plan.json")))
    async for item in client.pull_work("agent1"):   # reconnect when it ends or fails
        ...  # run item.tool in item.mode, then:
        await client.report_work(item, "SUCCEEDED", {"receipt": "r-1"})

A held call (PENDING_APPROVAL) is approved by an operator, then run with the
approval; authentication is a token, or TLS credentials for mutual TLS::

    client = InterlockClient("host:50051", token=token, credentials=tls_credentials("ca.pem"))
    approval = await client.await_approval(decision.approval_id, wait=60)
    decision = await client.request_tool_call(..., approval_id=approval.approval_id)

``clients/python/examples/agent_worker.py`` is a complete worker and
``clients/python/examples/approver.py`` an operator approving from the terminal.
"""

from interlock_client.client import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    InterlockClient,
    PlanDocumentError,
    credentials_from_files,
    plan_request,
    tls_credentials,
)
from interlock_client.errors import InterlockError
from interlock_client.sync import SyncInterlockClient

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "InterlockClient",
    "InterlockError",
    "PlanDocumentError",
    "SyncInterlockClient",
    "credentials_from_files",
    "plan_request",
    "tls_credentials",
]
