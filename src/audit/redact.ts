import { GatewayError } from '../errors.js';

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
  redact(value: unknown, root?: string): RedactResult;
  /** Censor secret-looking substrings (bearer tokens, JWTs, keys, emails, card numbers, ...) in free text. */
  redactString(text: string): string;
}

// Key names whose value is a secret wherever they appear. Normalised: lower case, letters and digits only.
const SECRET_KEYS = new Set([
  'authorization',
  'proxyauthorization',
  'cookie',
  'setcookie',
  'token',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'authtoken',
  'bearertoken',
  'sessiontoken',
  'password',
  'passwd',
  'passphrase',
  'secret',
  'clientsecret',
  'apikey',
  'xapikey',
  'privatekey',
  'credentials',
  'credential',
  'jwt',
  'assertion',
]);
// ...and names ending like these (`github_token`, `db_password`, `stripe_api_key`).
const SECRET_SUFFIX = /(?:token|secret|password|passwd|apikey|privatekey)$/;

const normaliseKey = (k: string): string => k.toLowerCase().replace(/[^a-z0-9]/g, '');

interface Pattern {
  re: RegExp;
  replace: string | ((match: string, ...groups: string[]) => string);
}

// Built-in value patterns, most specific first so that a JWT is not half-eaten by the email rule.
const BUILTIN_PATTERNS: readonly Pattern[] = [
  { re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g, replace: CENSOR },
  { re: /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, replace: CENSOR },
  { re: /\b(Bearer|Basic|Token|Digest)\s+[A-Za-z0-9._~+/=-]{8,}/gi, replace: (_m, scheme: string) => `${scheme} ${CENSOR}` },
  { re: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, replace: CENSOR },
  {
    re: /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{16,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|AIza[0-9A-Za-z_-]{35})/g,
    replace: CENSOR,
  },
  // user:password@ in URLs
  { re: /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@:]+:[^\s/?#@]+@/gi, replace: (_m, scheme: string) => `${scheme}${CENSOR}@` },
  // secrets in query strings and key=value text (error messages, command lines)
  {
    re: /([?&;](?:access_token|id_token|refresh_token|token|api_key|apikey|key|password|secret|client_secret|sig|signature|code)=)[^&\s#;]+/gi,
    replace: (_m, head: string) => `${head}${CENSOR}`,
  },
  {
    re: /\b((?:password|passwd|secret|api[_-]?key|access[_-]?token|client[_-]?secret|private[_-]?key)"?\s*[=:]\s*"?)[^\s",;&]+/gi,
    replace: (_m, head: string) => `${head}${CENSOR}`,
  },
  { re: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, replace: CENSOR },
  { re: /\b\d(?:[ -]?\d){12,18}\b/g, replace: (m: string) => (luhn(m.replace(/[ -]/g, '')) ? CENSOR : m) },
];

/** Luhn check, so that ordinary long numbers (ids, timestamps) are not taken for card numbers. */
function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

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

  const patterns: Pattern[] = [...BUILTIN_PATTERNS];
  (opts.patterns ?? []).forEach((src, idx) => {
    try {
      patterns.push({ re: new RegExp(src, 'g'), replace: CENSOR });
    } catch {
      throw new GatewayError('ERR_CONFIG_INVALID', `audit.redact.patterns[${idx}] is not a valid regular expression`, {
        key: `audit.redact.patterns[${idx}]`,
      });
    }
  });
  const extraKeys = new Set((opts.keys ?? []).map(normaliseKey));
  const isSecretKey = (k: string): boolean => {
    const n = normaliseKey(k);
    return SECRET_KEYS.has(n) || extraKeys.has(n) || SECRET_SUFFIX.test(n);
  };

  const redactString = (text: string): string => {
    let out = text;
    for (const p of patterns) {
      p.re.lastIndex = 0;
      // The cast keeps one Pattern type for string and function replacements.
      out = out.replace(p.re, p.replace as (m: string, ...g: string[]) => string);
    }
    return out;
  };

  const walk = (value: unknown, nodes: PathNode[], pointer: string, masked: string[], depth: number): unknown => {
    if (typeof value === 'string') return redactString(value);
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
      return { v: walk(v, next, ptr, masked, depth + 1), hit: false };
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

  return {
    redact(value: unknown, rootKey?: string): RedactResult {
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
      return { value: walk(value, nodes, pointer, masked, 0), masked };
    },
    redactString,
  };
}
