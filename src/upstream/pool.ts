/**
 * Isolated connections to one service (`services.<name>.isolation: principal | session`): one
 * connection (one process for stdio) per key, from a bounded pool. A 2025 service sends its
 * elicitation, sampling and log messages on its connection without naming the call; on a connection
 * that serves one principal (or one agent session) they can only belong to that principal's calls,
 * and one principal's data never enters a process that serves another.
 *
 * Bounded: at most `max` connections; a new key when full closes the least recently used idle one,
 * and with none idle the call is refused. An idle reaper (on the injectable clock) closes connections
 * without calls for `idleMs`.
 */
import { GatewayError } from '../errors.js';
import type { ClientCapabilities } from '@modelcontextprotocol/client';
import type { Clock } from '../clock.js';

/** What the pool needs of a connection. */
export interface Pooled {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Resource subscriptions the connection holds for agents: a connection holding any is never idle
   * (closing it would end them at the service, and its subscribers would hear nothing more).
   */
  readonly subscriptionsHeld?: number;
}

interface Slot<C> {
  conn: C;
  started: Promise<void>;
  lastUsed: number;
  /** Calls holding the connection right now. */
  holders: number;
}

/** No call holds the connection and it holds no subscriptions for agents. */
function idle(s: Slot<Pooled>): boolean {
  return s.holders === 0 && (s.conn.subscriptionsHeld ?? 0) === 0;
}

export interface PoolOptions<C> {
  service: string;
  max: number;
  idleMs: number;
  clock: Clock;
  /** Builds (does not start) the connection for a key, with what its first caller declares (if anything). */
  create: (key: string, capabilities: ClientCapabilities | undefined) => C;
}

export class ConnectionPool<C extends Pooled> {
  private readonly slots = new Map<string, Slot<C>>();
  private reaper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: PoolOptions<C>) {
    this.scheduleReap();
  }

  get size(): number {
    return this.slots.size;
  }

  /**
   * The connection for `key`, held until `release` is called (a held connection is never reaped or
   * evicted). Started on first use. Throws ERR_SERVICE_UNAVAILABLE when the pool is full of busy ones.
   */
  async acquire(key: string, capabilities?: ClientCapabilities): Promise<{ conn: C; release: () => void }> {
    if (this.closed) throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.o.service}" is stopping`, { service: this.o.service });
    let slot = this.slots.get(key);
    if (!slot) {
      if (this.slots.size >= this.o.max && !this.evictIdle()) {
        throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.o.service}": all ${this.o.max} isolated connections are busy; retry shortly`, {
          service: this.o.service,
        });
      }
      const conn = this.o.create(key, capabilities);
      slot = { conn, started: conn.start(), lastUsed: this.o.clock.now(), holders: 0 };
      this.slots.set(key, slot);
    }
    const s = slot;
    s.holders++;
    s.lastUsed = this.o.clock.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      s.holders--;
      s.lastUsed = this.o.clock.now();
    };
    try {
      await s.started;
    } catch (e) {
      release();
      throw e;
    }
    return { conn: s.conn, release };
  }

  /** The connection for `key` if there is one (not held: for a message about state it already has). */
  peek(key: string): C | undefined {
    return this.slots.get(key)?.conn;
  }

  /** Every connection of the pool with its key (held or not). */
  *entries(): IterableIterator<[string, C]> {
    for (const [key, s] of this.slots) yield [key, s.conn];
  }

  /** Closes connections idle for idleMs or longer (called by the reaper; public for tests and drains). */
  reap(): number {
    const cutoff = this.o.clock.now() - this.o.idleMs;
    let n = 0;
    for (const [key, s] of this.slots) {
      if (idle(s) && s.lastUsed <= cutoff) {
        this.drop(key, s);
        n++;
      }
    }
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) this.o.clock.clearTimeout(this.reaper);
    const all = [...this.slots.values()];
    this.slots.clear();
    await Promise.all(all.map((s) => s.conn.stop().catch(() => undefined)));
  }

  /** Closes the least recently used idle connection; false when every one is busy. */
  private evictIdle(): boolean {
    let oldest: [string, Slot<C>] | undefined;
    for (const e of this.slots) if (idle(e[1]) && (!oldest || e[1].lastUsed < oldest[1].lastUsed)) oldest = e;
    if (!oldest) return false;
    this.drop(oldest[0], oldest[1]);
    return true;
  }

  private drop(key: string, s: Slot<C>): void {
    this.slots.delete(key);
    void s.conn.stop().catch(() => undefined);
  }

  private scheduleReap(): void {
    if (this.closed) return;
    this.reaper = this.o.clock.setTimeout(
      () => {
        this.reap();
        this.scheduleReap();
      },
      Math.min(30_000, this.o.idleMs),
    );
  }
}
