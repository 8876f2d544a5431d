# GitHub connector (github)
#
# Each group may read a set of repositories (issues: searchIssues, getIssue) and list the
# repositories of the organisations those belong to (listRepos). Creating an issue needs the
# user's consent to that exact call (the consent obligation, github_write_consent).
#
# The facts are named facts the service's config declares (org: /owner, repo: /repo); they are
# read with object.get, so the rules type-check with or without them.
package micro_mcp.authz

# Readable repositories per group, by organisation. Keep in step with github_repo_not_permitted and
# github_org_not_permitted in policies/cedar/policies.cedar.
_github_repos := {
	"eng": {"octokit-fixture-org": {"hello-world", "search-issues", "paginate-issues", "add-labels-to-issue"}},
	"support": {"octokit-fixture-org": {"hello-world"}},
}

_github_read_tool if {
	input.tool.namespace == "github"
	input.tool.local_name in {"searchIssues", "getIssue", "listRepos"}
}

_github_write_tool if {
	input.tool.namespace == "github"
	input.tool.local_name == "createIssue"
}

# Tools that act on one repository (owner and repo); listRepos acts on an organisation.
_github_repo_tool if {
	input.tool.namespace == "github"
	input.tool.local_name in {"searchIssues", "getIssue", "createIssue"}
}

_github_org := object.get(input.resource, "org", null)

_github_repo := object.get(input.resource, "repo", null)

_github_group_orgs contains org if {
	some group in input.principal.groups
	some org, _ in _github_repos[group]
}

_github_repo_readable(org, repo) if {
	some group in input.principal.groups
	repo in _github_repos[group][org]
}

_github_target_valid if {
	_github_repo_tool
	_fact_present(_github_org)
	_fact_present(_github_repo)
}

_github_target_valid if {
	input.tool.namespace == "github"
	input.tool.local_name == "listRepos"
	_fact_present(_github_org)
}

# METADATA
# title: github_read_scope
# description: The github read tools are granted by scope github:read.
_grants contains "github_read_scope: github read tools are granted by scope github:read" if {
	_tool_method
	_github_read_tool
	"github:read" in input.scopes
}

# METADATA
# title: github_read_labels
# description: |
#   Issues and repositories of the organisation are internal data: the results of the read tools are
#   labelled "internal" (audit, and the session's labels in later calls). Cedar: @labels on github_read_scope.
_labels contains "internal" if _granted("github_read_scope")

# METADATA
# title: github_read_scope_missing
# description: Without scope github:read the github read tools are denied.
_denies contains "github_read_scope_missing: github read tools require scope github:read" if {
	_tool_method
	_github_read_tool
	not "github:read" in input.scopes
}

# METADATA
# title: github_write_scope
# description: github.createIssue is granted by scope github:write (and, on a call, needs consent).
_grants contains "github_write_scope: github.createIssue is granted by scope github:write" if {
	_tool_method
	_github_write_tool
	"github:write" in input.scopes
}

# METADATA
# title: github_write_scope_missing
# description: Without scope github:write, github.createIssue is denied.
_denies contains "github_write_scope_missing: github.createIssue requires scope github:write" if {
	_tool_method
	_github_write_tool
	not "github:write" in input.scopes
}

# METADATA
# title: github_requires_group
# description: github tools are visible and callable only for members of a group with repositories.
_denies contains "github_requires_group: github tools require membership in a group with repositories" if {
	_tool_method
	input.tool.namespace == "github"
	count(_github_group_orgs) == 0
}

# METADATA
# title: github_repo_invalid
# description: A call without its owner (and, for an issue tool, repo) argument is denied.
_denies contains "github_repo_invalid: the owner or repo argument is missing" if {
	_call
	input.tool.namespace == "github"
	not _github_target_valid
}

# METADATA
# title: github_repo_not_permitted
# description: An issue tool is denied on a repository outside the principal's groups' repositories.
_denies contains "github_repo_not_permitted: the repository is not readable by the principal's groups" if {
	_call
	_github_target_valid
	_github_repo_tool
	not _github_repo_readable(_github_org, _github_repo)
}

# METADATA
# title: github_org_not_permitted
# description: listRepos is denied for an organisation none of the principal's repositories belong to.
_denies contains "github_org_not_permitted: the organisation holds no repository readable by the principal's groups" if {
	_call
	_github_target_valid
	input.tool.local_name == "listRepos"
	not _github_org in _github_group_orgs
}

# METADATA
# title: github_write_consent
# description: |
#   Creating an issue needs the user's consent for that exact call (repository, title, body): the
#   gateway asks through the agent before forwarding it. Cedar: @obligation("consent") on github_write_scope.
_consent if _granted("github_write_scope")
