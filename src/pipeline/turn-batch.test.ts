import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TurnBatch } from './turn-batch.js';

describe('TurnBatch', () => {
  it('runs the work asked for in one turn together, after that turn, and settles each with its own result', async () => {
    const batch = new TurnBatch();
    const log: string[] = [];
    const a = batch.run(() => (log.push('a'), 1)).then((v) => log.push(`a=${v}`));
    const b = batch.run(() => (log.push('b'), 2)).then((v) => log.push(`b=${v}`));
    queueMicrotask(() => log.push('microtask'));
    log.push('asked');
    await Promise.all([a, b]);
    // Both ran before either caller went on: the callers' continuations follow the whole batch.
    assert.deepEqual(log, ['asked', 'microtask', 'a', 'b', 'a=1', 'b=2']);
  });

  it('rejects only the work that threw', async () => {
    const batch = new TurnBatch();
    const failed = batch.run(() => {
      throw new Error('engine fault');
    });
    const done = batch.run(() => 'decided');
    await assert.rejects(failed, { message: 'engine fault' });
    assert.equal(await done, 'decided');
  });

  it('runs work asked for while a batch runs in the next turn, after the batch and its callers', async () => {
    const batch = new TurnBatch();
    const log: string[] = [];
    let later: Promise<number> | undefined;
    const first = batch
      .run(() => {
        log.push('first');
        later = batch.run(() => (log.push('later'), 3));
        return 1;
      })
      .then(() => log.push('first answered'));
    const second = batch.run(() => (log.push('second'), 2)).then(() => log.push('second answered'));
    await Promise.all([first, second]);
    assert.ok(later);
    assert.equal(await later, 3);
    assert.deepEqual(log, ['first', 'second', 'first answered', 'second answered', 'later']);
  });
});
