package interlock.grants_test

import data.interlock.grants

_g(id, exp) := {"id": id, "agent_id": "agent1", "tool": "form_fill", "plan_id": "", "expires_at": exp, "max_uses": 0}

_input(gs) := {
	"tool": "form_fill",
	"agent": {"id": "agent1"},
	"contract": {"grantable": true},
	"plan": {"plan_id": "p1", "step_id": "s1"},
	"grants": gs,
}

test_no_grants_no_cover if {
	not grants.grant with input as _input([])
}

test_no_grants_field_no_cover if {
	not grants.grant with input as {"tool": "form_fill", "agent": {"id": "agent1"}, "contract": {}}
}

test_the_grant_expiring_first_covers if {
	grants.grant == "g2" with input as _input([_g("g1", 200), _g("g2", 100), _g("g3", 300)])
}

test_ties_go_to_the_smaller_id if {
	grants.grant == "a" with input as _input([_g("b", 100), _g("a", 100)])
}

test_other_agent_not_covered if {
	not grants.grant with input as _input([object.union(_g("g1", 100), {"agent_id": "agent2"})])
}

test_other_tool_not_covered if {
	not grants.grant with input as _input([object.union(_g("g1", 100), {"tool": "button_click"})])
}

test_plan_grant_covers_its_plan_only if {
	grants.grant == "g1" with input as _input([object.union(_g("g1", 100), {"plan_id": "p1"})])
	not grants.grant with input as _input([object.union(_g("g1", 100), {"plan_id": "p2"})])
}

test_not_grantable_tool_never_covered if {
	inp := object.union(_input([_g("g1", 100)]), {"contract": {"grantable": false}})
	not grants.grant with input as inp
	grants.refusals == ["grants never cover form_fill: its contract says grantable: false"] with input as inp
}

test_missing_grantable_means_grantable if {
	grants.grant == "g1" with input as object.union(_input([_g("g1", 100)]), {"contract": {}})
}

test_malformed_grant_ignored if {
	not grants.grant with input as _input([{"id": "g1", "agent_id": "agent1", "tool": "form_fill", "plan_id": ""}])
}

test_reason_names_the_grant if {
	grants.reason == "covered by grant g1: agent1 may call form_fill without a new approval" with input as _input([_g("g1", 100)])
}

test_no_refusals_without_grants if {
	count(grants.refusals) == 0 with input as object.union(_input([]), {"contract": {"grantable": false}})
}
