package micro_mcp.authz_test

import data.micro_mcp.authz

_gh_read := {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}

_gh(local_name, groups, scopes, resource) := _input({
	"principal": object.union(_base.principal, {"groups": groups}),
	"scopes": scopes,
	"tool": _tool("github", local_name, _gh_read),
	"resource": resource,
})

_repo(org, repo) := {"org": org, "repo": repo}

test_engineer_can_search_issues_of_a_readable_repo if {
	inp := _gh("searchIssues", ["eng"], ["github:read"], _repo("octokit-fixture-org", "search-issues"))
	authz.allow with input as inp
	_ids(authz.reasons) == {"github_read_scope"} with input as inp
}

test_engineer_read_results_are_labelled_internal if {
	inp := _gh("searchIssues", ["eng"], ["github:read"], _repo("octokit-fixture-org", "search-issues"))
	authz.obligations == {"labels": {"internal"}} with input as inp
}

test_support_can_get_issue_of_hello_world if {
	authz.allow with input as _gh("getIssue", ["support"], ["github:read"], _repo("octokit-fixture-org", "hello-world"))
}

test_support_cannot_read_another_repo_of_the_org if {
	inp := _gh("getIssue", ["support"], ["github:read"], _repo("octokit-fixture-org", "search-issues"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_repo_not_permitted"} with input as inp
}

test_engineer_cannot_read_a_repo_of_another_org if {
	inp := _gh("searchIssues", ["eng"], ["github:read"], _repo("acme", "hello-world"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_repo_not_permitted"} with input as inp
}

test_engineer_can_list_repos_of_the_org if {
	authz.allow with input as _gh("listRepos", ["eng"], ["github:read"], {"org": "octokit-fixture-org", "repo": null})
}

test_engineer_cannot_list_repos_of_another_org if {
	inp := _gh("listRepos", ["eng"], ["github:read"], {"org": "acme", "repo": null})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_org_not_permitted"} with input as inp
}

test_engineer_cannot_read_without_github_read_scope if {
	inp := _gh("getIssue", ["eng"], ["fs:read"], _repo("octokit-fixture-org", "hello-world"))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_read_scope_missing"} with input as inp
	authz.obligations == {"step_up_scopes": {"github:read"}} with input as inp
}

test_engineer_cannot_read_without_repo_facts if {
	inp := _gh("getIssue", ["eng"], ["github:read"], {})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_repo_invalid"} with input as inp
}

test_outsider_cannot_list_github_tools if {
	inp := _relist(_gh("searchIssues", ["sales"], ["github:read"], {}))
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_requires_group"} with input as inp
}

_create(groups, scopes) := object.union(
	_gh("createIssue", groups, scopes, _repo("octokit-fixture-org", "hello-world")),
	{"tool": _tool("github", "createIssue", {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false})},
)

test_engineer_can_list_create_issue_with_write_scope if {
	authz.allow with input as _relist(_create(["eng"], ["github:write"]))
}

test_engineer_can_create_issue_only_with_consent if {
	inp := _create(["eng"], ["github:read", "github:write"])
	authz.allow with input as inp
	_ids(authz.reasons) == {"github_write_scope"} with input as inp
	authz.obligations == {"consent": true} with input as inp
}

test_engineer_cannot_create_issue_without_write_scope if {
	inp := _create(["eng"], ["github:read"])
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_write_scope_missing"} with input as inp
	authz.obligations == {"step_up_scopes": {"github:write"}} with input as inp
}

test_support_cannot_create_issue_in_a_repo_it_cannot_read if {
	inp := object.union(_create(["support"], ["github:write"]), {"resource": _repo("octokit-fixture-org", "search-issues")})
	not authz.allow with input as inp
	_ids(authz.reasons) == {"github_repo_not_permitted"} with input as inp
}
