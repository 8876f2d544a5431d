# Vector search service (vector)
#
# One collection per service instance; documents carry tags (for an indexed folder, its top-level
# folder). Each group may search the collections and, within them, the tags listed here. A read
# must name one tag (filter.tag), and the service then returns documents of that tag only, so a
# group never sees another's documents through a search without a filter. Writes (upsert, only
# when the service enables them) are for the writer groups.
#
# The facts are named facts the service's config declares (collection: /collection, tag:
# /filter/tag); they are read with object.get, so the rules type-check with or without them.
package micro_mcp.authz

# Collections and tags per group. Keep in step with vector_collection_not_permitted and
# vector_tag_not_permitted in policies/cedar/policies.cedar.
_vector_collections := {
	"eng": {"sample"},
	"support": {"sample"},
}

_vector_tags := {
	"eng": {"eng", "public"},
	"support": {"public"},
}

_vector_writers := {"eng"}

_vector_read_tool if {
	input.tool.namespace == "vector"
	input.tool.local_name in {"search", "get"}
}

_vector_write_tool if {
	input.tool.namespace == "vector"
	input.tool.local_name == "upsert"
}

_vector_collection := object.get(input.resource, "collection", null)

_vector_tag := object.get(input.resource, "tag", null)

_vector_group_collections contains c if {
	some group in input.principal.groups
	some c in _vector_collections[group]
}

_vector_group_tags contains t if {
	some group in input.principal.groups
	some t in _vector_tags[group]
}

# METADATA
# title: vector_read_scope
# description: vector.search and vector.get are granted by scope vector:read.
_grants contains "vector_read_scope: vector search and get are granted by scope vector:read" if {
	_tool_method
	_vector_read_tool
	"vector:read" in input.scopes
}

# METADATA
# title: vector_read_scope_missing
# description: Without scope vector:read, vector.search and vector.get are denied.
_denies contains "vector_read_scope_missing: vector search and get require scope vector:read" if {
	_tool_method
	_vector_read_tool
	not "vector:read" in input.scopes
}

# METADATA
# title: vector_write_scope
# description: vector.upsert is granted by scope vector:write.
_grants contains "vector_write_scope: vector upsert is granted by scope vector:write" if {
	_tool_method
	_vector_write_tool
	"vector:write" in input.scopes
}

# METADATA
# title: vector_write_scope_missing
# description: Without scope vector:write, vector.upsert is denied.
_denies contains "vector_write_scope_missing: vector upsert requires scope vector:write" if {
	_tool_method
	_vector_write_tool
	not "vector:write" in input.scopes
}

# METADATA
# title: vector_requires_group
# description: vector tools are visible and callable only for members of a group with collections.
_denies contains "vector_requires_group: vector tools require membership in a group with collections" if {
	_tool_method
	input.tool.namespace == "vector"
	count(_vector_group_collections) == 0
}

# METADATA
# title: vector_writer_required
# description: vector.upsert is for the writer groups only.
_denies contains "vector_writer_required: writing to a collection requires a writer group" if {
	_tool_method
	_vector_write_tool
	not _vector_writer
}

_vector_writer if {
	some group in input.principal.groups
	group in _vector_writers
}

# METADATA
# title: vector_collection_not_permitted
# description: A call is denied unless its collection is one of the principal's groups' collections.
_denies contains "vector_collection_not_permitted: the collection is not readable by the principal's groups" if {
	_call
	input.tool.namespace == "vector"
	not _vector_collection in _vector_group_collections
}

# METADATA
# title: vector_tag_required
# description: A search or get must name one tag (filter.tag); the service then returns that tag only.
_denies contains "vector_tag_required: vector reads must name a tag in filter.tag" if {
	_call
	_vector_read_tool
	not _fact_present(_vector_tag)
}

# METADATA
# title: vector_tag_not_permitted
# description: A read is denied when its tag is outside the tags of the principal's groups.
_denies contains "vector_tag_not_permitted: the tag is not readable by the principal's groups" if {
	_call
	_vector_read_tool
	_fact_present(_vector_tag)
	not _vector_tag in _vector_group_tags
}
