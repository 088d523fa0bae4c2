# METADATA
# title: Grants
# description: |
#   Which standing approval (docs/grants.md), if any, covers a call that
#   would otherwise wait for a human approval. The server offers the grants
#   it found live for the call in input.grants: each {id, agent_id, tool,
#   plan_id, expires_at, max_uses}, unexpired, not revoked, with uses left,
#   and whose argument constraint the call's arguments satisfy. This policy
#   checks who, what and where again, and refuses every grant for a tool
#   whose contract says grantable: false (money and destructive actions never
#   widen), whatever a grant says. Of the grants that cover the call, the one
#   that expires first is used (then the smallest id).
package interlock.grants

_grants := object.get(input, "grants", [])

_plan_id := object.get(input, ["plan", "plan_id"], "")

# METADATA
# entrypoint: true
# description: False when the tool's contract says grantable false.
grantable if not object.get(input, ["contract", "grantable"], true) == false

_covers(g) if {
	g.agent_id == input.agent.id
	g.tool == input.tool
	g.plan_id in {"", _plan_id}
	is_number(g.expires_at)
	is_string(g.id)
}

_candidates := sort([[g.expires_at, g.id] | some g in _grants; _covers(g)])

# METADATA
# entrypoint: true
# description: The id of the grant that covers the call; undefined when none does.
grant := _candidates[0][1] if {
	grantable
	count(_candidates) > 0
}

# METADATA
# entrypoint: true
# description: The reason a decision made under the grant gives.
reason := sprintf("covered by grant %v: %v may call %v without a new approval", [grant, input.agent.id, input.tool])

# METADATA
# entrypoint: true
# description: Why offered grants did not cover the call (empty when none was offered).
refusals := [sprintf("grants never cover %v: its contract says grantable: false", [input.tool])] if {
	count(_grants) > 0
	not grantable
} else := []
