import { GatewayError } from '../errors.js';
import type { RedactCategory } from '../types.js';
import { censorSpans, foldKey, isSecretKeyName, SCAN_MAX_CHARS, scan, SecretFinder, type Span } from './scan.js';

export { SecretFinder } from './scan.js';

/** What replaces a secret in any log line. */
export const CENSOR = '[REDACTED]';

export interface RedactOptions {
  /**
   * JSON paths to censor, rooted at the record member they apply to: `arguments.password`,
   * `arguments.headers.*`, `result.items[*].ssn`, `$.arguments["x-key"]`. `*` and `[*]` match any
   * one key or index.
   */
  paths?: readonly string[];
  /** Extra value patterns (JavaScript RegExp source, compiled with the `g` flag); matches are censored. */
  patterns?: readonly string[];
  /** Extra key names whose values are always censored (compared case- and punctuation-insensitively). */
  keys?: readonly string[];
}

export interface RedactResult {
  value: unknown;
  /** JSON Pointers of the members that were censored (OPA's decision-log `masked` field). */
  masked: string[];
}

/** A redactor built once from configuration; every method is pure and safe to call per request. */
export interface Redactor {
  /**
   * A censored deep copy of `value`. `root` names the member the value will be logged under
   * (`arguments`, `result`, ...) so that configured paths and the returned pointers are rooted there.
   */
  redact(value: unknown, root?: string, secrets?: SecretFinder): RedactResult;
  /** Censor secret-looking substrings (bearer tokens, JWTs, keys, emails, card numbers, ...) in free text. */
  redactString(text: string): string;
  /**
   * A copy of a result with the given categories removed (an obligation's `redact`), and what was
   * removed, counted per category. `secrets` also removes the values of secret-looking keys and,
   * when given, the caller's own credentials in any encoding.
   */
  filter(value: unknown, categories: readonly RedactCategory[], secrets?: SecretFinder): { value: unknown; counts: RedactCounts };
}

interface Pattern {
  re: RegExp;
  replace: string;
}

/** Every category: what the audit and the operational log censor. */
const ALL: ReadonlySet<RedactCategory> = new Set(['email', 'phone', 'card', 'secrets']);

/** Counts of what was censored, per category (the audit records these, never the values). */
export type RedactCounts = Partial<Record<RedactCategory, number>>;

interface PathNode {
  children: Map<string, PathNode>; // '*' is the wildcard child
  terminal: boolean;
}

const newNode = (): PathNode => ({ children: new Map(), terminal: false });

/** Parse `a.b[*]["c d"].*` into segments; throws on syntax errors (caught at build time). */
function parsePath(path: string): string[] {
  let p = path.trim();
  if (p.startsWith('$')) p = p.slice(1);
  if (p.startsWith('.')) p = p.slice(1);
  const segs: string[] = [];
  let i = 0;
  while (i < p.length) {
    if (p[i] === '[') {
      const close = p.indexOf(']', i);
      if (close < 0) throw new Error('unclosed [');
      let inner = p.slice(i + 1, close).trim();
      if ((inner.startsWith('"') && inner.endsWith('"')) || (inner.startsWith("'") && inner.endsWith("'"))) inner = inner.slice(1, -1);
      else if (inner !== '*' && !/^\d+$/.test(inner)) throw new Error(`bad index [${inner}]`);
      segs.push(inner);
      i = close + 1;
      if (p[i] === '.') i++;
    } else {
      let j = i;
      while (j < p.length && p[j] !== '.' && p[j] !== '[') j++;
      const seg = p.slice(i, j);
      if (seg === '') throw new Error('empty segment');
      segs.push(seg);
      i = p[j] === '.' ? j + 1 : j;
      if (p[j] === '.' && j + 1 >= p.length) throw new Error('trailing dot');
    }
  }
  if (segs.length === 0) throw new Error('empty path');
  return segs;
}

const pointerEscape = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Build a redactor. Paths and patterns are parsed and compiled here, once; a bad one throws
 * `ERR_CONFIG_INVALID` naming the config key, so that a typo stops start-up instead of leaking.
 */
