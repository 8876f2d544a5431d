/**
 * Fair shares: a ceiling on things held at once and a rate, each per key (a client address, a
 * principal) and, for holdings, in all. One key at its ceiling never takes from another key's share;
 * the global ceiling is there so that many keys together cannot exhaust the process.
 */
import type { Clock } from '../clock.js';

/** A ceiling on what each key (and everyone together) holds at once: connections, bodies, sessions, streams. */
export class Holdings {
  private readonly perKey = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly maxPerKey: number,
    private readonly maxTotal: number = Number.POSITIVE_INFINITY,
  ) {}

  /** Takes one for `key`, or says which ceiling refused; the returned release gives it back (once). */
  take(key: string): { release: () => void } | { refused: 'per_key' | 'total' } {
    const n = this.perKey.get(key) ?? 0;
    if (n >= this.maxPerKey) return { refused: 'per_key' };
    if (this.total >= this.maxTotal) return { refused: 'total' };
    this.perKey.set(key, n + 1);
    this.total++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const m = (this.perKey.get(key) ?? 1) - 1;
        if (m <= 0) this.perKey.delete(key);
        else this.perKey.set(key, m);
      },
    };
  }

  held(key: string): number {
    return this.perKey.get(key) ?? 0;
  }

  get size(): number {
    return this.total;
  }
}

/** A token bucket per key: `perMinute` sustained, `burst` at once; idle keys are forgotten. */
export class KeyedRate {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;
  private lastSweep: number;

  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    private readonly clock: Pick<Clock, 'now'>,
  ) {
    this.perMs = perMinute / 60_000;
    this.lastSweep = clock.now();
  }

  /** Whether `key` has a token left now (without taking one). */
  allows(key: string): boolean {
    return this.level(key, this.clock.now()) >= 1;
  }

  /** Takes a token for `key`; false (and seconds until the next one) when there is none. */
  take(key: string): { ok: true } | { ok: false; retryAfterS: number } {
    const t = this.clock.now();
    const level = this.level(key, t);
    if (level < 1) return { ok: false, retryAfterS: Math.max(1, Math.ceil((1 - level) / this.perMs / 1000)) };
    this.buckets.set(key, { tokens: level - 1, at: t });
    if (t - this.lastSweep > 60_000) this.sweep(t);
    return { ok: true };
  }

  private level(key: string, t: number): number {
    const b = this.buckets.get(key);
    return b === undefined ? this.burst : Math.min(this.burst, b.tokens + (t - b.at) * this.perMs);
  }

  /** Buckets full again are forgotten, so memory follows active keys only (an address flood passes). */
  private sweep(t: number): void {
    this.lastSweep = t;
    for (const [k, b] of this.buckets) if (b.tokens + (t - b.at) * this.perMs >= this.burst) this.buckets.delete(k);
  }

  get enabled(): boolean {
    return this.perMinute > 0;
  }
}
