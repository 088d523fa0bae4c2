# METADATA
# title: Permissions
# description: |
#   An agent may call a tool only if it holds every permission the tool's
#   contract requires. The agent's grants come in input.agent.permissions
#   (the server reads them from data.interlock.agents).
package interlock.permissions

# The agent's grants, read once (an agent without them holds nothing).
_held := object.get(input, ["agent", "permissions"], [])

# METADATA
# entrypoint: true
# description: The permissions the contract requires that the agent lacks.
missing contains permission if {
	some permission in input.contract.required_permissions
	not permission in _held
}

# Whether one required permission is lacking, without building `missing`.
_lacks_one if {
	some permission in input.contract.required_permissions
	not permission in _held
}

# METADATA
# entrypoint: true
# description: True when the agent holds every required permission.
allowed if not _lacks_one

default allowed := false

# METADATA
# entrypoint: true
# description: |
#   Why the agent may or may not call the tool. The denial is built with
#   concat, not sprintf: regopy 1.5.2 quotes a concat result passed to
#   sprintf's %v (and then emits invalid JSON), which OPA does not.
reasons := [sprintf("agent %v holds every permission %v requires", [input.agent.id, input.tool])] if {
	allowed
} else := [concat("", ["agent ", input.agent.id, " lacks permission(s) ", concat(", ", sort(missing)), " required by ", input.tool])]
