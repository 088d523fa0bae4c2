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
#   policy. "UseConsole" (not an RPC: signing in to the operator console,
#   docs/console.md) is for operators and admins; each console page or
#   action then asks for the RPC it corresponds to.
#
#   Deny by default: a call is allowed only when an `_allowed` rule
#   positively allows it and nothing denies it. An input with a field
#   missing (no principal id, no kind, no method, an approval without its
#   requester) is denied, with a reason, whatever else it holds.
package interlock.authz

import data.interlock.config

_kinds := {"agent", "operator", "admin"}

_reads := {
	"ListTools", "GetPlan", "ListPlans", "WatchEvents", "ListApprovals",
	"AwaitApproval", "GetHealth", "ListSignals", "GetPolicyStatus", "ListGrants",
}

_as_agent := {"RequestToolCall", "ReportToolResult", "PullWork"}

_planning := {"SubmitPlan", "CancelPlan"}

_granting := {"CreateGrant", "RevokeGrant"}

# A shadow candidate (docs/policies.md): admins start, promote and stop it; anyone reads it.
_shadow_admin := {"StartShadow", "PromoteShadow", "StopShadow"}

_shadow := _shadow_admin | {"GetShadowStatus"}

_known := ((((_reads | _as_agent) | _planning) | _granting) | _shadow) | {"GetTrust", "ResetTrust", "ResolveApproval", "ReloadPolicies", "EvaluatePolicy", "UseConsole"}

_p := object.get(input, "principal", {})

# The input's facts, with a stand-in when one is missing, so every denial
# below can be phrased (sprintf of a missing value leaves a rule undefined).
_method := object.get(input, "method", "")

_id := object.get(_p, "id", "")

_kind := object.get(_p, "kind", "")

_agent_id := object.get(input, ["request", "agent_id"], "")

_approval := object.get(input, "approval", {})

_who := _id if _valid_id

else := "a principal without an id"

# (regopy's sprintf of an empty string emits invalid JSON: name it instead.)
_agent_name := _agent_id if {
	is_string(_agent_id)
	_agent_id != ""
}

else := "(none)"

_valid_id if {
	is_string(_id)
	_id != ""
}

_valid_principal if {
	_valid_id
	_kind in _kinds
}

_admin if _kind == "admin"

_staff if _kind in {"operator", "admin"}

_acts_as(agent) if {
	is_string(agent)
	agent != ""
	agent in object.get(_p, "agents", [])
}

_planner if {
	some role in object.get(_p, "roles", [])
	role in config.authz.planner_roles
}

_holds_approver_role if {
	some role in object.get(_p, "roles", [])
	role in object.get(_approval, "approver_roles", [])
}

# Grants (docs/grants.md): approvers (config.authz.grant_roles) and admins,
# never an agent principal.
_grantor if {
	_kind != "agent"
	_admin
}

_grantor if {
	_kind != "agent"
	some role in object.get(_p, "roles", [])
	role in object.get(config.authz, "grant_roles", [])
}

# A grant for an agent the principal acts as, or from an approval it asked for.
_self_grant if _acts_as(_agent_id)

_self_grant if {
	_approval.requested_by == _id
}

# What positively allows a call. Nothing else does.

_allowed if _method in _reads

_allowed if _method == "GetShadowStatus"

_allowed if {
	_method in _shadow_admin
	_admin
}

_allowed if {
	_method in _as_agent
	_admin
}

_allowed if {
	_method in _as_agent
	_acts_as(_agent_id)
}

_allowed if {
	_method in _planning
	_staff
}

_allowed if {
	_method in _planning
	_planner
}

_allowed if {
	_method == "ResolveApproval"
	_holds_approver_role
	is_string(_approval.requested_by)
	_approval.requested_by != _id
	is_string(_approval.agent_id)
	not _acts_as(_approval.agent_id)
}

_allowed if {
	_method == "ReloadPolicies"
	_admin
}

_allowed if {
	_method == "CreateGrant"
	_grantor
	not _self_grant
}

_allowed if {
	_method == "RevokeGrant"
	_grantor
}

_allowed if {
	_method == "EvaluatePolicy"
	_staff
}

_allowed if {
	_method == "UseConsole"
	_staff
}

