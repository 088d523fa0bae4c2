# METADATA
# title: Approvals
# description: |
#   What a held call needs before it may run LIVE: which roles may approve it,
#   how many distinct approvers, how long the request lives and whom it
#   escalates to. The rules are data (data.interlock.config.approvals): a
#   default, and per-tool overrides of any of its fields.
package interlock.approvals

import data.interlock.config

# METADATA
# entrypoint: true
# description: The requirement of an approval for input.tool.
requirement := object.union(config.approvals.default, rules) if {
	rules := config.approvals.tools[input.tool]
} else := config.approvals.default
