/** The small subcommands: token, policy, audit, config. Each returns its exit code. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { tokenCommand } from '../auth/index.js';
import { auditVerify } from '../audit/index.js';
import { DEV_CONFIG_PATH, loadConfig, PACKAGE_ROOT } from '../config/load.js';
import type { Config } from '../config/types.js';
import { policyBuild, policyCheck, policyExplain, policyParity, policyReplay, policyTest, type RecordedDecision } from '../policy/cli.js';
import { declaredFactNames } from '../policy/input.js';
import type { PolicyConfig } from '../policy/types.js';
import { resolveConfigPath } from './serve.js';

const out = process.stdout;

export async function token(argv: string[]): Promise<number> {
  return tokenCommand(argv, out);
}

const POLICY_USAGE = `usage:
  micro-mcp policy build   [--rego DIR] --out FILE [--config FILE]   compile Rego to a WASM bundle (with its revision)
  micro-mcp policy test    [--rego DIR] [--cedar DIR] [--config FILE]  opa test + the Cedar cases; ends "N passed, M failed"
  micro-mcp policy check   [--rego DIR | --bundle FILE] [--cedar DIR] [--config FILE]
                           (--config: Rego is typed with the named resource facts its services declare)
  micro-mcp policy explain --principal ID [--principal-type user|agent|service] [--groups "a b"] [--scopes "x y"]
                           [--purposes "a b"] [--purpose P] --tool NAME [--method M | --phase call|list]
                           [--annotations JSON] [--args JSON] [--rego DIR] [--cedar DIR] [--config FILE | --dev]
  micro-mcp policy parity  [--count N] [--seed S] [--rego DIR] [--cedar DIR] [--config FILE]
                           both engines on N generated inputs; every disagreement by class, exit 1 unless declared
  micro-mcp policy explain --decision ID --audit FILE|DIR [--rego DIR] [--cedar DIR] [--config FILE | --dev]
                           replays a recorded decision against today's policy: "verdict: same|different"
`;

const PRINCIPAL_TYPES = ['user', 'agent', 'service'] as const;

/** A JSON object from a flag, or an error message naming the flag. */
function jsonObject(flag: string, text: string | undefined): Record<string, unknown> | string | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  return `--${flag} must be a JSON object`;
}

/** The policy section explain decides with: the config's, with --rego / --cedar / --opa winning. */
function explainPolicyConfig(cfg: Config | undefined, v: { rego?: string | undefined; cedar?: string | undefined; opa?: string | undefined }): PolicyConfig {
  return {
    ...((cfg?.policy as PolicyConfig | undefined) ?? {}),
    ...(v.rego !== undefined ? { rego: { dir: path.resolve(v.rego) } } : {}),
    ...(v.cedar !== undefined ? { cedar: { dir: path.resolve(v.cedar) } } : {}),
    ...(v.opa !== undefined ? { opa_path: v.opa } : {}),
  };
}

/** The decision record `id` in an audit file, or in any file of an audit folder (rotated files too). */
function findDecisionRecord(where: string, id: string): RecordedDecision | undefined {
  const files = statSync(where).isDirectory() ? readdirSync(where).map((f) => path.join(where, f)) : [where];
  for (const file of files) {
    for (const l of readFileSync(file, 'utf8').split('\n')) {
      if (!l.includes(id)) continue;
      try {
        const r = JSON.parse(l) as { kind?: unknown; decision_id?: unknown };
        if (r.kind === 'decision' && r.decision_id === id) return r as RecordedDecision;
      } catch {
        // a torn last line
      }
    }
  }
  return undefined;
}

function usageError(message: string): number {
  process.stderr.write(`micro-mcp policy: ${message}\n`);
  return 2;
}