# Trust (docs/trust.md): every principal may read it; approvers (roles in
# config.authz.trust_reset_roles) and admins reset a pair, never as the agent
# whose pair it is.
_allowed if _method == "GetTrust"

_trust_resetter if _admin

_trust_resetter if {
	some role in object.get(_p, "roles", [])
	role in object.get(config.authz, "trust_reset_roles", [])
}

_allowed if {
	_method == "ResetTrust"
	_trust_resetter
	not _acts_as(_agent_id)
}

denials contains sprintf("%v may not ResetTrust: it takes an admin or one of the roles %v", [_who, object.get(config.authz, "trust_reset_roles", [])]) if {
	_method == "ResetTrust"
	not _trust_resetter
}

denials contains sprintf("%v acts as agent %v and may not reset its own trust", [_who, _agent_name]) if {
	_method == "ResetTrust"
	_acts_as(_agent_id)
}

# Why a call is refused, in words.

denials contains "the principal has no id" if not _valid_id

denials contains sprintf("unknown principal kind %v", [_kind]) if {
	_kind != ""
	not _kind in _kinds
}

denials contains sprintf("%v has no principal kind", [_who]) if _kind == ""

denials contains "the call names no method" if _method == ""

denials contains sprintf("no rule allows %v", [_method]) if {
	_method != ""
	not _method in _known
}

denials contains sprintf("%v may not act as agent %v", [_who, _agent_name]) if {
	_method in _as_agent
	not _admin
	not _acts_as(_agent_id)
}

denials contains sprintf("%v may not %v: it takes an operator, an admin or a planner role", [_who, _method]) if {
	_method in _planning
	not _staff
	not _planner
}

# (concat, not sprintf, around a concat: regopy then emits invalid JSON.)
denials contains concat("", [_who, " holds none of the roles that may approve this call (", concat(", ", _approver_roles), ")"]) if {
	_method == "ResolveApproval"
	not _holds_approver_role
}

denials contains sprintf("%v asked for this call and may not resolve its approval", [_who]) if {
	_method == "ResolveApproval"
	_approval.requested_by == _id
}

denials contains sprintf("%v acts as agent %v, whose call this is, and may not resolve its approval", [_who, _approval.agent_id]) if {
	_method == "ResolveApproval"
	_acts_as(_approval.agent_id)
}

denials contains "the approval does not say who asked for it or whose call it is" if {
	_method == "ResolveApproval"
	not _names_parties
}

denials contains sprintf("%v may not %v: it takes an approver or an admin, and agents never grant", [_who, _method]) if {
	_method in _granting
	not _grantor
}

denials contains sprintf("%v acts as agent %v and may not grant to it", [_who, _agent_name]) if {
	_method == "CreateGrant"
	_acts_as(_agent_id)
}

denials contains sprintf("%v asked for the call of this approval and may not grant it", [_who]) if {
	_method == "CreateGrant"
	_approval.requested_by == _id
}

denials contains sprintf("%v may not %v: it takes an admin", [_who, _method]) if {
	_method == "ReloadPolicies"
	not _admin
}

denials contains sprintf("%v may not %v: it takes an admin", [_who, _method]) if {
	_method in _shadow_admin
	not _admin
}

denials contains sprintf("%v may not %v: it takes an operator or an admin", [_who, _method]) if {
	_method == "EvaluatePolicy"
	not _staff
}

denials contains sprintf("%v may not use the console: it is for operators and admins, not %v principals", [_who, _kind]) if {
	_method == "UseConsole"
	_kind != ""
	not _staff
}

_approver_roles := [r | some r in object.get(_approval, "approver_roles", []); is_string(r)]

_names_parties if {
	is_string(_approval.requested_by)
	is_string(_approval.agent_id)
}

# METADATA
# entrypoint: true
# description: |
#   {allow, reason}: allowed only when a rule allows the call and nothing
#   denies it; otherwise refused with every denial (or, when none applies,
#   "no rule allows ...").
main := {"allow": true, "reason": ""} if {
	_valid_principal
	_allowed
	count(denials) == 0
} else := {"allow": false, "reason": _reason}

_reason := concat("; ", sort(denials)) if count(denials) > 0

else := sprintf("no rule allows %v for %v", [_method, _who])
