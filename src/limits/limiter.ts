/**
 * Call limits on one gateway process: a token bucket per principal x service x tool (rate), and a
 * ceiling on calls in flight per principal and in all (concurrency). The limits of one process; several
 * replicas share them through Redis (src/state/redis.ts runs the same rules in one script).
 */
import type { LimitsConfig } from '../../schemas/generated/config.js';
import { Holdings } from './keyed.js';

export type LimitRefusal = { limit: 'rate'; retryAfterS: number } | { limit: 'concurrency' } | { limit: 'concurrency_total' };

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets idle this long are full again and are dropped, so memory follows active callers only. */
const IDLE_MS = 10 * 60_000;

export class Limiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly inflight: Holdings;
  private readonly perMs: number;
  private lastSweep: number;

  constructor(
    private readonly cfg: LimitsConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = cfg.calls_per_minute / 60_000;
    this.lastSweep = now();
    const off = Number.POSITIVE_INFINITY;
    this.inflight = new Holdings(cfg.concurrent_per_principal > 0 ? cfg.concurrent_per_principal : off, cfg.concurrent_total > 0 ? cfg.concurrent_total : off);
  }

  /**
   * Admits one call, or says which limit refused it. On admission the caller must call the returned
   * release function when the call ends (it frees the concurrency slot).
   */
  admit(principal: string, service: string, tool: string): { release: () => void } | { refused: LimitRefusal } {
    const t = this.now();
    if (this.cfg.calls_per_minute > 0) {
      const key = `${principal}\u0000${service}\u0000${tool}`;
      let b = this.buckets.get(key);
      if (!b) {
        b = { tokens: this.cfg.burst, at: t };
        this.buckets.set(key, b);
      }
      b.tokens = Math.min(this.cfg.burst, b.tokens + (t - b.at) * this.perMs);
      b.at = t;
      if (b.tokens < 1) return { refused: { limit: 'rate', retryAfterS: Math.ceil((1 - b.tokens) / this.perMs / 1000) } };
      b.tokens -= 1;
      if (t - this.lastSweep > IDLE_MS) this.sweep(t);
    }
    const held = this.inflight.take(principal);
    if ('refused' in held) return { refused: { limit: held.refused === 'per_key' ? 'concurrency' : 'concurrency_total' } };
    return held;
  }

  private sweep(t: number): void {
    this.lastSweep = t;
    for (const [k, b] of this.buckets) if (t - b.at > IDLE_MS) this.buckets.delete(k);
  }
}
