# Purposes: declared, and authorised
#
# Tools that reach the open world or may destroy data are called only with a declared
# purpose (params._meta["micro-mcp/purpose"] or the token's purpose claim), so every such
# call is attributable to a ticket. Missing annotations count as the riskiest value, as the
# MCP spec's defaults do (openWorldHint and destructiveHint default to true).
#
# Declaring a purpose does not authorise it: a principal acts only under the purposes its token
# grants (input.principal.purposes, from the purposes claim) or its groups are granted here.
package micro_mcp.authz

# Purposes granted per group. One entry per group, so another file of the package can add one.
# Keep in step with purpose_not_granted in policies/cedar/policies.cedar.
_group_purposes["eng"] := {"incident-4711", "docs-research"}

_group_purposes["support"] := {"docs-research"}

_purpose_granted(purpose) if purpose in input.principal.purposes

_purpose_granted(purpose) if {
	some group in input.principal.groups
	purpose in _group_purposes[group]
}

_open_world(annotations) if not annotations.openWorldHint == false

_destructive(annotations) if {
	not annotations.readOnlyHint == true
	not annotations.destructiveHint == false
}

_needs_purpose(annotations) if _open_world(annotations)

_needs_purpose(annotations) if _destructive(annotations)

_has_purpose if {
	is_string(input.purpose)
	input.purpose != ""
}

# METADATA
# title: purpose_required
# description: |
#   Open-world or destructive tools are called only with a declared purpose. Listing is not
#   affected: the purpose can still be declared on the call.
_denies contains "purpose_required: open-world or destructive tools require a declared purpose" if {
	_call
	_needs_purpose(object.get(input.tool, "annotations", {}))
	not _has_purpose
}

# METADATA
# title: purpose_not_granted
# description: |
#   A declared purpose must be granted to the principal, by its token (principal.purposes) or by
#   one of its groups; any other purpose is denied, whatever the tool.
_denies contains "purpose_not_granted: the declared purpose is not granted to this principal" if {
	_has_purpose
	not _purpose_granted(input.purpose)
}
