/**
 * Data categories per 2025 session (issue #14): the labels of the results a session has received
 * (the policy's `labels` obligation and the service's own result `_meta["micro-mcp/labels"]`) are
 * facts of its later calls (`context.data_labels`), so a policy can say "no open-world fetch after a
 * secret". 2026-07-28 requests are stateless and carry none. A 2025 session lives on one replica
 * (affinity on Mcp-Session-Id), so its labels live there too.
 */

/** A label: a lower-case word (pii, secret, internal). */
const LABEL = /^[a-z][a-z0-9_-]{0,31}$/;

/** The labels a service put on its result (`_meta[key]`), the well-formed ones, at most 16. */
export function serviceLabels(result: unknown, key: string): string[] {
  if (typeof result !== 'object' || result === null || !('_meta' in result)) return [];
  const meta = (result as { _meta?: unknown })._meta;
  if (typeof meta !== 'object' || meta === null) return [];
  const v = (meta as Record<string, unknown>)[key];
  if (!Array.isArray(v)) return [];
  return [...new Set(v.filter((x): x is string => typeof x === 'string' && LABEL.test(x)))].slice(0, 16);
}

/** Labels per session, bounded: at most `maxSessions` (oldest dropped) and 32 labels each. */
export class SessionLabels {
  readonly #by = new Map<string, Set<string>>();

  constructor(private readonly maxSessions = 10_000) {}

  get(session: string | null): string[] {
    if (session === null) return [];
    return [...(this.#by.get(session) ?? [])];
  }

  add(session: string | null, labels: readonly string[]): void {
    if (session === null || labels.length === 0) return;
    let set = this.#by.get(session);
    if (set === undefined) {
      if (this.#by.size >= this.maxSessions) this.#by.delete(this.#by.keys().next().value as string);
      set = new Set();
      this.#by.set(session, set);
    }
    for (const l of labels) if (set.size < 32) set.add(l);
  }
}
