/** The state of one gateway process: nothing to share, nothing outside the process. */
import type { JSONWebKeySet } from 'jose';
import type { LimitsConfig } from '../../schemas/generated/config.js';
import type { Clock } from '../clock.js';
import { Limiter } from '../limits/limiter.js';
import { ReplicaUnreachable, type SharedState } from './state.js';

export function memoryState(limits: LimitsConfig, clock: Clock): SharedState {
  const limiter = new Limiter(limits, () => clock.now());
  const seen = new Map<string, number>();
  let sweptAt = 0;
  const grants = new Map<string, number>();
  let grantsSweptAt = 0;
  return {
    kind: 'memory',
    limiter: { admit: async (principal, service, tool) => limiter.admit(principal, service, tool) },
    replay: {
      async firstSight(id, ttlMs) {
        const now = clock.now();
        if (now - sweptAt > 1000) {
          sweptAt = now;
          for (const [k, until] of seen) if (until <= now) seen.delete(k);
        }
        const until = seen.get(id);
        if (until !== undefined && until > now) return false;
        seen.set(id, now + ttlMs);
        return true;
      },
    },
    grants: {
      async grant(key, expiresAtMs) {
        grants.set(key, expiresAtMs);
      },
      async find(key, nowMs) {
        // Housekeeping by the state's own clock; whether a grant holds is decided at `nowMs`.
        const t = clock.now();
        if (t - grantsSweptAt > 1000) {
          grantsSweptAt = t;
          for (const [k, until] of grants) if (until <= t) grants.delete(k);
        }
        const until = grants.get(key);
        return until !== undefined && until > nowMs ? until : undefined;
      },
    },
    keys: {
      async publish() {},
      async all(own: JSONWebKeySet) {
        return own;
      },
    },
    // One replica: nobody else to tell, nobody else to hear from.
    events: { publish: () => undefined, subscribe: () => () => undefined },
    peers: {
      request: async (to) => {
        throw new ReplicaUnreachable(to, 'gone');
      },
      serve: () => () => undefined,
    },
    healthy: () => true,
    degradedMode: 'refuse',
    close: async () => undefined,
  };
}
