package interlock.escalation_test

import data.interlock.escalation

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

# The outcome of the escalation policy under whatever input/data is in force.
_result := {
	"mode": escalation.mode,
	"needs_approval": escalation.needs_approval,
	"reasons": escalation.reasons,
}

# A tool call with the given risk, reversibility and confidence.
_call(tool, risk, reversible, confidence) := {
	"tool": tool,
	"confidence": confidence,
	"contract": {"risk": risk, "reversible": reversible},
}

# A reversible LOW-risk call, the one that never needs an approval.
_low(confidence) := _call("crm_lookup", "LOW", true, confidence)

_thresholds := {
	"LOW": {"dry_run": 0.5, "live": 0.7},
	"MEDIUM": {"dry_run": 0.65, "live": 0.8},
	"HIGH": {"dry_run": 0.8, "live": 0.85},
}

_default_switches := {
	"dry_run_only": false,
	"live_confidence_floor": 0.0,
	"max_concurrent_live": 5,
	"approval_required_for_high_risk": true,
}

# The shipped config with some switches changed.
_config_with(overrides) := {
	"thresholds": _thresholds,
	"switches": object.union(_default_switches, overrides),
}

_live_reason(confidence, live, risk) := sprintf(
	"confidence %v meets the LIVE threshold %v for %v-risk tools",
	[confidence, live, risk],
)

_dry_run_reason(confidence, dry_run, live, risk) := sprintf(
	"confidence %v meets the DRY_RUN threshold %v but not the LIVE threshold %v for %v-risk tools",
	[confidence, dry_run, live, risk],
)

_mock_reason(confidence, dry_run, risk) := sprintf(
	"confidence %v is below the DRY_RUN threshold %v for %v-risk tools, so the call runs as MOCK",
	[confidence, dry_run, risk],
)

_dry_run_only_reason := "the dry-run-only switch is on, so LIVE is capped at DRY_RUN"

_high_risk_approval := "HIGH-risk tools need a human approval to run LIVE"

# ---------------------------------------------------------------------------
# The shipped config is what these tests assume
# ---------------------------------------------------------------------------

test_the_pinned_values_are_the_shipped_defaults if {
	_shipped_thresholds == _thresholds
	_shipped_switches == _default_switches
}

# ---------------------------------------------------------------------------
# Thresholds, per risk level
# ---------------------------------------------------------------------------

test_low_just_below_dry_run_is_mock if {
	_result == {
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": ["confidence 0.49 is below the DRY_RUN threshold 0.5 for LOW-risk tools, so the call runs as MOCK"],
	} with input as _low(0.49) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_low_at_dry_run_is_dry_run if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": ["confidence 0.5 meets the DRY_RUN threshold 0.5 but not the LIVE threshold 0.7 for LOW-risk tools"],
	} with input as _low(0.5) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_low_at_live_is_live if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": ["confidence 0.7 meets the LIVE threshold 0.7 for LOW-risk tools"],
	} with input as _low(0.7) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_medium_just_below_dry_run_is_mock if {
	_result == {
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": [_mock_reason(0.64, 0.65, "MEDIUM")],
	} with input as _call("form_fill", "MEDIUM", true, 0.64) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_medium_at_dry_run_is_dry_run if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_dry_run_reason(0.65, 0.65, 0.8, "MEDIUM")],
	} with input as _call("form_fill", "MEDIUM", true, 0.65) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_medium_at_live_is_live if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [_live_reason(0.8, 0.8, "MEDIUM")],
	} with input as _call("form_fill", "MEDIUM", true, 0.8) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_high_just_below_dry_run_is_mock if {
	_result == {
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": [_mock_reason(0.79, 0.8, "HIGH")],
	} with input as _call("transfer_funds", "HIGH", true, 0.79) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_high_at_dry_run_is_dry_run if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_dry_run_reason(0.8, 0.8, 0.85, "HIGH")],
	} with input as _call("transfer_funds", "HIGH", true, 0.8) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_high_at_live_is_live_and_needs_approval if {
	_result == {
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [_live_reason(0.85, 0.85, "HIGH"), _high_risk_approval],
	} with input as _call("transfer_funds", "HIGH", true, 0.85) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

# ---------------------------------------------------------------------------
# Switches that cap LIVE at DRY_RUN
# ---------------------------------------------------------------------------

test_dry_run_only_caps_live_at_dry_run if {
	escalation.base_mode == "LIVE" with input as _low(0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.7, "LOW"), _dry_run_only_reason],
	} with input as _low(0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

test_dry_run_only_leaves_mock_alone if {
	_result == {
		"mode": "MOCK",
		"needs_approval": false,
		"reasons": [_mock_reason(0.2, 0.5, "LOW")],
	} with input as _low(0.2) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

test_dry_run_only_leaves_dry_run_without_a_cap_reason if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_dry_run_reason(0.6, 0.5, 0.7, "LOW")],
	} with input as _low(0.6) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

test_live_confidence_floor_caps_live if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"confidence 0.9 is below the global LIVE floor 0.95",
		],
	} with input as _low(0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"live_confidence_floor": 0.95})
}

test_live_confidence_floor_met_exactly_stays_live if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.7, "LOW")],
	} with input as _low(0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"live_confidence_floor": 0.9})
}

