import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { isGatewayError } from '../errors.js';
import { OverflowRouter, type Routable } from './overflow.js';
import { manualClock } from '../../test/helpers/clock.js';

class Fake extends EventEmitter implements Routable {
  era: 'legacy' | 'modern' | undefined = 'legacy';
  state = 'ready';
  waiting = 0;
  started = 0;
  stopped = 0;
  constructor(readonly key: string) {
    super();
  }
  async start(): Promise<void> {
    this.started++;
  }
  async stop(): Promise<void> {
    this.stopped++;
    this.state = 'stopped';
  }
}

function router(max: number, idleMs = 1000) {
  const clock = manualClock();
  const main = new Fake('main');
  const made: Fake[] = [];
  const r = new OverflowRouter<Fake>({
    service: 'svc',
    main,
    max,
    idleMs,
    clock,
    create: (key) => {
      const f = new Fake(key);
      made.push(f);
      return f;
    },
  });
  return { r, main, made, clock };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => {
      assert.ok(isGatewayError(e));
      return { code: e.code, message: e.message };
    },
  );

describe('overflow connections of a shared 2025 service', () => {
  it('calls share the main connection while it waits for nobody', async () => {
    const { r, main, made } = router(4);
    const a = await r.acquire({ name: 'svc.a' });
    const b = await r.acquire({ name: 'svc.b' });
    assert.equal(a.conn, main);
    assert.equal(b.conn, main);
    assert.equal(made.length, 0);
  });

  it('a waiting connection takes no new call; past the bound, with every one waiting, the exact refusal', async () => {
    const { r, main, made } = router(1);
    main.waiting = 1;
    const b = await r.acquire({ name: 'svc.b' });
    assert.equal(b.conn, made[0]);
    assert.equal(made[0]!.key, 'overflow-1');
    assert.equal(made[0]!.started, 1);
    made[0]!.waiting = 1;
    assert.deepEqual(await refusal(r.acquire({ name: 'svc.c' })), {
      code: 'ERR_SERVICE_UNAVAILABLE',
      message: 'service "svc": all 2 connections are waiting for agents to answer input requests (overflow.max 1); retry shortly',
    });
    // An answer frees the main connection again.
    main.waiting = 0;
    assert.equal((await r.acquire({ name: 'svc.c' })).conn, main);
  });

  it('max 0: every call goes to the main connection, waiting or not; so does every call to a 2026 service', async () => {
    const off = router(0);
    off.main.waiting = 1;
    assert.equal((await off.r.acquire({ name: 'svc.b' })).conn, off.main);
    const modern = router(4);
    modern.main.era = 'modern';
    modern.main.waiting = 1;
    assert.equal((await modern.r.acquire({ name: 'svc.b' })).conn, modern.main);
    assert.equal(modern.made.length, 0);
  });

  it('a tool that asked gets a connection to itself; other calls avoid one where it runs', async () => {
    const { r, main, made } = router(4);
    const first = await r.acquire({ name: 'svc.ask' });
    assert.equal(r.learned('svc.ask'), undefined);
    main.emit('asking');
    assert.equal(r.learned('svc.ask'), 'asks', 'alone on its connection: it asked');
    first.release();
    // Three askers at once: main, then one new connection each.
    const held = await Promise.all([1, 2, 3].map(() => r.acquire({ name: 'svc.ask' })));
    assert.deepEqual(
      held.map((h) => (h.conn === main ? 'main' : h.conn.key)),
      ['main', 'overflow-1', 'overflow-2'],
    );
    // Another tool avoids every connection an asker holds: a new one.
    const other = await r.acquire({ name: 'svc.read' });
    assert.equal(other.conn.key, 'overflow-3');
    // A URI (name undefined) is never learned: a read running while a question comes stays unnamed.
    const uri = await r.acquire({ name: undefined });
    assert.equal(uri.conn.key, 'overflow-3');
    made[2]!.emit('asking');
    assert.equal(r.learned('svc.read'), 'suspected', 'beside an unnamed request: maybe');
    held[0]!.release();
    assert.equal((await r.acquire({ name: 'svc.ask' })).conn, main, 'free again');
  });

  it('an ambiguous question makes every tool in flight a suspect, until it runs alone to its end without asking', async () => {
    const { r, main } = router(4);
    const a = await r.acquire({ name: 'svc.a' });
    const b = await r.acquire({ name: 'svc.b' });
    main.emit('asking');
    assert.deepEqual([r.learned('svc.a'), r.learned('svc.b')], ['suspected', 'suspected']);
    a.release();
    b.release();
    assert.deepEqual([r.learned('svc.a'), r.learned('svc.b')], ['suspected', 'suspected'], 'they shared the connection: no evidence');
    // Each now runs alone (a suspect gets a connection to itself): a finishes without asking, b asks.
    const a2 = await r.acquire({ name: 'svc.a' });
    const b2 = await r.acquire({ name: 'svc.b' });
    assert.notEqual(a2.conn, b2.conn);
    b2.conn.emit('asking');
    a2.release();
    b2.release();
    assert.deepEqual([r.learned('svc.a'), r.learned('svc.b')], [undefined, 'asks']);
    // An asker stays one: running alone without asking (it asks only sometimes) changes nothing.
    const b3 = await r.acquire({ name: 'svc.b' });
    b3.release();
    assert.equal(r.learned('svc.b'), 'asks');
  });

  it('past the bound a call shares the least busy connection that is not waiting', async () => {
    const { r, main, made } = router(1);
    await r.acquire({ name: 'svc.ask' });
    main.emit('asking');
    const second = await r.acquire({ name: 'svc.ask' });
    assert.equal(second.conn, made[0]);
    await r.acquire({ name: 'svc.ask' }); // both have one: the first found (main)
    const fourth = await r.acquire({ name: 'svc.ask' });
    assert.equal(fourth.conn, made[0], 'main has two calls now, overflow-1 one');
    assert.equal(made.length, 1);
  });

  it('the reaper closes an idle overflow connection on the clock, never one a call holds', async () => {
    const { r, main, made, clock } = router(4, 1000);
    main.waiting = 1;
    const a = await r.acquire({ name: 'svc.a' });
    made[0]!.waiting = 1;
    const b = await r.acquire({ name: 'svc.b' });
    assert.equal(r.size, 2);
    b.release();
    clock.advance(999);
    assert.equal(r.reap(), 0, 'not idle long enough');
    clock.advance(1);
    assert.equal(r.reap(), 1);
    assert.deepEqual(
      made.map((f) => [f.key, f.stopped]),
      [
        ['overflow-1', 0],
        ['overflow-2', 1],
      ],
    );
    clock.advance(10_000);
    assert.equal(r.reap(), 0, 'overflow-1 is held');
    a.release();
    made[0]!.waiting = 0;
    clock.advance(1000);
    assert.equal(r.reap(), 1);
    assert.equal(r.size, 0);
    await r.close();
  });

  it('a crashed overflow connection (restarting) takes no new call', async () => {
    const { r, main, made } = router(4);
    main.waiting = 1;
    const a = await r.acquire({ name: 'svc.a' });
    a.release();
    made[0]!.state = 'down';
    assert.equal((await r.acquire({ name: 'svc.a' })).conn.key, 'overflow-2');
  });
});
