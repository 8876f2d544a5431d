package micro_mcp.authz_test

import data.micro_mcp.authz

_third_party(annotations, purpose) := _input({
	"scopes": ["everything:call"],
	"purpose": purpose,
	"tool": _tool("everything", "act", annotations),
})

test_agent_cannot_call_unannotated_tool_without_purpose if {
	inp := _third_party({}, null)
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_required"} with input as inp
}

test_agent_can_call_unannotated_tool_with_purpose if {
	authz.allow with input as _third_party({}, "incident-4711")
}

test_agent_cannot_call_destructive_closed_world_tool_without_purpose if {
	not authz.allow with input as _third_party({"openWorldHint": false, "destructiveHint": true}, null)
}

test_agent_cannot_call_destructive_tool_with_empty_purpose if {
	not authz.allow with input as _third_party({"openWorldHint": false}, "")
}

test_agent_can_call_read_only_closed_world_tool_without_purpose if {
	authz.allow with input as _third_party({"readOnlyHint": true, "openWorldHint": false}, null)
}

test_agent_can_call_non_destructive_closed_world_tool_without_purpose if {
	authz.allow with input as _third_party({"destructiveHint": false, "openWorldHint": false}, null)
}

test_agent_cannot_call_tool_with_non_boolean_hint_without_purpose if {
	not authz.allow with input as _third_party({"readOnlyHint": true, "openWorldHint": "no"}, null)
}

test_agent_can_list_open_world_tool_without_purpose if {
	authz.allow with input as _relist(_third_party({}, null))
}

_as(groups, purposes, purpose) := _input({
	"principal": object.union(_base.principal, {"groups": groups, "purposes": purposes}),
	"scopes": ["everything:call"],
	"purpose": purpose,
	"tool": _tool("everything", "act", {"readOnlyHint": true, "openWorldHint": false}),
})

test_engineer_can_act_under_purpose_granted_to_eng if {
	authz.allow with input as _as(["eng"], [], "incident-4711")
}

test_support_cannot_act_under_purpose_not_granted_to_support if {
	inp := _as(["support"], [], "incident-4711")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_not_granted"} with input as inp
}

test_anyone_can_act_under_purpose_granted_by_token if {
	authz.allow with input as _as([], ["audit-2026"], "audit-2026")
}

test_anyone_cannot_act_under_purpose_granted_to_nobody if {
	inp := _as(["eng"], ["audit-2026"], "curiosity")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_not_granted"} with input as inp
}

test_anyone_without_purpose_is_not_denied_purpose_not_granted if {
	inp := _as(["support"], [], null)
	not "purpose_not_granted" in _ids(authz.reasons) with input as inp
}
