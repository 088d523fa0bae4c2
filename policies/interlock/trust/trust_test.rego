package interlock.trust_test

import data.interlock.trust

_call := {"tool": "form_fill", "agent": {"id": "agent1"}}

test_trusted_is_not_capped if {
	not trust.capped with input as object.union(_call, {"trust": {"state": "TRUSTED", "failures": 2}})
}

test_no_trust_in_the_input_is_not_capped if {
	not trust.capped with input as _call
}

test_demoted_is_capped_with_the_servers_reason if {
	t := {"state": "DEMOTED", "reason": "form_fill demoted for agent1 until 12:04:00 UTC after 3 failures in 10 min"}
	trust.capped with input as object.union(_call, {"trust": t})
	trust.reason == t.reason with input as object.union(_call, {"trust": t})
}

test_demoted_without_a_reason_still_says_why if {
	trust.reason == "form_fill demoted for agent1" with input as object.union(_call, {"trust": {"state": "DEMOTED"}})
}

test_probation_is_capped_and_counts_the_runs if {
	t := {"state": "PROBATION", "clean_runs": 2, "clean_runs_needed": 5, "reason": "form_fill demoted for agent1"}
	trust.capped with input as object.union(_call, {"trust": t})
	trust.reason == "form_fill is on probation for agent1: 2 of 5 clean DRY_RUN runs since its cool-down ended (form_fill demoted for agent1)" with input as object.union(_call, {"trust": t})
}
