# METADATA
# title: Micro-MCP tool authorization
# description: |
#   Decides whether a principal may list or call an MCP tool through the gateway.
#   Deny overrides: a request is allowed when at least one grant matches and no deny matches.
#   Every reason is "<id>: <message>". The id is the rule id, shared with the Cedar policy
#   of the same intent (policies/cedar/policies.cedar), so audit records cite one name per rule.
#   Messages never repeat arguments: they are shown to agents.
package micro_mcp.authz

default allow := false

allow if {
	count(_grants) > 0
	count(_denies) == 0
}

reasons := _grants if allow

reasons := _denies if {
	not allow
	count(_denies) > 0
}

reasons := {"default_deny: no policy grants this tool to this principal"} if {
	not allow
	count(_denies) == 0
}

# Tool listing and tool calls of every service, and the prompts and resources of third-party
# services, are governed by this example set. The first-party services (fs, http, vector, github) publish no
# prompts or resources, so theirs fall through to default_deny until a policy grants them.
# input.action comes from the gateway's one method table (the same action Cedar is asked about).
_tool_method if input.action in {"list_tools", "call_tool"}

_content_method if input.action in {"list_prompts", "get_prompt", "list_resources", "list_resource_templates", "read_resource", "subscribe_resource", "complete"}

_call if input.action == "call_tool"

# The first-party services and the tools this policy knows. A tool a service adds later is
# denied (tool_not_in_policy) until the policy is reviewed for it.
_known_tools := {
	"fs": {"read", "list", "stat", "search"},
	"http": {"fetchText"},
	"vector": {"search", "get", "upsert"},
	"github": {"searchIssues", "getIssue", "listRepos", "createIssue"},
}

# METADATA
# title: tool_not_in_policy
# description: A first-party service's tool that this policy does not know is denied.
_denies contains "tool_not_in_policy: this tool of a first-party service is not covered by the policy" if {
	_tool_method
	known := _known_tools[input.tool.namespace]
	not input.tool.local_name in known
}

# METADATA
# title: service_call_scope
# description: A tool of any other (third-party) service is granted by scope "<namespace>:call".
_grants contains "service_call_scope: tools of this service are granted by scope <namespace>:call" if {
	_tool_method
	not _known_tools[input.tool.namespace]
	_call_scope(input.tool.namespace) in input.scopes
}

# METADATA
# title: service_call_scope_missing
# description: Without scope "<namespace>:call" a third-party service's tools are denied.
_denies contains "service_call_scope_missing: tools of this service require scope <namespace>:call" if {
	_tool_method
	not _known_tools[input.tool.namespace]
	not _call_scope(input.tool.namespace) in input.scopes
}

_call_scope(namespace) := concat("", [namespace, ":call"])

# A named resource fact is present as Cedar sees it (context.resource has it): a string, a boolean
# or an integer. null (no such argument, or an object or list) and other numbers are absent.
_fact_present(v) if is_string(v)

_fact_present(v) if is_boolean(v)

_fact_present(v) if {
	is_number(v)
	v == floor(v)
}

# METADATA
# title: obligations
# description: |
#   What a decision requires of the gateway besides allow or deny, one member per obligation (the
#   gateway knows step_up_scopes, reach, consent, redact, max_bytes and labels; any other member
#   denies the call). On a denial that more scope would lift: step_up_scopes, the scopes to ask for
#   (HTTP 403 with WWW-Authenticate error="insufficient_scope"). On an allowed call: what the files of
#   the package add to _reach, _consent, _redact, _max_bytes and _labels.
obligations["step_up_scopes"] := _step_up_scopes if {
	not allow
	count(_step_up_scopes) > 0
}

# METADATA
# title: reach
# description: |
#   On an allowed call, what the decision narrows the service's reach to; it travels to the service
#   in the per-call credential, which enforces it on the request and on every redirect hop. A rule
#   of the package adds entries to _reach (hosts, ports, roots).
obligations["reach"] := _reach if {
	allow
	count(_reach) > 0
}

default _consent := false

# The user must approve this exact call (tool and arguments) through the agent before it is forwarded.
obligations["consent"] if {
	allow
	_consent
}

# Categories (email, phone, card, secrets) removed from the result before the agent sees it.
obligations["redact"] := _redact if {
	allow
	count(_redact) > 0
}

# The largest result in bytes; the smallest of the rules' limits wins.
obligations["max_bytes"] := min(_max_bytes) if {
	allow
	count(_max_bytes) > 0
}

# Data categories of the result (pii, secret, internal): audited, and facts of later calls.
obligations["labels"] := _labels if {
	allow
	count(_labels) > 0
}

# True when the grant with this id applies (obligations follow the grants, as Cedar's annotations
# follow the deciding permits).
_granted(id) if {
	some g in _grants
	startswith(g, concat("", [id, ":"]))
}

_scope_denial_scope := {
	"fs_read_scope_missing": "fs:read",
	"http_fetch_scope_missing": "http:fetch",
	"vector_read_scope_missing": "vector:read",
	"vector_write_scope_missing": "vector:write",
	"github_read_scope_missing": "github:read",
	"github_write_scope_missing": "github:write",
}

_step_up_scopes contains scope if {
	some r in _denies
	id := split(r, ":")[0]
	scope := _scope_denial_scope[id]
}

_step_up_scopes contains _call_scope(input.tool.namespace) if {
	some r in _denies
	split(r, ":")[0] in {"service_call_scope_missing", "service_content_scope_missing"}
}

# METADATA
# title: service_content_scope
# description: Prompts and resources of a third-party service are granted by scope "<namespace>:call".
_grants contains "service_content_scope: prompts and resources of this service are granted by scope <namespace>:call" if {
	_content_method
	not _known_tools[input.tool.namespace]
	_call_scope(input.tool.namespace) in input.scopes
}

# METADATA
# title: service_content_scope_missing
# description: Without scope "<namespace>:call" a third-party service's prompts and resources are denied.
_denies contains "service_content_scope_missing: prompts and resources of this service require scope <namespace>:call" if {
	_content_method
	not _known_tools[input.tool.namespace]
	not _call_scope(input.tool.namespace) in input.scopes
}
