# METADATA
# title: Approvals
# description: |
#   What a held call needs before it may run LIVE: which roles may approve it,
#   how many distinct approvers, how long the request lives and whom it
#   escalates to. The rules are data (data.interlock.config.approvals): a
#   default, and per-tool overrides of any of its fields.
#
#   The policy may also approve a held call itself (auto_approve, the seed's
#   Phase-13 approval callback as policy; docs/trust.md): when
#   config.approvals.auto_approve is enabled, for a reversible tool whose
#   contract does not make a human approval a hard requirement
#   (human_approval: required), at a confidence at or above its floor, and
#   while the pair's policy approvals in the last hour (input.counts.
#   policy_approvals) are under its cap. The server records that approval as
#   approved by the policy revision, like a human's.
package interlock.approvals

import data.interlock.config

_requirement := object.union(config.approvals.default, rules) if {
	rules := config.approvals.tools[input.tool]
} else := config.approvals.default

_auto := object.get(config.approvals, "auto_approve", {})

# The server gives the count only while auto_approve is enabled; without it
# the policy approves nothing (the rate could not be checked).
_policy_approvals := input.counts.policy_approvals

# Numbers in reasons print the same on every engine (see escalation._fmt).
_fmt(x) := sprintf("%d", [floor(x)]) if {
	x == floor(x)
} else := sprintf("%.6g", [x])

# METADATA
# entrypoint: true
# description: |
#   {reason} when the policy approves the held call itself; undefined when a
#   human must.
auto_approve := {"reason": sprintf("%v is reversible and confidence %v meets the policy's approval floor %v (%v of %v policy approvals in the last hour)", [input.tool, _fmt(input.confidence), _fmt(_auto.min_confidence), _fmt(_policy_approvals), _fmt(_auto.max_per_hour)])} if {
	_auto.enabled == true
	input.contract.reversible == true
	object.get(input.contract, "human_approval", "optional") != "required"
	input.confidence >= _auto.min_confidence
	_policy_approvals < _auto.max_per_hour
}

# METADATA
# entrypoint: true
# description: The requirement of an approval for input.tool.
requirement := object.union(_requirement, {"auto_approve": auto_approve}) if {
	auto_approve
} else := _requirement
