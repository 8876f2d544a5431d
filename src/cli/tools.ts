/**
 * `micro-mcp tools`: the operator's side of pinned tool definitions (src/upstream/pins.ts).
 *
 *   micro-mcp tools list [--config FILE | --dev]             pinned tools, and those waiting for approval
 *   micro-mcp tools diff SERVICE.TOOL [--config FILE | --dev]    what changed since the pin
 *   micro-mcp tools approve SERVICE.TOOL [--config FILE | --dev] pin the changed definition; a running gateway serves it again
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { approvePin, diffPin, pinsFile, readPins } from '../upstream/pins.js';
import { resolveConfigPath } from './serve.js';

const USAGE = 'usage: micro-mcp tools list | diff SERVICE.TOOL | approve SERVICE.TOOL  [--config FILE | --dev]\n';

export async function toolsCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, dev: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
  });
  const [sub, name] = positionals;
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (sub === undefined || (sub !== 'list' && name === undefined) || !['list', 'diff', 'approve'].includes(sub)) {
    process.stderr.write(USAGE);
    return 2;
  }
  const file = pinsFile(loadConfig(resolveConfigPath(v)));
  const out = (l: string) => process.stdout.write(`${l}\n`);
  if (sub === 'list') {
    for (const [tool, pin] of Object.entries(readPins(file).tools).sort(([a], [b]) => (a < b ? -1 : 1)))
      out(`${tool}  ${pin.hash}${pin.pending ? `  CHANGED -> ${pin.pending.hash} (quarantined; micro-mcp tools diff ${tool})` : ''}`);
    return 0;
  }
  const tool = name as string;
  if (sub === 'diff') {
    const lines = diffPin(file, tool);
    if (lines.length === 0) {
      out(`${tool}: no change waiting for approval`);
      return 0;
    }
    out(`${tool}: changed since it was pinned (- pinned, + listed now)`);
    for (const l of lines) out(l);
    return 1;
  }
  const pin = approvePin(file, tool);
  out(`${tool}: approved ${pin.hash}; a running gateway serves it again`);
  return 0;
}
