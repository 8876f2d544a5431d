/**
 * Canonical JSON and sha256 digests, shared by the catalog (tool definition hashes) and the audit trail
 * (record hashes, argument digests): one definition, so equal documents hash equally everywhere.
 */
import { createHash } from 'node:crypto';

/**
 * Canonical JSON for audit records and argument digests: object keys sorted by UTF-16 code unit
 * (what `Array.prototype.sort` does, and what RFC 8785 prescribes), no whitespace, `undefined`
 * members dropped, non-finite numbers as `null`, strings made well-formed (a lone surrogate would
 * otherwise be written by pino as raw bytes that decode to U+FFFD and break the hash on re-read).
 *
 * `canonicalize` returns a value whose key insertion order is the sorted order, so any serialiser
 * that walks keys in insertion order (JSON.stringify, pino) emits the canonical text. Parts of the
 * input that already are canonical (plain objects with sorted keys and arrays, all of whose members
 * are canonical) are returned as they are, not copied: the copy and the key sorts were ~20% of the
 * gateway's allocation per call. So the result may share objects with the input, which it never
 * changes; serialise it before changing the input.
 */
export function canonicalize(value: unknown): unknown {
  return canon(value, 0);
}

/** The canonical JSON text of a value (see `canonicalize`). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canon(value, 0)) ?? 'null';
}

/** `sha256:<hex>` of a string's UTF-8 bytes. */
export function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
}

/** `sha256:<hex>` of the canonical JSON of a value: the `arguments_digest` of a record. */
export function digest(value: unknown): string {
  return sha256(canonicalJson(value));
}

// String.prototype.toWellFormed is ES2024 (not in our lib target); this is the same mapping.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
function wellFormed(s: string): string {
  if (!LONE_SURROGATE.test(s)) return s;
  LONE_SURROGATE.lastIndex = 0; // test() on a /g regex moved it
  return s.replace(LONE_SURROGATE, '\uFFFD');
}

// Deep enough for any real tool argument; deeper input is cut rather than risking a stack overflow
// on a hostile, deeply nested argument object.
const MAX_DEPTH = 64;

function canon(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
      return wellFormed(value);
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return null;
      if (depth >= MAX_DEPTH) return '[TRUNCATED]';
      if (Array.isArray(value)) return canonArray(value, depth);
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
      return canonObject(value as Record<string, unknown>, depth);
    }
    default:
      return undefined;
  }
}

/** Members JSON cannot hold become null, as JSON.stringify writes them in an array. */
function canonArray(src: unknown[], depth: number): unknown[] {
  // Returned as is only when it is a plain array JSON.stringify would write member by member.
  let out: unknown[] | undefined = Object.getPrototypeOf(src) === Array.prototype && !('toJSON' in src) ? undefined : [];
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    const c = v === undefined || typeof v === 'function' ? null : canon(v, depth + 1);
    if (out === undefined && (c !== v || !(i in src))) out = src.slice(0, i);
    if (out !== undefined) out.push(c);
  }
  return out ?? src;
}

/**
 * Own enumerable members in sorted order; the object itself when that is what it already is (a plain
 * object, keys in order, every member kept as it is), else a copy.
 */
function canonObject(src: Record<string, unknown>, depth: number): Record<string, unknown> {
  const keys = Object.keys(src);
  let sorted = true;
  for (let i = 1; i < keys.length; i++) {
    if ((keys[i - 1] as string) > (keys[i] as string)) {
      sorted = false;
      break;
    }
  }
  if (!sorted) keys.sort();
  const proto: unknown = Object.getPrototypeOf(src);
  // A class instance is copied like before (its own members only); so is anything with a toJSON,
  // which JSON.stringify would call instead of writing the members.
  let out: Record<string, unknown> | undefined = sorted && (proto === Object.prototype || proto === null) && !('toJSON' in src) ? undefined : {};
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const v = src[key];
    const dropped = v === undefined || typeof v === 'function' || typeof v === 'symbol';
    const c = dropped ? undefined : canon(v, depth + 1);
    const k = wellFormed(key);
    if (out === undefined && (dropped || c !== v || k !== key || key === '__proto__')) {
      // The members before this one were kept as they are: copy them, then go on copying.
      out = {};
      for (let j = 0; j < i; j++) out[keys[j] as string] = src[keys[j] as string];
    }
    if (out === undefined || dropped) continue;
    // A "__proto__" member from JSON.parse is an own data property; plain assignment would
    // instead set the copy's prototype and silently drop the member from the record.
    if (k === '__proto__') Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
    else out[k] = c;
  }
  return out ?? src;
}

/** A JSON object (not null, not an array): the shape every member access on parsed JSON checks first. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A UTF-16 code unit of a surrogate pair that has no partner (the `u` flag pairs the valid ones). */
const UNPAIRED_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * True when every string (and every member name) in a parsed JSON value is well-formed Unicode. JSON
 * text can spell a lone surrogate (`"\ud800"`), which no engine, service or log can represent
 * faithfully: the HTTP edge refuses such requests (http/middleware/well-formed) and the pipeline checks
 * again for faces without that edge (stdio). Walked with an explicit stack: a body under the cap can
 * still nest deeper than the call stack.
 */
export function isWellFormedJson(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (UNPAIRED_SURROGATE.test(v)) return false;
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (UNPAIRED_SURROGATE.test(k)) return false;
        stack.push(x);
      }
    }
  }
  return true;
}
