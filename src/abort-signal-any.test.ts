import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import { abortSignalAny } from './abort-signal-any.js';

describe('abortSignalAny', () => {
  test('aborts with the reason of the first source that aborts, once', () => {
    const a = new AbortController();
    const b = new AbortController();
    const any = abortSignalAny([a.signal, b.signal]);
    let fired = 0;
    any.addEventListener('abort', () => fired++);
    assert.equal(any.aborted, false);
    b.abort(new Error('b first'));
    a.abort(new Error('a later'));
    assert.equal(any.aborted, true);
    assert.equal((any.reason as Error).message, 'b first');
    assert.equal(fired, 1);
  });

  test('a source already aborted: the result is aborted at once with its reason', () => {
    const a = new AbortController();
    a.abort('gone');
    const any = abortSignalAny(new Set([new AbortController().signal, a.signal]));
    assert.equal(any.aborted, true);
    assert.equal(any.reason, 'gone');
  });

  test('after the result aborts, no source keeps a listener for it', () => {
    const long = new AbortController();
    const per = new AbortController();
    const any = abortSignalAny([long.signal, per.signal]);
    assert.equal(getEventListeners(long.signal, 'abort').length, 1);
    per.abort('done');
    assert.equal(any.reason, 'done');
    assert.equal(getEventListeners(long.signal, 'abort').length, 0);
    assert.equal(getEventListeners(per.signal, 'abort').length, 0);
  });

  test('no sources: a signal that never aborts', () => {
    const any = abortSignalAny([]);
    assert.equal(any.aborted, false);
  });
});
