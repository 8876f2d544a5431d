package micro_mcp.authz_test

import data.micro_mcp.authz

_fetch_tool := _tool("http", "fetchText", {"readOnlyHint": true, "openWorldHint": true})

_fetch(scopes, purpose, resource) := _input({
	"scopes": scopes,
	"purpose": purpose,
	"tool": _fetch_tool,
	"resource": resource,
})

_url(scheme, host, method) := {
	"url": concat("", [scheme, "://", host, "/x"]),
	"scheme": scheme,
	"host": host,
	"port": 443,
	"method": method,
}

test_responder_can_fetch_status_page_for_incident if {
	inp := _fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "GET"))
	authz.allow with input as inp
	_ids(authz.reasons) == {"http_fetch_scope"} with input as inp
}

test_responder_cannot_fetch_without_http_fetch_scope if {
	inp := _fetch(["fs:read"], "incident-4711", _url("https", "status.example.com", "GET"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_fetch_scope_missing"} with input as inp
}

test_responder_cannot_fetch_host_of_another_purpose if {
	inp := _fetch(["http:fetch"], "incident-4711", _url("https", "docs.example.com", "GET"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_host_not_allowed_for_purpose"} with input as inp
}

test_researcher_can_fetch_docs_host if {
	authz.allow with input as _fetch(["http:fetch"], "docs-research", _url("https", "docs.example.com", "HEAD"))
}

test_anyone_cannot_fetch_without_purpose if {
	inp := _fetch(["http:fetch"], null, _url("https", "status.example.com", "GET"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_required", "http_host_not_allowed_for_purpose"} with input as inp
}

test_anyone_cannot_fetch_with_unknown_purpose if {
	inp := _fetch(["http:fetch"], "curiosity", _url("https", "status.example.com", "GET"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_not_granted", "http_host_not_allowed_for_purpose"} with input as inp
}

test_anyone_cannot_post if {
	inp := _fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "POST"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_method_not_read_only"} with input as inp
}

test_anyone_cannot_fetch_file_scheme if {
	inp := _fetch(["http:fetch"], "incident-4711", {"url": "file:///etc/passwd", "scheme": "file", "host": "", "port": null, "method": "GET"})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_scheme_not_allowed", "http_host_not_allowed_for_purpose"} with input as inp
}

test_anyone_cannot_fetch_invalid_url if {
	inp := _fetch(["http:fetch"], "incident-4711", {"url": null, "scheme": null, "host": null, "port": null, "method": "GET"})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_url_invalid"} with input as inp
}

test_anyone_cannot_fetch_loopback_there_is_no_local_dev_purpose if {
	inp := _fetch(["http:fetch"], "local-dev", _url("http", "127.0.0.1", "GET"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"purpose_not_granted", "http_host_not_allowed_for_purpose"} with input as inp
}

test_anyone_can_list_fetch_without_purpose if {
	inp := _relist(_fetch(["http:fetch"], null, {}))
	authz.allow with input as inp
}

test_anyone_cannot_list_fetch_without_scope if {
	inp := _relist(_fetch([], null, {}))
	not authz.allow with input as inp
}

# A service configured without its resource declaration gives no URL facts at all: still denied.
test_anyone_cannot_fetch_without_any_url_fact if {
	inp := _fetch(["http:fetch"], "incident-4711", {})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_url_invalid", "http_method_not_read_only"} with input as inp
}

test_allowed_fetch_carries_the_purpose_hosts_as_reach if {
	inp := _fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "GET"))
	authz.obligations.reach == {"hosts": {"status.example.com", "api.pagerduty.com"}} with input as inp
}

test_allowed_fetch_carries_redaction_and_a_size_limit if {
	inp := _fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "GET"))
	authz.obligations == {
		"reach": {"hosts": {"status.example.com", "api.pagerduty.com"}},
		"redact": {"email", "secrets"},
		"max_bytes": 1048576,
	} with input as inp
}

test_anyone_cannot_fetch_after_the_session_received_a_secret if {
	inp := object.union(
		_fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "GET")),
		{"context": object.union(_base.context, {"data_labels": ["internal", "secret"]})},
	)
	not authz.allow with input as inp
	_ids(authz.reasons) == {"http_fetch_after_secret"} with input as inp
}

test_anyone_can_fetch_after_internal_data if {
	inp := object.union(
		_fetch(["http:fetch"], "incident-4711", _url("https", "status.example.com", "GET")),
		{"context": object.union(_base.context, {"data_labels": ["internal"]})},
	)
	authz.allow with input as inp
}

test_denied_fetch_carries_no_redaction if {
	inp := _fetch([], "incident-4711", _url("https", "status.example.com", "GET"))
	authz.obligations == {"step_up_scopes": {"http:fetch"}} with input as inp
}
