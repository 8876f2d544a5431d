/**
 * Parity you can run: many varied PolicyInputs, generated from a seed, decided by both engines
 * alone; every input on which they disagree (allow, or the rule ids) is reported by class with the
 * smallest example of its class. A disagreement the policy files declare on purpose (a Rego rule
 * whose METADATA says `custom: {parity: why}`, or a Cedar policy annotated `@parity("why")`, for a
 * rule one language can only approximate) is reported as declared and does not fail the run.
 */
import type { PolicyInput, Principal } from '../types.js';
import { canonicalJson } from '../canonical.js';
import { buildPolicyInput, type ResourceExtractor } from './input.js';
import { POLICY_METHODS, type PolicyMethod } from './methods.js';
import { combineObligations, isObligationProblem } from './obligations.js';
import { toolFacts } from './tools.js';
import type { EngineResult, PolicyEngine } from './types.js';

/** A deterministic PRNG (mulberry32): the same seed gives the same inputs on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MISSING = Symbol('missing');

const PRINCIPAL_IDS = ['alice', 'sam', 'olga', 'ci-bot', 'svc-1', 'ünïcode', 'a b', ''];
const TYPES: Principal['type'][] = ['user', 'agent', 'service'];
const GROUPS = ['eng', 'support', 'sales', 'admin', 'Eng', 'eng ', ''];
const SCOPES = [
  'fs:read',
  'http:fetch',
  'vector:write',
  'github:write',
  'everything:call',
  'echo:call',
  'docs:call',
  'fs:call',
  'http:call',
  'other:call',
  'FS:READ',
  '',
];
const PURPOSES = ['incident-4711', 'docs-research', 'audit-2026', 'local-dev', 'curiosity', 'INCIDENT-4711'];
/**
 * Tool names: every configured service's name (the config's, so the example fs and http services
 * come from src/config/examples/dev.yaml, not from here) with common verbs, known and unknown to the
 * policies, plus services no config names.
 */
const VERBS = [
  'read',
  'list',
  'stat',
  'search',
  'write',
  'fetchText',
  'post',
  'echo',
  'add',
  'static',
  'get',
  'upsert',
  'searchIssues',
  'getIssue',
  'listRepos',
  'createIssue',
];
const OTHER_SERVICES = ['everything', 'echo', 'docs', 'x'];
const ANNOTATIONS: Array<Record<string, unknown>> = [
  {},
  { readOnlyHint: true, openWorldHint: false },
  { readOnlyHint: true, openWorldHint: true },
  { readOnlyHint: true },
  { openWorldHint: false, destructiveHint: true },
  { destructiveHint: false, openWorldHint: false },
  { readOnlyHint: true, openWorldHint: 'no' },
  { readOnlyHint: 1, openWorldHint: 0 },
];
const PATHS: unknown[] = [
  '/eng/a.md',
  'eng/design.md',
  '/eng',
  '/eng/',
  '/public',
  '/public/',
  '/public/faq.md',
  '/public/../eng/x',
  '/engineering/x',
  '/publicity',
  '/README.md',
  '/',
  '',
  '//eng//x',
  '/./eng/./x',
  '/../etc/passwd',
  'a/../../b',
  '/eng/%2e%2e/x',
  '/eng/%2F',
  '\\eng\\a',
  '/eng/a\0b',
  '/ΕΝΓ/x',
  '/eng/*',
  `/eng/${'a/'.repeat(40)}x`,
  42,
  null,
  MISSING,
];
const URLS: unknown[] = [
  'https://status.example.com/api',
  'https://STATUS.example.com:443/x',
  'http://status.example.com:8080/',
  'https://status.example.com./',
  'https://api.pagerduty.com/incidents?x=1',
  'https://docs.example.com',
  'https://developer.mozilla.org/en-US/',
  'https://a.b.example.com/x',
  'https://user:pw@status.example.com/',
  'http://127.0.0.1:8081/x',
  'http://10.0.0.1/',
  'http://localhost/',
  'http://[::1]/',
  'https://xn--e1afmkfd.xn--p1ai/',
  'file:///etc/passwd',
  'data:text/plain,hi',
  'ftp://status.example.com/',
  'javascript:alert(1)',
  'not a url',
  '',
  7,
  MISSING,
];
const HTTP_METHODS: unknown[] = ['GET', 'HEAD', 'get', 'post', 'POST', 'DELETE', 7, MISSING];
/** Values for the named facts services declare by pointer (collection, filter.tag, owner, repo in the dev config). */
const NAMES: unknown[] = [
  'sample',
  'eng',
  'public',
  'octokit-fixture-org',
  'hello-world',
  'search-issues',
  'acme',
  'Sample',
  'eng ',
  '',
  7,
  1.5,
  true,
  null,
  MISSING,
];

