"""Authentication, RPC authorization and limits, against a real server.

Bearer tokens over loopback and mutual TLS with certificates made for the
test; the authorization matrix of every RPC by every kind of principal (the
table docs/security.md documents); rate and stream limits per principal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from interlock.audit import ACCESS_DENIALS
from interlock.auth import new_token, token_hash
from interlock.server import InterlockServer
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import (
    observe_pb2,
    plans_pb2,
    policy_service_pb2,
    trust_pb2,
    trust_pb2_grpc,
    types_pb2,
)

from tests.conftest import StartServer, server_config
from tests.helpers.health import NOT_SERVING, wait_for_health
from tests.helpers.opa import OpaProcess
from tests.helpers.security import Pki, Stubs, channel, write_principals
from tests.test_approvals import EMAIL, lines, reason_of, request, rpc_error
from tests.test_audit import schema, verify
from tests.test_plans_api import spec, step

FORM = {"form_id": "signup", "fields": {"email": "a@example.com"}}

# Who may call what: "Y" allowed, "-" PERMISSION_DENIED. Agent RPCs act as agent1.
# Columns: an agent (agent1), a planner agent, an operator with the approver
# role (alice), an admin without it (root). Keep in step with docs/security.md.
MATRIX = {
    "ListTools": "YYYY",
    "RequestToolCall": "Y--Y",
    "ReportToolResult": "Y--Y",
    "SubmitPlan": "-YYY",
    "GetPlan": "YYYY",
    "ListPlans": "YYYY",
    "CancelPlan": "-YYY",
    "PullWork": "Y--Y",
    "WatchEvents": "YYYY",
    "ListApprovals": "YYYY",
    "ResolveApproval": "--Y-",
    "AwaitApproval": "YYYY",
    "GetHealth": "YYYY",
    "ListSignals": "YYYY",
    "GetPolicyStatus": "YYYY",
    "ReloadPolicies": "---Y",
    "EvaluatePolicy": "--YY",
    "GetTrust": "YYYY",
    "ResetTrust": "--YY",
}
WHO = ("agent1", "planner", "alice", "root")


def calls(s: Stubs, approval_id: str, n: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One well-formed request per RPC (n keeps ids unique across principals)."""
    cp, policy = s.cp, s.policy
    trust = trust_pb2_grpc.TrustServiceStub(s.channel)
    call = pb.RequestToolCallRequest(agent_id="agent1", tool="form_fill", confidence=0.75)
    call.arguments.update(FORM)
    tool_call = policy_service_pb2.ToolCallInput(
        agent_id="agent1", tool="form_fill", confidence=0.7
    )
    tool_call.arguments.update(FORM)
    return {
        "ListTools": lambda: cp.ListTools(pb.ListToolsRequest()),
        "RequestToolCall": lambda: cp.RequestToolCall(call),
        "ReportToolResult": lambda: cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id="dec_unknown",
                agent_id="agent1",
                outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
            )
        ),
        "SubmitPlan": lambda: cp.SubmitPlan(
            spec(f"m{n}", step("a", "form_fill", "agent1", 0.3, FORM))
        ),
        "GetPlan": lambda: cp.GetPlan(pb.GetPlanRequest(plan_id="none")),
        "ListPlans": lambda: cp.ListPlans(pb.ListPlansRequest()),
        "CancelPlan": lambda: cp.CancelPlan(pb.CancelPlanRequest(plan_id="none")),
        "PullWork": lambda: first(cp.PullWork(pb.PullWorkRequest(agent_id="agent1"))),
        "WatchEvents": lambda: first(cp.WatchEvents(pb.WatchEventsRequest())),
        "ListApprovals": lambda: cp.ListApprovals(pb.ListApprovalsRequest()),
        "ResolveApproval": lambda: cp.ResolveApproval(
            pb.ResolveApprovalRequest(
                approval_id=approval_id, resolution=observe_pb2.APPROVAL_RESOLUTION_APPROVE
            )
        ),
        "AwaitApproval": lambda: cp.AwaitApproval(
            pb.AwaitApprovalRequest(approval_id=approval_id, timeout=Duration(nanos=100_000_000))
        ),
        "GetHealth": lambda: cp.GetHealth(pb.GetHealthRequest()),
        "ListSignals": lambda: cp.ListSignals(pb.ListSignalsRequest()),
        "GetPolicyStatus": lambda: policy.GetPolicyStatus(
            policy_service_pb2.GetPolicyStatusRequest()
        ),
        "ReloadPolicies": lambda: policy.ReloadPolicies(policy_service_pb2.ReloadPoliciesRequest()),
        "EvaluatePolicy": lambda: policy.EvaluatePolicy(
            policy_service_pb2.EvaluatePolicyRequest(tool_call=tool_call)
        ),
        "GetTrust": lambda: trust.GetTrust(trust_pb2.GetTrustRequest(agent_id="agent1")),
        "ResetTrust": lambda: trust.ResetTrust(
            trust_pb2.ResetTrustRequest(agent_id="agent1", tool="form_fill", reason="checked")
        ),
    }


