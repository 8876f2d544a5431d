/**
 * `micro-mcp policy build|test|check|explain`: plain functions taking plain arguments and a
 * writer, returning the process exit code. The lead's CLI parses flags and calls these.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { isGatewayError } from '../errors.js';
import type { Decision, DecisionReason, PolicyInput, Principal, ToolFacts } from '../types.js';
import { CedarEngine } from './cedar/engine.js';
import { runCedarTests } from './cedar/run-tests.js';
import { buildPolicyInput, type ResourceExtractor, resourceExtractor, type ResourceSpec } from './input.js';
import { parityInputs, runParity } from './parity.js';
import { isPolicyMethod, POLICY_METHODS } from './methods.js';
import { loadPolicies, type PolicySet } from './policy-set.js';
import { formatProblem, type PolicyProblem } from './problems.js';
import { buildRegoBundle, parseOpaProblems, readRegoBundle } from './rego/bundle.js';
import { RegoEngine } from './rego/engine.js';
import { resolveOpa, runOpa, withInputSchema } from './rego/opa.js';
import { toolFacts } from './tools.js';
import type { EngineName, PolicyConfig } from './types.js';

/** Where output goes (process.stdout fits). */
export interface Writer {
  write(chunk: string): unknown;
}

const line = (out: Writer, s = ''): void => {
  out.write(`${s}\n`);
};

function reportError(out: Writer, e: unknown): void {
  if (isGatewayError(e)) {
    const problems = e.data?.problems as PolicyProblem[] | undefined;
    if (Array.isArray(problems) && problems.length > 0) for (const p of problems) line(out, `error: ${p.engine}: ${formatProblem(p)}`);
    else line(out, `error: ${e.message}`);
  } else line(out, `error: ${e instanceof Error ? e.message : String(e)}`);
}

/** `policy build`: compiles Rego sources into a WASM bundle at `out`, with the sources' revision hash. */
export async function policyBuild(opts: { regoDir: string; out: string; opaPath?: string; factNames?: string[] }, out: Writer): Promise<number> {
  try {
    const dir = resolve(opts.regoDir);
    const { tarball, revision } = await buildRegoBundle(resolveOpa(opts.opaPath), dir, opts.factNames);
    // Load it once so that a bundle that cannot serve is never written.
    (await RegoEngine.fromBundle(readRegoBundle(tarball, dir), dir)).close();
    await mkdir(dirname(resolve(opts.out)), { recursive: true });
    await writeFile(opts.out, tarball);
    line(out, `wrote ${opts.out} (revision ${revision})`);
    return 0;
  } catch (e) {
    reportError(out, e);
    return 1;
  }
}

interface OpaTestResult {
  package?: string;
  name?: string;
  fail?: boolean;
  error?: unknown;
  skip?: boolean;
}

/**
 * `policy test`: the Rego suite with `opa test` and the Cedar cases (tests/*.json, `cedar
 * run-tests` format) in-process. The last line is `N passed, M failed`; exit 1 on any failure.
 */
