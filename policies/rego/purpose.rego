# Declared purpose for risky tools
#
# Tools that reach the open world or may destroy data are called only with a declared
# purpose (params._meta["micro-mcp/purpose"] or the token's purpose claim), so every such
# call is attributable to a ticket. Missing annotations count as the riskiest value, as the
# MCP spec's defaults do (openWorldHint and destructiveHint default to true).
package micro_mcp.authz

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
