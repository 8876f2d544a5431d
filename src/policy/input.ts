/**
 * Builds the one PolicyInput both engines see (schemas/policy-input.schema.json), including the
 * service-specific resource facts. Pure and allocation-light: it runs once per decision.
 */
import type { PolicyInput, PolicyPhase, Principal, ToolFacts } from '../types.js';

export interface BuildPolicyInputParams {
  phase: PolicyPhase;
  /** JSON-RPC method, e.g. "tools/call" or "tools/list". */
  method: string;
  principal: Principal;
  tool: ToolFacts;
  /** Call arguments; ignored in the list phase, where arguments are unknown. */
  arguments?: Record<string, unknown> | undefined;
  /** The purpose the caller declared in params._meta["micro-mcp/purpose"], if any. */
  purpose?: string | null | undefined;
  context: {
    request_id: string;
    session_id?: string | null | undefined;
    client_ip?: string | null | undefined;
    /** ISO time; defaults to now. */
    time?: string | undefined;
  };
}

type ResourceExtractor = (args: Record<string, unknown>) => Record<string, unknown>;

/** Resource facts per service namespace; other services get {}. */
const extractors: Readonly<Record<string, ResourceExtractor>> = Object.freeze({
  fs: (args) => ({ path: canonicalFsPath(args.path) }),
  http: (args) => httpResource(args.url, args.method),
});

/** Builds the PolicyInput for one decision. */
export function buildPolicyInput(p: BuildPolicyInputParams): PolicyInput {
  const pr = p.principal;
  const input: PolicyInput = {
    phase: p.phase,
    method: p.method,
    principal: { id: pr.id, type: pr.type, issuer: pr.issuer, groups: pr.groups, attributes: pr.attributes },
    client: { id: pr.client.id },
    scopes: pr.scopes,
    purpose: effectivePurpose(pr.purpose, p.purpose),
    tool: p.tool,
    resource: {},
    context: {
      time: p.context.time ?? new Date().toISOString(),
      request_id: p.context.request_id,
      session_id: p.context.session_id ?? null,
      client_ip: p.context.client_ip ?? null,
    },
  };
  if (p.phase === 'call') {
    const args = p.arguments ?? {};
    input.arguments = args;
    const extract = extractors[p.tool.namespace];
    if (extract !== undefined) input.resource = extract(args);
  }
  return input;
}

/**
 * A purpose bound into the token is binding: the caller cannot swap it for another by
 * declaring one in _meta. An empty string counts as no purpose.
 */
function effectivePurpose(bound: string | null, declared: string | null | undefined): string | null {
  if (typeof bound === 'string' && bound !== '') return bound;
  if (typeof declared === 'string' && declared !== '') return declared;
  return null;
}

const PERCENT_ENCODING = /%[0-9A-Fa-f]{2}/;

/**
 * The canonical virtual path of an fs argument: posix-normalised, leading "/", no trailing "/".
 * null when the value is not a string, holds NUL, a backslash or a percent-encoding, or climbs
 * above "/" with "..": such paths are ambiguous between the policy and the file system, so
 * policies deny them rather than guess.
 */
export function canonicalFsPath(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  if (value.includes('\0') || value.includes('\\') || PERCENT_ENCODING.test(value)) return null;
  const out: string[] = [];
  for (const seg of value.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(seg);
  }
  return `/${out.join('/')}`;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443, ws: 80, wss: 443, ftp: 21 };

// A type alias (not an interface) so that it is assignable to Record<string, unknown>.
export type HttpResource = {
  url: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  method: string | null;
};

/**
 * http facts from WHATWG URL parsing: scheme without ":", lower-case host (IPv6 in brackets),
 * port with the scheme's default filled in, method upper-cased (default GET). All URL fields
 * are null when the URL does not parse.
 */
export function httpResource(url: unknown, method: unknown): HttpResource {
  const m = method === undefined ? 'GET' : typeof method === 'string' ? method.toUpperCase() : null;
  if (typeof url !== 'string') return { url: null, scheme: null, host: null, port: null, method: m };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url: null, scheme: null, host: null, port: null, method: m };
  }
  const scheme = u.protocol.slice(0, -1);
  const port = u.port !== '' ? Number(u.port) : (DEFAULT_PORTS[scheme] ?? null);
  return { url: u.href, scheme, host: u.hostname, port, method: m };
}
