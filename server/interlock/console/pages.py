"""The console's pages and actions. Each asks the authorization policy for the
RPC it corresponds to before it reads or acts (see :data:`ACTIONS`)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import orjson
from aiohttp import web

from interlock.api.convert import check_text, require_id
from interlock.api.events import kind_names
from interlock.approvals import STATES, Approval
from interlock.auth import Principal
from interlock.console.shared import PRINCIPAL, console, http_status
from interlock.console.views import approval_view, decision_view, event_view, plan_view
from interlock.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from interlock.events import EventFilter
from interlock.plans.model import PlanState
from interlock.policy.gate import ReloadRequest
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import policy_service_pb2

ACTIONS = {
    "inbox": "ListApprovals",
    "resolve": "ResolveApproval",
    "plans": "ListPlans",
    "plan": "GetPlan",
    "events": "WatchEvents",
    "decisions": "WatchEvents",
    "health": "GetHealth",
    "signals": "ListSignals",
    "policy": "GetPolicyStatus",
    "reload": "ReloadPolicies",
}
"""Console page or action -> the RPC whose authorization it takes. The
decision explorer reads what the event stream carries (every decision is an
event), so it takes WatchEvents."""

RESOLVED = [s for s in STATES if s != "PENDING"]
HISTORY = 30
VERDICTS = ("ALLOW", "DENY", "PENDING_APPROVAL")
MODES = ("MOCK", "DRY_RUN", "LIVE")
EVENT_PAGE = 100


async def allow(request: web.Request, action: str, rpc_request: Any = None) -> Principal:
    principal = request[PRINCIPAL]
    await console(request).s.guard.authorize(ACTIONS[action], principal, rpc_request)
    return principal


def _id(value: str, what: str) -> str:
    require_id(what, value)
    return value


# Approvals --------------------------------------------------------------------------


async def _inbox(request: web.Request) -> dict[str, Any]:
    await allow(request, "inbox")
    c = console(request)
    now = time.time()
    pending = await c.s.approvals.list(["PENDING"], "", "", "")
    resolved = await c.s.approvals.list(RESOLVED, "", "", "", limit=100_000)
    resolved.sort(key=lambda a: a.resolved_at or a.created_at, reverse=True)
    return {
        "now": now,
        "approvals": [await _with_call(request, a, now) for a in pending],
        "pending": len(pending),
        "history": [approval_view(a, None, "", now) for a in resolved[:HISTORY]],
    }


async def _with_call(request: web.Request, a: Approval, now: float) -> dict[str, Any]:
    c = console(request)
    try:
        decision: dict[str, Any] | None = await c.s.decisions.get_decision(a.decision_id)
    except NotFound:
        decision = None
    tool = c.s.policies.active.catalog.tools.get(a.tool)
    return approval_view(a, decision, tool.risk if tool else "", now)


async def approvals(request: web.Request, status: int = 200, **notice: Any) -> web.Response:
    data = await _inbox(request)
    if not notice and request.query.get("done"):
        notice = {"notice": _done_notice(request.query)}
    return console(request).render(request, "approvals.html", status=status, **data, **notice)


def _done_notice(query: Any) -> str:
    verb = {"approve": "approved", "deny": "denied"}.get(query.get("done", ""), "")
    approval_id = query.get("approval", "")
    try:
        require_id("approval", approval_id)
    except InvalidArgument:
        return ""
    if not verb:
        return ""
    return f"You {verb} {approval_id}."


async def inbox_fragment(request: web.Request) -> web.Response:
    data = await _inbox(request)
    return console(request).render(request, "_inbox.html", **data)


async def resolve(request: web.Request) -> web.StreamResponse:
    approval_id = _id(request.match_info["approval_id"], "approval_id")
    form = await request.post()
    choice = str(form.get("decision") or "")
    reason = str(form.get("reason") or "").strip()
    c = console(request)
    try:
        if choice not in ("approve", "deny"):
            raise InvalidArgument.field("decision", "choose approve or deny")
        check_text("reason", reason, c.config.max_string_length)
        principal = await allow(
            request, "resolve", pb.ResolveApprovalRequest(approval_id=approval_id)
        )
        await c.s.approvals.resolve(
            approval_id, choice == "approve", reason, principal.id, principal.roles
        )
    except FailedPrecondition:
        # Resolved (or expired) meanwhile, most likely by someone else: say by whom.
        current = await c.s.approvals.get(approval_id)
        return await approvals(request, 409, error=_already(current))
    except (AlreadyExists, InvalidArgument, PermissionDenied, NotFound) as exc:
        return await approvals(request, http_status(exc), error=exc.message)
    raise web.HTTPSeeOther(f"/approvals?done={choice}&approval={approval_id}")


def _already(a: Approval) -> str:
    """Why an approval can no longer be resolved, in words, naming who resolved it."""
    why = f" ({a.reason})" if a.reason else ""
    by = ", ".join(a.approved_by) or a.resolved_by
    state = {
        "APPROVED": f"approved by {by}{why}",
        "USED": f"approved by {by}{why} and used by its call",
        "DENIED": f"denied by {a.resolved_by}{why}",
        "EXPIRED": "expired without an answer",
        "CANCELLED": f"withdrawn{why}",
    }.get(a.state, a.state)
    return f"{a.approval_id} was already {state}; nothing was changed."


# Plans ------------------------------------------------------------------------------


async def plans(request: web.Request) -> web.Response:
    await allow(request, "plans")
    state = request.query.get("state", "")
    if state and state not in PlanState.__members__:
        raise InvalidArgument.field("state", f"must be one of {', '.join(PlanState)}")
    runs = await console(request).s.orchestrator.list([state] if state else [], 200, "")
    runs.sort(key=lambda p: p.submitted_at, reverse=True)
    return console(request).render(
        request,
        "plans.html",
        plans=[plan_view(p) for p in runs],
        states=list(PlanState),
        state=state,
    )


async def _plan(request: web.Request) -> dict[str, Any]:
    plan_id = _id(request.match_info["plan_id"], "plan_id")
    await allow(request, "plan", pb.GetPlanRequest(plan_id=plan_id))
    c = console(request)
    plan = await c.s.orchestrator.get(plan_id)
    pending = await c.s.approvals.list(["PENDING"], plan_id, "", "")
    return {
        "plan": plan_view(plan, {a.step_id: a.approval_id for a in pending}),
        "after": await c.s.events.highest_seq(),
    }


async def plan(request: web.Request) -> web.Response:
    return console(request).render(request, "plan.html", **await _plan(request))


async def plan_fragment(request: web.Request) -> web.Response:
    return console(request).render(request, "_plan.html", **await _plan(request))


# Events -----------------------------------------------------------------------------


async def events(request: web.Request) -> web.Response:
    await allow(request, "events")
    q = request.query
    plan_id, agent_id, kind = q.get("plan_id", ""), q.get("agent_id", ""), q.get("kind", "")
    for name, value in (("plan_id", plan_id), ("agent_id", agent_id)):
        if value:
            _id(value, name)
    kinds = _event_kinds()
    if kind and kind not in kinds:
        raise InvalidArgument.field("kind", "is not an event kind")
    hub = console(request).s.events
    selection = EventFilter(plan_id, agent_id, frozenset([kind] if kind else []))
    recent = await hub.recent(selection, EVENT_PAGE)
    return console(request).render(
        request,
        "events.html",
        events=[event_view(e) for e in reversed(recent)],
        after=await hub.highest_seq(),
        kinds=kinds,
        kind=kind,
        plan_id=plan_id,
        agent_id=agent_id,
    )


def _event_kinds() -> list[str]:
    return kind_names()


# Decisions --------------------------------------------------------------------------


def _time(value: str, what: str) -> float:
    if not value:
        return 0.0
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field(what, "must be a date and time (YYYY-MM-DDTHH:MM)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


async def decisions(request: web.Request) -> web.Response:
    await allow(request, "decisions")
    q = request.query
    c = console(request)
    tools = sorted(c.s.policies.active.catalog.tools)
    query = {k: q.get(k, "") for k in ("agent_id", "tool", "verdict", "mode", "since", "until")}
    if query["agent_id"]:
        _id(query["agent_id"], "agent_id")
    for name, allowed in (("tool", tools), ("verdict", VERDICTS), ("mode", MODES)):
        if query[name] and query[name] not in allowed:
            raise InvalidArgument.field(name, f"must be one of {', '.join(allowed)}")
    rows = await c.s.decisions.search(
        agent_id=query["agent_id"],
        tool=query["tool"],
        verdict=query["verdict"],
        mode=query["mode"],
        since=_time(query["since"], "since"),
        until=_time(query["until"], "until"),
    )
    return c.render(
        request,
        "decisions.html",
        decisions=[decision_view(r) for r in rows],
        query=query,
        tools=tools,
        verdicts=VERDICTS,
        modes=MODES,
    )


async def decision(request: web.Request) -> web.Response:
    await allow(request, "decisions")
    decision_id = _id(request.match_info["decision_id"], "decision_id")
    c = console(request)
    row = await c.s.decisions.get_decision(decision_id)
    approval = await c.s.approvals.stored_for_decision(decision_id)
    return c.render(
        request,
        "decision.html",
        d=decision_view(row),
        result=await c.s.decisions.stored_result(decision_id),
        audit=[
            orjson.dumps(line, option=orjson.OPT_INDENT_2).decode()
            for line in await c.s.decisions.audit_lines(decision_id)
        ],
        approval=approval_view(approval, None, "", time.time()) if approval else None,
    )


# Health, signals, policy ------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    from interlock.api.signals import list_signals

    await allow(request, "health")
    await allow(request, "signals")
    c = console(request)
    signals = await list_signals(c.s.signals, pb.ListSignalsRequest(limit=50))
    return c.render(
        request,
        "health.html",
        health=c.s.health.snapshot(),
        signals=[
            {
                "kind": s.kind and pb_signal_kind(s.kind),
                "tool": s.tool,
                "agent_id": s.agent_id,
                "value": s.value,
                "evidence": orjson.dumps(dict(s.evidence.items()), default=str).decode(),
                "at": s.created_at.ToSeconds(),
            }
            for s in signals.signals
        ],
    )


def pb_signal_kind(value: int) -> str:
    from interlock.v1 import observe_pb2

    return str(observe_pb2.SignalKind.Name(value)).removeprefix("SIGNAL_KIND_")


async def policy(request: web.Request, status: int = 200, **notice: Any) -> web.Response:
    await allow(request, "policy")
    await allow(request, "events")
    c = console(request)
    active = c.s.policies.active
    history = await c.s.events.recent(EventFilter(kinds=frozenset({"POLICY"})), 50)
    return c.render(
        request,
        "policy.html",
        status=status,
        active=active,
        manager=c.s.policies,
        modules=sorted(active.policy_set.modules),
        history=[event_view(e) for e in reversed(history)],
        **notice,
    )


async def reload(request: web.Request) -> web.Response:
    who = await allow(request, "reload", policy_service_pb2.ReloadPoliciesRequest())
    # The gate (docs/policies.md) records who asked; a set that widens LIVE is
    # refused here, and accepted only with a reason (interlock policy reload).
    outcome = await console(request).s.policies.reload(
        trigger="console", request=ReloadRequest(principal=who.id)
    )
    if not outcome.ok:
        return await policy(request, 422, error=f"the policy set was refused: {outcome.error}")
    text = (
        f"policy {outcome.revision[:12]} is live (was {outcome.previous_revision[:12]})"
        if outcome.changed
        else f"nothing changed: {outcome.revision[:12]} keeps serving"
    )
    return await policy(request, notice=text)


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/approvals")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", home)
    router.add_get("/approvals", approvals)
    router.add_get("/approvals/inbox", inbox_fragment)
    router.add_post("/approvals/{approval_id}/resolve", resolve)
    router.add_get("/plans", plans)
    router.add_get("/plans/{plan_id}", plan)
    router.add_get("/plans/{plan_id}/graph", plan_fragment)
    router.add_get("/events", events)
    router.add_get("/decisions", decisions)
    router.add_get("/decisions/{decision_id}", decision)
    router.add_get("/health", health)
    router.add_get("/policy", policy)
    router.add_post("/policy/reload", reload)


__all__ = ["ACTIONS", "add_routes"]
