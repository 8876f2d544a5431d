/**
 * Shared state on Redis for several replicas (ioredis). Every limit check is one atomic script, so
 * two replicas can never both take the last token or the last place; time is Redis's own (TIME), so
 * replicas with skewed clocks agree. While Redis is unreachable, commands fail at once (no offline
 * queue) and the state says so: limits refuse (`state_unavailable`, fail closed; or, with
 * `when_unavailable: local`, each replica limits on its own) and replay checks refuse, until ioredis
 * has reconnected by itself.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { JWK } from 'jose';
import type { LimitsConfig } from '../../schemas/generated/config.js';
import { type Clock, systemClock } from '../clock.js';
import { Limiter } from '../limits/limiter.js';
import type { Logger } from '../types.js';
import { type Admission, type ReplicaEvent, ReplicaUnreachable, type SharedState } from './state.js';

const LIST_KINDS = new Set(['tools', 'prompts', 'resources']);

/** A resource URI as events carry it (services' URIs are short; anything longer is not one). */
const MAX_EVENT_URI = 8192;

/** An event as another replica published it, or undefined for anything else on the channel. */
function parseEvent(message: string, self: string): ReplicaEvent | undefined {
  let m: unknown;
  try {
    m = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const { origin, event } = m as { origin?: unknown; event?: { type?: unknown; service?: unknown; kind?: unknown; uri?: unknown } };
  if (origin === self || typeof event !== 'object' || event === null) return undefined;
  if (event.type === 'resource_updated') {
    if (typeof event.service !== 'string' || typeof event.uri !== 'string' || event.uri.length > MAX_EVENT_URI) return undefined;
    return { type: 'resource_updated', service: event.service, uri: event.uri };
  }
  if (event.type !== 'list_changed' || typeof event.service !== 'string' || typeof event.kind !== 'string' || !LIST_KINDS.has(event.kind)) {
    return undefined;
  }
  return { type: 'list_changed', service: event.service, kind: event.kind as 'tools' | 'prompts' | 'resources' };
}

/**
 * Rate (token bucket per principal x service x tool) and concurrency (a sorted set of call ids per
 * principal and one for all, scored by when each slot lapses: a crashed replica's slots expire).
 * KEYS: bucket, principal's calls, all calls. ARGV: per-ms rate, burst (0 = no rate), max per
 * principal (0 = off), max total (0 = off), call id, slot ttl ms, bucket idle ms.
 * Returns {1} admitted, {0, "rate", seconds}, {0, "concurrency"} or {0, "concurrency_total"}.
 */
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local perMs = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if burst > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + (now - at) * perMs)
  if tokens < 1 then
    return {0, 'rate', tostring(math.ceil((1 - tokens) / perMs / 1000))}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
