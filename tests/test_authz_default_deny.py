"""The RPC authorization policy denies by default, on both engines.

An input with a field missing (nothing at all, no principal id, no kind, no
method, an approval without its requester) must be refused with a reason:
the policy used to answer ``{"allow": true}`` for such inputs, because its
denials were built with sprintf from the missing values and so never fired.
"""

from __future__ import annotations

from typing import Any

import pytest
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import EmbeddedEngine
from interlock.policy.engine import AUTHZ_ENTRYPOINT, parse_authz
from interlock.policy.opa import OpaEngine

from tests.conftest import POLICIES
from tests.helpers.opa import OpaProcess, opa_binary

pytestmark = pytest.mark.opa

ADMIN = {"id": "root", "kind": "admin", "roles": ["approver"], "agents": []}
OPERATOR = {"id": "alice", "kind": "operator", "roles": ["approver"], "agents": []}
APPROVAL = {"approver_roles": ["approver"], "requested_by": "agent1", "agent_id": "agent1"}


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


PARTIAL: dict[str, dict[str, Any]] = {
    "empty": {},
    "no principal": {"method": "ListPlans", "request": {}},
    "principal without id": {
        "method": "ListPlans",
        "principal": _without(ADMIN, "id"),
        "request": {},
    },
    "principal with empty id": {
        "method": "ListPlans",
        "principal": {**ADMIN, "id": ""},
        "request": {},
    },
    "principal without kind": {
        "method": "ListPlans",
        "principal": _without(ADMIN, "kind"),
        "request": {},
    },
    "empty principal": {"method": "ReloadPolicies", "principal": {}, "request": {}},
    "no method": {"principal": ADMIN, "request": {}},
    "agent call without request": {
        "method": "PullWork",
        "principal": {"id": "agent1", "kind": "agent", "roles": [], "agents": ["agent1"]},
    },
    "resolve without approval": {
        "method": "ResolveApproval",
        "principal": OPERATOR,
        "request": {},
    },
    "resolve without requester": {
        "method": "ResolveApproval",
        "principal": OPERATOR,
        "request": {},
        "approval": _without(APPROVAL, "requested_by"),
    },
    "resolve without agent": {
        "method": "ResolveApproval",
        "principal": OPERATOR,
        "request": {},
        "approval": _without(APPROVAL, "agent_id"),
    },
}


async def test_partial_inputs_are_denied_on_both_engines(opa: OpaProcess) -> None:
    policy_set = PolicySet.from_dir(POLICIES)
    embedded = EmbeddedEngine(threads=1)
    opa_engine = OpaEngine(opa.url, timeout=5, opa_bin=opa_binary())
    try:
        local = embedded.compile_sync(policy_set)
        remote = await opa_engine.compile(policy_set)
        # The complete inputs these were cut from are allowed: the denials
        # below come from what is missing.
        for whole in (
            {"method": "ListPlans", "principal": ADMIN, "request": {}},
            {
                "method": "ResolveApproval",
                "principal": OPERATOR,
                "request": {},
                "approval": APPROVAL,
            },
        ):
            assert parse_authz(local.query_sync(AUTHZ_ENTRYPOINT, whole)) == (True, "")
            assert parse_authz(await remote.query(AUTHZ_ENTRYPOINT, whole)) == (True, "")
        for name, policy_input in PARTIAL.items():
            embedded_answer = parse_authz(local.query_sync(AUTHZ_ENTRYPOINT, policy_input))
            opa_answer = parse_authz(await remote.query(AUTHZ_ENTRYPOINT, policy_input))
            assert embedded_answer == opa_answer, (name, embedded_answer, opa_answer)
            allowed, reason = embedded_answer
            assert not allowed, f"{name}: allowed"
            assert reason, f"{name}: refused without a reason"
    finally:
        await embedded.close()
        await opa_engine.close()


async def test_empty_input_says_what_is_missing(opa: OpaProcess) -> None:
    policy_set = PolicySet.from_dir(POLICIES)
    embedded = EmbeddedEngine(threads=1)
    opa_engine = OpaEngine(opa.url, timeout=5, opa_bin=opa_binary())
    try:
        local = embedded.compile_sync(policy_set)
        remote = await opa_engine.compile(policy_set)
        for answer in (
            parse_authz(local.query_sync(AUTHZ_ENTRYPOINT, {})),
            parse_authz(await remote.query(AUTHZ_ENTRYPOINT, {})),
        ):
            assert answer[0] is False
            assert "the principal has no id" in answer[1]
            assert "the call names no method" in answer[1]
    finally:
        await embedded.close()
        await opa_engine.close()
