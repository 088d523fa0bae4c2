package interlock.approvals_test

import data.interlock.approvals
import data.interlock.test_fixtures as fixtures

_rules := {
	"default": {
		"approver_roles": ["approver"],
		"approvals_required": 1,
		"ttl_seconds": 900,
		"escalation": [{"after_seconds": 300, "approver_roles": ["approval-lead"]}],
	},
	"tools": {"transfer_funds": {"approvals_required": 2}, "delete_record": {"approver_roles": ["approver", "data-steward"]}},
}

test_default_requirement if {
	# Bound first, then compared: regorus 0.14.1 leaves `r == x with ... as x`
	# undefined when x is a rule (the same test on OPA either way).
	r := approvals.requirement with input as {"tool": "send_email"}
		with data.interlock.config.approvals as _rules
	r == _rules.default
}

test_tool_override_changes_only_its_fields if {
	r := approvals.requirement with input as {"tool": "transfer_funds"}
		with data.interlock.config.approvals as _rules
	r.approvals_required == 2
	r.approver_roles == ["approver"]
	r.ttl_seconds == 900
}

test_tool_override_replaces_roles if {
	r := approvals.requirement with input as {"tool": "delete_record"}
		with data.interlock.config.approvals as _rules
	r.approver_roles == ["approver", "data-steward"]
	r.approvals_required == 1
}

test_shipped_rules_quorum_for_transfers if {
	approvals.requirement.approvals_required == 2 with input as {"tool": "transfer_funds"}
		with data.interlock.config.approvals as fixtures.approvals
	approvals.requirement.approvals_required == 1 with input as {"tool": "send_email"}
		with data.interlock.config.approvals as fixtures.approvals
}

_auto_rules := object.union(_rules, {"auto_approve": {"enabled": true, "min_confidence": 0.8, "max_per_hour": 3}})

_held(tool, reversible, human, confidence, used) := {
	"tool": tool,
	"confidence": confidence,
	"contract": {"reversible": reversible, "human_approval": human},
	"counts": {"policy_approvals": used},
}

test_policy_approves_a_reversible_confident_call_within_the_rate if {
	r := approvals.requirement with input as _held("form_fill", true, "optional", 0.9, 2)
		with data.interlock.config.approvals as _auto_rules
	r.auto_approve.reason == "form_fill is reversible and confidence 0.9 meets the policy's approval floor 0.8 (2 of 3 policy approvals in the last hour)"
	r.approvals_required == 1
}

test_policy_never_approves_where_a_human_is_required if {
	not approvals.auto_approve with input as _held("transfer_funds", true, "required", 0.99, 0)
		with data.interlock.config.approvals as _auto_rules
}

test_policy_never_approves_an_irreversible_tool if {
	not approvals.auto_approve with input as _held("send_email", false, "optional", 0.99, 0)
		with data.interlock.config.approvals as _auto_rules
}

test_policy_does_not_approve_below_its_floor if {
	not approvals.auto_approve with input as _held("form_fill", true, "optional", 0.79, 0)
		with data.interlock.config.approvals as _auto_rules
}

test_policy_does_not_approve_past_its_rate if {
	not approvals.auto_approve with input as _held("form_fill", true, "optional", 0.9, 3)
		with data.interlock.config.approvals as _auto_rules
}

test_policy_approves_nothing_when_switched_off if {
	not approvals.auto_approve with input as _held("form_fill", true, "optional", 0.9, 0)
		with data.interlock.config.approvals as object.union(_auto_rules, {"auto_approve": {"enabled": false}})
}

test_a_whole_number_confidence_prints_as_one if {
	r := approvals.requirement with input as _held("form_fill", true, "optional", 1, 0)
		with data.interlock.config.approvals as _auto_rules
	r.auto_approve.reason == "form_fill is reversible and confidence 1 meets the policy's approval floor 0.8 (0 of 3 policy approvals in the last hour)"
}
