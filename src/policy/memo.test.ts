import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecisionMemo } from './memo.js';
import type { EngineResult } from './types.js';

const answer = (id: string): EngineResult => ({ allow: true, reasons: [{ engine: 'rego', id, message: id }], obligations: [] });

describe('DecisionMemo', () => {
  it('keeps an answer the second time its key is offered, frozen, and not the first', () => {
    const memo = new DecisionMemo();
    const first = answer('a');
    assert.equal(memo.remember('k', first), first);
    assert.equal(memo.get('k'), undefined);
    assert.equal(Object.isFrozen(first), false);
    const second = answer('a');
    assert.equal(memo.remember('k', second), second);
    assert.equal(memo.get('k'), second);
    assert.ok(Object.isFrozen(second) && Object.isFrozen(second.reasons) && Object.isFrozen(second.reasons[0]));
  });

  it('holds at most 10,000 answers, dropping the oldest first', () => {
    const memo = new DecisionMemo();
    for (let i = 0; i <= 10_000; i++) {
      memo.remember(`k${i}`, answer('a'));
      memo.remember(`k${i}`, answer('a'));
    }
    assert.equal(memo.get('k0'), undefined);
    assert.notEqual(memo.get('k1'), undefined);
    assert.notEqual(memo.get('k10000'), undefined);
  });
});
