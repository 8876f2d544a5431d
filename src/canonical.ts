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
 * `canonicalize` returns a deep copy whose key insertion order is the sorted order, so any
 * serialiser that walks keys in insertion order (JSON.stringify, pino) emits the canonical text.
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
      if (Array.isArray(value)) return value.map((v) => (v === undefined || typeof v === 'function' ? null : canon(v, depth + 1)));
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
      const src = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(src).sort()) {
        const v = src[key];
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        const k = wellFormed(key);
        // A "__proto__" member from JSON.parse is an own data property; plain assignment would
        // instead set the copy's prototype and silently drop the member from the record.
        if (k === '__proto__') Object.defineProperty(out, k, { value: canon(v, depth + 1), enumerable: true, writable: true, configurable: true });
        else out[k] = canon(v, depth + 1);
      }
      return out;
    }
    default:
      return undefined;
  }
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
