/**
 * OPA bundles: compile Rego sources to a WASM bundle with `opa build -t wasm`, and read a
 * bundle (.tar.gz) back without any tar dependency (bundles hold a handful of small files).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { compileError, type PolicyProblem } from '../problems.js';
import { CompileCache } from '../compile-cache.js';
import { policyInputSchema, runOpa, withInputSchema } from './opa.js';

/** The package every policy set defines (ARCHITECTURE.md "The policy contract"). */
const REGO_PACKAGE = 'micro_mcp.authz';

/** The one WASM entrypoint: a rule added at build time that gathers the contract's rules. */
export const REGO_ENTRYPOINT = 'micro_mcp_gateway/decision';

// Evaluating the package itself as an entrypoint fails to compile when it defines functions,
// and one entrypoint per rule would copy the input into WASM memory three times. This rule
// yields allow, reasons and obligations in one evaluation; it is undefined when allow is.
const ENTRY_REGO = `package micro_mcp_gateway

import data.${REGO_PACKAGE}

default _reasons := []

_reasons := authz.reasons

default _obligations := {}

_obligations := authz.obligations

decision := {"allow": authz.allow, "reasons": _reasons, "obligations": _obligations}
`;

/**
 * What of the input a policy set can read: paths of keys from input's root, each ending where the
 * reference stops being a constant key (everything below it is read), as `opa deps` reports the
 * entrypoint's base documents. null: the whole input (a bare `input` reference, or no analysis).
 */
export type InputReads = readonly (readonly string[])[] | null;

export interface RegoBundle {
  wasm: Uint8Array;
  data: Record<string, unknown>;
  revision: string;
}

/** Policy sources of a Rego dir (tests excluded unless asked for), sorted, relative to the dir. */
async function regoSources(dir: string, withTests = false): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.(rego|json|ya?ml)$/.test(e.name) && (withTests || !e.name.endsWith('_test.rego'))) out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

/** sha256 over the policy sources' names and contents: the bundle revision (with tests: what `opa check` reads). */
async function regoSourceRevision(dir: string, withTests = false): Promise<string> {
  const h = createHash('sha256');
  for (const f of await regoSources(dir, withTests)) {
    h.update(f)
      .update('\0')
      .update(await readFile(join(dir, f)))
      .update('\0');
  }
  return `sha256:${h.digest('hex')}`;
}

const OPA_PROBLEM = /([^\s:]+\.rego):(\d+): (rego_[a-z_]+_error: [^\n]*)/g;

/** Turns opa's error output into problems with file, line and reason. */
export function parseOpaProblems(stderr: string, dir: string): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const m of stderr.matchAll(OPA_PROBLEM)) {
    const file = m[1] as string;
    problems.push({ engine: 'rego', file: file.startsWith('/') ? file : join(dir, file), line: Number(m[2]), reason: m[3] as string });
  }
  if (problems.length === 0) {
    const first = stderr.trim().split('\n')[0] || 'opa build failed';
    problems.push({ engine: 'rego', file: dir, line: null, reason: first.replace(/^error: /, '') });
  }
  return problems;
}

/**
 * Type-checks the Rego sources in `dir` (tests included) against the PolicyInput schema with
 * `opa check --strict -s`. `opa build` has no schema flag, so every path that compiles Rego (start-up,
 * hot reload, `policy build|check|test`) runs this first. Rejects with ERR_POLICY_COMPILE naming
 * file, line and reason, e.g. `fs.rego:12: rego_type_error: undefined ref: input.principal.grups`.
 */
export async function checkRegoTypes(opa: string, dir: string, factNames: readonly string[] = []): Promise<void> {
  const run = await withInputSchema(factNames, (schema) => runOpa(opa, ['check', '--strict', '-s', schema, '.'], { cwd: dir }));
  if (run.code !== 0) throw compileError(parseOpaProblems(`${run.stdout}\n${run.stderr}`, dir));
}

/**
 * Compiles the Rego sources in `dir` with `opa build -t wasm` into one bundle (tests ignored), after
 * the type check (`factNames`: the services' declared named resource facts). Rejects with
 * ERR_POLICY_COMPILE naming file, line and reason. With a cache, an entry compiled before is used
 * (`refresh`: compiled again and written over it, for an entry that did not load). `reads`: what
 * of the input the compiled policy can read.
 */
export async function buildRegoBundle(
  opa: string,
  dir: string,
  factNames: readonly string[] = [],
  cache: CompileCache | null = null,
  opts: { refresh?: boolean } = {},
): Promise<{ tarball: Buffer; revision: string; reads: InputReads; cacheKey?: string }> {
  const rev = await regoSourceRevision(dir);
  // Everything the check and the build read: the sources with their tests, the input schema and the
  // fact names it is extended with, the entry rule and the opa binary itself (path, size, mtime).
  let key: string | null = null;
  if (cache !== null) {
    const bin = await stat(opa);
    key = CompileCache.key([
      'rego-2',
      rev,
      await regoSourceRevision(dir, true),
      await readFile(policyInputSchema()),
      factNames.join('\0'),
      ENTRY_REGO,
      `${opa}\0${bin.size}\0${bin.mtimeMs}`,
    ]);
    const hit = opts.refresh === true ? null : await cache.get('rego', key);
    const entry = hit === null ? null : readCacheEntry(hit);
    // cacheKey marks a bundle read from the cache (its caller recompiles if it does not load).
    if (entry !== null) return { ...entry, revision: rev, cacheKey: key };
  }
  const built = await compileRegoBundle(opa, dir, factNames, rev);
  if (cache !== null && key !== null) await cache.put('rego', key, Buffer.concat([Buffer.from(`${JSON.stringify({ reads: built.reads })}\n`), built.tarball]));
  return built;
}

