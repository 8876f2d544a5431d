/**
 * The shared allow/deny table for the example policies (policies/rego, policies/cedar). The same
 * cases run against each engine alone, against both combined, and through the gateway, proving
 * the two engines agree rule for rule (same decision, same deciding ids).
 */
import type { Obligations, PolicyInput, PolicyPhase, Principal } from '../../types.js';
import { buildPolicyInput, resourceExtractor, type ResourceSpec } from '../input.js';
import { toolFacts } from '../tools.js';

export function testPrincipal(id: string, groups: string[], scopes: string[], type: Principal['type'] = 'user', purposes: string[] = []): Principal {
  return { id, type, issuer: 'https://idp.test', groups, attributes: {}, scopes, client: { id: 'test-agent' }, purpose: null, purposes };
}

/** The example services' resource declarations, as src/config/examples/dev.yaml writes them (input.test.ts checks). */
export const EXAMPLE_RESOURCES: Readonly<Record<string, ResourceSpec>> = {
  fs: { kind: 'path', arg: 'path' },
  http: { kind: 'url', arg: 'url', method_arg: 'method' },
};

/** Annotations the example services declare (services/fs, services/http). */
export const EXAMPLE_ANNOTATIONS: Readonly<Record<string, Record<string, unknown>>> = {
  'fs.read': { readOnlyHint: true, openWorldHint: false },
  'fs.list': { readOnlyHint: true, openWorldHint: false },
  'fs.stat': { readOnlyHint: true, openWorldHint: false },
  'fs.search': { readOnlyHint: true, openWorldHint: false },
  'http.fetchText': { readOnlyHint: true, openWorldHint: true },
};

export interface PolicyCase {
  name: string;
  principal: { id: string; type?: Principal['type']; groups: string[]; purposes?: string[] };
  scopes: string[];
  purpose?: string | null;
  tool: string;
  annotations?: Record<string, unknown>;
  phase?: PolicyPhase;
  method?: string;
  arguments?: Record<string, unknown>;
  /**
   * `obligations`: when allowed, what each engine's obligations check and merge to (reach left out:
   * only Rego can state it). Absent: none.
   */
  expect: { allow: boolean; ids: string[]; obligations?: Obligations };
}

const alice = { id: 'alice', groups: ['eng'] };
const sam = { id: 'sam', groups: ['support'] };
const olga = { id: 'olga', groups: ['sales'] };
const bot = { id: 'ci-bot', type: 'agent' as const, groups: ['eng'] };

