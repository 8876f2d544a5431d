import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isInputRequiredResult } from '@modelcontextprotocol/server';
import type { LimitsConfig } from '../../schemas/generated/config.js';
import { memoryState } from '../state/memory.js';
import { type ConsentCall, ConsentGate, type ConsentState, summarize } from './consent.js';
import { manualClock } from '../../test/helpers/clock.js';

const limits: LimitsConfig = { calls_per_minute: 0, burst: 1, concurrent_per_principal: 0, concurrent_total: 0 };

/** A clock the test moves by hand. */
function setup() {
  const clock = manualClock(1_700_000_000_000);
  const gate = new ConsentGate({ grants: memoryState(limits, clock).grants, clock, askTtlMs: 60_000, grantTtlMs: 600_000 });
  const call = (over: Partial<ConsentCall> = {}): ConsentCall => ({
    principal: 'p',
    tool: 'github.createIssue',
    args: { repo: 'r', title: 't' },
    revision: 'sha256:rev1',
    purpose: null,
    summary: '  repo: r',
    canAsk: true,
    ...over,
  });
  return { clock, gate, call };
}

async function ask(gate: ConsentGate, c: ConsentCall): Promise<ConsentState> {
  const v = await gate.check(c);
  assert.equal(v.kind, 'ask');
  assert.ok(v.kind === 'ask' && isInputRequiredResult(v.request('signed')));
  return (v as { state: ConsentState }).state;
}

const accept = { action: 'accept', content: { approve: true } };

test('a grant is reused for the same principal, tool, arguments and revision until it expires, by the injected clock', async () => {
  const { clock, gate, call } = setup();
  const state = await ask(gate, call());
  const g = await gate.check(call({ state, answer: accept }));
  assert.deepEqual(g, { kind: 'granted', result: 'granted', expiresAt: clock.now() + 600_000 });
  clock.advance(599_999);
  assert.equal((await gate.check(call())).kind, 'granted');
  // Another argument order is the same call; other values, another principal or revision are not.
  assert.equal((await gate.check(call({ args: { title: 't', repo: 'r' } }))).kind, 'granted');
  for (const other of [call({ args: { repo: 'r', title: 'u' } }), call({ principal: 'q' }), call({ revision: 'sha256:rev2' }), call({ tool: 'github.other' })])
    assert.equal((await gate.check(other)).kind, 'ask');
  clock.advance(1);
  assert.equal((await gate.check(call())).kind, 'ask');
});

test('each answer but approval is its own denial; a late answer is expired; changed arguments or policy are a mismatch', async () => {
  const { clock, gate, call } = setup();
  const state = await ask(gate, call());
  const denial = async (c: ConsentCall) => {
    const v = await gate.check(c);
    return v.kind === 'denied' ? `${v.result}:${v.error.code}` : v.kind;
  };
  assert.equal(await denial(call({ state, answer: { action: 'decline' } })), 'declined:ERR_CONSENT_DECLINED');
  assert.equal(await denial(call({ state, answer: { action: 'accept', content: { approve: false } } })), 'declined:ERR_CONSENT_DECLINED');
  assert.equal(await denial(call({ state, answer: { action: 'cancel' } })), 'cancelled:ERR_CONSENT_CANCELLED');
  assert.equal(await denial(call({ state, answer: { nonsense: true } })), 'cancelled:ERR_CONSENT_CANCELLED');
  assert.equal(await denial(call({ state, answer: undefined })), 'cancelled:ERR_CONSENT_CANCELLED');
  assert.equal(await denial(call({ state, answer: accept, args: { repo: 'r', title: 'other' } })), 'mismatch:ERR_CONSENT_MISMATCH');
  assert.equal(await denial(call({ state, answer: accept, revision: 'sha256:rev2' })), 'mismatch:ERR_CONSENT_MISMATCH');
  assert.equal(await denial(call({ canAsk: false })), 'unavailable:ERR_CONSENT_REQUIRED');
  clock.advance(60_001);
  assert.equal(await denial(call({ state, answer: accept })), 'expired:ERR_CONSENT_EXPIRED');
  // None of these left a grant behind.
  assert.equal((await gate.check(call())).kind, 'ask');
});

test('the summary is one line per argument, cut, at most 20 lines', () => {
  assert.equal(summarize({}), '  (none)');
  assert.equal(summarize({ a: 'x', n: 1, o: { k: [1] } }), '  a: x\n  n: 1\n  o: {"k":[1]}');
  const many = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`k${i}`, 'v'.repeat(200)]));
  const s = summarize(many).split('\n');
  assert.equal(s.length, 21);
  assert.equal(s[0], `  k0: ${'v'.repeat(120)}...`);
  assert.equal(s[20], '  ... and 5 more');
});
