import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Limiter } from './limiter.js';

test('the rate limit admits a burst, then refills at the configured rate, per principal x service x tool', () => {
  let t = 0;
  const l = new Limiter({ calls_per_minute: 60, burst: 3, concurrent_per_principal: 0, concurrent_total: 0 }, () => t);
  for (let i = 0; i < 3; i++) assert.ok('release' in l.admit('alice', 'fs', 'read'));
  const r = l.admit('alice', 'fs', 'read');
  assert.deepEqual(r, { refused: { limit: 'rate', retryAfterS: 1 } });
  assert.ok('release' in l.admit('alice', 'fs', 'stat'), 'another tool has its own bucket');
  assert.ok('release' in l.admit('bob', 'fs', 'read'), 'another principal has its own bucket');
  t += 1000;
  assert.ok('release' in l.admit('alice', 'fs', 'read'), 'one call per second refills');
  assert.ok('refused' in l.admit('alice', 'fs', 'read'));
});

test('the concurrency ceiling counts calls in flight per principal and frees slots on release', () => {
  const l = new Limiter({ calls_per_minute: 0, burst: 1, concurrent_per_principal: 2, concurrent_total: 0 });
  const a = l.admit('alice', 'fs', 'read');
  const b = l.admit('alice', 'http', 'fetchText');
  assert.ok('release' in a && 'release' in b);
  assert.deepEqual(l.admit('alice', 'fs', 'read'), { refused: { limit: 'concurrency' } });
  assert.ok('release' in l.admit('bob', 'fs', 'read'));
  a.release();
  a.release(); // idempotent: a double release must not free a second slot
  const c = l.admit('alice', 'fs', 'read');
  assert.ok('release' in c);
  assert.deepEqual(l.admit('alice', 'fs', 'read'), { refused: { limit: 'concurrency' } });
});

test('the global ceiling on calls in flight: one principal at its own ceiling never takes the last places', () => {
  const l = new Limiter({ calls_per_minute: 0, burst: 1, concurrent_per_principal: 2, concurrent_total: 3 });
  const a1 = l.admit('alice', 'fs', 'read');
  const a2 = l.admit('alice', 'fs', 'read');
  assert.deepEqual(l.admit('alice', 'fs', 'read'), { refused: { limit: 'concurrency' } }, 'alice is at her own ceiling');
  const b1 = l.admit('bob', 'fs', 'read');
  assert.ok('release' in a1 && 'release' in a2 && 'release' in b1, 'bob still gets a place');
  assert.deepEqual(l.admit('carol', 'fs', 'read'), { refused: { limit: 'concurrency_total' } }, 'the gateway is full');
  b1.release();
  assert.ok('release' in l.admit('carol', 'fs', 'read'));
});
