package interlock.authz_test

import data.interlock.authz
import data.interlock.test_fixtures as fixtures

_agent := {"id": "agent1", "kind": "agent", "roles": [], "agents": ["agent1"]}

_planner := {"id": "planner1", "kind": "agent", "roles": ["planner"], "agents": ["planner1"]}

_operator := {"id": "alice", "kind": "operator", "roles": ["approver"], "agents": []}

_admin := {"id": "root", "kind": "admin", "roles": [], "agents": []}

_call(method, principal) := {"method": method, "principal": principal, "request": {"agent_id": "agent1"}}

_approval(principal) := {
	"method": "ResolveApproval",
	"principal": principal,
	"request": {},
	"approval": {"approver_roles": ["approver"], "requested_by": "agent1", "agent_id": "agent1"},
}

test_everyone_reads if {
	every p in [_agent, _operator, _admin] {
		authz.main.allow with input as _call("ListPlans", p)
	}
}

test_agent_acts_only_as_itself if {
	authz.main.allow with input as _call("PullWork", _agent)
	not authz.main.allow with input as json.patch(_call("PullWork", _agent), [{"op": "replace", "path": "/request/agent_id", "value": "agent2"}])
	authz.main.reason == "agent1 may not act as agent agent2" with input as json.patch(_call("ReportToolResult", _agent), [{"op": "replace", "path": "/request/agent_id", "value": "agent2"}])
}

test_operator_does_not_act_as_an_agent if {
	not authz.main.allow with input as _call("RequestToolCall", _operator)
}

test_admin_acts_as_any_agent if {
	authz.main.allow with input as _call("PullWork", _admin)
}

test_plans_take_staff_or_planner if {
	not authz.main.allow with input as _call("SubmitPlan", _agent)
		with data.interlock.config.authz.planner_roles as fixtures.planner_roles
	authz.main.allow with input as _call("SubmitPlan", _planner)
		with data.interlock.config.authz.planner_roles as fixtures.planner_roles
	authz.main.allow with input as _call("CancelPlan", _operator)
		with data.interlock.config.authz.planner_roles as fixtures.planner_roles
}

test_approver_resolves if {
	authz.main.allow with input as _approval(_operator)
}

test_admin_without_role_does_not_resolve if {
	authz.main.reason == "root holds none of the roles that may approve this call (approver)" with input as _approval(_admin)
}

test_agent_never_resolves_its_own_call if {
	self := {"id": "agent1", "kind": "agent", "roles": ["approver"], "agents": ["agent1"]}
	r := authz.main with input as _approval(self)
	not r.allow
	contains(r.reason, "agent1 asked for this call")
	contains(r.reason, "acts as agent agent1")
}

test_requester_never_resolves if {
	requester := json.patch(_operator, [{"op": "replace", "path": "/id", "value": "agent1"}])
	not authz.main.allow with input as _approval(requester)
}

test_only_admins_reload if {
	authz.main.allow with input as _call("ReloadPolicies", _admin)
	not authz.main.allow with input as _call("ReloadPolicies", _operator)
	not authz.main.allow with input as _call("ReloadPolicies", _agent)
}

test_only_admins_start_promote_and_stop_a_shadow if {
	every method in {"StartShadow", "PromoteShadow", "StopShadow"} {
		authz.main.allow with input as _call(method, _admin)
		not authz.main.allow with input as _call(method, _operator)
		not authz.main.allow with input as _call(method, _agent)
	}
	authz.main.allow with input as _call("GetShadowStatus", _agent)
	r := authz.main with input as _call("PromoteShadow", _operator)
	contains(r.reason, "may not PromoteShadow: it takes an admin")
}

test_evaluate_takes_staff if {
	authz.main.allow with input as _call("EvaluatePolicy", _operator)
	not authz.main.allow with input as _call("EvaluatePolicy", _agent)
}

test_unknown_method_and_kind_denied if {
	authz.main.reason == "no rule allows Frobnicate" with input as _call("Frobnicate", _admin)
	not authz.main.allow with input as _call("ListTools", json.patch(_agent, [{"op": "replace", "path": "/kind", "value": "robot"}]))
}

# Deny by default: an input with a field missing is refused, with a reason.

test_empty_input_denied if {
	r := authz.main with input as {}
	not r.allow
	contains(r.reason, "the principal has no id")
	contains(r.reason, "the call names no method")
}

test_principal_without_id_denied if {
	r := authz.main with input as _call("ListPlans", object.remove(_admin, ["id"]))
	not r.allow
	r.reason == "the principal has no id"
}

test_principal_with_empty_or_non_string_id_denied if {
	not authz.main.allow with input as _call("ListPlans", json.patch(_admin, [{"op": "replace", "path": "/id", "value": ""}]))
	not authz.main.allow with input as _call("ListPlans", json.patch(_admin, [{"op": "replace", "path": "/id", "value": 7}]))
}

test_principal_without_kind_denied if {
	r := authz.main with input as _call("ListPlans", object.remove(_operator, ["kind"]))
	not r.allow
	r.reason == "alice has no principal kind"
}

test_no_principal_denied if {
	r := authz.main with input as {"method": "ListPlans", "request": {}}
	not r.allow
	contains(r.reason, "the principal has no id")
}

test_no_method_denied if {
	r := authz.main with input as {"principal": _admin, "request": {}}
	not r.allow
	r.reason == "the call names no method"
}

