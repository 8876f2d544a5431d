/**
 * Builds the one PolicyInput both engines see (schemas/policy-input.schema.json), including the
 * service-specific resource facts. Pure and allocation-light: it runs once per decision.
 */
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import type { Decision, PolicyInput, Principal, ToolFacts } from '../types.js';
import { isPolicyMethod, POLICY_METHODS } from './methods.js';

export interface BuildPolicyInputParams {
  /**
   * JSON-RPC method, e.g. "tools/call" or "tools/list"; phase and action come from the method table.
   * A method outside the table yields an input the combiner refuses (unknown_method).
   */
  method: string;
  principal: Principal;
  tool: ToolFacts;
  /** Call arguments; ignored in the list phase, where arguments are unknown. */
  arguments?: Record<string, unknown> | undefined;
  /** The purpose the caller declared in params._meta["micro-mcp/purpose"], if any. */
  purpose?: string | null | undefined;
  /** The service's resource-fact extractor (its `resource` declaration); none gives `resource: {}`. */
  resource?: ResourceExtractor | undefined;
  context: {
    request_id: string;
    session_id?: string | null | undefined;
    client_ip?: string | null | undefined;
    /** ISO time; defaults to now. */
    time?: string | undefined;
    /** Data categories of the results the session received so far (left out when none). */
    data_labels?: readonly string[] | undefined;
  };
}

/**
 * How a service's tool arguments become resource facts: `services.<name>.resource` in the gateway
 * config (schemas/config.schema.json). Nothing here knows a service by name.
 *   kind path: facts {path (canonical, null when ambiguous), root?} from argument `arg` (default "path")
 *   kind url:  facts {url, scheme, host, port, method} from `arg` (default "url") and `method_arg` ("method")
 *   facts:     named facts from JSON Pointers into the arguments ({repo: "/repo"}); strings, numbers and
 *              booleans are kept, anything else (or nothing) is null
 */
export interface ResourceSpec {
  kind?: 'path' | 'url' | 'none';
  arg?: string;
  method_arg?: string;
  root?: string;
  facts?: Record<string, string>;
}

/** Arguments -> resource facts, compiled once per service from its ResourceSpec. */
export type ResourceExtractor = (args: Record<string, unknown>) => Record<string, unknown>;

/** Compiles a service's declaration into its extractor (the pointers are parsed once, here). */
export function resourceExtractor(spec: ResourceSpec): ResourceExtractor {
  const named = Object.entries(spec.facts ?? {}).map(([name, pointer]) => [name, parsePointer(pointer)] as const);
  const kind = spec.kind ?? 'none';
  const arg = spec.arg ?? (kind === 'url' ? 'url' : 'path');
  const methodArg = spec.method_arg ?? 'method';
  const root = spec.root;
  return (args) => {
    let facts: Record<string, unknown> = {};
    if (kind === 'path') facts = root === undefined ? { path: canonicalFsPath(args[arg]) } : { path: canonicalFsPath(args[arg]), root };
    else if (kind === 'url') facts = httpResource(args[arg], args[methodArg]);
    for (const [name, tokens] of named) facts[name] = scalarAt(args, tokens);
    return facts;
  };
}

/** The extractors of every service that declares resource facts, by service name. */
export function resourceExtractors(services: Readonly<Record<string, { resource?: ResourceSpec | undefined }>>): ReadonlyMap<string, ResourceExtractor> {
  const out = new Map<string, ResourceExtractor>();
  for (const [name, s] of Object.entries(services)) if (s.resource !== undefined) out.set(name, resourceExtractor(s.resource));
  return out;
}

/** The named facts the services declare (`resource.facts` keys), for typing Rego against them. */
export function declaredFactNames(services: Readonly<Record<string, { resource?: ResourceSpec | undefined }>>): string[] {
  const names = new Set<string>();
  for (const s of Object.values(services)) for (const n of Object.keys(s.resource?.facts ?? {})) names.add(n);
  return [...names].sort();
}

/** RFC 6901 tokens of a JSON Pointer ("" is the whole document; the schema checks the syntax). */
function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