async def first(stream: Any, within: float = 0.3) -> None:
    """Read a stream briefly: an error is raised, a message or silence is a pass."""
    try:
        async with asyncio.timeout(within):
            await stream.read()
    except TimeoutError:
        pass
    finally:
        stream.cancel()


async def outcome(make: Callable[[], Awaitable[Any]]) -> str:
    try:
        await make()
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            return "-"
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL):
            return f"!{exc.code().name}"
    return "Y"


async def start_with_tokens(
    start_server: StartServer, tmp_path: Path, **kw: Any
) -> tuple[Any, dict[str, str]]:
    tokens = write_principals(tmp_path / "principals.yaml")
    running = await start_server(principals_file=str(tmp_path / "principals.yaml"), **kw)
    return running, tokens


async def test_authorization_matrix(start_server: StartServer, tmp_path: Path) -> None:
    s, tokens = await start_with_tokens(start_server, tmp_path)
    address = f"127.0.0.1:{s.server.port}"
    async with channel(address, tokens["mailer"]) as mailer:
        held = await request(Stubs(mailer), "mailer", "send_email", EMAIL, 0.85)
    got: dict[str, list[str]] = {rpc: [] for rpc in MATRIX}
    for n, who in enumerate(WHO):
        async with channel(address, tokens[who]) as ch:
            for rpc, make in calls(Stubs(ch), held.approval_id, n).items():
                got[rpc].append(await outcome(make))
    table = {rpc: "".join(cells) for rpc, cells in got.items()}
    assert table == MATRIX
    # Each refusal was audited (and one ResolveApproval by alice went through).
    await s.server.stop(grace=0.5)
    denied = lines(s.data_dir / "access_denials.jsonl")
    assert len(denied) == sum(row.count("-") for row in MATRIX.values())
    validator = jsonschema.Draft202012Validator(schema(ACCESS_DENIALS))
    for line in denied:
        assert not [e.message for e in validator.iter_errors(line)], line
    rc, report = await verify(s.data_dir)
    assert rc == 0, report


