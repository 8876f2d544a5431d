/** The small subcommands: token, policy, audit, config. Each returns its exit code. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { tokenCommand } from '../auth/index.js';
import { auditVerify } from '../audit/index.js';
import { loadConfig, PACKAGE_ROOT } from '../config/load.js';
import { policyBuild, policyCheck, policyExplain, policyTest } from '../policy/cli.js';
import type { PolicyConfig } from '../policy/types.js';
import { resolveConfigPath } from './serve.js';

const out = process.stdout;

export async function token(argv: string[]): Promise<number> {
  return tokenCommand(argv, out);
}

const POLICY_USAGE = `usage:
  micro-mcp policy build   [--rego DIR] --out FILE        compile Rego to a WASM bundle (with its revision)
  micro-mcp policy test    [--rego DIR] [--cedar DIR]     opa test + the Cedar cases; ends "N passed, M failed"
  micro-mcp policy check   [--rego DIR | --bundle FILE] [--cedar DIR]
  micro-mcp policy explain --principal ID [--groups "a b"] --scopes "x y" [--purpose P] --tool NAME
                           [--args JSON] [--phase call|list] [--config FILE]
`;

export async function policy(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v } = parseArgs({
    args: rest,
    options: {
      rego: { type: 'string', default: path.join(PACKAGE_ROOT, 'policies', 'rego') },
      cedar: { type: 'string', default: path.join(PACKAGE_ROOT, 'policies', 'cedar') },
      bundle: { type: 'string' },
      out: { type: 'string' },
      opa: { type: 'string' },
      principal: { type: 'string' },
      groups: { type: 'string', default: '' },
      scopes: { type: 'string', default: '' },
      purpose: { type: 'string' },
      tool: { type: 'string' },
      args: { type: 'string', default: '{}' },
      phase: { type: 'string', default: 'call' },
      config: { type: 'string' },
      dev: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const opa = v.opa ? { opaPath: v.opa } : {};
  switch (sub) {
    case 'build':
      if (!v.out) break;
      return policyBuild({ regoDir: v.rego, out: v.out, ...opa }, out);
    case 'test':
      return policyTest({ regoDir: v.rego, cedarDir: v.cedar, ...opa }, out);
    case 'check':
      return policyCheck(v.bundle ? { bundle: v.bundle, cedarDir: v.cedar, ...opa } : { regoDir: v.rego, cedarDir: v.cedar, ...opa }, out);
    case 'explain': {
      if (!v.principal || !v.tool) break;
      let args: Record<string, unknown>;
      try {
        args = JSON.parse(v.args) as Record<string, unknown>;
      } catch {
        process.stderr.write('micro-mcp policy explain: --args must be a JSON object\n');
        return 2;
      }
      const cfgFile = v.config ?? (v.dev ? resolveConfigPath({ dev: true }) : undefined);
      const cfg = cfgFile ? loadConfig(cfgFile) : undefined;
      const split = (s: string) => s.split(/[\s,]+/).filter(Boolean);
      return policyExplain(
        {
          ...(cfg?.policy ? { config: cfg.policy as PolicyConfig, baseDir: path.dirname(cfg.source) } : { baseDir: PACKAGE_ROOT }),
          principal: v.principal,
          groups: split(v.groups),
          scopes: split(v.scopes),
          purpose: v.purpose ?? null,
          tool: v.tool,
          arguments: args,
          phase: v.phase === 'list' ? 'list' : 'call',
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