/** The scalar at a pointer: a string, a finite number or a boolean; null for anything else or nothing. */
function scalarAt(doc: unknown, tokens: readonly string[]): string | number | boolean | null {
  let cur: unknown = doc;
  for (const t of tokens) {
    if (Array.isArray(cur) && /^(0|[1-9]\d*)$/.test(t)) cur = cur[Number(t)];
    else if (typeof cur === 'object' && cur !== null && !Array.isArray(cur) && Object.hasOwn(cur, t)) cur = (cur as Record<string, unknown>)[t];
    else return null;
  }
  if (typeof cur === 'string' || typeof cur === 'boolean') return cur;
  if (typeof cur === 'number' && Number.isFinite(cur)) return cur;
  return null;
}

/** Builds the PolicyInput for one decision. */
export function buildPolicyInput(p: BuildPolicyInputParams): PolicyInput {
  const pr = p.principal;
  const m = isPolicyMethod(p.method) ? POLICY_METHODS[p.method] : undefined;
  const phase = m?.phase ?? 'call';
  const input: PolicyInput = {
    phase,
    method: p.method,
    action: m?.action ?? '',
    principal: { id: pr.id, type: pr.type, issuer: pr.issuer, groups: pr.groups, purposes: grantedPurposes(pr), attributes: pr.attributes },
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
      ...(p.context.data_labels !== undefined && p.context.data_labels.length > 0 ? { data_labels: [...p.context.data_labels].sort() } : {}),
    },
  };
  if (phase === 'call') {
    const args = p.arguments ?? {};
    input.arguments = args;
    // Facts come from tool arguments only: a prompt's arguments or a resource URI are not the
    // arguments a service's declaration describes.
    if (p.resource !== undefined && input.action === 'call_tool') input.resource = p.resource(args);
  }
  return input;
}

/** The token's purposes, the bound one included, sorted and unique. */
function grantedPurposes(pr: Principal): string[] {
  const all = [...(pr.purposes ?? [])];
  if (typeof pr.purpose === 'string' && pr.purpose !== '') all.push(pr.purpose);
  return [...new Set(all)].sort();
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

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * The reach an allowed call's credential carries (schemas/contracts/service-credential.ts): what the
 * decision narrowed it to. The policy states it as the obligation `reach` ({hosts, ports} of the
 * authorised purpose, {roots} the principal may read); without one, the facts decided on are the
 * reach: the URL's host and port, or the canonical path. A service enforces it on the request and on
 * every redirect hop. undefined when the call has neither (the service's own configuration applies).
 */
export function decisionReach(decision: Decision, input: PolicyInput): CredentialReach | undefined {
  const ob = decision.obligations.reach;
  const stated = typeof ob === 'object' && ob !== null && !Array.isArray(ob) ? (ob as Record<string, unknown>) : {};
  const r = input.resource;
  const reach: CredentialReach = {};
  if (isStrings(stated.hosts)) reach.hosts = [...new Set(stated.hosts.map((h) => h.toLowerCase()))].sort();
  else if (typeof r.host === 'string' && r.host !== '') reach.hosts = [r.host];
  if (Array.isArray(stated.ports) && stated.ports.every((p) => Number.isInteger(p))) reach.ports = [...new Set(stated.ports as number[])].sort((a, b) => a - b);
  else if (reach.hosts !== undefined && !isStrings(stated.hosts) && Number.isInteger(r.port)) reach.ports = [r.port as number];
  if (isStrings(stated.roots) && stated.roots.every((x) => x.startsWith('/'))) reach.roots = [...new Set(stated.roots)].sort();
  else if (typeof r.path === 'string') reach.roots = [r.path];
  return Object.keys(reach).length > 0 ? reach : undefined;
}

export { isWellFormedJson } from '../canonical.js';

/**
 * The decision when deciding itself failed (an engine threw past the policy set): a deny by the
 * gateway, `engine_error`, with ERR_POLICY_UNAVAILABLE, at the revision that was loaded. Fail closed.
 */
export function failedDecision(policyRevision: string): Decision {
  const reasons = [{ engine: 'gateway' as const, id: 'engine_error', message: 'policy evaluation failed' }];
  return {
    allow: false,
    reasons,
    engines: [{ engine: 'gateway', allow: false, reasons: [...reasons], error: 'ERR_POLICY_UNAVAILABLE' }],
    obligations: {},
    policy_revision: policyRevision,
    eval_us: 0,
  };
}
