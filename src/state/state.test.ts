/**
 * The shared state's rules are the same in one process and on Redis: the same cases run against the
 * in-memory state and a real redis-server (two clients, as two replicas would hold).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { LimitsConfig } from '../../schemas/generated/config.js';
import { eventually } from '../../test/helpers/harness.js';
import { type RedisServer, startRedis } from '../../test/helpers/replicas.js';
import type { Clock } from '../clock.js';
import { memoryState } from './memory.js';
import { redisState } from './redis.js';
import { type Admission, type ReplicaEvent, ReplicaUnreachable, type SharedState } from './state.js';

const silent = { warn: () => undefined, info: () => undefined, error: () => undefined, debug: () => undefined, child: () => silent };
const limits = (l: Partial<LimitsConfig>): LimitsConfig => ({ calls_per_minute: 0, burst: 1, concurrent_per_principal: 0, concurrent_total: 0, ...l });
const refusal = (a: Admission) => ('refused' in a ? a.refused.limit : 'admitted');
const fixedClock = (t: number): Clock => ({ now: () => t, setTimeout: () => setTimeout(() => undefined, 0), clearTimeout: () => undefined });

let redis: RedisServer;
let n = 0;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

/** Two handles on one state, as two replicas hold: the same object in memory, two clients on Redis. */
type Pair = { a: SharedState; b: SharedState; close(): Promise<void> };
const kinds: Record<string, (l: LimitsConfig) => Promise<Pair>> = {
  memory: async (l) => {
    const s = memoryState(l, fixedClock(1_000_000));
    return { a: s, b: s, close: () => s.close() };
  },
  redis: async (l) => {
    const prefix = `state-test-${++n}:`;
    const a = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'ra' });
    const b = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'rb' });
    return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
  },
};

for (const [kind, make] of Object.entries(kinds)) {
  describe(`shared state: ${kind}`, () => {
    test('a token bucket per principal x service x tool: burst, then rate refusals with a retry hint; others unaffected', async () => {
      const s = await make(limits({ calls_per_minute: 6, burst: 3 }));
      try {
        const got: string[] = [];
        for (let i = 0; i < 4; i++) got.push(refusal(await (i % 2 ? s.b : s.a).limiter.admit('p', 'svc', 't', 60_000)));
        assert.deepEqual(got, ['admitted', 'admitted', 'admitted', 'rate']);
        const r = await s.a.limiter.admit('p', 'svc', 't', 60_000);
        assert.ok('refused' in r && r.refused.limit === 'rate' && r.refused.retryAfterS >= 1 && r.refused.retryAfterS <= 10, JSON.stringify(r));
        assert.equal(refusal(await s.b.limiter.admit('p', 'svc', 'other', 60_000)), 'admitted');
        assert.equal(refusal(await s.b.limiter.admit('q', 'svc', 't', 60_000)), 'admitted');
      } finally {
        await s.close();
      }
    });

    test('calls in flight per principal and in all; a release frees the place', async () => {
      const s = await make(limits({ concurrent_per_principal: 2, concurrent_total: 3 }));
      try {
        const p1 = await s.a.limiter.admit('p', 'svc', 't', 60_000);
        const p2 = await s.b.limiter.admit('p', 'svc', 't', 60_000);
        assert.equal(refusal(await s.a.limiter.admit('p', 'svc', 't', 60_000)), 'concurrency');
        const q1 = await s.b.limiter.admit('q', 'svc', 't', 60_000);
        assert.equal(refusal(await s.a.limiter.admit('r', 'svc', 't', 60_000)), 'concurrency_total');
        assert.ok('release' in p1 && 'release' in p2 && 'release' in q1);
        p1.release();
        p1.release(); // twice is once
        await eventually(async () => {
          const again = await s.b.limiter.admit('p', 'svc', 't', 60_000);
          if ('release' in again) again.release();
          return 'release' in again;
        });
        p2.release();
        q1.release();
      } finally {
        await s.close();
      }
    });

    test('a replay cache answers true once per id', async () => {
      const s = await make(limits({}));
      try {
        assert.equal(await s.a.replay.firstSight('jti-1', 60_000), true);
        assert.equal(await s.b.replay.firstSight('jti-1', 60_000), false);
        assert.equal(await s.b.replay.firstSight('jti-2', 60_000), true);
      } finally {
        await s.close();
      }
    });

    test('a consent grant given through one replica is found by the other until it expires, and only under its own key', async () => {
      const s = await make(limits({}));
      try {
        const now = Date.now();
        assert.equal(await s.b.grants.find('k1', now), undefined);
        await s.a.grants.grant('k1', now + 60_000);
        assert.equal(await s.b.grants.find('k1', now), now + 60_000);
        assert.equal(await s.b.grants.find('k2', now), undefined);
        // The gateway's clock decides expiry (the store's own lapse is only housekeeping).
        assert.equal(await s.b.grants.find('k1', now + 60_000), undefined);
        assert.equal(await s.a.grants.find('k1', now + 59_999), now + 60_000);
      } finally {
        await s.close();
      }
    });
  });
}

