# METADATA
# title: Trust
# description: |
#   Whether the (agent, tool) pair of a call is trusted to run LIVE. The server
#   computes the pair's state from its committed outcomes (docs/trust.md) and
#   gives it as input.trust: TRUSTED, DEMOTED (cooling down after too many bad
#   outcomes) or PROBATION (the cool-down ended; clean DRY_RUN runs earn LIVE
#   back). A pair that is not TRUSTED is capped at DRY_RUN. An input without
#   trust (an older decision replayed) is TRUSTED.
package interlock.trust

_trust := object.get(input, "trust", {})

_state := object.get(_trust, "state", "TRUSTED")

# METADATA
# entrypoint: true
# description: True when the pair may not run LIVE now.
capped if _state in {"DEMOTED", "PROBATION"}

default capped := false

# METADATA
# entrypoint: true
# description: Why the pair is capped, in words (only while it is).
reason := object.get(_trust, "reason", sprintf("%v demoted for %v", [input.tool, input.agent.id])) if {
	_state == "DEMOTED"
} else := sprintf("%v is on probation for %v: %v of %v clean DRY_RUN runs since its cool-down ended (%v)", [input.tool, input.agent.id, object.get(_trust, "clean_runs", 0), object.get(_trust, "clean_runs_needed", 0), object.get(_trust, "reason", "demoted")]) if {
	_state == "PROBATION"
}
