package interlock.decision_test

import data.interlock.decision
import data.interlock.test_fixtures as fixtures

# The shipped switches and thresholds, pinned here: every test evaluates with
# them (`with`), so a changed data.yaml (the kill switch, a threshold, the cap)
# does not fail the tests, and the gate does not refuse the change for it.
_shipped_switches := {
	"dry_run_only": false,
	"live_confidence_floor": 0.0,
	"max_concurrent_live": 5,
	"approval_required_for_high_risk": true,
}

_shipped_thresholds := {
	"LOW": {"dry_run": 0.5, "live": 0.7},
	"MEDIUM": {"dry_run": 0.65, "live": 0.8},
	"HIGH": {"dry_run": 0.8, "live": 0.85},
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# A well-formed call: agent "mailer" looks up a CRM record (LOW risk,
# reversible) with confidence 0.9. Tests change it with _with / _without.
_valid := {
	"tool": "crm_lookup",
	"agent": {"id": "mailer", "permissions": ["email.send", "crm.read"]},
	"confidence": 0.9,
	"contract": {"risk": "LOW", "reversible": true, "required_permissions": ["crm.read"]},
}

_with(overrides) := object.union(_valid, overrides)

_without(path) := json.remove(_valid, [path])

# A call built the way the server builds it, from the shipped agents and
# catalog as pinned in test_fixtures.
_catalog_call(agent_id, tool, confidence) := object.union(fixtures.call(agent_id, tool), {"confidence": confidence})

# The decision for a malformed call.
_denied_input(errors) := {
	"verdict": "DENY",
	"mode": "MOCK",
	"needs_approval": false,
	"reasons": errors,
}

_tool_error := "input.tool must be a non-empty string"

_agent_error := "input.agent.id must be a non-empty string"

_confidence_error := "input.confidence must be a number in [0, 1]"

_risk_error(risk) := sprintf("input.contract.risk must be one of LOW, MEDIUM, HIGH, not %v", [risk])

_holds(agent_id, tool) := sprintf("agent %v holds every permission %v requires", [agent_id, tool])

# ---------------------------------------------------------------------------
# Malformed input: DENY, MOCK, the input errors as reasons
# ---------------------------------------------------------------------------

test_missing_tool_is_denied if {
	decision.main == _denied_input([_tool_error]) with input as _without("tool") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_empty_or_non_string_tool_is_denied if {
	decision.main == _denied_input([_tool_error]) with input as _with({"tool": ""}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main == _denied_input([_tool_error]) with input as _with({"tool": 42}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_agent_id_is_denied if {
	decision.main == _denied_input([_agent_error]) with input as _without("agent/id") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_or_empty_agent_is_denied if {
	decision.main == _denied_input([_agent_error]) with input as _without("agent") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main == _denied_input([_agent_error]) with input as _with({"agent": {"id": ""}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_negative_confidence_is_denied if {
	decision.main == _denied_input([_confidence_error]) with input as _with({"confidence": -0.1}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_confidence_above_one_is_denied if {
	decision.main == _denied_input([_confidence_error]) with input as _with({"confidence": 1.5}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_string_confidence_is_denied if {
	decision.main == _denied_input([_confidence_error]) with input as _with({"confidence": "0.9"}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_or_null_confidence_is_denied if {
	decision.main == _denied_input([_confidence_error]) with input as _without("confidence") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main == _denied_input([_confidence_error]) with input as _with({"confidence": null}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_confidence_bounds_are_inclusive if {
	decision.main.verdict == "ALLOW" with input as _with({"confidence": 0}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main.mode == "MOCK" with input as _with({"confidence": 0}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main.verdict == "ALLOW" with input as _with({"confidence": 1}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main.mode == "LIVE" with input as _with({"confidence": 1}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_unknown_risk_is_denied if {
	decision.main == _denied_input([_risk_error("CRITICAL")]) with input as _with({"contract": {"risk": "CRITICAL"}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_risk_is_case_sensitive if {
	decision.main == _denied_input(["input.contract.risk must be one of LOW, MEDIUM, HIGH, not low"]) with input as _with({"contract": {"risk": "low"}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_risk_is_denied if {
	decision.main == _denied_input([_risk_error(null)]) with input as _without("contract/risk") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_all_input_errors_are_sorted if {
	decision.main == _denied_input([
		"input.agent.id must be a non-empty string",
		"input.confidence must be a number in [0, 1]",
		"input.contract.required_permissions must be an array of strings",
		"input.contract.reversible must be a boolean",
		"input.contract.risk must be one of LOW, MEDIUM, HIGH, not null",
		"input.tool must be a non-empty string",
	]) with input as {} with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_reversible_is_denied if {
	decision.main == _denied_input(["input.contract.reversible must be a boolean"]) with input as _without("contract/reversible") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_required_permissions_is_denied if {
	decision.main == _denied_input(["input.contract.required_permissions must be an array of strings"]) with input as _without("contract/required_permissions") with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_switches_that_are_not_an_object_are_denied if {
	decision.main == _denied_input(["input.switches must be an object"]) with input as _with({"switches": "off"}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_switch_of_the_wrong_type_is_denied if {
	decision.main == _denied_input(["switch approval_required_for_high_risk must be a boolean"]) with input as _with({"switches": {"approval_required_for_high_risk": "yes"}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_a_live_in_flight_count_that_is_not_a_number_is_denied if {
	# Not a number, the LIVE cap cannot be checked: compared as OPA compares
	# across types (null < 5), it would let the call run LIVE.
	decision.main == _denied_input(["input.counts.live_in_flight must be a number"]) with input as _with({"counts": {"live_in_flight": null}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	decision.main == _denied_input(["input.counts.live_in_flight must be a number"]) with input as _with({"counts": {"live_in_flight": "3"}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_input_errors_win_over_permission_denial if {
	decision.main == _denied_input([_confidence_error]) with input as _with({
		"agent": {"permissions": []},
		"confidence": 2,
	})
		with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

# ---------------------------------------------------------------------------
# Permission denial: DENY, MOCK, the permission reason only
# ---------------------------------------------------------------------------

test_permission_denial_is_deny_mock if {
	decision.main == {
		"verdict": "DENY",
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": ["agent mailer lacks permission(s) crm.delete, crm.read required by crm_lookup"],
	} with input as _with({
		"agent": {"permissions": ["email.send"]},
		"contract": {"required_permissions": ["crm.read", "crm.delete"]},
	})
		with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_permission_denial_wins_over_approval if {
	decision.main == {
		"verdict": "DENY",
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": ["agent readonly lacks permission(s) crm.delete required by delete_record"],
	} with input as _catalog_call("readonly", "delete_record", 0.99) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

# ---------------------------------------------------------------------------
# Permitted calls: PENDING_APPROVAL or ALLOW with the escalation mode
# ---------------------------------------------------------------------------

test_high_risk_live_is_pending_approval if {
	decision.main == {
		"verdict": "PENDING_APPROVAL",
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [
			_holds("ops", "transfer_funds"),
			"confidence 0.9 meets the LIVE threshold 0.85 for HIGH-risk tools",
			"HIGH-risk tools need a human approval to run LIVE",
		],
		"approval": {
			"approver_roles": ["approver"],
			"approvals_required": 2,
			"ttl_seconds": 900,
			"escalation": [{"after_seconds": 300, "approver_roles": ["approval-lead"]}],
		},
	} with input as _catalog_call("ops", "transfer_funds", 0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds with data.interlock.config.approvals as fixtures.approvals
}

test_irreversible_live_is_pending_approval if {
	decision.main == {
		"verdict": "PENDING_APPROVAL",
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [
			_holds("mailer", "send_email"),
			"confidence 0.85 meets the LIVE threshold 0.8 for MEDIUM-risk tools",
			"send_email is irreversible, so it never runs LIVE without a human approval",
		],
		"approval": {
			"approver_roles": ["approver"],
			"approvals_required": 1,
			"ttl_seconds": 900,
			"escalation": [{"after_seconds": 300, "approver_roles": ["approval-lead"]}],
		},
	} with input as _catalog_call("mailer", "send_email", 0.85) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds with data.interlock.config.approvals as fixtures.approvals
}

test_low_risk_reversible_at_0_9_is_allow_live if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [
			_holds("mailer", "crm_lookup"),
			"confidence 0.9 meets the LIVE threshold 0.7 for LOW-risk tools",
		],
	} with input as _valid with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_medium_risk_mid_confidence_is_allow_dry_run if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_holds("agent1", "form_fill"),
			"confidence 0.7 meets the DRY_RUN threshold 0.65 but not the LIVE threshold 0.8 for MEDIUM-risk tools",
		],
	} with input as _catalog_call("agent1", "form_fill", 0.7) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_high_risk_irreversible_dry_run_is_allow_without_approval if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_holds("ops", "delete_record"),
			"confidence 0.8 meets the DRY_RUN threshold 0.8 but not the LIVE threshold 0.85 for HIGH-risk tools",
		],
	} with input as _catalog_call("ops", "delete_record", 0.8) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_low_confidence_is_allow_mock if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": [
			_holds("agent1", "vision_inspect"),
			"confidence 0.3 is below the DRY_RUN threshold 0.5 for LOW-risk tools, so the call runs as MOCK",
		],
	} with input as _catalog_call("agent1", "vision_inspect", 0.3) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_dry_run_only_switch_turns_approval_into_allow_dry_run if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_holds("ops", "transfer_funds"),
			"confidence 0.9 meets the LIVE threshold 0.85 for HIGH-risk tools",
			"the dry-run-only switch is on, so LIVE is capped at DRY_RUN",
		],
	} with input as object.union(_catalog_call("ops", "transfer_funds", 0.9), {"switches": {"dry_run_only": true}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_concurrency_cap_is_allow_dry_run if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_holds("mailer", "crm_lookup"),
			"confidence 0.9 meets the LIVE threshold 0.7 for LOW-risk tools",
			"5 LIVE executions are in flight and the cap is 5",
		],
	} with input as _with({"counts": {"live_in_flight": 5}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_high_risk_reversible_without_approval_switch_is_allow_live if {
	decision.main == {
		"verdict": "ALLOW",
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [
			_holds("ops", "transfer_funds"),
			"confidence 0.9 meets the LIVE threshold 0.85 for HIGH-risk tools",
		],
	} with input as _catalog_call("ops", "transfer_funds", 0.9)
		with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config.switches as object.union(_shipped_switches, {"approval_required_for_high_risk": false})
}

# ---------------------------------------------------------------------------
# Grants (docs/grants.md): a grant in input.grants covers a call that needs approval
# ---------------------------------------------------------------------------

_grant(agent_id, tool) := {"id": "grt_1", "agent_id": agent_id, "tool": tool, "plan_id": "", "expires_at": 2000000000, "max_uses": 3}

test_grant_covers_a_call_that_needs_approval if {
	d := decision.main with input as object.union(_catalog_call("mailer", "send_email", 0.85), {"grants": [_grant("mailer", "send_email")]})
		with data.interlock.config.switches as _shipped_switches
		with data.interlock.config.thresholds as _shipped_thresholds
	d.verdict == "ALLOW"
	d.mode == "LIVE"
	d.needs_approval == false
	d.grant == "grt_1"
	d.reasons[count(d.reasons) - 1] == "covered by grant grt_1: mailer may call send_email without a new approval"
}

test_grant_never_covers_a_not_grantable_tool if {
	d := decision.main with input as object.union(_catalog_call("ops", "transfer_funds", 0.9), {"grants": [_grant("ops", "transfer_funds")]})
		with data.interlock.config.switches as _shipped_switches
		with data.interlock.config.thresholds as _shipped_thresholds
	d.verdict == "PENDING_APPROVAL"
	not d.grant
	d.reasons[count(d.reasons) - 1] == "grants never cover transfer_funds: its contract says grantable: false"
}

test_grant_for_another_agent_does_not_cover if {
	d := decision.main with input as object.union(_catalog_call("mailer", "send_email", 0.85), {"grants": [_grant("ops", "send_email")]})
		with data.interlock.config.switches as _shipped_switches
		with data.interlock.config.thresholds as _shipped_thresholds
	d.verdict == "PENDING_APPROVAL"
}

test_grant_does_not_widen_permissions if {
	d := decision.main with input as object.union(_catalog_call("readonly", "send_email", 0.85), {"grants": [_grant("readonly", "send_email")]})
		with data.interlock.config.switches as _shipped_switches
		with data.interlock.config.thresholds as _shipped_thresholds
	d.verdict == "DENY"
}