export const POLICY_CASES: readonly PolicyCase[] = [
  // fs: scopes and group roots
  {
    name: 'eng reads /eng',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: 'eng/design.md' },
    expect: { allow: true, ids: ['fs_read_scope'] },
  },
  {
    name: 'eng lists /public',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.list',
    arguments: { path: '/public' },
    expect: { allow: true, ids: ['fs_read_scope'] },
  },
  {
    name: 'agent in eng searches /eng',
    principal: bot,
    scopes: ['fs:read'],
    tool: 'fs.search',
    arguments: { path: '/eng', query: 'x' },
    expect: { allow: true, ids: ['fs_read_scope'] },
  },
  {
    name: 'eng without fs:read',
    principal: alice,
    scopes: ['http:fetch'],
    tool: 'fs.read',
    arguments: { path: '/eng/a' },
    expect: { allow: false, ids: ['fs_read_scope_missing'] },
  },
  {
    name: 'support reads /public',
    principal: sam,
    scopes: ['fs:read'],
    tool: 'fs.stat',
    arguments: { path: '/public/faq.md' },
    expect: { allow: true, ids: ['fs_read_scope'] },
  },
  {
    name: 'support reads /eng',
    principal: sam,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/eng/design.md' },
    expect: { allow: false, ids: ['fs_path_not_permitted'] },
  },
  {
    name: 'support climbs from /public to /eng',
    principal: sam,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/public/../eng/design.md' },
    expect: { allow: false, ids: ['fs_path_not_permitted'] },
  },
  {
    name: 'eng reads sibling with shared prefix',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/engineering/x' },
    expect: { allow: false, ids: ['fs_path_not_permitted'] },
  },
  {
    name: 'eng reads root README',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/README.md' },
    expect: { allow: false, ids: ['fs_path_not_permitted'] },
  },
  {
    name: 'eng climbs above root',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/../etc/passwd' },
    expect: { allow: false, ids: ['fs_path_invalid'] },
  },
  {
    name: 'eng uses percent-encoding',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/eng/%2e%2e/x' },
    expect: { allow: false, ids: ['fs_path_invalid'] },
  },
  { name: 'eng omits path', principal: alice, scopes: ['fs:read'], tool: 'fs.read', arguments: {}, expect: { allow: false, ids: ['fs_path_invalid'] } },
  {
    name: 'outsider calls fs',
    principal: olga,
    scopes: ['fs:read'],
    tool: 'fs.read',
    arguments: { path: '/public/faq.md' },
    expect: { allow: false, ids: ['fs_path_not_permitted', 'fs_requires_group'] },
  },
  { name: 'outsider lists fs', principal: olga, scopes: ['fs:read'], tool: 'fs.read', phase: 'list', expect: { allow: false, ids: ['fs_requires_group'] } },
  { name: 'support lists fs', principal: sam, scopes: ['fs:read'], tool: 'fs.read', phase: 'list', expect: { allow: true, ids: ['fs_read_scope'] } },
  {
    name: 'unknown fs tool',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.write',
    annotations: { destructiveHint: true },
    arguments: { path: '/eng/a' },
    purpose: 'incident-4711',
    expect: { allow: false, ids: ['tool_not_in_policy'] },
  },
  // http: scope, purpose, host, scheme, method
  {
    name: 'fetch status page for incident',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'https://status.example.com/api' },
    expect: { allow: true, ids: ['http_fetch_scope'], obligations: { redact: ['email', 'secrets'], max_bytes: 1048576 } },
  },
  {
    name: 'fetch without http:fetch',
    principal: alice,
    scopes: ['fs:read'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'https://status.example.com/' },
    expect: { allow: false, ids: ['http_fetch_scope_missing'] },
  },
  {
    name: 'fetch without purpose',
    principal: alice,
    scopes: ['http:fetch'],
    tool: 'http.fetchText',
    arguments: { url: 'https://status.example.com/' },
    expect: { allow: false, ids: ['http_host_not_allowed_for_purpose', 'purpose_required'] },
  },
  {
    name: 'fetch host of another purpose',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'https://docs.example.com/' },
    expect: { allow: false, ids: ['http_host_not_allowed_for_purpose'] },
  },
  {
    name: 'fetch with POST',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'https://status.example.com/', method: 'post' },
    expect: { allow: false, ids: ['http_method_not_read_only'] },
  },
  {
    name: 'fetch HEAD for docs research',
    principal: sam,
    scopes: ['http:fetch'],
    purpose: 'docs-research',
    tool: 'http.fetchText',
    arguments: { url: 'https://DOCS.example.com:443/x', method: 'HEAD' },
    expect: { allow: true, ids: ['http_fetch_scope'], obligations: { redact: ['email', 'secrets'], max_bytes: 1048576 } },
  },
  {
    name: 'fetch file URL',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'file:///etc/passwd' },
    expect: { allow: false, ids: ['http_host_not_allowed_for_purpose', 'http_scheme_not_allowed'] },
  },
  {
    name: 'fetch bad URL',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'not a url' },
    expect: { allow: false, ids: ['http_url_invalid'] },
  },
  // purposes: granted by group (policy) or by the token (principal.purposes), never by declaring one
  {
    name: 'support acts under a purpose granted to eng only',
    principal: sam,
    scopes: ['http:fetch'],
    purpose: 'incident-4711',
    tool: 'http.fetchText',
    arguments: { url: 'https://status.example.com/' },
    expect: { allow: false, ids: ['purpose_not_granted'] },
  },
  {
    name: 'fetch under the retired local-dev purpose',
    principal: alice,
    scopes: ['http:fetch'],
    purpose: 'local-dev',
    tool: 'http.fetchText',
    arguments: { url: 'http://127.0.0.1:8081/x' },
    expect: { allow: false, ids: ['http_host_not_allowed_for_purpose', 'purpose_not_granted'] },
  },
  {
    name: 'third-party tool under a purpose the token grants',
    principal: { id: 'auditor', groups: [], purposes: ['audit-2026'] },
    scopes: ['everything:call'],
    purpose: 'audit-2026',
    tool: 'everything.echo',
    arguments: {},
    expect: { allow: true, ids: ['service_call_scope'] },
  },
  {
    name: 'third-party tool under a purpose nobody grants',
    principal: bot,
    scopes: ['everything:call'],
    purpose: 'curiosity',
    tool: 'everything.echo',
    arguments: {},
    expect: { allow: false, ids: ['purpose_not_granted'] },
  },
  {
    name: 'list fetch without purpose',
    principal: alice,
    scopes: ['http:fetch'],
    tool: 'http.fetchText',
    phase: 'list',
    expect: { allow: true, ids: ['http_fetch_scope'], obligations: { redact: ['email', 'secrets'], max_bytes: 1048576 } },
  },
  {
    name: 'list fetch without scope',
    principal: alice,
    scopes: [],
    tool: 'http.fetchText',
    phase: 'list',
    expect: { allow: false, ids: ['http_fetch_scope_missing'] },
  },
  // third-party services
  {
    name: 'third-party tool with scope and purpose',
    principal: bot,
    scopes: ['everything:call'],
    purpose: 'incident-4711',
    tool: 'everything.echo',
    arguments: { message: 'hi' },
    expect: { allow: true, ids: ['service_call_scope'] },
  },
  {
    name: 'third-party tool without purpose',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.echo',
    arguments: {},
    expect: { allow: false, ids: ['purpose_required'] },
  },
  {
    name: 'third-party read-only closed-world tool without purpose',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.add',
    annotations: { readOnlyHint: true, openWorldHint: false },
    arguments: {},
    expect: { allow: true, ids: ['service_call_scope'] },
  },
  {
    name: 'third-party destructive tool without purpose',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.wipe',
    annotations: { openWorldHint: false, destructiveHint: true },
    arguments: {},
    expect: { allow: false, ids: ['purpose_required'] },
  },
  {
    name: 'third-party tool with non-boolean hint',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.add',
    annotations: { readOnlyHint: true, openWorldHint: 'no' },
    arguments: {},
    expect: { allow: false, ids: ['purpose_required'] },
  },
  {
    name: 'third-party tool without scope',
    principal: bot,
    scopes: ['other:call', 'fs:read'],
    purpose: 'incident-4711',
    tool: 'everything.echo',
    arguments: {},
    expect: { allow: false, ids: ['service_call_scope_missing'] },
  },
  {
    name: 'list third-party tool without purpose',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.echo',
    phase: 'list',
    expect: { allow: true, ids: ['service_call_scope'] },
  },
  // other methods
  {
    name: 'third-party resource read with scope',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.static',
    method: 'resources/read',
    arguments: { uri: 'demo://resource/static/document/1' },
    expect: { allow: true, ids: ['service_content_scope'] },
  },
  {
    name: 'third-party prompt with scope',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.simple-prompt',
    method: 'prompts/get',
    arguments: {},
    expect: { allow: true, ids: ['service_content_scope'] },
  },
  {
    name: 'third-party resource subscription with scope',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.static',
    method: 'resources/subscribe',
    arguments: { uri: 'demo://resource/static/document/1' },
    expect: { allow: true, ids: ['service_content_scope'] },
  },
  {
    name: 'third-party prompt completion with scope',
    principal: bot,
    scopes: ['everything:call'],
    tool: 'everything.args-prompt',
    method: 'completion/complete',
    arguments: { city: 'Ly' },
    expect: { allow: true, ids: ['service_content_scope'] },
  },
  {
    name: 'third-party resource subscription without scope',
    principal: bot,
    scopes: ['fs:read'],
    tool: 'everything.static',
    method: 'resources/subscribe',
    arguments: { uri: 'demo://resource/static/document/1' },
    expect: { allow: false, ids: ['service_content_scope_missing'] },
  },
  {
    name: 'third-party prompt list without scope',
    principal: bot,
    scopes: ['fs:read'],
    tool: 'everything.simple-prompt',
    method: 'prompts/list',
    phase: 'list',
    expect: { allow: false, ids: ['service_content_scope_missing'] },
  },
  {
    name: 'resources are not granted',
    principal: alice,
    scopes: ['fs:read'],
    tool: 'fs.read',
    method: 'resources/read',
    arguments: { path: '/eng/a' },
    expect: { allow: false, ids: ['default_deny'] },
  },
];

const extractors = new Map(Object.entries(EXAMPLE_RESOURCES).map(([ns, spec]) => [ns, resourceExtractor(spec)]));

/** The PolicyInput of a case, built the way the gateway builds it. */
export function caseInput(c: PolicyCase): PolicyInput {
  const phase = c.phase ?? 'call';
  const tool = toolFacts(c.tool, c.annotations ?? EXAMPLE_ANNOTATIONS[c.tool]);
  return buildPolicyInput({
    method: c.method ?? (phase === 'list' ? 'tools/list' : 'tools/call'),
    principal: testPrincipal(c.principal.id, c.principal.groups, c.scopes, c.principal.type, c.principal.purposes),
    tool,
    resource: extractors.get(tool.namespace),
    arguments: c.arguments,
    purpose: c.purpose ?? null,
    context: { request_id: `case-${c.name}`, time: '2026-01-01T00:00:00.000Z' },
  });
}
