/** Tool facts for the CLI and tests, where no catalog is running. */
import type { ToolFacts } from '../types.js';

/**
 * Tool facts for a tool name ("fs.read": namespace "fs", local name "read") with the given
 * annotations, else {} (which policies treat as the riskiest annotations). The gateway uses the
 * catalog's facts instead.
 */
export function toolFacts(name: string, annotations?: Record<string, unknown>): ToolFacts {
  const dot = name.indexOf('.');
  return {
    name,
    namespace: dot === -1 ? name : name.slice(0, dot),
    local_name: dot === -1 ? '' : name.slice(dot + 1),
    annotations: annotations ?? {},
    definition_hash: `sha256:${'0'.repeat(64)}`,
  };
}