export async function policy(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v } = parseArgs({
    args: rest,
    options: {
      rego: { type: 'string' },
      cedar: { type: 'string' },
      bundle: { type: 'string' },
      out: { type: 'string' },
      opa: { type: 'string' },
      principal: { type: 'string' },
      'principal-type': { type: 'string', default: 'user' },
      groups: { type: 'string', default: '' },
      scopes: { type: 'string', default: '' },
      purposes: { type: 'string', default: '' },
      purpose: { type: 'string' },
      tool: { type: 'string' },
      method: { type: 'string' },
      annotations: { type: 'string' },
      args: { type: 'string', default: '{}' },
      phase: { type: 'string' },
      config: { type: 'string' },
      dev: { type: 'boolean', default: false },
      decision: { type: 'string' },
      audit: { type: 'string' },
      count: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
    },
    strict: true,
  });
  const opa = v.opa ? { opaPath: v.opa } : {};
  // Rego is typed with the named resource facts the config's services declare (--config, else none).
  const factNames = v.config ? { factNames: declaredFactNames(loadConfig(v.config).services) } : {};
  const regoDir = v.rego ?? path.join(PACKAGE_ROOT, 'policies', 'rego');
  const cedarDir = v.cedar ?? path.join(PACKAGE_ROOT, 'policies', 'cedar');
  switch (sub) {
    case 'build':
      if (!v.out) break;
      return policyBuild({ regoDir, out: v.out, ...opa, ...factNames }, out);
    case 'test':
      return policyTest({ regoDir, cedarDir, ...opa, ...factNames }, out);
    case 'check':
      return policyCheck(v.bundle ? { bundle: v.bundle, cedarDir, ...opa } : { regoDir, cedarDir, ...opa, ...factNames }, out);
    case 'parity': {
      const count = Number(v.count);
      const seed = Number(v.seed);
      if (!Number.isSafeInteger(count) || count < 1) return usageError('--count must be a positive integer');
      if (!Number.isSafeInteger(seed)) return usageError('--seed must be an integer');
      // Resource facts as the services declare them: the given config's, else the dev config's.
      const services = loadConfig(v.config ?? DEV_CONFIG_PATH).services;
      const resources = Object.fromEntries(Object.entries(services).map(([name, s]) => [name, s.resource]));
      return policyParity({ regoDir, cedarDir, count, seed, resources, ...opa, ...factNames }, out);
    }
    case 'explain': {
      if (v.decision !== undefined || v.audit !== undefined) {
        if (!v.decision || !v.audit) return usageError('--decision ID and --audit FILE go together');
        const record = findDecisionRecord(v.audit, v.decision);
        if (record === undefined) return usageError(`no decision record ${JSON.stringify(v.decision)} in ${v.audit}`);
        const cfgFile = v.config ?? (v.dev ? resolveConfigPath({ dev: true }) : undefined);
        const cfg = cfgFile ? loadConfig(cfgFile) : undefined;
        return policyReplay(
          {
            record,
            config: explainPolicyConfig(cfg, v),
            baseDir: cfg ? path.dirname(cfg.source) : PACKAGE_ROOT,
            resourceFacts: declaredFactNames((cfg ?? loadConfig(DEV_CONFIG_PATH)).services),
          },
          out,
        );
      }
      if (!v.principal || !v.tool) break;
      const args = jsonObject('args', v.args);
      const annotations = jsonObject('annotations', v.annotations);
      if (typeof args === 'string') return usageError(args);
      if (typeof annotations === 'string') return usageError(annotations);
      if (v.phase !== undefined && v.phase !== 'call' && v.phase !== 'list') return usageError(`--phase must be call or list, not ${JSON.stringify(v.phase)}`);
      const type = PRINCIPAL_TYPES.find((t) => t === v['principal-type']);
      if (type === undefined) return usageError(`--principal-type must be one of ${PRINCIPAL_TYPES.join(', ')}`);
      const method = v.method ?? (v.phase === 'list' ? 'tools/list' : 'tools/call');
      if (v.method !== undefined && v.phase !== undefined && (v.phase === 'list') !== v.method.endsWith('/list')) {
        return usageError(`--phase ${v.phase} does not fit --method ${v.method}`);
      }
      const cfgFile = v.config ?? (v.dev ? resolveConfigPath({ dev: true }) : undefined);
      const cfg = cfgFile ? loadConfig(cfgFile) : undefined;
      // Resource facts come from the services' declarations: the given config's, else the dev config's.
      const services = (cfg ?? loadConfig(DEV_CONFIG_PATH)).services;
      const resources = Object.fromEntries(Object.entries(services).map(([name, s]) => [name, s.resource]));
      const policyCfg = explainPolicyConfig(cfg, v);
      const split = (s: string) => s.split(/[\s,]+/).filter(Boolean);
      return policyExplain(
        {
          config: policyCfg,
          baseDir: cfg ? path.dirname(cfg.source) : PACKAGE_ROOT,
          principal: v.principal,
          principalType: type,
          groups: split(v.groups),
          scopes: split(v.scopes),
          purposes: split(v.purposes),
          purpose: v.purpose ?? null,
          tool: v.tool,
          method,
          ...(annotations !== undefined ? { annotations } : {}),
          arguments: args ?? {},
          resources,
        },
        out,
      );
    }
    default:
      break;
  }
  process.stderr.write(POLICY_USAGE);
  return 2;
}

export async function audit(argv: string[]): Promise<number> {
  const [sub, ...files] = argv;
  if (sub !== 'verify' || files.length === 0) {
    process.stderr.write('usage: micro-mcp audit verify FILE...   (rotated files in any order)\n');
    return 2;
  }
  return auditVerify(files, out);
}

export async function config(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, dev: { type: 'boolean', default: false } } });
  if (sub !== 'check') {
    process.stderr.write('usage: micro-mcp config check [--config FILE | --dev]\n');
    return 2;
  }
  const file = resolveConfigPath(v);
  loadConfig(file);
  out.write(`ok: ${file}\n`);
  return 0;
}
