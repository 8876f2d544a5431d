# HTTP fetch service (http)
#
# http.fetchText reaches the open world, so every call must name a purpose, and each
# purpose may reach only the hosts listed for it, with read-only methods.
package micro_mcp.authz

# Hosts reachable per declared purpose. Keep in step with http_host_not_allowed_for_purpose
# in policies/cedar/policies.cedar. "local-dev" serves `make run` demos and loopback tests.
_purpose_hosts := {
	"incident-4711": {"status.example.com", "api.pagerduty.com"},
	"docs-research": {"docs.example.com", "developer.mozilla.org"},
	"local-dev": {"127.0.0.1", "localhost"},
}

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
	not is_string(input.resource.url)
}

# METADATA
# title: http_scheme_not_allowed
# description: Only http and https URLs may be fetched (no file:, data:, ftp:, ...).
_denies contains "http_scheme_not_allowed: only http and https URLs may be fetched" if {
	_fetch_call
	is_string(input.resource.url)
	not input.resource.scheme in {"http", "https"}
}

# METADATA
# title: http_method_not_read_only
# description: Only the read-only methods GET and HEAD may be used.
_denies contains "http_method_not_read_only: only GET and HEAD requests are allowed" if {
	_fetch_call
	not input.resource.method in {"GET", "HEAD"}
}

# METADATA
# title: http_host_not_allowed_for_purpose
# description: The URL's host must be listed for the declared purpose.
_denies contains "http_host_not_allowed_for_purpose: the host is not allowed for the declared purpose" if {
	_fetch_call
	is_string(input.resource.url)
	not _host_allowed(input.purpose, input.resource.host)
}

_host_allowed(purpose, host) if host in _purpose_hosts[purpose]