test_as_agent_without_request_denied if {
	r := authz.main with input as {"method": "PullWork", "principal": _agent}
	not r.allow
	r.reason == "agent1 may not act as agent (none)"
}

test_resolve_without_approval_denied if {
	r := authz.main with input as {"method": "ResolveApproval", "principal": _operator, "request": {}}
	not r.allow
	contains(r.reason, "alice holds none of the roles that may approve this call ()")
	contains(r.reason, "the approval does not say who asked for it")
}

test_resolve_without_requester_denied if {
	partial := json.patch(_approval(_operator), [{"op": "remove", "path": "/approval/requested_by"}])
	r := authz.main with input as partial
	not r.allow
	r.reason == "the approval does not say who asked for it or whose call it is"
}

test_resolve_without_agent_denied if {
	not authz.main.allow with input as json.patch(_approval(_operator), [{"op": "remove", "path": "/approval/agent_id"}])
}

test_nothing_denies_but_nothing_allows if {
	# A known method with a valid principal and no rule for it cannot happen
	# today; the fallback reason still names the method and the caller.
	r := authz.main with authz._allowed as false with input as _call("ListPlans", _agent)
	not r.allow
	r.reason == "no rule allows ListPlans for agent1"
}

test_console_is_for_operators_and_admins if {
	authz.main.allow with input as _call("UseConsole", _operator)
	authz.main.allow with input as _call("UseConsole", _admin)
	not authz.main.allow with input as _call("UseConsole", _planner)
	authz.main.reason == "agent1 may not use the console: it is for operators and admins, not agent principals" with input as _call("UseConsole", _agent)
}

test_anyone_reads_trust if {
	authz.main.allow with input as {"method": "GetTrust", "principal": {"id": "a1", "kind": "agent", "agents": ["agent1"]}}
}

test_an_approver_resets_trust if {
	authz.main.allow with input as {"method": "ResetTrust", "principal": {"id": "op", "kind": "operator", "roles": ["approver"]}, "request": {"agent_id": "agent1"}}
		with data.interlock.config.authz.trust_reset_roles as ["approver"]
}

test_an_operator_without_the_role_may_not_reset_trust if {
	d := authz.main with input as {"method": "ResetTrust", "principal": {"id": "op", "kind": "operator", "roles": []}, "request": {"agent_id": "agent1"}}
		with data.interlock.config.authz.trust_reset_roles as ["approver"]
	not d.allow
	d.reason == "op may not ResetTrust: it takes an admin or one of the roles [\"approver\"]"
}

test_nobody_resets_their_own_trust if {
	d := authz.main with input as {"method": "ResetTrust", "principal": {"id": "a1", "kind": "agent", "roles": ["approver"], "agents": ["agent1"]}, "request": {"agent_id": "agent1"}}
		with data.interlock.config.authz.trust_reset_roles as ["approver"]
	not d.allow
	d.reason == "a1 acts as agent agent1 and may not reset its own trust"
}

# Grants (docs/grants.md)

_grant_roles := {"planner_roles": ["planner"], "grant_roles": ["approver"]}

_approver_agent := {"id": "bot", "kind": "agent", "roles": ["approver"], "agents": ["bot"]}

test_approvers_and_admins_create_and_revoke_grants if {
	every p in [_operator, _admin] {
		every m in ["CreateGrant", "RevokeGrant"] {
			authz.main.allow with input as _call(m, p) with data.interlock.config.authz as _grant_roles
		}
	}
}

test_everyone_lists_grants if {
	authz.main.allow with input as _call("ListGrants", _agent) with data.interlock.config.authz as _grant_roles
}

test_agents_never_grant if {
	every p in [_agent, _approver_agent] {
		not authz.main.allow with input as _call("CreateGrant", p) with data.interlock.config.authz as _grant_roles
		not authz.main.allow with input as _call("RevokeGrant", p) with data.interlock.config.authz as _grant_roles
	}
	"agent1 may not CreateGrant: it takes an approver or an admin, and agents never grant" in authz.denials with input as _call("CreateGrant", _agent) with data.interlock.config.authz as _grant_roles
}

test_operator_without_grant_role_may_not_grant if {
	p := {"id": "bob", "kind": "operator", "roles": ["viewer"], "agents": []}
	not authz.main.allow with input as _call("CreateGrant", p) with data.interlock.config.authz as _grant_roles
}

test_no_grant_to_an_agent_one_acts_as if {
	p := {"id": "carol", "kind": "operator", "roles": ["approver"], "agents": ["agent1"]}
	not authz.main.allow with input as _call("CreateGrant", p) with data.interlock.config.authz as _grant_roles
	authz.main.reason == "carol acts as agent agent1 and may not grant to it" with input as _call("CreateGrant", p) with data.interlock.config.authz as _grant_roles
}

test_no_grant_from_an_approval_one_asked_for if {
	inp := object.union(_call("CreateGrant", _operator), {"approval": {"approver_roles": ["approver"], "requested_by": "alice", "agent_id": "agent1"}})
	not authz.main.allow with input as inp with data.interlock.config.authz as _grant_roles
	authz.main.reason == "alice asked for the call of this approval and may not grant it" with input as inp with data.interlock.config.authz as _grant_roles
}

test_an_admin_resets_trust if {
	authz.main.allow with input as {"method": "ResetTrust", "principal": {"id": "root", "kind": "admin", "roles": []}, "request": {"agent_id": "agent1"}}
		with data.interlock.config.authz.trust_reset_roles as ["approver"]
}