test_max_concurrent_live_at_cap_caps_live if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"5 LIVE executions are in flight and the cap is 5",
		],
	} with input as object.union(_low(0.9), {"counts": {"live_in_flight": 5}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_max_concurrent_live_below_cap_stays_live if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.7, "LOW")],
	} with input as object.union(_low(0.9), {"counts": {"live_in_flight": 4}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_missing_counts_mean_zero_in_flight if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"0 LIVE executions are in flight and the cap is 0",
		],
	} with input as _low(0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"max_concurrent_live": 0})
}

test_all_caps_listed_in_order if {
	escalation.reasons == [
		_live_reason(0.9, 0.7, "LOW"),
		_dry_run_only_reason,
		"confidence 0.9 is below the global LIVE floor 0.95",
		"7 LIVE executions are in flight and the cap is 5",
	] with input as object.union(_low(0.9), {"counts": {"live_in_flight": 7}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true, "live_confidence_floor": 0.95})
}

# ---------------------------------------------------------------------------
# input.switches override the data switches
# ---------------------------------------------------------------------------

test_input_switch_turns_dry_run_only_on if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.7, "LOW"), _dry_run_only_reason],
	} with input as object.union(_low(0.9), {"switches": {"dry_run_only": true}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_input_switch_turns_dry_run_only_off if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.7, "LOW")],
	} with input as object.union(_low(0.9), {"switches": {"dry_run_only": false}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

test_input_switches_merge_with_data_switches if {
	escalation.switches == {
		"dry_run_only": true,
		"live_confidence_floor": 0.0,
		"max_concurrent_live": 2,
		"approval_required_for_high_risk": true,
	} with input as object.union(_low(0.9), {"switches": {"max_concurrent_live": 2}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

# ---------------------------------------------------------------------------
# Approvals
# ---------------------------------------------------------------------------

test_high_risk_reversible_without_approval_switch_runs_live_unapproved if {
	_result == {
		"mode": "LIVE",
		"needs_approval": false,
		"reasons": [_live_reason(0.9, 0.85, "HIGH")],
	} with input as _call("transfer_funds", "HIGH", true, 0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"approval_required_for_high_risk": false})
}

test_high_risk_approval_switch_off_through_input if {
	escalation.needs_approval == false with input as object.union(
		_call("transfer_funds", "HIGH", true, 0.9),
		{"switches": {"approval_required_for_high_risk": false}},
	)
		with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_irreversible_low_risk_live_needs_approval if {
	_result == {
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"crm_purge is irreversible, so it never runs LIVE without a human approval",
		],
	} with input as _call("crm_purge", "LOW", false, 0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_irreversible_at_dry_run_needs_no_approval if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_dry_run_reason(0.7, 0.65, 0.8, "MEDIUM")],
	} with input as _call("send_email", "MEDIUM", false, 0.7) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_capped_high_risk_irreversible_needs_no_approval if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [_live_reason(0.95, 0.85, "HIGH"), _dry_run_only_reason],
	} with input as _call("delete_record", "HIGH", false, 0.95) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
		with data.interlock.config as _config_with({"dry_run_only": true})
}

test_high_risk_irreversible_lists_both_approval_causes_in_order if {
	_result == {
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [
			_live_reason(0.95, 0.85, "HIGH"),
			_high_risk_approval,
			"delete_record is irreversible, so it never runs LIVE without a human approval",
		],
	} with input as _call("delete_record", "HIGH", false, 0.95) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_non_boolean_reversible_counts_as_irreversible if {
	_result == {
		"mode": "LIVE",
		"needs_approval": true,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"crm_purge is irreversible, so it never runs LIVE without a human approval",
		],
	} with input as _call("crm_purge", "LOW", null, 0.9) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_input_switches_set_the_floor_and_the_cap if {
	_result == {
		"mode": "DRY_RUN",
		"needs_approval": false,
		"reasons": [
			_live_reason(0.9, 0.7, "LOW"),
			"confidence 0.9 is below the global LIVE floor 0.95",
			"0 LIVE executions are in flight and the cap is 0",
		],
	} with input as object.union(_low(0.9), {"switches": {"live_confidence_floor": 0.95, "max_concurrent_live": 0}}) with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_a_demoted_pair_is_capped_at_dry_run_with_the_reason if {
	reason := "form_fill demoted for agent1 until 12:04:00 UTC after 3 failures in 10 min"
	call := {
		"tool": "form_fill", "agent": {"id": "agent1"}, "confidence": 0.95,
		"contract": {"risk": "MEDIUM", "reversible": true},
		"switches": {}, "counts": {"live_in_flight": 0},
		"trust": {"state": "DEMOTED", "failures": 0, "reason": reason},
	}
	escalation.mode == "DRY_RUN" with input as call with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	reason in escalation.reasons with input as call with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
	not escalation.needs_approval with input as call with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}

test_a_trusted_pair_keeps_live if {
	call := {
		"tool": "form_fill", "agent": {"id": "agent1"}, "confidence": 0.95,
		"contract": {"risk": "MEDIUM", "reversible": true},
		"switches": {}, "counts": {"live_in_flight": 0},
		"trust": {"state": "TRUSTED", "failures": 2},
	}
	escalation.mode == "LIVE" with input as call with data.interlock.config.switches as _shipped_switches with data.interlock.config.thresholds as _shipped_thresholds
}
