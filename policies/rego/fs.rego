# File-system service (fs)
#
# fs paths are virtual and canonical ("/" is the service root). Each group may read below
# its roots; a root grants the directory itself and everything under it.
package micro_mcp.authz

# Readable roots per group: engineers read engineering and public material, support only
# public material. Keep in step with fs_path_not_permitted in policies/cedar/policies.cedar.
_fs_roots := {
	"eng": {"/eng", "/public"},
	"support": {"/public"},
}

_fs_read_tool if {
	input.tool.namespace == "fs"
	input.tool.local_name in _known_tools.fs
}

# METADATA
# title: fs_read_scope
# description: The fs read tools (read, list, stat, search) are granted by scope fs:read.
_grants contains "fs_read_scope: fs read tools are granted by scope fs:read" if {
	_tool_method
	_fs_read_tool
	"fs:read" in input.scopes
}

# METADATA
# title: fs_read_scope_missing
# description: Without scope fs:read the fs read tools are denied.
_denies contains "fs_read_scope_missing: fs read tools require scope fs:read" if {
	_tool_method
	_fs_read_tool
	not "fs:read" in input.scopes
}

# METADATA
# title: fs_requires_group
# description: |
#   fs tools are visible and callable only for members of a group with readable roots,
#   so that tools/list hides fs from principals who could never read anything.
_denies contains "fs_requires_group: fs tools require membership in a group with readable paths" if {
	_tool_method
	input.tool.namespace == "fs"
	count(_fs_readable_roots(input.principal.groups)) == 0
}

# METADATA
# title: fs_path_invalid
# description: |
#   A call without a canonical path is denied: the gateway sets the path to null when the
#   argument is missing, holds NUL, a backslash or a percent-encoding, or climbs above "/".
_denies contains "fs_path_invalid: the path argument is missing or not a valid canonical path" if {
	_call
	input.tool.namespace == "fs"
	not _fs_path_valid
}

# A helper rule, not `not is_string(input.resource.path)`: Rego evaluates a function's arguments
# before `not`, so with no path fact at all that expression is undefined and the deny never fires.
_fs_path_valid if is_string(input.resource.path)

# METADATA
# title: fs_path_not_permitted
# description: A call is denied when its path is outside every root of the principal's groups.
_denies contains "fs_path_not_permitted: the path is outside the roots readable by the principal's groups" if {
	_call
	input.tool.namespace == "fs"
	is_string(input.resource.path)
	not _fs_path_readable(input.resource.path, _fs_readable_roots(input.principal.groups))
}

_fs_readable_roots(groups) := {root |
	some group in groups
	some root in _fs_roots[group]
}

_fs_path_readable(path, roots) if path in roots

_fs_path_readable(path, roots) if {
	some root in roots
	startswith(path, concat("", [root, "/"]))
}

# The principal's readable roots: the fs service refuses any path outside them.
_reach["roots"] := _fs_readable_roots(input.principal.groups) if {
	_call
	input.tool.namespace == "fs"
}
