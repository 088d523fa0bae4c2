# METADATA
# title: RPC authorization
# description: |
#   Decides, for every RPC, whether the authenticated principal may make it.
#   The server authenticates the caller (bearer token or client certificate)
#   and asks before the handler runs, with this input:
#     method     the RPC's name, e.g. "RequestToolCall"
#     principal  {id, kind: agent|operator|admin, roles, agents}: `agents` are
#                the catalog agents the principal acts as
#     request    the facts of the request a rule needs (agent_id)
#     approval   for ResolveApproval: the approval's approver_roles (after
#                escalation), requested_by and agent_id
#   Every principal may read. Agents request, report and pull work only as
#   the agents they act as; planners (agents with a planner role), operators
#   and admins submit and cancel plans; an approval is resolved only by a
#   principal holding one of its approver roles, never by the principal that
#   asked nor by one acting as the agent whose call it is; only admins reload
#   policy.
package interlock.authz

import data.interlock.config

_kinds := {"agent", "operator", "admin"}

_reads := {
	"ListTools", "GetPlan", "ListPlans", "WatchEvents", "ListApprovals",
	"AwaitApproval", "GetHealth", "ListSignals", "GetPolicyStatus",
}

_as_agent := {"RequestToolCall", "ReportToolResult", "PullWork"}

_planning := {"SubmitPlan", "CancelPlan"}

_known := ((_reads | _as_agent) | _planning) | {"ResolveApproval", "ReloadPolicies", "EvaluatePolicy"}

_p := input.principal

_admin if _p.kind == "admin"

_staff if _p.kind in {"operator", "admin"}

_acts_as(agent) if agent in _p.agents

_planner if {
	some role in _p.roles
	role in config.authz.planner_roles
}

denials contains sprintf("unknown principal kind %v", [_p.kind]) if not _p.kind in _kinds

denials contains sprintf("no rule allows %v", [input.method]) if not input.method in _known

denials contains sprintf("%v may not act as agent %v", [_p.id, input.request.agent_id]) if {
	input.method in _as_agent
	not _admin
	not _acts_as(input.request.agent_id)
}

denials contains sprintf("%v may not %v: it takes an operator, an admin or a planner role", [_p.id, input.method]) if {
	input.method in _planning
	not _staff
	not _planner
}

# (concat, not sprintf, around a concat: regopy then emits invalid JSON.)
denials contains concat("", [_p.id, " holds none of the roles that may approve this call (", concat(", ", input.approval.approver_roles), ")"]) if {
	input.method == "ResolveApproval"
	not _holds_approver_role
}

denials contains sprintf("%v asked for this call and may not resolve its approval", [_p.id]) if {
	input.method == "ResolveApproval"
	input.approval.requested_by == _p.id
}

denials contains sprintf("%v acts as agent %v, whose call this is, and may not resolve its approval", [_p.id, input.approval.agent_id]) if {
	input.method == "ResolveApproval"
	_acts_as(input.approval.agent_id)
}

denials contains sprintf("%v may not %v: it takes an admin", [_p.id, input.method]) if {
	input.method == "ReloadPolicies"
	not _admin
}

denials contains sprintf("%v may not %v: it takes an operator or an admin", [_p.id, input.method]) if {
	input.method == "EvaluatePolicy"
	not _staff
}

_holds_approver_role if {
	some role in _p.roles
	role in input.approval.approver_roles
}

# METADATA
# entrypoint: true
# description: "{allow, reason}: allowed when nothing denies the call."
main := {"allow": true, "reason": ""} if {
	count(denials) == 0
} else := {"allow": false, "reason": concat("; ", sort(denials))}
