/**
 * An in-process runner for Cedar tests (there is no cedar CLI here). Each file in tests/ holds an
 * array of cases in either form:
 *   - the `cedar run-tests` format: { name?, request: {principal, action, resource, context},
 *     entities: [...] | "file.json", decision: "allow" | "deny", reason: [policy ids], num_errors }
 *     where principal/action/resource are entity uids such as `MicroMcp::User::"alice"`; as the CLI
 *     does, `reason` must be a subset of the determining policies;
 *   - a PolicyInput: { name?, input: {...}, decision, reason } where `input` is what the gateway
 *     builds (validated against schemas/policy-input.schema.json) and goes through the real request
 *     mapping (request.ts); `reason` must be exactly the determining policies' ids, and
 *     `obligations`, when given, exactly the checked and merged obligations of those policies'
 *     annotations (as the gateway records them: `{"redact": ["email", "secrets"], "max_bytes": 1048576}`).
 */
import type { Context, EntityJson } from '@cedar-policy/cedar-wasm/nodejs';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { PolicyInput } from '../../types.js';
import { canonicalize } from '../../canonical.js';
import { combineObligations } from '../obligations.js';
import { policyInputSchema } from '../rego/opa.js';
import type { CedarEngine } from './engine.js';
import { toCedarRequest } from './request.js';

type Validate = ((data: unknown) => data is PolicyInput) & { errors?: ErrorObject[] | null };
let validateInput: Validate | undefined;

/** The PolicyInput schema, compiled once: fixtures are checked against what the gateway promises. */
function inputValidator(): Validate {
  if (validateInput) return validateInput;
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormatsModule.default(ajv);
  validateInput = ajv.compile(JSON.parse(readFileSync(policyInputSchema(), 'utf8'))) as Validate;
  return validateInput;
}

export interface CedarTestResult {
  file: string;
  name: string;
  pass: boolean;
  /** Why it failed; empty when it passed. */
  message: string;
}

interface CedarTestCase {
  name?: string;
  input?: unknown;
  request?: { principal?: string; action?: string; resource?: string; context?: Context };
  entities?: EntityJson[] | string;
  decision?: string;
  reason?: string[];
  obligations?: unknown;
  num_errors?: number;
}

const UID = /^(.+)::("(?:[^"\\]|\\.)*")$/;

/** Parses `Type::"id"` into {type, id}. */
function parseEntityUid(s: string): { type: string; id: string } {
  const m = UID.exec(s.trim());
  if (m === null) throw new Error(`not an entity uid: ${s}`);
  return { type: (m[1] as string).trim(), id: JSON.parse(m[2] as string) as string };
}

/** A PolicyInput case: schema-checked, mapped as the gateway maps it, ids compared exactly. */
function runInputCase(engine: CedarEngine, t: CedarTestCase): string {
  if (t.decision !== 'allow' && t.decision !== 'deny') return 'decision must be "allow" or "deny"';
  const valid = inputValidator();
  if (!valid(t.input)) {
    const e = valid.errors?.[0];
    return `input does not match schemas/policy-input.schema.json: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`;
  }
  const ans = engine.authorize(toCedarRequest(t.input));
  if (ans.errors.length > 0) return `the policies failed to evaluate: ${ans.errors.join(', ')}`;
  const want = [...new Set(t.reason ?? [])].sort();
  if (ans.decision !== t.decision) return `expected ${t.decision}, got ${ans.decision} (reason: ${ans.reason.join(', ') || 'none'})`;
  if (want.join() !== ans.reason.join()) return `expected reason ${want.join(', ') || 'none'}, got ${ans.reason.join(', ') || 'none'}`;
  if (t.obligations !== undefined) {
    const got = combineObligations(engine.evaluate(t.input).obligations);
    if (JSON.stringify(canonicalize(got)) !== JSON.stringify(canonicalize(t.obligations)))
      return `expected obligations ${JSON.stringify(canonicalize(t.obligations))}, got ${JSON.stringify(canonicalize(got))}`;
  }
  return '';
}

async function runCase(engine: CedarEngine, t: CedarTestCase, dir: string): Promise<string> {
  if (t.input !== undefined) return runInputCase(engine, t);
  const r = t.request;
  if (r?.principal === undefined || r.action === undefined || r.resource === undefined) return 'request needs principal, action and resource';
  if (t.decision !== 'allow' && t.decision !== 'deny') return 'decision must be "allow" or "deny"';
  let entities: EntityJson[];
  if (typeof t.entities === 'string') {
    const file = resolve(dir, t.entities);
    if (!file.startsWith(resolve(dir) + sep)) return `entities file ${t.entities} is outside the test directory`;
    entities = JSON.parse(await readFile(file, 'utf8')) as EntityJson[];
  } else entities = t.entities ?? [];
  const ans = engine.authorize({
    principal: parseEntityUid(r.principal),
    action: parseEntityUid(r.action),
    resource: parseEntityUid(r.resource),
    context: r.context ?? {},
    entities,
  });
  const problems: string[] = [];
  if (ans.decision !== t.decision) return `expected ${t.decision}, got ${ans.decision} (reason: ${ans.reason.join(', ') || 'none'})`;
  const missing = (t.reason ?? []).filter((id) => !ans.reason.includes(id));
  if (missing.length > 0) problems.push(`missing reason(s): ${missing.join(', ')} (got ${ans.reason.join(', ') || 'none'})`);
  if (ans.errors.length !== (t.num_errors ?? 0)) problems.push(`expected ${t.num_errors ?? 0} error(s), got ${ans.errors.length}`);
  return problems.join('; ');
}

/** Runs every *.json test file in `testsDir` against the loaded engine. */
export async function runCedarTests(engine: CedarEngine, testsDir: string): Promise<CedarTestResult[]> {
  const results: CedarTestResult[] = [];
  const files = (await readdir(testsDir)).filter((f) => f.endsWith('.json')).sort();
  for (const f of files) {
    const path = join(testsDir, f);
    const label = relative(process.cwd(), path);
    let cases: unknown;
    try {
      cases = JSON.parse(await readFile(path, 'utf8'));
    } catch (e) {
      results.push({ file: label, name: '(file)', pass: false, message: `not JSON: ${(e as Error).message}` });
      continue;
    }
    if (!Array.isArray(cases)) {
      results.push({ file: label, name: '(file)', pass: false, message: 'a test file holds a JSON array of test cases' });
      continue;
    }
    for (const [i, t] of (cases as CedarTestCase[]).entries()) {
      const name = t.name ?? `case ${i + 1}`;
      let message: string;
      try {
        message = await runCase(engine, t, testsDir);
      } catch (e) {
        message = `error: ${(e as Error).message}`;
      }
      results.push({ file: label, name, pass: message === '', message });
    }
  }
  return results;
}