export function createRedactor(opts: RedactOptions = {}): Redactor {
  const root = newNode();
  (opts.paths ?? []).forEach((path, idx) => {
    let segs: string[];
    try {
      segs = parsePath(path);
    } catch (e) {
      throw new GatewayError('ERR_CONFIG_INVALID', `audit.redact.paths[${idx}] is not a valid path: ${(e as Error).message}`, {
        key: `audit.redact.paths[${idx}]`,
      });
    }
    let node = root;
    for (const s of segs) {
      let next = node.children.get(s);
      if (!next) {
        next = newNode();
        node.children.set(s, next);
      }
      node = next;
    }
    node.terminal = true;
  });

  // Configured patterns are the operator's own regexes: they run after the linear scanners, on
  // strings capped at SCAN_MAX_CHARS.
  const patterns: Pattern[] = [];
  (opts.patterns ?? []).forEach((src, idx) => {
    try {
      patterns.push({ re: new RegExp(src, 'g'), replace: CENSOR });
    } catch {
      throw new GatewayError('ERR_CONFIG_INVALID', `audit.redact.patterns[${idx}] is not a valid regular expression`, {
        key: `audit.redact.patterns[${idx}]`,
      });
    }
  });
  const extraKeys = new Set((opts.keys ?? []).map(foldKey));
  const isSecretKey = (k: string): boolean => isSecretKeyName(k, extraKeys);

  /** The linear scanners over one string; a string over SCAN_MAX_CHARS is censored whole. */
  const scanString = (text: string, categories: ReadonlySet<RedactCategory>, counts: RedactCounts, secrets?: SecretFinder): string => {
    if (text.length > SCAN_MAX_CHARS) {
      counts.secrets = (counts.secrets ?? 0) + 1;
      return CENSOR;
    }
    const spans: Span[] = scan(text, { categories, keys: extraKeys, ...(secrets ? { secrets } : {}) });
    return censorSpans(text, spans, CENSOR, counts);
  };

  const redactString = (text: string): string => {
    let out = scanString(text, ALL, {});
    for (const p of patterns) {
      p.re.lastIndex = 0;
      out = out.replace(p.re, p.replace);
    }
    return out;
  };

  const walk = (value: unknown, nodes: PathNode[], pointer: string, masked: string[], depth: number, secrets?: SecretFinder): unknown => {
    if (typeof value === 'string') return secrets === undefined ? redactString(value) : redactString(scanString(value, new Set(['secrets']), {}, secrets));
    if (typeof value !== 'object' || value === null) return value;
    if (depth > 64) return CENSOR; // hostile nesting: censor rather than recurse without bound
    if (value instanceof Error) {
      // Errors reach the operational log with messages that may quote a URL or a header.
      return { type: value.name, message: redactString(value.message), stack: value.stack ? redactString(value.stack) : undefined };
    }
    const step = (key: string, v: unknown): { v: unknown; hit: boolean } => {
      const next: PathNode[] = [];
      let hit = false;
      for (const n of nodes) {
        const exact = n.children.get(key);
        const wild = n.children.get('*');
        for (const child of [exact, wild]) {
          if (child === undefined) continue;
          if (child.terminal) hit = true;
          else next.push(child);
        }
      }
      const ptr = `${pointer}/${pointerEscape(key)}`;
      if (hit || isSecretKey(key)) {
        masked.push(ptr);
        return { v: CENSOR, hit: true };
      }
      return { v: walk(v, next, ptr, masked, depth + 1, secrets), hit: false };
    };
    if (Array.isArray(value)) return value.map((v, i) => step(String(i), v).v);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const r = step(k, v).v;
      if (k === '__proto__') Object.defineProperty(out, k, { value: r, enumerable: true, writable: true, configurable: true });
      else out[k] = r;
    }
    return out;
  };

  const filterWalk = (value: unknown, cats: ReadonlySet<RedactCategory>, counts: RedactCounts, secrets: SecretFinder | undefined, depth: number): unknown => {
    if (typeof value === 'string') return scanString(value, cats, counts, secrets);
    if (typeof value !== 'object' || value === null) return value;
    if (depth > 64) {
      counts.secrets = (counts.secrets ?? 0) + 1;
      return CENSOR;
    }
    if (Array.isArray(value)) return value.map((v) => filterWalk(v, cats, counts, secrets, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      let r: unknown;
      // A secret-looking key's string value goes whole; numbers and booleans (token counts) stay.
      if (cats.has('secrets') && typeof v === 'string' && v !== '' && isSecretKey(k)) {
        counts.secrets = (counts.secrets ?? 0) + 1;
        r = CENSOR;
      } else r = filterWalk(v, cats, counts, secrets, depth + 1);
      if (k === '__proto__') Object.defineProperty(out, k, { value: r, enumerable: true, writable: true, configurable: true });
      else out[k] = r;
    }
    return out;
  };

  return {
    filter(value, categories, secrets) {
      const counts: RedactCounts = {};
      if (categories.length === 0) return { value, counts };
      return { value: filterWalk(value, new Set(categories), counts, secrets, 0), counts };
    },
    redact(value: unknown, rootKey?: string, secrets?: SecretFinder): RedactResult {
      const masked: string[] = [];
      let nodes = [root];
      let pointer = '';
      if (rootKey !== undefined) {
        const n = root.children.get(rootKey);
        const w = root.children.get('*');
        pointer = `/${pointerEscape(rootKey)}`;
        if (n?.terminal || w?.terminal) return { value: CENSOR, masked: [pointer] };
        nodes = [n, w].filter((x): x is PathNode => x !== undefined);
      }
      return { value: walk(value, nodes, pointer, masked, 0, secrets), masked };
    },
    redactString,
  };
}

/**
 * The result filter the call pipeline applies for a decision's `redact` obligation: the redactor's
 * `filter`, with the caller's own token (when `secrets` is asked for) looked for in every encoding.
 * The token's finder is built per call and dropped with it, so no token outlives its request here.
 */
export function resultFilter(r: Redactor): {
  filter(value: unknown, categories: readonly RedactCategory[], credential: string | undefined): { value: unknown; counts: RedactCounts };
} {
  return {
    filter(value, categories, credential) {
      const finder = credential !== undefined && categories.includes('secrets') ? new SecretFinder([credential]) : undefined;
      return r.filter(value, categories, finder);
    },
  };
}
