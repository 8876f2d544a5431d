/**
 * The opa CLI: where it is, and running it. Used to compile Rego sources to WASM at load time
 * and by `micro-mcp policy test|check|build`, never per decision.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../../errors.js';

/** The repository root (the directory of micro-mcp's package.json), found from this file. */
export function repoRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'micro-mcp') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * The PolicyInput JSON Schema every Rego source is type-checked against (`opa check --strict -s`):
 * an unknown input field or a type error refuses the set instead of making a rule silently never fire.
 */
export function policyInputSchema(): string {
  const root = repoRoot();
  const file = root === null ? null : join(root, 'schemas', 'policy-input.schema.json');
  if (file === null || !existsSync(file)) {
    throw new GatewayError('ERR_POLICY_COMPILE', 'policy set rejected: schemas/policy-input.schema.json was not found, so Rego cannot be type-checked');
  }
  return file;
}

/**
 * Runs `fn` with the path of the PolicyInput schema to type-check against, extended with the named
 * resource facts the services declare (`resource.facts` in the config): OPA types only the members
 * a schema lists, so a rule on `input.resource.repo` type-checks only where `repo` is declared.
 */
export async function withInputSchema<T>(factNames: readonly string[], fn: (schemaFile: string) => Promise<T>): Promise<T> {
  const base = policyInputSchema();
  if (factNames.length === 0) return fn(base);
  const schema = JSON.parse(readFileSync(base, 'utf8')) as { properties: { resource: { properties: Record<string, unknown> } } };
  const props = schema.properties.resource.properties;
  // Untyped (any): OPA reads a list of types as one of them, and a named fact may be any scalar or null.
  for (const name of factNames) if (!Object.hasOwn(props, name)) props[name] = { description: 'a named resource fact declared by a service' };
  const dir = await mkdtemp(join(tmpdir(), 'micro-mcp-schema-'));
  try {
    const file = join(dir, 'policy-input.schema.json');
    await writeFile(file, JSON.stringify(schema));
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The opa binary: an explicit path, else $MICRO_MCP_OPA, else <repo>/.tools/bin/opa, else opa
 * on PATH. Throws ERR_POLICY_COMPILE when none exists, because Rego sources cannot be loaded.
 */
export function resolveOpa(explicit?: string): string {
  const candidates: string[] = [];
  if (explicit !== undefined && explicit !== '') candidates.push(explicit);
  else {
    const env = process.env.MICRO_MCP_OPA;
    if (env !== undefined && env !== '') candidates.push(env);
    else {
      const root = repoRoot();
      if (root !== null) candidates.push(join(root, '.tools', 'bin', 'opa'));
      for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir !== '') candidates.push(join(dir, 'opa'));
    }
  }
  for (const c of candidates) if (executable(c)) return c;
  throw new GatewayError(
    'ERR_POLICY_COMPILE',
    `the opa CLI was not found (looked at ${candidates.slice(0, 3).join(', ') || 'nothing'}); ` +
      'run `make setup`, set MICRO_MCP_OPA or policy.opa_path, or configure policy.rego.bundle',
  );
}

export interface OpaRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs opa with arguments (no shell); resolves with the exit code instead of throwing on failure. */
export function runOpa(opa: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<OpaRun> {
  return new Promise((resolve, reject) => {
    execFile(opa, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(new GatewayError('ERR_POLICY_COMPILE', `could not run opa: ${err.message}`, undefined, { cause: err }));
        return;
      }
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
    });
  });
}
