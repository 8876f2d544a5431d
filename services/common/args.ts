/**
 * A small, strict command-line flag parser shared by the services. Unknown flags, missing values and
 * malformed numbers are usage errors: the entry point prints the message and exits with status 2,
 * so a gateway config typo stops the service instead of silently widening or narrowing its reach.
 */

/** A usage error: the message is shown to the operator as is, the process exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** How one flag is declared: a boolean switch, a single value, or a repeatable value. */
export interface FlagSpec {
  kind: 'boolean' | 'string' | 'list';
  /** One-line help text (shown by --help). */
  help: string;
  /** Shown in --help as the value placeholder. */
  value?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

/** Flags every service takes (serving mode, the sandbox check, health, help). */
export const COMMON_FLAGS: FlagSpecs = {
  'http-port': { kind: 'string', value: 'N', help: 'serve Streamable HTTP on 127.0.0.1:N at /mcp instead of stdio (0 = ephemeral)' },
  'no-sandbox-check': { kind: 'boolean', help: 'start even without a tight Node permission model (development only)' },
  check: { kind: 'boolean', help: 'validate the configuration and sandbox, print a health summary, exit 0' },
  help: { kind: 'boolean', help: 'show this help' },
};

/** Parsed flags: booleans are true when present, strings hold the last value, lists hold every value. */
export interface ParsedFlags {
  booleans: Set<string>;
  strings: Map<string, string>;
  lists: Map<string, string[]>;
}

/** Parses `argv` (without node and script) against `specs`; throws UsageError on anything unexpected. */
export function parseFlags(argv: readonly string[], specs: FlagSpecs): ParsedFlags {
  const out: ParsedFlags = { booleans: new Set(), strings: new Map(), lists: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}" (flags start with --)`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = specs[name];
    if (spec === undefined) throw new UsageError(`unknown flag --${name} (see --help)`);
    if (spec.kind === 'boolean') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      out.booleans.add(name);
      continue;
    }
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (value === '') throw new UsageError(`--${name} needs a non-empty value`);
    if (spec.kind === 'string') {
      if (out.strings.has(name)) throw new UsageError(`--${name} given more than once`);
      out.strings.set(name, value);
    } else {
      const list = out.lists.get(name) ?? [];
      list.push(value);
      out.lists.set(name, list);
    }
  }
  return out;
}

/** Reads an integer flag within [min, max], or the default when absent. */
export function intFlag(flags: ParsedFlags, name: string, dflt: number, min: number, max: number): number {
  const raw = flags.strings.get(name);
  if (raw === undefined) return dflt;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

/** Renders --help text from the flag specs. */
export function helpText(usage: string, specs: FlagSpecs): string {
  const lines = [usage, '', 'Flags:'];
  for (const [name, spec] of Object.entries(specs)) {
    const left = spec.kind === 'boolean' ? `--${name}` : `--${name} ${spec.value ?? 'VALUE'}`;
    lines.push(`  ${left.padEnd(34)} ${spec.help}${spec.kind === 'list' ? ' (repeatable)' : ''}`);
  }
  return lines.join('\n') + '\n';
}

/** The options behind COMMON_FLAGS, shared by every service's config. */
export interface CommonOptions {
  httpPort?: number;
  sandboxCheck: boolean;
  check: boolean;
  help: boolean;
}

/** Reads COMMON_FLAGS (call after parseFlags). */
export function commonOptions(flags: ParsedFlags): CommonOptions {
  const o: CommonOptions = {
    sandboxCheck: !flags.booleans.has('no-sandbox-check'),
    check: flags.booleans.has('check'),
    help: flags.booleans.has('help'),
  };
  if (flags.strings.has('http-port')) o.httpPort = intFlag(flags, 'http-port', 0, 0, 65535);
  return o;
}
