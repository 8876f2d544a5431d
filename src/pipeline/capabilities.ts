/**
 * Capabilities are the agent's (issue #11 point 3): what a service may learn of, and use, is what the
 * calling agent declared, narrowed to what the gateway relays (elicitation in its form and URL modes,
 * sampling, and roots where the service's config says `roots: forward`). Roots' list_changed is never
 * relayed (the gateway does not carry the agent's notification to the service); experimental and task
 * capabilities stay with the agent.
 */
import type { ClientCapabilities } from '@modelcontextprotocol/server';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What the service's config lets through besides elicitation and sampling. */
export interface RelayOptions {
  /** `services.<name>.roots: forward`: the agent's roots (without listChanged) reach the service. */
  roots?: boolean;
}

/** The part of an agent's declared capabilities a service may see (a fresh object; nothing else copied). */
export function relayedCapabilities(declared: ClientCapabilities | undefined, opts: RelayOptions = {}): ClientCapabilities {
  const out: ClientCapabilities = {};
  if (!declared) return out;
  const e: unknown = declared.elicitation;
  if (isObj(e)) {
    // A bare `elicitation: {}` means form mode (the 2025-06-18 shape).
    const form = isObj(e.form) || (!isObj(e.url) && !isObj(e.form));
    out.elicitation = { ...(form ? { form: {} } : {}), ...(isObj(e.url) ? { url: {} } : {}) };
  }
  const s: unknown = declared.sampling;
  if (isObj(s)) out.sampling = { ...(isObj(s.tools) ? { tools: {} } : {}), ...(isObj(s.context) ? { context: {} } : {}) };
  if (opts.roots === true && isObj(declared.roots)) out.roots = {};
  return out;
}

/** Why the agent cannot take this input request (undefined when it declared what the request needs). */
export function missingCapability(caps: ClientCapabilities, req: { method: string; params?: unknown }): string | undefined {
  if (req.method === 'sampling/createMessage') return caps.sampling ? undefined : 'sampling';
  // Present only when the agent declared roots and the service's config forwards them (relayedCapabilities).
  if (req.method === 'roots/list') return caps.roots ? undefined : 'roots';
  if (req.method !== 'elicitation/create') return req.method;
  const mode = isObj(req.params) && req.params.mode === 'url' ? 'url' : 'form';
  const e: unknown = caps.elicitation;
  return isObj(e) && isObj(e[mode]) ? undefined : `elicitation (${mode} mode)`;
}