local maxP = tonumber(ARGV[3])
local maxT = tonumber(ARGV[4])
local lapse = now + tonumber(ARGV[6])
if maxP > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxP then return {0, 'concurrency'} end
end
if maxT > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxT then return {0, 'concurrency_total'} end
end
if maxP > 0 then
  redis.call('ZADD', KEYS[2], lapse, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if maxT > 0 then
  redis.call('ZADD', KEYS[3], lapse, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
return {1}
`;

/** Buckets idle this long are full again: Redis forgets them (the same rule as the in-memory limiter). */
const BUCKET_IDLE_MS = 10 * 60_000;

export interface RedisStateOptions {
  url: string;
  /** Prefix of every key, so several gateways (or tests) can share one Redis. */
  prefix: string;
  limits: LimitsConfig;
  log: Logger;
  /** While Redis is unreachable: refuse every call (default, fail closed) or limit each replica on its own. */
  whenUnavailable?: 'refuse' | 'local';
  /** The local limiter's clock (whenUnavailable: local) and the timers of requests to other replicas. */
  clock?: Clock;
  /** This replica's name: events it publishes are not delivered back to it. */
  replicaId: string;
}

export async function redisState(opts: RedisStateOptions): Promise<SharedState> {
  const redis = new Redis(opts.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 100, 1000),
  });
  let up = false;
  redis.on('ready', () => {
    if (!up) opts.log.info({ state: 'redis' }, 'shared state reachable');
    up = true;
  });
  redis.on('end', () => (up = false));
  redis.on('close', () => {
    if (up) opts.log.warn({ state: 'redis' }, 'shared state unreachable: limits refuse until it is back');
    up = false;
  });
  redis.on('error', () => undefined); // reported through 'close' and readiness; ioredis reconnects by itself
  // A Redis that is down at start is not fatal: the gateway starts not ready and ioredis keeps trying.
  await redis
    .connect()
    .catch((e: Error) => opts.log.warn({ state: 'redis', err: e.message }, 'shared state unreachable at start: limits refuse until it is up'));
  // Pub/sub needs a connection of its own (a subscribed connection runs no other command).
  const subscriber = redis.duplicate({ lazyConnect: true });
  subscriber.on('error', () => undefined); // it reconnects and resubscribes by itself, like the main connection
  const handlers = new Set<(event: ReplicaEvent) => void>();
  const channel = `${opts.prefix}events`;
  // Requests between replicas: each listens on its own channel; PUBLISH counts the listeners, so a
  // request to a replica that is gone is known at once.
  const clock = opts.clock ?? systemClock;
  const rpcChannel = (replica: string) => `${opts.prefix}rpc:${replica}`;
  const ownRpc = rpcChannel(opts.replicaId);
  const waiting = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let serveHandler: ((body: unknown) => Promise<unknown>) | undefined;
  const onRpc = (message: string) => {
    let m: { t?: unknown; id?: unknown; re?: unknown; from?: unknown; body?: unknown; ok?: unknown; error?: unknown };
    try {
      m = JSON.parse(message) as typeof m;
    } catch {
      return;
    }
    if (m.t === 'res' && typeof m.re === 'string') {
      const w = waiting.get(m.re);
      if (!w) return;
      waiting.delete(m.re);
      clock.clearTimeout(w.timer);
      if (typeof m.error === 'string') w.reject(new Error(m.error));
      else w.resolve(m.ok);
      return;
    }
    if (m.t !== 'req' || typeof m.id !== 'string' || typeof m.from !== 'string' || !serveHandler) return;
    const { id, from } = m;
    const reply = (r: { ok: unknown } | { error: string }) =>
      redis.publish(rpcChannel(from), JSON.stringify({ t: 'res', re: id, ...r })).catch(() => undefined);
    serveHandler(m.body).then(
      (ok) => reply({ ok }),
      (e: Error) => reply({ error: e.message }),
    );
  };
  subscriber.on('message', (from: string, message: string) => {
    if (from === ownRpc) return onRpc(message);
    if (from !== channel) return;
    const event = parseEvent(message, opts.replicaId);
    if (!event) return;
    for (const h of handlers) h(event);
  });
  await subscriber
    .connect()
    .then(() => subscriber.subscribe(channel, ownRpc))
    .catch((e: Error) => opts.log.warn({ state: 'redis', err: e.message }, 'event bus unreachable at start: subscribing when Redis is up'));
  subscriber.on('ready', () => void subscriber.subscribe(channel, ownRpc).catch(() => undefined));
  const admitSha = createHash('sha1').update(ADMIT).digest('hex');
  const local = opts.whenUnavailable === 'local' ? new Limiter(opts.limits, () => clock.now()) : undefined;
  const k = (s: string) => `${opts.prefix}${s}`;
  const { limits } = opts;
  const perMs = limits.calls_per_minute / 60_000;
  const burst = limits.calls_per_minute > 0 ? limits.burst : 0;

  const admit = async (principal: string, service: string, tool: string, ttlMs: number): Promise<Admission> => {
    const id = randomUUID();
    const keys = [k(`rate:${principal}\u0000${service}\u0000${tool}`), k(`calls:${principal}`), k('calls:*')];
    let r: unknown;
    try {
      const args = [
        String(perMs),
        String(burst),
        String(limits.concurrent_per_principal),
        String(limits.concurrent_total),
        id,
        String(ttlMs),
        String(BUCKET_IDLE_MS),
      ];
      r = await redis.evalsha(admitSha, keys.length, ...keys, ...args).catch(async (e: Error) => {
        // A new or restarted Redis does not know the script yet: load it once.
        if (!/NOSCRIPT/.test(e.message)) throw e;
        await redis.script('LOAD', ADMIT);
        return redis.evalsha(admitSha, keys.length, ...keys, ...args);
      });
    } catch {
      return local ? local.admit(principal, service, tool) : { refused: { limit: 'state_unavailable' } };
    }
    if (!Array.isArray(r) || r[0] !== 1) {
      const answer: unknown[] = Array.isArray(r) ? r : [];
      const why = answer[1];
      if (why === 'rate') return { refused: { limit: 'rate', retryAfterS: Number(answer[2]) } };
      if (why === 'concurrency' || why === 'concurrency_total') return { refused: { limit: why } };
      return { refused: { limit: 'state_unavailable' } };
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // Best effort: a slot that cannot be given back lapses after its ttl.
        redis
          .multi()
          .zrem(keys[1]!, id)
          .zrem(keys[2]!, id)
          .exec()
          .catch(() => undefined);
      },
    };
  };

  return {
    kind: 'redis',
    limiter: { admit },
    replay: {
      async firstSight(id, ttlMs) {
        const set = await redis.set(k(`seen:${id}`), '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
        return set === 'OK';
      },
    },
    grants: {
      async grant(key, expiresAtMs) {
        // Redis drops it at its expiry; the stored expiry is compared with the gateway's clock too.
        const ttl = Math.max(1, Math.ceil(expiresAtMs - (opts.clock ?? Date).now()));
        await redis.set(k(`consent:${key}`), String(expiresAtMs), 'PX', ttl);
      },
      async find(key, nowMs) {
        const v = await redis.get(k(`consent:${key}`));
        const until = v === null ? Number.NaN : Number(v);
        return Number.isFinite(until) && until > nowMs ? until : undefined;
      },
    },
    keys: {
      async publish(replicaId, jwks, ttlMs) {
        await redis
          .multi()
          .set(k(`jwks:${replicaId}`), JSON.stringify(jwks), 'PX', ttlMs)
          .sadd(k('jwks-replicas'), replicaId)
          .exec();
      },
      async all(own) {
        const byKid = new Map<string, JWK>();
        for (const key of own.keys) if (key.kid) byKid.set(key.kid, key);
        try {
          const replicas = await redis.smembers(k('jwks-replicas'));
          const docs = replicas.length > 0 ? await redis.mget(...replicas.map((r) => k(`jwks:${r}`))) : [];
          // A replica whose keys have lapsed (it stopped publishing) leaves the set.
          const gone = replicas.filter((_, i) => docs[i] === null);
          if (gone.length > 0) await redis.srem(k('jwks-replicas'), ...gone);
          for (const doc of docs) {
            if (doc === null) continue;
            const parsed: unknown = JSON.parse(doc);
            if (typeof parsed !== 'object' || parsed === null || !('keys' in parsed) || !Array.isArray(parsed.keys)) continue;
            for (const key of parsed.keys as JWK[]) if (typeof key.kid === 'string' && !byKid.has(key.kid)) byKid.set(key.kid, key);
          }
        } catch {
          // Unreachable: this replica's own keys are still right for what it minted.
        }
        return { keys: [...byKid.values()] };
      },
    },
    events: {
      publish(event) {
        redis.publish(channel, JSON.stringify({ origin: opts.replicaId, event })).catch(() => undefined);
      },
      subscribe(handler) {
        handlers.add(handler);
        return () => handlers.delete(handler);
      },
    },
    peers: {
      async request(to, body, timeoutMs) {
        const id = randomUUID();
        const answer = new Promise<unknown>((resolve, reject) => {
          const timer = clock.setTimeout(() => {
            waiting.delete(id);
            reject(new ReplicaUnreachable(to, 'timeout'));
          }, timeoutMs);
          waiting.set(id, { resolve, reject, timer });
        });
        // The answer (or the timeout) may come while PUBLISH is still on its way: handled below.
        answer.catch(() => undefined);
        let listeners: number;
        try {
          listeners = await redis.publish(rpcChannel(to), JSON.stringify({ t: 'req', id, from: opts.replicaId, body }));
        } catch {
          listeners = 0;
        }
        if (listeners === 0) {
          const w = waiting.get(id);
          waiting.delete(id);
          if (w) clock.clearTimeout(w.timer);
          throw new ReplicaUnreachable(to, 'gone');
        }
        return answer;
      },
      serve(handler) {
        serveHandler = handler;
        return () => {
          if (serveHandler === handler) serveHandler = undefined;
        };
      },
    },
    healthy: () => up,
    degradedMode: local ? 'local' : 'refuse',
    close: async () => {
      handlers.clear();
      serveHandler = undefined;
      for (const w of waiting.values()) {
        clock.clearTimeout(w.timer);
        w.reject(new Error('shared state closed'));
      }
      waiting.clear();
      subscriber.disconnect();
      redis.disconnect();
    },
  };
}
