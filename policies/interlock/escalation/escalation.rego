# METADATA
# title: Escalation
# description: |
#   Picks the execution mode of a tool call (MOCK, DRY_RUN or LIVE) from the
#   caller's confidence and the tool's risk, then applies the global switches
#   (dry-run only, LIVE confidence floor, cap on concurrent LIVE executions)
#   and says whether a human must approve before the call runs LIVE.
#   Tunables come from data.interlock.config; per-call overrides of the
#   switches from input.switches. Everything else comes in the input.
package interlock.escalation

import data.interlock.config
import data.interlock.trust

# The switches in force: the data defaults, overridden by input.switches.
# (Switches that are not an object are ignored here; the decision rule denies them.)
switches := object.union(config.switches, input.switches) if {
	is_object(input.switches)
} else := config.switches

_threshold := config.thresholds[input.contract.risk]

# The mode the confidence alone earns for this risk level.
base_mode := "LIVE" if {
	input.confidence >= _threshold.live
} else := "DRY_RUN" if {
	input.confidence >= _threshold.dry_run
} else := "MOCK"

# Numbers in reasons: integers as integers, others to 6 significant digits.
# Engines print raw floats differently (regopy gives 0.69 as 0.6899999999999999);
# these two formats print the same in both.
_fmt(x) := sprintf("%d", [floor(x)]) if {
	x == floor(x)
} else := sprintf("%.6g", [x])

_live_in_flight := object.get(input, ["counts", "live_in_flight"], 0)

# Reasons LIVE is capped at DRY_RUN, keyed so the order is stable. Only a call
# that earned LIVE looks at them.
live_caps[1] := "the dry-run-only switch is on, so LIVE is capped at DRY_RUN" if {
	base_mode == "LIVE"
	switches.dry_run_only == true
}

live_caps[2] := sprintf("confidence %v is below the global LIVE floor %v", [_fmt(input.confidence), _fmt(switches.live_confidence_floor)]) if {
	base_mode == "LIVE"
	input.confidence < switches.live_confidence_floor
}

live_caps[3] := sprintf("%v LIVE executions are in flight and the cap is %v", [_fmt(_live_in_flight), _fmt(switches.max_concurrent_live)]) if {
	base_mode == "LIVE"
	_live_in_flight >= switches.max_concurrent_live
}

# The (agent, tool) pair is demoted (input.trust; the trust policy).
live_caps[4] := trust.reason if {
	base_mode == "LIVE"
	trust.capped
}

# METADATA
# entrypoint: true
# description: The execution mode after the switches.
mode := "DRY_RUN" if {
	base_mode == "LIVE"
	count(live_caps) > 0
} else := base_mode

_approval_causes[1] := sprintf("%v-risk tools need a human approval to run LIVE", [input.contract.risk]) if {
	input.contract.risk == "HIGH"
	switches.approval_required_for_high_risk == true
}

_approval_causes[2] := sprintf("%v is irreversible, so it never runs LIVE without a human approval", [input.tool]) if {
	not input.contract.reversible == true
}

# METADATA
# entrypoint: true
# description: True when the call would run LIVE and a human must approve it first.
needs_approval if {
	mode == "LIVE"
	count(_approval_causes) > 0
}

default needs_approval := false

# Only the reason of the mode taken is built.
_base_reason := sprintf("confidence %v meets the LIVE threshold %v for %v-risk tools", [_fmt(input.confidence), _fmt(_threshold.live), input.contract.risk]) if {
	base_mode == "LIVE"
} else := sprintf("confidence %v meets the DRY_RUN threshold %v but not the LIVE threshold %v for %v-risk tools", [_fmt(input.confidence), _fmt(_threshold.dry_run), _fmt(_threshold.live), input.contract.risk]) if {
	base_mode == "DRY_RUN"
} else := sprintf("confidence %v is below the DRY_RUN threshold %v for %v-risk tools, so the call runs as MOCK", [_fmt(input.confidence), _fmt(_threshold.dry_run), input.contract.risk])

_cap_reasons := [live_caps[k] | some k in sort(object.keys(live_caps))]

_approval_reasons := [_approval_causes[k] | some k in sort(object.keys(_approval_causes))] if {
	needs_approval
} else := []

# METADATA
# entrypoint: true
# description: Why the mode is what it is, in words, most important first.
reasons := [_base_reason] if {
	base_mode != "LIVE"
} else := array.concat(array.concat([_base_reason], _cap_reasons), _approval_reasons)
