# METADATA
# title: Tool-call decision
# description: |
#   The decision Interlock asks for before every tool call: a verdict
#   (ALLOW, DENY or PENDING_APPROVAL), an execution mode and the reasons.
#   A call that is malformed or denied never runs: its mode is MOCK.
package interlock.decision

import data.interlock.approvals
import data.interlock.escalation
import data.interlock.grants
import data.interlock.permissions

_risks := {"LOW", "MEDIUM", "HIGH"}

# Problems with the input itself; any of them denies the call.
input_errors contains "input.tool must be a non-empty string" if {
	not _nonempty_string(object.get(input, "tool", null))
}

input_errors contains "input.agent.id must be a non-empty string" if {
	not _nonempty_string(object.get(input, ["agent", "id"], null))
}

input_errors contains "input.confidence must be a number in [0, 1]" if {
	not _unit_number(object.get(input, "confidence", null))
}

input_errors contains sprintf("input.contract.risk must be one of LOW, MEDIUM, HIGH, not %v", [object.get(input, ["contract", "risk"], null)]) if {
	not object.get(input, ["contract", "risk"], null) in _risks
}

input_errors contains "input.contract.reversible must be a boolean" if {
	not is_boolean(object.get(input, ["contract", "reversible"], null))
}

input_errors contains "input.contract.required_permissions must be an array of strings" if {
	not _string_array(object.get(input, ["contract", "required_permissions"], null))
}

input_errors contains "input.switches must be an object" if {
	not is_object(object.get(input, "switches", {}))
}

# The LIVE cap is checked against it: a count that is not a number denies
# the call (it is absent only where the server does not count, e.g. the playground).
input_errors contains "input.counts.live_in_flight must be a number" if {
	not is_number(object.get(input, ["counts", "live_in_flight"], 0))
}

_switch_types := {
	"dry_run_only": "boolean",
	"approval_required_for_high_risk": "boolean",
	"live_confidence_floor": "number",
	"max_concurrent_live": "number",
}

input_errors contains sprintf("switch %v must be a %v", [name, kind]) if {
	some name, kind in _switch_types
	type_name(object.get(escalation.switches, name, null)) != kind
}

_string_array(a) if {
	is_array(a)
	every x in a {
		is_string(x)
	}
}

_nonempty_string(s) if {
	is_string(s)
	count(s) > 0
}

_unit_number(n) if {
	is_number(n)
	n >= 0
	n <= 1
}

# The same checks as input_errors, as one conjunction read straight from the
# input: a valid input (the common case) never builds the error set, which
# is several times dearer, nor calls a function.
_valid if {
	is_string(input.tool)
	input.tool != ""
	is_string(input.agent.id)
	input.agent.id != ""
	is_number(input.confidence)
	input.confidence >= 0
	input.confidence <= 1
	input.contract.risk in {"LOW", "MEDIUM", "HIGH"}
	is_boolean(input.contract.reversible)
	is_array(input.contract.required_permissions)
	every p in input.contract.required_permissions {
		is_string(p)
	}
	is_object(object.get(input, "switches", {}))
	s := escalation.switches
	is_boolean(s.dry_run_only)
	is_boolean(s.approval_required_for_high_risk)
	is_number(s.live_confidence_floor)
	is_number(s.max_concurrent_live)
	is_number(object.get(input, ["counts", "live_in_flight"], 0))
}

# METADATA
# entrypoint: true
# description: |
#   The decision document the server reads. The branches are ordered so that
#   the common case (a valid call that is allowed) is decided first, and each
#   builds only its own reasons.
main := {
	"verdict": "ALLOW",
	"mode": escalation.mode,
	"needs_approval": false,
	"reasons": array.concat(permissions.reasons, escalation.reasons),
} if {
	_valid
	permissions.allowed
	not escalation.needs_approval
} else := {
	"verdict": "ALLOW",
	"mode": escalation.mode,
	"needs_approval": false,
	"reasons": array.concat(array.concat(permissions.reasons, escalation.reasons), [grants.reason]),
	"grant": grants.grant,
} if {
	_valid
	permissions.allowed
	grants.grant
} else := {
	"verdict": "PENDING_APPROVAL",
	"mode": escalation.mode,
	"needs_approval": true,
	"reasons": array.concat(array.concat(permissions.reasons, escalation.reasons), grants.refusals),
	"approval": approvals.requirement,
} if {
	_valid
	permissions.allowed
} else := {
	"verdict": "DENY",
	"mode": "MOCK",
	"needs_approval": false,
	"reasons": permissions.reasons,
} if {
	_valid
} else := {
	"verdict": "DENY",
	"mode": "MOCK",
	"needs_approval": false,
	"reasons": sort(input_errors),
}
