import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatewayError } from '../errors.js';
import { ConnectionPool, type Pooled } from './pool.js';
import { manualClock } from '../../test/helpers/clock.js';

class Fake implements Pooled {
  started = 0;
  stopped = 0;
  subscriptionsHeld = 0;
  constructor(readonly key: string) {}
  async start(): Promise<void> {
    this.started++;
  }
  async stop(): Promise<void> {
    this.stopped++;
  }
}

function pool(max: number, idleMs = 1000) {
  const clock = manualClock();
  const made: Fake[] = [];
  const p = new ConnectionPool<Fake>({
    service: 'svc',
    max,
    idleMs,
    clock,
    create: (key) => {
      const f = new Fake(key);
      made.push(f);
      return f;
    },
  });
  return { p, clock, made };
}

describe('isolated connection pool', () => {
  it('one connection per key, started once, reused', async () => {
    const { p, made } = pool(4);
    const a1 = await p.acquire('a');
    const a2 = await p.acquire('a');
    const b = await p.acquire('b');
    assert.equal(a1.conn, a2.conn);
    assert.notEqual(a1.conn, b.conn);
    assert.deepEqual(
      made.map((f) => [f.key, f.started]),
      [
        ['a', 1],
        ['b', 1],
      ],
    );
  });

  it('full: a new key closes the least recently used idle connection; with every one busy it is refused', async () => {
    const { p, clock, made } = pool(2);
    const a = await p.acquire('a');
    clock.advance(10);
    const b = await p.acquire('b');
    a.release();
    clock.advance(10);
    b.release();
    await p.acquire('c'); // evicts a (idle longest)
    assert.deepEqual(
      made.map((f) => [f.key, f.stopped]),
      [
        ['a', 1],
        ['b', 0],
        ['c', 0],
      ],
    );
    await p.acquire('b'); // both held now
    const e = await p.acquire('d').then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(isGatewayError(e));
    assert.equal(e.code, 'ERR_SERVICE_UNAVAILABLE');
    assert.equal(e.message, 'service "svc": all 2 isolated connections are busy; retry shortly');
    assert.equal(p.size, 2);
  });

  it('the reaper closes connections idle for idleMs, never a held one', async () => {
    const { p, clock, made } = pool(4, 1000);
    const a = await p.acquire('a');
    const b = await p.acquire('b');
    b.release();
    clock.advance(999);
    assert.equal(p.reap(), 0, 'not idle long enough');
    clock.advance(1);
    assert.equal(p.reap(), 1);
    assert.deepEqual(
      made.map((f) => [f.key, f.stopped]),
      [
        ['a', 0],
        ['b', 1],
      ],
    );
    clock.advance(10_000);
    assert.equal(p.reap(), 0, 'a is held');
    a.release();
    clock.advance(1000);
    assert.equal(p.reap(), 1);
    assert.equal(p.size, 0);
  });

  it('a connection holding resource subscriptions is neither reaped nor evicted; it is once they end', async () => {
    const { p, clock, made } = pool(1, 1000);
    (await p.acquire('a')).release();
    made[0]!.subscriptionsHeld = 1;
    clock.advance(10_000);
    assert.equal(p.reap(), 0, 'a holds a subscription');
    const e = await p.acquire('b').catch((err: unknown) => err);
    assert.ok(isGatewayError(e));
    assert.equal(e.message, 'service "svc": all 1 isolated connections are busy; retry shortly');
    made[0]!.subscriptionsHeld = 0;
    assert.equal(p.reap(), 1);
    assert.equal(made[0]!.stopped, 1);
  });

  it('close stops every connection and refuses new calls', async () => {
    const { p, made } = pool(4);
    await p.acquire('a');
    await p.close();
    assert.equal(made[0]!.stopped, 1);
    await assert.rejects(p.acquire('b'), /is stopping/);
  });
});
