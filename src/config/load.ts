/**
 * Configuration: read YAML, interpolate ${VARS}, validate against schemas/config.schema.json (and the
 * section schemas it references), apply defaults, freeze. Any problem stops start-up with the key path
 * and the reason; a secret value is never echoed in an error.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { validateConfig } from '../../schemas/generated/config-validator.js';
import { GatewayError } from '../errors.js';
import type { Config } from './types.js';

/** The package root (where package.json lives), from src/config or dist/src/config alike. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
/** The embedded default configuration `make run` uses: example services over the sample folder. */
export const DEV_CONFIG_PATH = path.join(PACKAGE_ROOT, 'src', 'config', 'examples', 'dev.yaml');
/** What ${MICRO_MCP_RUN_DIR} stands for when a config is only checked, not served. */
const NO_RUN_DIR = path.join(tmpdir(), 'micro-mcp-run-dir-of-the-serving-process');

function findPackageRoot(from: string): string {
  let dir = from;
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'micro-mcp') return dir;
    } catch {
      /* keep walking up */
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('micro-mcp package root not found');
    dir = parent;
  }
}

export interface LoadOptions {
  /** Environment for ${VAR} interpolation; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * This process's private runtime folder (created by the CLI with mkdtemp, mode 0700), e.g. where
   * the JWKS file stdio services verify credentials with lives. Configs may name it as
   * ${MICRO_MCP_RUN_DIR} (to let a sandboxed service read it). Absent when a config is only checked.
   */
  runDir?: string;
}

/** Loads, interpolates, validates and freezes a config file. Throws GatewayError('ERR_CONFIG_INVALID'). */
export function loadConfig(file: string, opts: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new GatewayError('ERR_CONFIG_INVALID', `cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseConfig(text, file, opts);
}

/** Parses config text; `file` names the source in errors and anchors relative paths. */
export function parseConfig(text: string, file: string, opts: LoadOptions = {}): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0];
    throw new GatewayError('ERR_CONFIG_INVALID', `${file}${line ? `:${line.line}:${line.col}` : ''}: YAML error: ${e.message.split('\n')[0]}`);
  }
  const raw: unknown = doc.toJS();
  const vars: Record<string, string | undefined> = {
    ...(opts.env ?? process.env),
    MICRO_MCP_HOME: PACKAGE_ROOT,
    CONFIG_DIR: path.dirname(path.resolve(file)),
    NODE: process.execPath,
    MICRO_MCP_RUN_DIR: opts.runDir ?? NO_RUN_DIR,
  };
  const data = interpolate(raw, vars, '', file);
  // schemas/config.schema.json with its sections, compiled by ajv at `make schemas` (generate-validator.mjs).
  if (!validateConfig(data)) {
    throw new GatewayError('ERR_CONFIG_INVALID', `${file}: ${describeErrors(validateConfig.errors ?? [])}`, { file });
  }
  const cfg = data as Config;
  cfg.source = path.resolve(file);
  cfg.runDir = opts.runDir ?? null;
  return deepFreeze(cfg);
}

/** Replaces ${NAME} in every string; an undefined variable is an error naming the key path (never the value). */
function interpolate(v: unknown, vars: Record<string, string | undefined>, at: string, file: string): unknown {
  if (typeof v === 'string') {
    return v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const value = vars[name];
      if (value === undefined) {
        throw new GatewayError('ERR_CONFIG_INVALID', `${file}: ${at || '/'}: environment variable ${name} is not set`, { path: at });
      }
      return value;
    });
  }
  if (Array.isArray(v)) return v.map((x, i) => interpolate(x, vars, `${at}/${i}`, file));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = interpolate(x, vars, `${at}/${k}`, file);
    return out;
  }
  return v;
}

/** Turns ajv errors into one readable line per problem, most specific first, with the key path. */
function describeErrors(all: ErrorObject[]): string {
  // In a oneOf, a branch whose discriminator (a `const`) does not match is not the user's intent:
  // drop its errors so the branch that applies speaks.
  const branchOf = (e: ErrorObject) => /^(.*\/oneOf\/\d+)\//.exec(e.schemaPath)?.[1];
  const mismatched = new Set(
    all
      .filter((e) => e.keyword === 'const')
      .map(branchOf)
      .filter((b): b is string => !!b),
  );
  const kept = all.filter((e) => {
    const b = branchOf(e);
    return !b || !mismatched.has(b);
  });
  const errors = kept.length > 0 ? kept : all;
  // oneOf failures drown the real cause; keep the deepest errors. An `if` failure only says that
  // its `then` failed, whose own errors are the cause.
  const maxDepth = Math.max(...errors.map((e) => e.instancePath.split('/').length));
  const deepest = errors.filter((e) => e.instancePath.split('/').length === maxDepth && e.keyword !== 'oneOf' && e.keyword !== 'if');
  const chosen = deepest.length > 0 ? deepest : errors;
  const lines = new Set<string>();
  for (const e of chosen) {
    const where = e.instancePath || '/';
    let what = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') what = `unknown key "${String((e.params as { additionalProperty: string }).additionalProperty)}"`;
    if (e.keyword === 'enum') what = `must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
    if (e.keyword === 'const') what = `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
    lines.add(`${where}: ${what}`);
  }
  return [...lines].slice(0, 8).join('; ');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