describe('shared state: Redis specifics', () => {
  test("a crashed replica's concurrency slots lapse after their ttl", async () => {
    const s = await kinds.redis!(limits({ concurrent_per_principal: 1 }));
    try {
      const held = await s.a.limiter.admit('p', 'svc', 't', 300);
      assert.ok('release' in held);
      assert.equal(refusal(await s.b.limiter.admit('p', 'svc', 't', 300)), 'concurrency');
      // Never released (its replica died): admitted again once the slot lapsed, by Redis's clock.
      await eventually(async () => refusal(await s.b.limiter.admit('p', 'svc', 't', 60_000)) === 'admitted', 5000);
    } finally {
      await s.close();
    }
  });

  test('Redis gone: limits refuse (state_unavailable) or, with when_unavailable local, limit alone; both recover when it is back', async () => {
    const prefix = `state-test-${++n}:`;
    const l = limits({ calls_per_minute: 60, burst: 2 });
    const refuse = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'refuse' });
    const local = await redisState({
      url: redis.url,
      prefix,
      limits: l,
      log: silent,
      replicaId: 'local',
      whenUnavailable: 'local',
      clock: fixedClock(5_000_000),
    });
    try {
      assert.equal(refuse.healthy(), true);
      await redis.stop();
      await eventually(() => !refuse.healthy() && !local.healthy());
      assert.equal(refusal(await refuse.limiter.admit('p', 'svc', 't', 60_000)), 'state_unavailable');
      await assert.rejects(refuse.replay.firstSight('jti-x', 60_000));
      // Local limits: the burst of this replica alone, then rate.
      assert.deepEqual(
        [
          await local.limiter.admit('p', 'svc', 't', 60_000),
          await local.limiter.admit('p', 'svc', 't', 60_000),
          await local.limiter.admit('p', 'svc', 't', 60_000),
        ].map(refusal),
        ['admitted', 'admitted', 'rate'],
      );
      await redis.start();
      await eventually(() => refuse.healthy() && local.healthy(), 15_000);
      assert.equal(refusal(await refuse.limiter.admit('p', 'svc', 't', 60_000)), 'admitted');
    } finally {
      await refuse.close();
      await local.close();
    }
  });

  test('a Redis that is down at start: the state starts unhealthy and becomes healthy when Redis comes up', async () => {
    await redis.stop();
    const s = await redisState({ url: redis.url, prefix: `state-test-${++n}:`, limits: limits({ concurrent_total: 5 }), log: silent, replicaId: 'late' });
    try {
      assert.equal(s.healthy(), false);
      assert.equal(refusal(await s.limiter.admit('p', 'svc', 't', 60_000)), 'state_unavailable');
      await redis.start();
      await eventually(() => s.healthy(), 15_000);
      assert.equal(refusal(await s.limiter.admit('p', 'svc', 't', 60_000)), 'admitted');
    } finally {
      await s.close();
    }
  });

  test('the event bus: list changes and resource updates one replica publishes reach the others, never itself; anything else on the channel is dropped', async () => {
    const prefix = `state-test-${++n}:`;
    const l = limits({});
    const a = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'ra' });
    const b = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'rb' });
    const otherPrefix = `state-test-${++n}:`;
    const elsewhere = await redisState({ url: redis.url, prefix: otherPrefix, limits: l, log: silent, replicaId: 'rc' });
    const raw = new Redis(redis.url);
    try {
      const got: Record<'a' | 'b' | 'elsewhere', ReplicaEvent[]> = { a: [], b: [], elsewhere: [] };
      const next = { a: () => undefined, b: () => undefined } as Record<'a' | 'b', () => void>;
      const arrived = (who: 'a' | 'b') => new Promise<void>((r) => (next[who] = r));
      a.events.subscribe((e) => (got.a.push(e), next.a()));
      b.events.subscribe((e) => (got.b.push(e), next.b()));
      elsewhere.events.subscribe((e) => got.elsewhere.push(e));
      const atB = arrived('b');
      a.events.publish({ type: 'list_changed', service: 'echo', kind: 'tools' });
      await atB;
      // Garbage and an unknown kind on the channel, then b's own event: a receives b's alone. Redis
      // delivers one channel's messages in order, so a's own event, had it come back, would be first.
      await raw.publish(`${prefix}events`, 'not json');
      await raw.publish(`${prefix}events`, JSON.stringify({ origin: 'rx', event: { type: 'list_changed', service: 'echo', kind: 'secrets' } }));
      await raw.publish(`${prefix}events`, JSON.stringify({ origin: 'rx', event: { type: 'resource_updated', service: 'docs', uri: 'x'.repeat(8193) } }));
      const atA = arrived('a');
      b.events.publish({ type: 'resource_updated', service: 'docs', uri: 'docs://handbook' });
      await atA;
      assert.deepEqual(got.a, [{ type: 'resource_updated', service: 'docs', uri: 'docs://handbook' }]);
      assert.deepEqual(got.b, [{ type: 'list_changed', service: 'echo', kind: 'tools' }]);
      // Another gateway's prefix is another bus: an event on its channel, sent after a's and b's, is
      // the first and only one it got.
      const atElsewhere = new Promise<void>((r) => elsewhere.events.subscribe(() => r()));
      await raw.publish(`${otherPrefix}events`, JSON.stringify({ origin: 'rx', event: { type: 'list_changed', service: 'x', kind: 'prompts' } }));
      await atElsewhere;
      assert.deepEqual(got.elsewhere, [{ type: 'list_changed', service: 'x', kind: 'prompts' }]);
    } finally {
      raw.disconnect();
      await Promise.all([a.close(), b.close(), elsewhere.close()]);
    }
  });

  test('requests between replicas: answered by the named replica, its failure carried back, a replica nobody serves is gone at once', async () => {
    const prefix = `state-test-${++n}:`;
    const l = limits({});
    const a = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'ra' });
    const b = await redisState({ url: redis.url, prefix, limits: l, log: silent, replicaId: 'rb' });
    try {
      const seen: unknown[] = [];
      b.peers.serve(async (body) => {
        seen.push(body);
        if ((body as { fail?: boolean }).fail) throw new Error('no such call');
        return { echoed: body };
      });
      assert.deepEqual(await a.peers.request('rb', { op: 'resume', id: 'x' }, 5000), { echoed: { op: 'resume', id: 'x' } });
      await assert.rejects(a.peers.request('rb', { fail: true }, 5000), (e: Error) => e.message === 'no such call' && !(e instanceof ReplicaUnreachable));
      // Nobody listens for rc: refused at once, not after the timeout (an hour here).
      await assert.rejects(
        a.peers.request('rc', { op: 'resume' }, 3_600_000),
        (e: unknown) => e instanceof ReplicaUnreachable && e.why === 'gone' && e.replica === 'rc',
      );
      assert.deepEqual(seen, [{ op: 'resume', id: 'x' }, { fail: true }]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('requests between replicas: a replica that listens but never answers times out on the injected clock', async () => {
    const prefix = `state-test-${++n}:`;
    let fire: (() => void) | undefined;
    const clock: Clock = { now: () => 0, setTimeout: (fn) => ((fire = fn), setTimeout(() => undefined, 0)), clearTimeout: () => undefined };
    const a = await redisState({ url: redis.url, prefix, limits: limits({}), log: silent, replicaId: 'ra', clock });
    const b = await redisState({ url: redis.url, prefix, limits: limits({}), log: silent, replicaId: 'rb' });
    try {
      let arrived: () => void = () => undefined;
      const atB = new Promise<void>((r) => (arrived = r));
      b.peers.serve(() => (arrived(), new Promise(() => undefined)));
      const pending = a.peers.request('rb', { op: 'resume' }, 1000);
      await atB;
      fire?.();
      await assert.rejects(pending, (e: unknown) => e instanceof ReplicaUnreachable && e.why === 'timeout');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

test('one process (memory state): a request to another replica is refused as gone', async () => {
  const s = memoryState(limits({}), fixedClock(0));
  await assert.rejects(s.peers.request('r2', {}, 1000), (e: unknown) => e instanceof ReplicaUnreachable && e.why === 'gone');
});
