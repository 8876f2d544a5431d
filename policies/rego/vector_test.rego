package micro_mcp.authz_test

import data.micro_mcp.authz

_read_only := {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}

_vec(local_name, groups, scopes, resource) := _input({
	"principal": object.union(_base.principal, {"groups": groups}),
	"scopes": scopes,
	"tool": _tool("vector", local_name, _read_only),
	"resource": resource,
})

test_engineer_can_search_eng_tag if {
	inp := _vec("search", ["eng"], ["vector:read"], {"collection": "sample", "tag": "eng"})
	authz.allow with input as inp
	_ids(authz.reasons) == {"vector_read_scope"} with input as inp
}

test_support_can_get_public_tag if {
	authz.allow with input as _vec("get", ["support"], ["vector:read"], {"collection": "sample", "tag": "public"})
}

test_support_cannot_search_eng_tag if {
	inp := _vec("search", ["support"], ["vector:read"], {"collection": "sample", "tag": "eng"})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_tag_not_permitted"} with input as inp
}

test_engineer_cannot_search_without_a_tag if {
	inp := _vec("search", ["eng"], ["vector:read"], {"collection": "sample", "tag": null})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_tag_required"} with input as inp
}

test_engineer_cannot_search_another_collection if {
	inp := _vec("search", ["eng"], ["vector:read"], {"collection": "hr", "tag": "eng"})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_collection_not_permitted"} with input as inp
}

test_engineer_cannot_search_without_vector_read_scope if {
	inp := _vec("search", ["eng"], ["fs:read"], {"collection": "sample", "tag": "eng"})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_read_scope_missing"} with input as inp
	authz.obligations == {"step_up_scopes": {"vector:read"}} with input as inp
}

test_outsider_cannot_list_vector_tools if {
	inp := _relist(_vec("search", ["sales"], ["vector:read"], {}))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_requires_group"} with input as inp
}

test_support_can_list_vector_search if {
	authz.allow with input as _relist(_vec("search", ["support"], ["vector:read"], {}))
}

# A service configured without its resource declaration gives no facts at all: still denied.
test_engineer_cannot_search_without_any_fact if {
	inp := _vec("search", ["eng"], ["vector:read"], {})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_collection_not_permitted", "vector_tag_required"} with input as inp
}

_upsert(groups, scopes, purpose) := object.union(
	_vec("upsert", groups, scopes, {"collection": "sample", "tag": null}),
	{"purpose": purpose, "tool": _tool("vector", "upsert", {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false})},
)

test_engineer_can_upsert_with_write_scope_and_purpose if {
	inp := _upsert(["eng"], ["vector:write"], "docs-research")
	authz.allow with input as inp
	_ids(authz.reasons) == {"vector_write_scope"} with input as inp
}

test_support_cannot_upsert if {
	inp := _upsert(["support"], ["vector:write"], "docs-research")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"vector_writer_required"} with input as inp
}

test_engineer_cannot_upsert_without_purpose if {
	inp := _upsert(["eng"], ["vector:write"], null)
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_required"} with input as inp
}

test_anyone_cannot_use_unknown_vector_tool if {
	inp := _vec("drop", ["eng"], ["vector:read", "vector:write"], {"collection": "sample", "tag": "eng"})
	not authz.allow with input as inp
	"tool_not_in_policy" in _ids(authz.reasons) with input as inp
}
