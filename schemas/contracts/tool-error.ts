/**
 * How a first-party service reports a tool error to machines: MCP clients validate a result's
 * `structuredContent` against the tool's published `outputSchema` (the 1.x SDK does so for errors
 * too), so an error carries no `structuredContent`; its stable code and facts ride in the result's
 * `_meta` under this key, and its message in the text content.
 *
 * Leaf module: no imports, nothing but constants and types.
 */

/** Key in a tool error result's `_meta` holding its {@link ToolErrorFacts}. */
export const TOOL_ERROR_META_KEY = 'micro-mcp/error';

/** The machine-readable facts of a tool error: a stable `code`, the message, and cause-specific facts. */
export type ToolErrorFacts = { code: string; message: string } & Record<string, string | number | boolean>;
