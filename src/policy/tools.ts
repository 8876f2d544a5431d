/** Tool facts for the CLI and tests, where no catalog is running. */
import type { ToolFacts } from '../types.js';

/** Annotations the first-party services declare (services/fs, services/http). */
export const FIRST_PARTY_ANNOTATIONS: Readonly<Record<string, Record<string, unknown>>> = {
  'fs.read': { readOnlyHint: true, openWorldHint: false },
  'fs.list': { readOnlyHint: true, openWorldHint: false },
  'fs.stat': { readOnlyHint: true, openWorldHint: false },
  'fs.search': { readOnlyHint: true, openWorldHint: false },
  'http.fetchText': { readOnlyHint: true, openWorldHint: true },
};

/**
 * Tool facts for a tool name, with the first-party annotations when known, else {} (which
 * policies treat as the riskiest annotations). The gateway uses the catalog's facts instead.
 */
export function toolFacts(name: string, annotations?: Record<string, unknown>): ToolFacts {
  const dot = name.indexOf('.');
  return {
    name,
    namespace: dot === -1 ? name : name.slice(0, dot),
    local_name: dot === -1 ? '' : name.slice(dot + 1),
    annotations: annotations ?? FIRST_PARTY_ANNOTATIONS[name] ?? {},
    definition_hash: `sha256:${'0'.repeat(64)}`,
  };
}
