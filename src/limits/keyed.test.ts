import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Holdings, KeyedRate } from './keyed.js';

test('Holdings: a ceiling per key and in all; release is idempotent and gives the place back', () => {
  const h = new Holdings(2, 3);
  const a1 = h.take('a');
  const a2 = h.take('a');
  assert.ok('release' in a1 && 'release' in a2);
  assert.deepEqual(h.take('a'), { refused: 'per_key' });
  const b1 = h.take('b');
  assert.ok('release' in b1);
  assert.deepEqual(h.take('c'), { refused: 'total' });
  assert.equal(h.size, 3);
  a1.release();
  a1.release();
  assert.equal(h.held('a'), 1);
  assert.equal(h.size, 2);
  assert.ok('release' in h.take('c'));
});

test('KeyedRate: a burst, then the rate, per key, with the seconds to wait; full buckets are forgotten', () => {
  let now = 0;
  const r = new KeyedRate(60, 2, { now: () => now });
  assert.deepEqual(r.take('ip1'), { ok: true });
  assert.deepEqual(r.take('ip1'), { ok: true });
  assert.equal(r.allows('ip1'), false);
  assert.deepEqual(r.take('ip1'), { ok: false, retryAfterS: 1 });
  assert.equal(r.allows('ip2'), true, 'another key has its own bucket');
  now += 1000;
  assert.equal(r.allows('ip1'), true, 'one per second refills');
  assert.equal(new KeyedRate(0, 0, { now: () => now }).enabled, false, '0 per minute turns it off');
});
