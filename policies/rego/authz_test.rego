package micro_mcp.authz_test

import data.micro_mcp.authz

# Shared fixtures for every *_test.rego of this package: a call by an engineer with no scopes.
# _input replaces whole top-level keys (object.union alone would merge nested objects, such
# as the tool's annotations, into the patch).
_base := {
	"phase": "call",
	"method": "tools/call",
	"action": "call_tool",
	"principal": {"id": "alice", "type": "user", "issuer": "https://idp.test", "groups": ["eng"], "purposes": [], "attributes": {}},
	"client": {"id": "agent-1"},
	"scopes": [],
	"purpose": null,
	"tool": {"name": "fs.read", "namespace": "fs", "local_name": "read", "annotations": {"readOnlyHint": true, "openWorldHint": false}, "definition_hash": "sha256:0"},
	"arguments": {},
	"resource": {},
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "r1", "session_id": null, "client_ip": null},
}

_input(patch) := object.union(object.remove(_base, object.keys(patch)), patch)

_tool(namespace, local_name, annotations) := {
	"name": concat(".", [namespace, local_name]),
	"namespace": namespace,
	"local_name": local_name,
	"annotations": annotations,
	"definition_hash": "sha256:0",
}

# The same request at list time: arguments and resource facts are unknown.
_relist(inp) := object.union(object.remove(inp, {"arguments", "resource"}), {"phase": "list", "method": "tools/list", "action": "list_tools", "resource": {}})

# The method table (src/policy/methods.ts) as the gateway fills phase, method and action.
_methods := {
	"tools/list": {"phase": "list", "action": "list_tools"},
	"tools/call": {"phase": "call", "action": "call_tool"},
	"prompts/list": {"phase": "list", "action": "list_prompts"},
	"prompts/get": {"phase": "call", "action": "get_prompt"},
	"resources/list": {"phase": "list", "action": "list_resources"},
	"resources/templates/list": {"phase": "list", "action": "list_resource_templates"},
	"resources/read": {"phase": "call", "action": "read_resource"},
	"resources/subscribe": {"phase": "call", "action": "subscribe_resource"},
	"completion/complete": {"phase": "call", "action": "complete"},
}

# An input for another method: phase and action follow the method, as the gateway sets them.
_with_method(inp, method) := object.union(inp, {"method": method, "phase": _methods[method].phase, "action": _methods[method].action})

_ids(reasons) := {id | some r in reasons; id := split(r, ":")[0]}

test_anyone_cannot_use_unknown_first_party_tool if {
	inp := _input({"scopes": ["fs:read"], "tool": _tool("fs", "write", {"destructiveHint": true}), "resource": {"path": "/eng/a"}})
	not authz.allow with input as inp
	"tool_not_in_policy" in _ids(authz.reasons) with input as inp
}

test_anyone_can_use_known_first_party_tool_without_tool_not_in_policy if {
	inp := _input({"scopes": ["fs:read"], "resource": {"path": "/eng/a"}})
	not "tool_not_in_policy" in _ids(authz.reasons) with input as inp
}

test_agent_can_call_third_party_tool_with_namespace_scope if {
	inp := _input({"scopes": ["everything:call"], "purpose": "incident-4711", "tool": _tool("everything", "echo", {})})
	authz.allow with input as inp
	_ids(authz.reasons) == {"service_call_scope"} with input as inp
}

test_agent_cannot_call_third_party_tool_without_namespace_scope if {
	inp := _input({"scopes": ["other:call", "fs:read"], "purpose": "incident-4711", "tool": _tool("everything", "echo", {})})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"service_call_scope_missing"} with input as inp
}

test_agent_can_read_third_party_resources_and_prompts_with_namespace_scope if {
	every method in ["resources/read", "resources/subscribe", "resources/list", "resources/templates/list", "prompts/get", "prompts/list", "completion/complete"] {
		inp := _with_method(_input({"scopes": ["everything:call"], "tool": _tool("everything", "static", {})}), method)
		authz.allow with input as inp
		_ids(authz.reasons) == {"service_content_scope"} with input as inp
	}
}

test_agent_cannot_read_third_party_resources_without_namespace_scope if {
	every method in ["prompts/get", "resources/subscribe", "completion/complete"] {
		inp := _with_method(_input({"scopes": ["other:call"], "tool": _tool("everything", "simple", {})}), method)
		not authz.allow with input as inp
		_ids(authz.reasons) == {"service_content_scope_missing"} with input as inp
	}
}

test_anyone_cannot_read_resources_without_a_grant if {
	inp := _with_method(_input({"scopes": ["fs:read"], "resource": {"path": "/eng/a"}}), "resources/read")
	not authz.allow with input as inp
	authz.reasons == {"default_deny: no policy grants this tool to this principal"} with input as inp
}

test_allow_reasons_are_the_grants if {
	inp := _input({"scopes": ["fs:read"], "resource": {"path": "/eng/a.md"}})
	authz.allow with input as inp
	_ids(authz.reasons) == {"fs_read_scope"} with input as inp
}

test_agent_cannot_call_without_scope_gets_step_up_scopes if {
	inp := _input({"scopes": [], "purpose": "incident-4711", "tool": _tool("everything", "echo", {})})
	not authz.allow with input as inp
	authz.obligations == {"step_up_scopes": {"everything:call"}} with input as inp
}

test_agent_denied_for_other_reasons_gets_no_step_up if {
	inp := _input({"scopes": ["everything:call"], "tool": _tool("everything", "echo", {})})
	not authz.allow with input as inp
	authz.obligations == {} with input as inp
}
