package interlock.permissions_test

import data.interlock.permissions
import data.interlock.test_fixtures as fixtures

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# The outcome of the permissions policy under whatever input is in force.
_result := {
	"allowed": permissions.allowed,
	"missing": permissions.missing,
	"reasons": permissions.reasons,
}

# A call by an agent holding `held` to a tool that requires `required`.
_call(agent_id, held, tool, required) := {
	"tool": tool,
	"agent": {"id": agent_id, "permissions": held},
	"contract": {"risk": "LOW", "reversible": true, "required_permissions": required},
}

# A call built the way the server builds it, from the shipped agents and
# catalog as pinned in test_fixtures.
_catalog_call(agent_id, tool) := fixtures.call(agent_id, tool)

_holds(agent_id, tool) := sprintf("agent %v holds every permission %v requires", [agent_id, tool])

_lacks(agent_id, perms, tool) := sprintf("agent %v lacks permission(s) %v required by %v", [agent_id, perms, tool])

# ---------------------------------------------------------------------------
# Allowed
# ---------------------------------------------------------------------------

test_all_required_permissions_held_is_allowed if {
	_result == {
		"allowed": true,
		"missing": set(),
		"reasons": ["agent agent1 holds every permission form_fill requires"],
	} with input as _call("agent1", ["screen.read", "ui.write"], "form_fill", ["screen.read", "ui.write"])
}

test_extra_permissions_do_not_matter if {
	_result == {
		"allowed": true,
		"missing": set(),
		"reasons": [_holds("ops", "crm_lookup")],
	} with input as _call("ops", ["crm.write", "crm.read", "email.send"], "crm_lookup", ["crm.read"])
}

test_no_required_permissions_is_allowed if {
	_result == {
		"allowed": true,
		"missing": set(),
		"reasons": [_holds("nobody", "noop")],
	} with input as _call("nobody", [], "noop", [])
}

test_held_permissions_order_does_not_matter if {
	permissions.allowed with input as _call("a", ["b.y", "a.x"], "t", ["a.x", "b.y"])
}

# ---------------------------------------------------------------------------
# Not allowed
# ---------------------------------------------------------------------------

test_one_missing_permission_is_not_allowed if {
	_result == {
		"allowed": false,
		"missing": {"ui.write"},
		"reasons": ["agent readonly lacks permission(s) ui.write required by form_fill"],
	} with input as _call("readonly", ["screen.read", "crm.read"], "form_fill", ["screen.read", "ui.write"])
}

test_two_missing_permissions_are_listed_sorted if {
	_result == {
		"allowed": false,
		"missing": {"crm.read", "crm.delete"},
		"reasons": ["agent agent1 lacks permission(s) crm.delete, crm.read required by delete_record"],
	} with input as _call("agent1", ["screen.read", "ui.write"], "delete_record", ["crm.read", "crm.delete"])
}

test_three_missing_permissions_are_listed_sorted if {
	permissions.reasons == [_lacks("a", "a.one, m.two, z.three", "t")] with input as _call("a", ["other"], "t", ["z.three", "a.one", "m.two"])
}

test_agent_without_permissions_field_lacks_everything if {
	_result == {
		"allowed": false,
		"missing": {"crm.read", "crm.delete"},
		"reasons": [_lacks("ghost", "crm.delete, crm.read", "delete_record")],
	} with input as {
		"tool": "delete_record",
		"agent": {"id": "ghost"},
		"contract": {"risk": "HIGH", "reversible": false, "required_permissions": ["crm.read", "crm.delete"]},
	}
}

test_agent_with_empty_permissions_lacks_everything if {
	_result == {
		"allowed": false,
		"missing": {"ui.click"},
		"reasons": [_lacks("idle", "ui.click", "button_click")],
	} with input as _call("idle", [], "button_click", ["ui.click"])
}

test_permission_names_are_case_sensitive if {
	_result == {
		"allowed": false,
		"missing": {"screen.read"},
		"reasons": [_lacks("a", "screen.read", "vision_inspect")],
	} with input as _call("a", ["Screen.Read"], "vision_inspect", ["screen.read"])
}

test_permission_prefix_does_not_grant if {
	permissions.missing == {"crm.delete"} with input as _call("a", ["crm", "crm.*", "crm.read"], "t", ["crm.read", "crm.delete"])
}

test_duplicate_required_permission_is_reported_once if {
	_result == {
		"allowed": false,
		"missing": {"ui.click"},
		"reasons": [_lacks("a", "ui.click", "t")],
	} with input as _call("a", [], "t", ["ui.click", "ui.click"])
}

# ---------------------------------------------------------------------------
# The shipped agents against the shipped catalog
# ---------------------------------------------------------------------------

test_catalog_agent1_may_fill_forms if {
	_result == {
		"allowed": true,
		"missing": set(),
		"reasons": [_holds("agent1", "form_fill")],
	} with input as _catalog_call("agent1", "form_fill")
}

test_catalog_agent1_may_not_click if {
	_result == {
		"allowed": false,
		"missing": {"ui.click"},
		"reasons": [_lacks("agent1", "ui.click", "button_click")],
	} with input as _catalog_call("agent1", "button_click")
}

test_catalog_readonly_may_not_delete if {
	_result == {
		"allowed": false,
		"missing": {"crm.delete"},
		"reasons": [_lacks("readonly", "crm.delete", "delete_record")],
	} with input as _catalog_call("readonly", "delete_record")
}

test_catalog_mailer_may_send_email_but_not_move_money if {
	permissions.allowed with input as _catalog_call("mailer", "send_email")
	permissions.missing == {"payments.transfer"} with input as _catalog_call("mailer", "transfer_funds")
}

test_catalog_ops_may_delete_and_refund if {
	permissions.allowed with input as _catalog_call("ops", "delete_record")
	permissions.allowed with input as _catalog_call("ops", "refund_funds")
}