export async function policyTest(opts: { regoDir: string; cedarDir: string; opaPath?: string; factNames?: string[] }, out: Writer): Promise<number> {
  let passed = 0;
  let failed = 0;
  try {
    // Typed like every other compile: a test run must not pass a policy that cannot load.
    const opa = resolveOpa(opts.opaPath);
    const run = await withInputSchema(opts.factNames ?? [], (schema) =>
      runOpa(opa, ['test', '--format', 'json', '-s', schema, '.'], { cwd: resolve(opts.regoDir) }),
    );
    let results: OpaTestResult[] | null = null;
    try {
      results = JSON.parse(run.stdout) as OpaTestResult[];
    } catch {
      results = null;
    }
    if (!Array.isArray(results)) {
      failed++;
      for (const p of parseOpaProblems(`${run.stdout}\n${run.stderr}`, resolve(opts.regoDir))) line(out, `FAIL rego: ${formatProblem(p)}`);
    } else {
      for (const r of results) {
        if (r.skip === true) continue;
        const ok = r.fail !== true && r.error === undefined;
        if (ok) passed++;
        else failed++;
        line(out, `${ok ? 'ok  ' : 'FAIL'} rego  ${r.package ?? ''}.${r.name ?? ''}`);
      }
    }
  } catch (e) {
    failed++;
    reportError(out, e);
  }
  let cedar: CedarEngine | null = null;
  try {
    cedar = await CedarEngine.load(resolve(opts.cedarDir));
    for (const r of await runCedarTests(cedar, join(resolve(opts.cedarDir), 'tests'))) {
      if (r.pass) passed++;
      else failed++;
      line(out, `${r.pass ? 'ok  ' : 'FAIL'} cedar ${r.file}: ${r.name}${r.pass ? '' : ` - ${r.message}`}`);
    }
  } catch (e) {
    failed++;
    reportError(out, e);
  } finally {
    cedar?.close();
  }
  line(out, `${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

/**
 * `policy check`: `opa check --strict` typed against the PolicyInput schema and a WASM build of the Rego sources (or loads the given
 * bundle), and strict validation of the Cedar policies against the schema.
 */
export async function policyCheck(
  opts: { regoDir?: string; bundle?: string; cedarDir?: string; opaPath?: string; factNames?: string[] },
  out: Writer,
): Promise<number> {
  let failed = false;
  if (opts.bundle !== undefined) {
    try {
      const { readFile } = await import('node:fs/promises');
      const b = readRegoBundle(await readFile(opts.bundle), opts.bundle);
      (await RegoEngine.fromBundle(b, opts.bundle)).close();
      line(out, `ok   rego  bundle ${opts.bundle} (revision ${b.revision})`);
    } catch (e) {
      failed = true;
      reportError(out, e);
    }
  } else if (opts.regoDir !== undefined) {
    const dir = resolve(opts.regoDir);
    try {
      const opa = resolveOpa(opts.opaPath);
      const check = await withInputSchema(opts.factNames ?? [], (schema) => runOpa(opa, ['check', '--strict', '-s', schema, '.'], { cwd: dir }));
      if (check.code !== 0) {
        failed = true;
        for (const p of parseOpaProblems(`${check.stdout}\n${check.stderr}`, dir)) line(out, `error: rego: ${formatProblem(p)}`);
      } else {
        const { tarball, revision } = await buildRegoBundle(opa, dir, opts.factNames);
        (await RegoEngine.fromBundle(readRegoBundle(tarball, dir), dir)).close();
        line(out, `ok   rego  ${opts.regoDir} (revision ${revision})`);
      }
    } catch (e) {
      failed = true;
      reportError(out, e);
    }
  }
  if (opts.cedarDir !== undefined) {
    try {
      const c = await CedarEngine.load(resolve(opts.cedarDir));
      line(out, `ok   cedar ${opts.cedarDir} (revision ${c.revision})`);
      c.close();
    } catch (e) {
      failed = true;
      reportError(out, e);
    }
  }
  line(out, failed ? 'policy check failed' : 'policy check passed');
  return failed ? 1 : 0;
}

export interface ExplainOptions {
  /** The `policy` config section (defaults apply); watch is forced off. */
  config?: PolicyConfig;
  baseDir?: string;
  principal: string;
  principalType?: Principal['type'];
  groups?: string[];
  scopes: string[];
  /** Purposes the principal's token grants (principal.purposes). */
  purposes?: string[];
  purpose?: string | null;
  /** A tool name ("fs.read") or full facts from the catalog. */
  tool: string | ToolFacts;
  /** Annotations when `tool` is a name; default {} (the riskiest, as the MCP spec's defaults). */
  annotations?: Record<string, unknown>;
  /** The services' resource declarations (config `services.<name>.resource`), by service name. */
  resources?: Readonly<Record<string, ResourceSpec | undefined>>;
  arguments?: Record<string, unknown>;
  /** The MCP method (default tools/call; tools/list for the list phase); phase and action follow from it. */
  method?: string;
  engines?: EngineName[];
}

const fmtReason = (r: DecisionReason): string => `    - ${r.id}: ${r.message}`;

/** `<engine>: allow|deny`, its reasons, and an engine error's cause. */
function printVerdicts(out: Writer, d: Decision): void {
  for (const v of d.engines ?? []) {
    line(out, `${v.engine}: ${v.allow ? 'allow' : 'deny'}`);
    for (const r of v.reasons) line(out, fmtReason(r));
    if (v.error !== undefined) line(out, `    error: ${v.error}`);
  }
}

function specOf(resources: ExplainOptions['resources'], service: string) {
  const spec = resources !== undefined && Object.hasOwn(resources, service) ? resources[service] : undefined;
  return spec === undefined ? undefined : resourceExtractor(spec);
}

/** `policy explain`: prints each engine's decision with its reasons, then the combined decision. */
export async function policyExplain(opts: ExplainOptions, out: Writer): Promise<number> {
  let set: PolicySet;
  try {
    set = await loadPolicies({ ...opts.config, watch: false }, opts.baseDir !== undefined ? { baseDir: opts.baseDir } : {});
  } catch (e) {
    reportError(out, e);
    return 1;
  }
  try {
    const tool = typeof opts.tool === 'string' ? toolFacts(opts.tool, opts.annotations) : opts.tool;
    const input = buildPolicyInput({
      method: opts.method ?? 'tools/call',
      principal: {
        id: opts.principal,
        type: opts.principalType ?? 'user',
        issuer: 'micro-mcp-explain',
        groups: opts.groups ?? [],
        attributes: {},
        scopes: opts.scopes,
        client: { id: null },
        purpose: null,
        purposes: opts.purposes ?? [],
      },
      tool,
      arguments: opts.arguments,
      purpose: opts.purpose ?? null,
      resource: specOf(opts.resources, tool.namespace),
      context: { request_id: 'explain' },
    });
    line(
      out,
      `input: ${JSON.stringify({ phase: input.phase, method: input.method, action: input.action, principal: input.principal.id, type: input.principal.type, groups: input.principal.groups, scopes: input.scopes, purpose: input.purpose, tool: tool.name, resource: input.resource })}`,
    );
    const engines = opts.engines ?? set.enginesFor(tool.namespace);
    for (const name of engines) {
      // Each engine alone, so its obligations show too; the verdict is the one the combined decision records.
      const d: Decision = set.decide(input, [name]);
      printVerdicts(out, d);
      if (Object.keys(d.obligations).length > 0) line(out, `    obligations: ${JSON.stringify(d.obligations)}`);
    }
    const d = set.decide(input, engines);
    line(out, `decision: ${d.allow ? 'allow' : 'deny'} (engines: ${engines.join(', ')}; revision ${d.policy_revision})`);
    if (d.reasons.some((r) => r.engine === 'gateway')) for (const r of d.reasons) line(out, fmtReason(r));
    if (Object.keys(d.obligations).length > 0) line(out, `obligations: ${JSON.stringify(d.obligations)}`);
    return 0;
  } finally {
    set.close();
  }
}

/** The members of an audit decision record a replay needs (schemas/audit-event.schema.json). */
export interface RecordedDecision {
  decision_id: string;
  timestamp?: string;
  request_id?: string | null;
  session_id?: string | null;
  requested_by?: string | null;
  method: string;
  tool: string;
  service: string;
  tool_definition_hash?: string;
  tool_annotations?: Record<string, unknown>;
  principal: { id: string; type: Principal['type']; issuer: string; groups?: string[]; purposes?: string[] };
  client?: { id: string | null };
  scopes: string[];
  purpose?: string | null;
  resource?: Record<string, unknown>;
  input?: { arguments?: unknown };
  result: {
    allow: boolean;
    reasons: Array<{ engine: string; id: string }>;
    engines?: Array<{ engine: string; allow: boolean; reasons: Array<{ id: string }>; error?: string }>;
  };
  bundles?: { policy?: { revision?: string } };
}

/** "allow" or "deny - id, id" per engine, comparable across the record and today's decision. */
function verdictLines(engines: ReadonlyArray<{ engine: string; allow: boolean; reasons: ReadonlyArray<{ id: string }>; error?: string }>): string[] {
  return engines.map(
    (v) => `${v.engine}: ${v.allow ? 'allow' : 'deny'} - ${[...new Set(v.reasons.map((r) => r.id))].sort().join(', ')}${v.error ? ` (${v.error})` : ''}`,
  );
}

/**
 * `policy explain --decision ID --audit FILE`: replays a recorded decision (its principal, scopes,
 * purpose, tool, annotations and resource facts as the record holds them) against the policy set
 * loaded now, prints both, and says whether today's policy decides the same: the same allow and the
 * same rule ids per engine. Exit 0 when the same, 1 when different or when the set does not load.
 */
export async function policyReplay(
  opts: { record: RecordedDecision; config?: PolicyConfig; baseDir?: string; resourceFacts?: readonly string[] },
  out: Writer,
): Promise<number> {
  const rec = opts.record;
  let set: PolicySet;
  try {
    set = await loadPolicies(
      { ...opts.config, watch: false },
      { ...(opts.baseDir !== undefined ? { baseDir: opts.baseDir } : {}), ...(opts.resourceFacts ? { resourceFacts: opts.resourceFacts } : {}) },
    );
  } catch (e) {
    reportError(out, e);
    return 1;
  }
  try {
    const m = isPolicyMethod(rec.method) ? POLICY_METHODS[rec.method] : undefined;
    const prefix = `${rec.service}.`;
    const args = rec.input?.arguments;
    const input: PolicyInput = {
      phase: m?.phase ?? 'call',
      method: rec.method,
      action: m?.action ?? '',
      principal: {
        id: rec.principal.id,
        type: rec.principal.type,
        issuer: rec.principal.issuer,
        groups: rec.principal.groups ?? [],
        purposes: rec.principal.purposes ?? [],
        attributes: {},
      },
      client: { id: rec.client?.id ?? null },
      scopes: rec.scopes,
      purpose: rec.purpose ?? null,
      tool: {
        name: rec.tool,
        namespace: rec.service,
        local_name: rec.tool.startsWith(prefix) ? rec.tool.slice(prefix.length) : rec.tool,
        annotations: rec.tool_annotations ?? {},
        definition_hash: rec.tool_definition_hash ?? `sha256:${'0'.repeat(64)}`,
      },
      // The record keeps arguments only with audit.log_arguments (redacted); the facts are what policies decide on.
      arguments: typeof args === 'object' && args !== null && !Array.isArray(args) ? (args as Record<string, unknown>) : {},
      resource: rec.resource ?? {},
      context: {
        time: rec.timestamp ?? new Date().toISOString(),
        request_id: rec.request_id ?? 'replay',
        session_id: rec.session_id ?? null,
        client_ip: rec.requested_by ?? null,
      },
    };
    const d = set.decide(input);
    line(out, `decision ${rec.decision_id} (${rec.tool}, principal ${rec.principal.id}${rec.timestamp ? `, ${rec.timestamp}` : ''})`);
    const recorded = rec.result.engines ?? [];
    line(out, `recorded: ${rec.result.allow ? 'allow' : 'deny'} (revision ${rec.bundles?.policy?.revision ?? 'unknown'})`);
    for (const l of verdictLines(recorded)) line(out, `    ${l}`);
    line(out, `today:    ${d.allow ? 'allow' : 'deny'} (revision ${d.policy_revision})`);
    const today = d.engines ?? [];
    for (const l of verdictLines(today)) line(out, `    ${l}`);
    // Compare engines by name: a record without per-engine verdicts compares on allow and the rule ids.
    const a =
      recorded.length > 0 ? verdictLines(recorded).sort() : [`ids: ${[...new Set(rec.result.reasons.map((r) => `${r.engine}:${r.id}`))].sort().join(', ')}`];
    const b = recorded.length > 0 ? verdictLines(today).sort() : [`ids: ${[...new Set(d.reasons.map((r) => `${r.engine}:${r.id}`))].sort().join(', ')}`];
    const same = rec.result.allow === d.allow && JSON.stringify(a) === JSON.stringify(b);
    line(out, same ? "verdict: same - today's policy decides this call as recorded" : "verdict: different - today's policy decides this call otherwise");
    return same ? 0 : 1;
  } finally {
    set.close();
  }
}

/** Rule ids whose METADATA declares `custom: {parity: why}` (`opa inspect -a`): approximations on purpose. */
async function regoParityDeclarations(opa: string, dir: string): Promise<Map<string, string>> {
  const run = await runOpa(opa, ['inspect', '-a', '--format', 'json', '.'], { cwd: dir });
  const out = new Map<string, string>();
  if (run.code !== 0) return out;
  const doc = JSON.parse(run.stdout) as { annotations?: Array<{ annotations?: { title?: unknown; custom?: { parity?: unknown } } }> };
  for (const a of doc.annotations ?? []) {
    const title = a.annotations?.title;
    const why = a.annotations?.custom?.parity;
    if (typeof title === 'string' && typeof why === 'string') out.set(title, why);
  }
  return out;
}

/**
 * `policy parity`: generates `count` PolicyInputs from `seed` (groups, scopes, purposes, every
 * method of the table and every tool, odd paths and URLs, list and call), decides each with Rego and
 * Cedar alone, and reports every disagreement by class with its smallest example. Exit 1 when a
 * disagreement is not declared on purpose by the policy files.
 */
export async function policyParity(
  opts: {
    regoDir: string;
    cedarDir: string;
    count: number;
    seed: number;
    resources?: Readonly<Record<string, ResourceSpec | undefined>>;
    factNames?: string[];
    opaPath?: string;
  },
  out: Writer,
): Promise<number> {
  let rego: RegoEngine | null = null;
  let cedar: CedarEngine | null = null;
  try {
    const opa = resolveOpa(opts.opaPath);
    const dir = resolve(opts.regoDir);
    const { tarball } = await buildRegoBundle(opa, dir, opts.factNames);
    rego = await RegoEngine.fromBundle(readRegoBundle(tarball, dir), dir);
    cedar = await CedarEngine.load(resolve(opts.cedarDir));
    const declared = new Map([...(await regoParityDeclarations(opa, dir)), ...cedar.parityDeclared]);
    const resources = new Map<string, ResourceExtractor>();
    for (const [name, spec] of Object.entries(opts.resources ?? {})) if (spec !== undefined) resources.set(name, resourceExtractor(spec));
    const services = Object.keys(opts.resources ?? {});
    const report = runParity(rego, cedar, parityInputs({ count: opts.count, seed: opts.seed, services, resources }), new Set(declared.keys()));
    line(out, `parity: ${report.inputs} inputs (seed ${opts.seed}); the engines agree on ${report.agreed}`);
    let undeclared = 0;
    let onPurpose = 0;
    for (const c of report.classes) {
      if (c.declared) onPurpose += c.count;
      else undeclared += c.count;
      line(out, `${c.declared ? 'declared' : 'DIFF'}  ${c.name} (${c.count} input${c.count === 1 ? '' : 's'})`);
      if (c.declared) {
        const ids = [...c.rego.ids, ...c.cedar.ids].filter((x) => declared.has(x));
        for (const id of new Set(ids)) line(out, `      ${id}: ${declared.get(id)}`);
      }
      const fmt = (a: { allow: boolean; ids: string[]; error?: string }) => `${a.error ?? (a.allow ? 'allow' : 'deny')} [${a.ids.join(', ')}]`;
      line(out, `      rego ${fmt(c.rego)}; cedar ${fmt(c.cedar)}`);
      line(out, `      minimal example: ${JSON.stringify(c.example)}`);
    }
    const classes = report.classes.filter((c) => !c.declared).length;
    line(out, `${undeclared} disagreement${undeclared === 1 ? '' : 's'} in ${classes} class${classes === 1 ? '' : 'es'} (${onPurpose} declared on purpose)`);
    return undeclared === 0 ? 0 : 1;
  } catch (e) {
    reportError(out, e);
    return 1;
  } finally {
    rego?.close();
    cedar?.close();
  }
}