/** A cache entry: one JSON line ({reads}), then the bundle. null when it is not one (then the set is compiled). */
function readCacheEntry(data: Buffer): { tarball: Buffer; reads: InputReads } | null {
  const nl = data.indexOf(10);
  if (nl < 0) return null;
  try {
    const head = JSON.parse(data.subarray(0, nl).toString('utf8')) as { reads?: unknown };
    const reads = head.reads === null ? null : inputReadsOf(head.reads);
    if (reads === undefined) return null;
    return { tarball: data.subarray(nl + 1), reads };
  } catch {
    return null;
  }
}

/** Paths as InputReads keeps them (arrays of strings), or undefined when `v` is not that. */
function inputReadsOf(v: unknown): InputReads | undefined {
  if (!Array.isArray(v)) return undefined;
  const out: string[][] = [];
  for (const p of v) {
    if (!Array.isArray(p) || !p.every((k): k is string => typeof k === 'string')) return undefined;
    out.push(p);
  }
  return out;
}

interface OpaTerm {
  type?: unknown;
  value?: unknown;
}

/**
 * The input paths `opa deps` finds under the entrypoint (the same files as the build). A
 * reference keeps its constant keys up to the first variable or computed one; `input` itself, or
 * output that cannot be read, means the whole input.
 */
async function inputReads(opa: string, dir: string, entryDir: string): Promise<InputReads> {
  const query = `data.${REGO_ENTRYPOINT.replace('/', '.')}`;
  const run = await runOpa(opa, ['deps', '--format', 'json', '--ignore', '*_test.rego', '-d', '.', '-d', entryDir, query], { cwd: dir });
  if (run.code !== 0) return null;
  let base: unknown;
  try {
    base = (JSON.parse(run.stdout) as { base?: unknown }).base ?? [];
  } catch {
    return null;
  }
  if (!Array.isArray(base)) return null;
  const paths: string[][] = [];
  for (const ref of base as unknown[]) {
    if (!Array.isArray(ref)) return null;
    const [head, ...rest] = ref as OpaTerm[];
    if (head?.type !== 'var' || head.value !== 'input') continue; // data from the bundle, not input
    const path: string[] = [];
    for (const t of rest) {
      if (t?.type !== 'string' || typeof t.value !== 'string') break;
      path.push(t.value);
    }
    if (path.length === 0) return null;
    paths.push(path);
  }
  return paths;
}

async function compileRegoBundle(
  opa: string,
  dir: string,
  factNames: readonly string[],
  rev: string,
): Promise<{ tarball: Buffer; revision: string; reads: InputReads }> {
  await checkRegoTypes(opa, dir, factNames);
  const tmp = await mkdtemp(join(tmpdir(), 'micro-mcp-opa-'));
  try {
    const out = join(tmp, 'bundle.tar.gz');
    const entryDir = join(tmp, 'entry');
    await mkdir(entryDir);
    await writeFile(join(entryDir, 'micro_mcp_gateway.rego'), ENTRY_REGO);
    // cwd = dir and "." so that opa reports file names relative to the policy dir.
    const [run, reads] = await Promise.all([
      runOpa(opa, ['build', '-t', 'wasm', '-e', REGO_ENTRYPOINT, '--ignore', '*_test.rego', '--revision', rev, '-o', out, '.', entryDir], { cwd: dir }),
      inputReads(opa, dir, entryDir),
    ]);
    // opa prints its errors on stdout, other failures on stderr.
    if (run.code !== 0) throw compileError(parseOpaProblems(`${run.stdout}\n${run.stderr}`, dir));
    return { tarball: await readFile(out), revision: rev, reads };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The files of a .tar.gz (regular files only), keyed by path without a leading "/" or "./". */
function untarGz(tarball: Uint8Array): Map<string, Buffer> {
  const tar = gunzipSync(tarball);
  const files = new Map<string, Buffer>();
  let off = 0;
  let longName: string | null = null;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, len: number): string => {
      const raw = header.subarray(start, start + len);
      const nul = raw.indexOf(0);
      return raw.subarray(0, nul === -1 ? len : nul).toString('utf8');
    };
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156] ?? 48);
    const prefix = field(345, 155);
    let name = longName ?? (prefix !== '' ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = null;
    const body = tar.subarray(off + 512, off + 512 + size);
    if (type === 'L') longName = body.toString('utf8').replace(/\0+$/, '');
    else if (type === '0' || type === '\0') {
      name = name.replace(/^\.?\/+/, '');
      files.set(name, Buffer.from(body));
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/** Reads policy.wasm, data.json and the manifest revision out of an OPA bundle. */
export function readRegoBundle(tarball: Uint8Array, label: string): RegoBundle {
  let files: Map<string, Buffer>;
  try {
    files = untarGz(tarball);
  } catch (e) {
    throw compileError([{ engine: 'rego', file: label, line: null, reason: `not a gzipped tar bundle (${(e as Error).message})` }]);
  }
  const wasm = files.get('policy.wasm');
  if (wasm === undefined) {
    throw compileError([{ engine: 'rego', file: label, line: null, reason: 'bundle has no policy.wasm (build it with `opa build -t wasm`)' }]);
  }
  const data = files.has('data.json') ? (JSON.parse((files.get('data.json') as Buffer).toString('utf8')) as Record<string, unknown>) : {};
  let revision = '';
  const manifest = files.get('.manifest');
  if (manifest !== undefined) {
    const rev = (JSON.parse(manifest.toString('utf8')) as { revision?: unknown }).revision;
    if (typeof rev === 'string') revision = rev;
  }
  if (revision === '') revision = `sha256:${createHash('sha256').update(wasm).digest('hex')}`;
  return { wasm, data, revision };
}