export interface ParityOptions {
  count: number;
  seed: number;
  /** The configured services' names (tools are generated for each). */
  services: readonly string[];
  /** Resource-fact extractors by service (the config's declarations). */
  resources: ReadonlyMap<string, ResourceExtractor>;
}

/** The inputs of one run: every method of the table, list and call, every tool, odd paths and URLs. */
export function* parityInputs(opts: ParityOptions): Generator<PolicyInput> {
  const rnd = prng(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const some = <T>(xs: readonly T[], max: number): T[] => {
    const n = Math.floor(rnd() * (max + 1));
    const out = new Set<T>();
    for (let i = 0; i < n; i++) out.add(pick(xs));
    return [...out];
  };
  const methods = Object.keys(POLICY_METHODS) as PolicyMethod[];
  const tools = [...new Set([...opts.services, ...OTHER_SERVICES])].flatMap((ns) => VERBS.map((v) => `${ns}.${v}`));
  tools.push('x');
  for (let i = 0; i < opts.count; i++) {
    // Half the inputs are tool calls, where most of the rules are.
    const method: PolicyMethod = rnd() < 0.5 ? 'tools/call' : pick(methods);
    const tool = toolFacts(pick(tools));
    // Half the inputs are near the allow boundary (a likely group, the service's scopes, read-only
    // hints, a purpose the token grants), where a difference between the engines matters most; the
    // rest are wholly random.
    const near = rnd() < 0.5;
    const annotations = near ? pick(ANNOTATIONS.slice(1, 3)) : pick(ANNOTATIONS);
    const args: Record<string, unknown> = {};
    const put = (k: string, v: unknown) => {
      if (v !== MISSING) args[k] = v;
    };
    put('path', pick(PATHS));
    put('url', pick(URLS));
    put('method', pick(HTTP_METHODS));
    put('collection', pick(NAMES));
    put('owner', pick(NAMES));
    put('repo', pick(NAMES));
    const tag = pick(NAMES);
    put('filter', rnd() < 0.2 ? pick(NAMES) : tag === MISSING ? {} : { tag });
    // A service configured without its declaration gives no facts at all: both engines must still deny.
    const resource = rnd() < 0.1 ? undefined : opts.resources.get(tool.namespace);
    const bound = rnd() < 0.15 ? pick(PURPOSES) : null;
    const declared = rnd() < 0.3 ? null : rnd() < 0.1 ? '' : pick(PURPOSES);
    const groups = near ? [pick(['eng', 'support']), ...some(GROUPS, 1)] : some(GROUPS, 3);
    const scopes = near ? [...new Set([`${tool.namespace}:read`, `${tool.namespace}:fetch`, `${tool.namespace}:call`, ...some(SCOPES, 2)])] : some(SCOPES, 4);
    const purposes = near && declared ? [declared, ...some(PURPOSES, 1)] : some(PURPOSES, 2);
    const principal: Principal = {
      id: pick(PRINCIPAL_IDS),
      type: pick(TYPES),
      issuer: 'https://idp.parity',
      groups: [...new Set(groups)],
      attributes: {},
      scopes,
      client: { id: rnd() < 0.5 ? 'agent' : null },
      purpose: bound,
      purposes: [...new Set(purposes)],
    };
    yield buildPolicyInput({
      method,
      principal,
      tool: { ...tool, annotations },
      arguments: args,
      purpose: declared,
      resource,
      context: { request_id: `parity-${i}`, time: '2026-01-01T00:00:00.000Z' },
    });
  }
}

/** One engine's answer, comparable: allow, the sorted rule ids and (when allowed) the obligations, or the error. */
interface Answer {
  allow: boolean;
  ids: string[];
  /**
   * When allowed: the checked and merged obligations as canonical JSON, without `reach` (only Rego
   * can state it) and `step_up_scopes` (denials only); or the obligation problem's id.
   */
  obligations?: string;
  error?: string;
}

function answer(engine: PolicyEngine, input: PolicyInput): Answer {
  let r: EngineResult;
  try {
    r = engine.evaluate(input);
  } catch (e) {
    const code = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : 'ERR_ENGINE_EVALUATION';
    return { allow: false, ids: ['engine_error'], error: code };
  }
  const ids = [...new Set(r.reasons.map((x) => x.id))].sort();
  if (!r.allow) return { allow: false, ids };
  const ob = combineObligations(r.obligations);
  if (isObligationProblem(ob)) return { allow: true, ids, obligations: ob.id };
  const { reach: _reach, step_up_scopes: _up, ...rest } = ob;
  return { allow: true, ids, obligations: canonicalJson(rest) };
}

export interface DisagreementClass {
  /** allow/deny per engine and the ids only one engine cites, e.g. "rego deny / cedar deny; only cedar: http_host_ip_literal". */
  name: string;
  count: number;
  /** Declared on purpose by the policy files (every differing rule id is declared). */
  declared: boolean;
  /** The smallest input of the class (by its JSON), with both answers. */
  example: PolicyInput;
  rego: Answer;
  cedar: Answer;
}

export interface ParityReport {
  inputs: number;
  agreed: number;
  classes: DisagreementClass[];
}

/** Decides every input with both engines and groups their disagreements by class. */
export function runParity(rego: PolicyEngine, cedar: PolicyEngine, inputs: Iterable<PolicyInput>, declared: ReadonlySet<string>): ParityReport {
  const classes = new Map<string, DisagreementClass & { size: number }>();
  let n = 0;
  let agreed = 0;
  for (const input of inputs) {
    n++;
    const a = answer(rego, input);
    const b = answer(cedar, input);
    if (a.allow === b.allow && a.error === b.error && a.ids.join() === b.ids.join() && a.obligations === b.obligations) {
      agreed++;
      continue;
    }
    const onlyA = a.ids.filter((x) => !b.ids.includes(x));
    const onlyB = b.ids.filter((x) => !a.ids.includes(x));
    const verdict = (x: Answer) => (x.error ? `error ${x.error}` : x.allow ? 'allow' : 'deny');
    const obligations = a.obligations !== b.obligations && a.allow && b.allow ? `; obligations: rego ${a.obligations} / cedar ${b.obligations}` : '';
    const name = `rego ${verdict(a)} / cedar ${verdict(b)}${onlyA.length ? `; only rego: ${onlyA.join(', ')}` : ''}${onlyB.length ? `; only cedar: ${onlyB.join(', ')}` : ''}${obligations}`;
    // Declared only when every rule that differs is declared, neither engine failed, and deny
    // overrides keeps the stricter answer (a disagreement on allow leaves the call denied).
    // Different obligations are never declared: the engines would ask different things of the gateway.
    const isDeclared =
      a.error === undefined &&
      b.error === undefined &&
      obligations === '' &&
      [...onlyA, ...onlyB].length > 0 &&
      [...onlyA, ...onlyB].every((x) => declared.has(x));
    const size = JSON.stringify(input).length;
    const c = classes.get(name);
    if (c === undefined) classes.set(name, { name, count: 1, declared: isDeclared, example: input, rego: a, cedar: b, size });
    else {
      c.count++;
      if (size < c.size) Object.assign(c, { example: input, rego: a, cedar: b, size });
    }
  }
  return {
    inputs: n,
    agreed,
    classes: [...classes.values()].map(({ size: _size, ...c }) => c).sort((x, y) => y.count - x.count || x.name.localeCompare(y.name)),
  };
}
