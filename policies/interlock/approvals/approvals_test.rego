package interlock.approvals_test

import data.interlock.approvals

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
	approvals.requirement == _rules.default with input as {"tool": "send_email"}
		with data.interlock.config.approvals as _rules
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
	approvals.requirement.approvals_required == 1 with input as {"tool": "send_email"}
}
