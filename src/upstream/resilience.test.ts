import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/client';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { Backoff, type BreakerState, type GuardPass, ServiceGuard, verdictOf } from './resilience.js';

/** A clock moved by hand; its timers are not used by the guard. */
function manualClock(start = 1_000_000): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    setTimeout: () => {
      throw new Error('the guard starts no timers');
    },
    clearTimeout: () => undefined,
    advance(ms: number) {
      t += ms;
    },
  };
}

const pass = (g: ServiceGuard): GuardPass => {
  const a = g.admit();
  if (!('pass' in a)) throw new Error(`refused: ${a.refused.code}`);
  return a.pass;
};
const refusal = (g: ServiceGuard) => {
  const a = g.admit();
  if (!('refused' in a)) throw new Error('admitted');
  return { code: a.refused.code, message: a.refused.message, data: a.refused.data, cause: a.cause };
};

test('breaker: opens after N consecutive failures, refuses at once, half-open probe after the cool-down, closes on its success', () => {
  const clock = manualClock();
  const changes: BreakerState[] = [];
  const g = new ServiceGuard('svc', { maxConcurrent: 0, failures: 3, cooldownMs: 10_000 }, clock, (s) => changes.push(s));
  pass(g).done('failure');
  pass(g).done('failure');
  pass(g).done('success'); // a success in between resets the count
  pass(g).done('failure');
  pass(g).done('failure');
  assert.equal(g.state, 'closed');
  pass(g).done('failure');
  assert.equal(g.state, 'open');
  assert.deepEqual(refusal(g), {
    code: 'ERR_SERVICE_CIRCUIT_OPEN',
    message: 'service "svc" is failing; calls are refused for now (circuit breaker open), retry later',
    data: { service: 'svc', retry_after_s: 10 },
    cause: 'circuit_open',
  });
  clock.advance(9_999);
  assert.equal(g.state, 'open');
  assert.equal(refusal(g).data?.retry_after_s, 1);
  clock.advance(1);
  assert.equal(g.state, 'half_open');
  const probe = pass(g);
  assert.equal(probe.probe, true);
  // One probe at a time: the others are refused as if open.
  assert.equal(refusal(g).code, 'ERR_SERVICE_CIRCUIT_OPEN');
  probe.done('success');
  assert.equal(g.state, 'closed');
  assert.equal(pass(g).probe, false);
  assert.deepEqual(changes, ['open', 'half_open', 'closed']);
});

test('breaker: a failed probe opens it for another cool-down; a neutral probe frees the probe slot', () => {
  const clock = manualClock();
  const g = new ServiceGuard('svc', { maxConcurrent: 0, failures: 1, cooldownMs: 5_000 }, clock);
  pass(g).done('failure');
  assert.equal(g.state, 'open');
  clock.advance(5_000);
  pass(g).done('neutral'); // a cancelled probe says nothing: still half-open, next call probes
  assert.equal(g.state, 'half_open');
  const p = pass(g);
  assert.equal(p.probe, true);
  clock.advance(3_000);
  p.done('failure');
  assert.equal(g.state, 'open');
  clock.advance(4_999);
  assert.equal(g.state, 'open', 'the cool-down starts again when the probe fails');
  clock.advance(1);
  assert.equal(g.state, 'half_open');
});

test('breaker: failures 0 disables it', () => {
  const g = new ServiceGuard('svc', { maxConcurrent: 0, failures: 0, cooldownMs: 100 }, manualClock());
  for (let i = 0; i < 50; i++) pass(g).done('failure');
  assert.equal(g.state, 'closed');
});

test('concurrency cap: one more than max_concurrent is refused at once; a place frees when a call ends (once)', () => {
  const g = new ServiceGuard('svc', { maxConcurrent: 2, failures: 0, cooldownMs: 100 }, manualClock());
  const a = pass(g);
  pass(g);
  assert.deepEqual(refusal(g), {
    code: 'ERR_SERVICE_BUSY',
    message: 'service "svc" has 2 calls in flight; retry shortly',
    data: { service: 'svc', max_concurrent: 2 },
    cause: 'service_busy',
  });
  a.done('success');
  a.done('success');
  assert.equal(g.active, 1);
  pass(g);
  assert.equal(refusal(g).code, 'ERR_SERVICE_BUSY');
});

test('verdicts: timeouts, unreachable services and internal errors fail; cancellations, tool-level errors are neutral', () => {
  assert.equal(verdictOf(new GatewayError('ERR_SERVICE_TIMEOUT', 't')), 'failure');
  assert.equal(verdictOf(new GatewayError('ERR_SERVICE_UNAVAILABLE', 'u')), 'failure');
  assert.equal(verdictOf(new GatewayError('ERR_SERVICE_ERROR', 'c', { cancelled: true })), 'neutral');
  assert.equal(verdictOf(new GatewayError('ERR_RESULT_TOO_LARGE', 'big')), 'neutral');
  assert.equal(verdictOf(new ProtocolError(-32602, 'bad params')), 'neutral');
  assert.equal(verdictOf(new ProtocolError(-32603, 'internal')), 'failure');
  assert.equal(verdictOf(new Error('socket hang up')), 'failure');
});

test('backoff: doubles to the cap, each wait drawn from [d/2, d] by the injected random; reset starts over', () => {
  const draws = [0, 1, 0.5, 0, 1, 1, 0];
  let i = 0;
  const b = new Backoff({ initialMs: 100, maxMs: 1000 }, () => draws[i++]!);
  assert.deepEqual(
    Array.from({ length: 6 }, () => b.next()),
    [50, 200, 300, 400, 1000, 1000],
  );
  b.reset();
  assert.equal(b.next(), 50);
});
