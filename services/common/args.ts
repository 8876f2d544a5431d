/**
 * Command-line flags of the services, parsed by `node:util` `parseArgs` (strict, no positionals).
 * Unknown flags, missing or empty values, a single-value flag given twice, positional arguments and
 * malformed numbers are usage errors: the entry point prints the message and exits with status 2,
 * so a gateway config typo stops the service instead of silently widening or narrowing its reach.
 */
import { parseArgs } from 'node:util';

/** A usage error: the message is shown to the operator as is, the process exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * How one flag is declared: parseArgs' own option config (a boolean switch, a single string, or a
 * repeatable string with `multiple: true`) plus what --help shows. Passed to parseArgs as is.
 */
export interface FlagSpec {
  type: 'boolean' | 'string';
  multiple?: true;
  /** One-line help text (shown by --help). */
  help: string;
  /** Shown in --help as the value placeholder. */
  value?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

/** The parsed flags of `S`: `true` for a given switch, the value of a string, every value of a list. */
export type FlagValues<S extends FlagSpecs> = {
  readonly [K in keyof S]?: S[K]['type'] extends 'boolean' ? boolean : S[K]['multiple'] extends true ? readonly string[] : string;
};

/** Flags every service takes (serving mode, the sandbox check, health, help). */
export const COMMON_FLAGS = {
  'http-port': { type: 'string', value: 'N', help: 'serve Streamable HTTP on 127.0.0.1:N at /mcp instead of stdio (0 = ephemeral)' },
  'no-sandbox-check': { type: 'boolean', help: 'start even without a tight Node permission model (development only)' },
  check: { type: 'boolean', help: 'validate the configuration and sandbox, print a health summary, exit 0' },
  help: { type: 'boolean', help: 'show this help' },
} satisfies FlagSpecs;

/** The tokens parseArgs reports (the type its result carries when `tokens: true`). */
type Tokens = NonNullable<ReturnType<typeof parseArgs>['tokens']>;

/**
 * The first thing wrong with `tokens`, in the operator's words, or undefined. Covers what strict
 * parseArgs refuses (its own messages suggest "--" for positionals, which we do not take) and what it
 * lets through: an empty value, a single-value flag given twice, a lone "--".
 */
function tokenProblem(tokens: Tokens, specs: FlagSpecs): string | undefined {
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind === 'positional') return `unexpected argument "${t.value}" (flags start with --)`;
    if (t.kind === 'option-terminator') return 'unexpected argument "--" (flags start with --)';
    const spec = Object.hasOwn(specs, t.name) ? specs[t.name] : undefined;
    if (spec === undefined) return `unknown flag ${t.rawName} (see --help)`;
    if (spec.type === 'boolean') {
      if (t.value !== undefined) return `--${t.name} takes no value`;
      continue;
    }
    // parseArgs takes the next argument as the value even when it looks like a flag; strict mode
    // refuses that ("ambiguous"), and so do we: "--root --check" is a missing value.
    if (t.value === undefined || (!t.inlineValue && t.value.length > 1 && t.value.startsWith('-'))) return `--${t.name} needs a value`;
    if (t.value === '') return `--${t.name} needs a non-empty value`;
    if (spec.multiple !== true && seen.has(t.name)) return `--${t.name} given more than once`;
    seen.add(t.name);
  }
  return undefined;
}

/** Parses `argv` (without node and script) against `specs`; throws UsageError on anything unexpected. */
export function parseFlags<S extends FlagSpecs>(argv: readonly string[], specs: S): FlagValues<S> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: specs, strict: true, allowPositionals: false, tokens: true });
  } catch (e) {
    // Explain the refusal from the same parser's tokens, read leniently this once.
    const lenient = parseArgs({ args: argv, options: specs, strict: false, allowPositionals: true, tokens: true });
    throw new UsageError(tokenProblem(lenient.tokens ?? [], specs) ?? (e instanceof Error ? e.message : 'invalid flags'));
  }
  const problem = tokenProblem(parsed.tokens ?? [], specs);
  if (problem !== undefined) throw new UsageError(problem);
  // Strict parsing gave every flag the type its spec declares, which is what FlagValues<S> says.
  return parsed.values as FlagValues<S>;
}

/** Reads an integer flag within [min, max], or the default when absent. */
export function intFlag<K extends string>(flags: { readonly [P in K]?: string }, name: K, dflt: number, min: number, max: number): number {
  const raw = flags[name];
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
    const left = spec.type === 'boolean' ? `--${name}` : `--${name} ${spec.value ?? 'VALUE'}`;
    lines.push(`  ${left.padEnd(34)} ${spec.help}${spec.multiple === true ? ' (repeatable)' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The options behind COMMON_FLAGS, shared by every service's config. */
export interface CommonOptions {
  httpPort?: number;
  sandboxCheck: boolean;
  check: boolean;
  help: boolean;
}

/** Reads COMMON_FLAGS (call after parseFlags). */
export function commonOptions(flags: FlagValues<typeof COMMON_FLAGS>): CommonOptions {
  const o: CommonOptions = {
    sandboxCheck: flags['no-sandbox-check'] !== true,
    check: flags.check === true,
    help: flags.help === true,
  };
  if (flags['http-port'] !== undefined) o.httpPort = intFlag(flags, 'http-port', 0, 0, 65535);
  return o;
}
