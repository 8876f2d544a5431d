package micro_mcp.authz_test

import data.micro_mcp.authz

_fs(groups, scopes, path) := _input({
	"principal": object.union(_base.principal, {"groups": groups}),
	"scopes": scopes,
	"resource": {"path": path},
})

test_engineer_can_read_eng_docs if {
	authz.allow with input as _fs(["eng"], ["fs:read"], "/eng/design.md")
}

test_engineer_can_read_public_dir_itself if {
	authz.allow with input as _fs(["eng"], ["fs:read"], "/public")
}

test_engineer_cannot_read_without_fs_read_scope if {
	inp := _fs(["eng"], ["http:fetch"], "/eng/design.md")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_read_scope_missing"} with input as inp
}

test_support_can_read_public if {
	authz.allow with input as _fs(["support"], ["fs:read"], "/public/faq.md")
}

test_support_cannot_read_eng if {
	inp := _fs(["support"], ["fs:read"], "/eng/design.md")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_path_not_permitted"} with input as inp
}

test_engineer_cannot_read_sibling_with_shared_prefix if {
	not authz.allow with input as _fs(["eng"], ["fs:read"], "/engineering/secret.md")
}

test_engineer_cannot_read_root_readme if {
	not authz.allow with input as _fs(["eng"], ["fs:read"], "/README.md")
}

test_engineer_cannot_read_invalid_path if {
	inp := _fs(["eng"], ["fs:read"], null)
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_path_invalid"} with input as inp
}

test_outsider_cannot_list_fs_tools if {
	inp := _relist(_fs(["sales"], ["fs:read"], null))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_requires_group"} with input as inp
}

test_support_can_list_fs_tools_without_arguments if {
	inp := _relist(_fs(["support"], ["fs:read"], null))
	authz.allow with input as inp
}

test_outsider_cannot_call_fs_tools if {
	inp := _fs([], ["fs:read"], "/public/faq.md")
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_requires_group", "fs_path_not_permitted"} with input as inp
}

# A service configured without its resource declaration gives no path fact at all: still denied.
test_engineer_cannot_read_without_any_path_fact if {
	inp := _input({"scopes": ["fs:read"], "resource": {}})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"fs_path_invalid"} with input as inp
}

test_allowed_read_carries_the_readable_roots_as_reach if {
	authz.obligations == {"reach": {"roots": {"/eng", "/public"}}} with input as _fs(["eng"], ["fs:read"], "/eng/design.md")
}
