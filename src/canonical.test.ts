import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalize, canonicalJson } from './canonical.js';

/** The definition canonicalize had before it kept canonical parts as they are: a full copy, every key sorted. */
function reference(value: unknown, depth = 0): unknown {
  switch (typeof value) {
    case 'string':
      return value.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return null;
      if (depth >= 64) return '[TRUNCATED]';
      if (Array.isArray(value)) return value.map((v) => (v === undefined || typeof v === 'function' ? null : reference(v, depth + 1)));
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
      const src = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(src).sort()) {
        const v = src[key];
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        const k = reference(key, depth) as string;
        if (k === '__proto__') Object.defineProperty(out, k, { value: reference(v, depth + 1), enumerable: true, writable: true, configurable: true });
        else out[k] = reference(v, depth + 1);
      }
      return out;
    }
    default:
      return undefined;
  }
}

class Point {
  constructor(
    readonly y: number,
    readonly x: number,
  ) {}
}

const deep = (n: number): unknown => (n === 0 ? { end: true } : { a: deep(n - 1) });
// An array with a hole at index 1 (JSON.stringify writes it as null).
const sparse: unknown[] = [1];
sparse[2] = 3;
const cases: Record<string, unknown> = {
  'sorted plain object': { a: 1, b: 'x', c: [1, 2, { d: null, e: true }] },
  'unsorted keys': { b: 1, a: { z: 1, y: 2 } },
  'a sorted object inside an unsorted one': { z: { a: 1, b: 2 }, a: [{ a: 1 }] },
  'undefined, function and symbol members': { a: undefined, b: () => 1, c: Symbol('s'), d: 1 },
  'a dropped member after kept ones': { a: 1, b: 2, c: undefined },
  'non-finite numbers': { a: Number.NaN, b: Number.POSITIVE_INFINITY, c: [Number.NaN, 1] },
  'lone surrogates in values and keys': { a: '\uD800x', '\uDC00k': 'ok', c: ['fine', '\uD83D'] },
  'a proper surrogate pair': { a: '\uD83D\uDE00' },
  'bigint, Date, invalid Date, bytes': { a: 10n, b: new Date(0), c: new Date(Number.NaN), d: new Uint8Array([1, 2, 255]) },
  'a __proto__ member from JSON': JSON.parse('{"__proto__": {"x": 1}, "a": 2}'),
  'a class instance': { p: new Point(2, 1) },
  'an object with toJSON': { u: new URL('https://example.com/a?b') },
  'a plain object with its own toJSON': { o: { a: 1, toJSON: () => 'replaced' } },
  'a null-prototype object': Object.assign(Object.create(null), { b: 1, a: 2 }),
  'arrays with undefined, functions and holes': [undefined, () => 1, sparse, [null]],
  'integer-like keys': { 10: 'ten', 9: 'nine', a: 1 },
  'nesting past the depth limit': deep(70),
  'empty containers': { a: {}, b: [] },
  'scalars at the top': 'x',
};

describe('canonicalize', () => {
  for (const [name, value] of Object.entries(cases)) {
    test(`${name}: the same JSON as a full sorted copy, and the input unchanged`, () => {
      const before = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
      assert.equal(JSON.stringify(canonicalize(value)), JSON.stringify(reference(value)));
      assert.equal(canonicalJson(value), JSON.stringify(reference(value)) ?? 'null');
      assert.equal(
        JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
        before,
      );
    });
  }

  test('canonical parts are kept as they are, the rest is copied', () => {
    const kept = { a: 1, b: ['x', 'y'], c: { d: true } };
    assert.equal(canonicalize(kept), kept);
    const inner = { a: 1, b: 2 };
    const list = ['p', 'q'];
    const outer = { z: inner, y: list, x: { b: 1, a: 2 } };
    const c = canonicalize(outer) as Record<string, unknown>;
    assert.notEqual(c, outer);
    assert.deepEqual(Object.keys(c), ['x', 'y', 'z']);
    assert.equal(c.z, inner);
    assert.equal(c.y, list);
    assert.notEqual(c.x, outer.x);
    assert.deepEqual(Object.keys(c.x as object), ['a', 'b']);
    // A change deep inside copies the path to it only.
    const withSurrogate = { a: { b: '\uD800' }, c: { d: 1 } };
    const w = canonicalize(withSurrogate) as Record<string, Record<string, unknown>>;
    assert.notEqual(w, withSurrogate);
    assert.notEqual(w.a, withSurrogate.a);
    assert.equal(w.c, withSurrogate.c);
    assert.equal(w.a?.b, '\uFFFD');
  });
});