async def test_agents_act_only_as_themselves(start_server: StartServer, tmp_path: Path) -> None:
    s, tokens = await start_with_tokens(start_server, tmp_path)
    async with channel(f"127.0.0.1:{s.server.port}", tokens["agent1"]) as ch:
        err = await rpc_error(first(Stubs(ch).cp.PullWork(pb.PullWorkRequest(agent_id="agent2"))))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "agent1 may not act as agent agent2" in (err.details() or "")
        report = pb.ReportToolResultRequest(
            decision_id="dec_x",
            agent_id="agent2",
            work_id="w1",
            outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
        )
        err = await rpc_error(Stubs(ch).cp.ReportToolResult(report))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_missing_wrong_and_malformed_credentials(
    start_server: StartServer, tmp_path: Path
) -> None:
    s, _ = await start_with_tokens(start_server, tmp_path)
    address = f"127.0.0.1:{s.server.port}"
    for token, reason in ((None, "MISSING_CREDENTIALS"), ("ilk_not-a-real-token", "INVALID_TOKEN")):
        async with channel(address, token) as ch:
            err = await rpc_error(Stubs(ch).cp.ListTools(pb.ListToolsRequest()))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason_of(err) == reason
            # The standard health service stays open to probes.
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(address) as ch:
        err = await rpc_error(
            Stubs(ch).cp.ListTools(pb.ListToolsRequest(), metadata=(("authorization", "Basic x"),))
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in (err.details() or "")
    text = await asyncio.to_thread(
        lambda: s.server.metrics.registry.get_sample_value(
            "interlock_auth_failures_total", {"reason": "invalid_token"}
        )
    )
    assert text == 2.0


async def test_a_new_token_works_without_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    s, _ = await start_with_tokens(start_server, tmp_path)
    path = tmp_path / "principals.yaml"
    doc = yaml.safe_load(path.read_text())
    token = new_token()
    doc["tokens"][token_hash(token)] = {"id": "newbie", "kind": "operator", "roles": ["approver"]}
    await asyncio.sleep(0.01)
    path.write_text(yaml.safe_dump(doc))
    async with channel(f"127.0.0.1:{s.server.port}", token) as ch:
        deadline = time.monotonic() + 5
        while True:
            try:
                await Stubs(ch).cp.ListTools(pb.ListToolsRequest())
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                assert time.monotonic() < deadline, "the new token never worked"
                await asyncio.sleep(0.2)


def test_a_bad_principals_file_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "principals.yaml"
    path.write_text(yaml.safe_dump({"tokens": {"a" * 64: {"id": "x", "kind": "wizard"}}}))
    with pytest.raises(ValueError, match="kind: must be one of agent, operator, admin"):
        InterlockServer(server_config(tmp_path / "d", principals_file=str(path)))


async def test_dev_mode_says_so_and_names_the_dev_principal(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    s = await start_server()
    assert "INSECURE DEVELOPMENT MODE" in caplog.text
    held = await request(Stubs(s.channel), "mailer", "send_email", EMAIL, 0.85)
    approval = (await s.cp.ListApprovals(pb.ListApprovalsRequest())).approvals[0]
    assert approval.requested_by == "dev"
    resolved = await s.cp.ResolveApproval(
        pb.ResolveApprovalRequest(
            approval_id=held.approval_id, resolution=observe_pb2.APPROVAL_RESOLUTION_APPROVE
        ),
        metadata=(("x-interlock-dev-principal", "dana"),),
    )
    assert list(resolved.approval.approved_by) == ["dana"]


# Mutual TLS ---------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


async def start_tls(
    start_server: StartServer, tmp_path: Path, pki: Pki, *, mutual: bool
) -> tuple[str, dict[str, str]]:
    cert, key = pki.issue("localhost", server=True)
    tokens = write_principals(tmp_path / "principals.yaml", {"alice.ops.example": "alice"})
    s = await start_server(
        insecure=False,
        listen="127.0.0.1:0",
        principals_file=str(tmp_path / "principals.yaml"),
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_client_ca_file=str(pki.ca_file) if mutual else "",
    )
    return f"localhost:{s.server.port}", tokens


async def test_mutual_tls_identifies_the_principal(
    start_server: StartServer, tmp_path: Path, pki: Pki
) -> None:
    address, tokens = await start_tls(start_server, tmp_path, pki, mutual=True)
    alice = pki.client_credentials(pki.issue("alice.ops.example"))
    async with channel(address, None, alice) as ch:
        listed = await Stubs(ch).cp.ListApprovals(pb.ListApprovalsRequest())
        assert list(listed.approvals) == []
        # The principal is alice: an operator, so agent RPCs are refused.
        err = await rpc_error(first(Stubs(ch).cp.PullWork(pb.PullWorkRequest(agent_id="agent1"))))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "alice" in (err.details() or "")
    # A valid certificate whose name maps to nobody.
    stranger = pki.client_credentials(pki.issue("stranger.example"))
    async with channel(address, None, stranger) as ch:
        err = await rpc_error(Stubs(ch).cp.ListTools(pb.ListToolsRequest()))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason_of(err) == "UNKNOWN_CERTIFICATE"
    # A certificate plus a token: the token names the caller.
    both = pki.client_credentials(pki.issue("stranger2.example"))
    async with channel(address, tokens["agent1"], both) as ch:
        await first(Stubs(ch).cp.PullWork(pb.PullWorkRequest(agent_id="agent1")))


@pytest.mark.parametrize("case", ["expired", "other_ca", "no_certificate"])
async def test_mutual_tls_refuses_bad_client_certificates(
    start_server: StartServer, tmp_path: Path, pki: Pki, case: str
) -> None:
    address, tokens = await start_tls(start_server, tmp_path, pki, mutual=True)
    if case == "expired":
        creds = pki.client_credentials(pki.issue("alice.ops.example", expired=True))
    elif case == "other_ca":
        rogue = Pki(tmp_path / "rogue", "Rogue CA")
        creds = pki.client_credentials(rogue.issue("alice.ops.example"))
    else:
        creds = pki.client_credentials()
    # The handshake fails: the call never reaches Interlock, whatever the token.
    async with channel(address, tokens["alice"], creds) as ch:
        err = await rpc_error(Stubs(ch).cp.ListTools(pb.ListToolsRequest(), timeout=5))
        assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_with_tokens_and_an_untrusted_server(
    start_server: StartServer, tmp_path: Path, pki: Pki
) -> None:
    address, tokens = await start_tls(start_server, tmp_path, pki, mutual=False)
    async with channel(address, tokens["alice"], pki.client_credentials()) as ch:
        await Stubs(ch).cp.ListApprovals(pb.ListApprovalsRequest())
    rogue = Pki(tmp_path / "rogue", "Rogue CA")
    async with channel(address, tokens["alice"], rogue.client_credentials()) as ch:
        err = await rpc_error(Stubs(ch).cp.ListTools(pb.ListToolsRequest(), timeout=5))
        assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_secure_mode_needs_tls_and_principals(tmp_path: Path) -> None:
    from interlock.config import ConfigError

    with pytest.raises(ConfigError, match="principals_file, tls_cert_file, tls_key_file: required"):
        server_config(tmp_path, insecure=False)


# Limits ----------------------------------------------------------------------------------


async def test_a_flood_from_one_principal_does_not_starve_another(
    start_server: StartServer, tmp_path: Path
) -> None:
    s, tokens = await start_with_tokens(
        start_server, tmp_path, rate_limit_per_second=50, rate_limit_burst=20
    )
    address = f"127.0.0.1:{s.server.port}"
    async with channel(address, tokens["agent1"]) as a1, channel(address, tokens["agent2"]) as a2:
        flood = Stubs(a1)

        async def one() -> str:
            try:
                await flood.cp.ListTools(pb.ListToolsRequest())
                return "ok"
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert reason_of(exc) == "RATE_LIMITED"
                return "limited"

        flooding = asyncio.gather(*(one() for _ in range(300)))
        calm = Stubs(a2)
        calm_results = []
        for _ in range(10):
            calm_results.append((await calm.cp.ListTools(pb.ListToolsRequest())).policy_revision)
            await asyncio.sleep(0.02)
        results = await flooding
    assert results.count("limited") >= 200  # 20 at once, then ~50/s
    assert results.count("ok") >= 20
    assert len(calm_results) == 10  # every call of the other principal went through


async def test_dev_principal_is_not_rate_limited_but_authenticated_ones_are(
    start_server: StartServer, tmp_path: Path
) -> None:
    # The insecure development mode: one person on loopback, not throttled.
    dev = await start_server(rate_limit_per_second=5, rate_limit_burst=2)
    for _ in range(20):  # four times the rate, at once: no RESOURCE_EXHAUSTED
        await dev.cp.ListTools(pb.ListToolsRequest())
    # With a principals file the same limit holds every authenticated principal.
    s, tokens = await start_with_tokens(
        start_server, tmp_path, rate_limit_per_second=5, rate_limit_burst=2
    )
    async with channel(f"127.0.0.1:{s.server.port}", tokens["agent1"]) as ch:
        cp = Stubs(ch).cp
        outcomes = []
        for _ in range(20):
            try:
                await cp.ListTools(pb.ListToolsRequest())
                outcomes.append("ok")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert reason_of(exc) == "RATE_LIMITED"
                outcomes.append("limited")
    assert outcomes.count("limited") >= 10


async def test_open_streams_are_capped_per_principal(
    start_server: StartServer, tmp_path: Path
) -> None:
    s, tokens = await start_with_tokens(start_server, tmp_path, max_streams_per_principal=2)
    address = f"127.0.0.1:{s.server.port}"
    async with channel(address, tokens["agent1"]) as a1, channel(address, tokens["agent2"]) as a2:
        cp = Stubs(a1).cp
        open_ = [cp.WatchEvents(pb.WatchEventsRequest()) for _ in range(2)]
        await asyncio.sleep(0.5)  # both are being served
        third = cp.WatchEvents(pb.WatchEventsRequest())
        err = await rpc_error(third.read())
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(err) == "TOO_MANY_STREAMS"
        await first(Stubs(a2).cp.PullWork(pb.PullWorkRequest(agent_id="agent2")))  # not capped
        open_[0].cancel()
        await asyncio.sleep(0.3)
        await first(cp.WatchEvents(pb.WatchEventsRequest()))  # a slot is free again
        for stream in open_:
            stream.cancel()


async def test_size_and_length_limits(start_server: StartServer) -> None:
    s = await start_server(
        max_message_bytes=64 * 1024,
        max_plan_steps=3,
        max_argument_bytes=1024,
        max_string_length=100,
    )
    big = pb.RequestToolCallRequest(agent_id="agent1", tool="form_fill", confidence=0.7)
    big.arguments.update({"form_id": "x", "fields": {"blob": "x" * 100_000}})
    err = await rpc_error(s.cp.RequestToolCall(big))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # grpc's own message cap
    args = pb.RequestToolCallRequest(agent_id="agent1", tool="form_fill", confidence=0.7)
    args.arguments.update({"form_id": "x", "fields": {"blob": "x" * 2000}})
    err = await rpc_error(s.cp.RequestToolCall(args))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "1024" in (err.details() or "")
    steps = [step(f"s{i}", "form_fill", "agent1", 0.3, FORM) for i in range(4)]
    err = await rpc_error(s.cp.SubmitPlan(spec("too_long", *steps)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(s.cp.CancelPlan(pb.CancelPlanRequest(plan_id="p", reason="r" * 101)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "100 characters" in (
        err.details() or ""
    )
    err = await rpc_error(
        s.cp.ReportToolResult(
            pb.ReportToolResultRequest(
                decision_id="d",
                agent_id="agent1",
                outcome=types_pb2.TOOL_OUTCOME_FAILED,
                error_message="e" * 101,
            )
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing refused was kept.
    plans = await s.cp.ListPlans(pb.ListPlansRequest(states=[plans_pb2.PLAN_STATE_PENDING]))
    assert not plans.plans


# Fail closed --------------------------------------------------------------------------


@pytest.mark.opa
async def test_authorization_fails_closed_when_the_engine_is_down(
    start_server: StartServer, tmp_path: Path, opa: OpaProcess
) -> None:
    s, tokens = await start_with_tokens(
        start_server, tmp_path, engine="opa", opa_url=opa.url, opa_timeout_seconds=0.5
    )
    address = f"127.0.0.1:{s.server.port}"
    async with channel(address, tokens["agent1"]) as ch:
        cp = Stubs(ch).cp
        call = pb.RequestToolCallRequest(agent_id="agent1", tool="form_fill", confidence=0.9)
        call.arguments.update(FORM)
        assert (await cp.RequestToolCall(call)).decision.mode == types_pb2.EXECUTION_MODE_LIVE
        opa.stop()
        await wait_for_health(ch, NOT_SERVING)  # the server notices the engine is gone
        # The same call, allowed a moment ago, is refused: no cached answer lets it through.
        err = await rpc_error(cp.RequestToolCall(call))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(err) == "AUTHORIZATION_UNAVAILABLE"
