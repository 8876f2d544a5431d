# HTTP fetch service (http)
#
# http.fetchText reaches the open world, so every call must name a purpose, and each
# purpose may reach only the hosts listed for it, with read-only methods.
package micro_mcp.authz

# Hosts reachable per purpose (who may act under which purpose: purpose.rego). One entry per
# purpose, so another file of the package can add a purpose. Keep in step with
# http_host_not_allowed_for_purpose in policies/cedar/policies.cedar.
_purpose_hosts["incident-4711"] := {"status.example.com", "api.pagerduty.com"}

_purpose_hosts["docs-research"] := {"docs.example.com", "developer.mozilla.org"}

_fetch_tool if {
	input.tool.namespace == "http"
	input.tool.local_name == "fetchText"
}

_fetch_call if {
	_call
	_fetch_tool
}

# METADATA
# title: http_fetch_scope
# description: http.fetchText is granted by scope http:fetch.
_grants contains "http_fetch_scope: http.fetchText is granted by scope http:fetch" if {
	_tool_method
	_fetch_tool
	"http:fetch" in input.scopes
}

# METADATA
# title: http_fetch_after_secret
# description: |
#   A session that has received a result labelled "secret" (by a service or a policy) may not fetch
#   from the open world: the secret could leave in the URL. Labels are facts of 2025 sessions only.
_denies contains "http_fetch_after_secret: this session has received secret data; fetching from the open world is denied" if {
	_fetch_call
	"secret" in input.context.data_labels
}

# METADATA
# title: http_fetch_obligations
# description: |
#   Fetched pages are open-world text: e-mail addresses and secrets are removed before the agent
#   sees them, and a result over 1 MiB is refused. Cedar: @redact and @max_bytes on http_fetch_scope.
_redact contains category if {
	_granted("http_fetch_scope")
	some category in {"email", "secrets"}
}

_max_bytes contains 1048576 if _granted("http_fetch_scope")

# METADATA
# title: http_fetch_scope_missing
# description: Without scope http:fetch, http.fetchText is denied.
_denies contains "http_fetch_scope_missing: http.fetchText requires scope http:fetch" if {
	_tool_method
	_fetch_tool
	not "http:fetch" in input.scopes
}

# METADATA
# title: http_url_invalid
# description: A call whose url argument does not parse as a URL is denied.
_denies contains "http_url_invalid: the url argument is missing or not a valid URL" if {
	_fetch_call
	not _url_valid
}

# Helper rules, not `not is_string(...)` or `not x in set` on a fact: Rego evaluates a function's
# arguments before `not`, so with the fact missing such an expression is undefined and the deny
# would never fire (Cedar's `unless { context.resource has ... }` does fire).
_url_valid if is_string(input.resource.url)

_scheme_allowed if input.resource.scheme in {"http", "https"}

_method_read_only if input.resource.method in {"GET", "HEAD"}

_host_allowed_for_purpose if input.resource.host in _purpose_hosts[input.purpose]

# METADATA
# title: http_scheme_not_allowed
# description: Only http and https URLs may be fetched (no file:, data:, ftp:, ...).
_denies contains "http_scheme_not_allowed: only http and https URLs may be fetched" if {
	_fetch_call
	_url_valid
	not _scheme_allowed
}

# METADATA
# title: http_method_not_read_only
# description: Only the read-only methods GET and HEAD may be used.
_denies contains "http_method_not_read_only: only GET and HEAD requests are allowed" if {
	_fetch_call
	not _method_read_only
}

# METADATA
# title: http_host_not_allowed_for_purpose
# description: The URL's host must be listed for the declared purpose.
_denies contains "http_host_not_allowed_for_purpose: the host is not allowed for the declared purpose" if {
	_fetch_call
	_url_valid
	not _host_allowed_for_purpose
}

# The authorised purpose's hosts: a redirect from one of them to any other host is refused by the
# service itself.
_reach["hosts"] := _purpose_hosts[input.purpose] if _fetch_call
