/**
 * Overflow connections of a shared 2025-era service (`services.<name>.overflow`).
 *
 * A 2025 service asks for input (elicitation, sampling) on its connection without naming the call,
 * so a question is attributed only when exactly one call is in flight there (upstream/connection).
 * A call whose agent never answers (an abandoned `input_required` round parks it up to the input TTL)
 * would keep that connection ambiguous for every later call. So a connection waiting for an agent
 * takes no new calls: they go to another connection of the same service (another process for stdio,
 * another session for http) from a bounded pool with an idle reaper. Calls already in flight on it
 * when the question came stay ambiguous with it; that window is bounded by those calls, not by the TTL.
 *
 * A tool that has asked for input before (seen asking on any of the service's connections; or suspected:
 * in flight beside others when a question came, until it runs alone to its end without asking) gets a
 * connection with no other call in flight, so many agents can be asked at once, each on its own
 * connection; other calls avoid a connection where such a tool runs. Both are preferences within the bound: past it a call
 * shares the least busy connection that is not waiting (a question it raises may then be refused as
 * ambiguous, never misrouted). Only when every connection waits and the bound is reached is a call
 * refused. Lists and subscriptions stay on the main connection (the caller routes them there).
 */
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { ConnectionPool, type Pooled } from './pool.js';

/** What the router needs of a connection. */
export interface Routable extends Pooled {
  readonly era: 'legacy' | 'modern' | undefined;
  readonly state: string;
  /** Input requests handed to an agent and not answered yet. */
  readonly waiting: number;
  /** `asking`: the service sent an input request on this connection. */
  on(event: 'asking', listener: () => void): unknown;
}

export interface OverflowOptions<C extends Routable> {
  service: string;
  /** The service's main connection (lists, subscriptions, and calls while it is not waiting). */
  main: C;
  /** Overflow connections at most, besides the main one; 0: every call on the main connection. */
  max: number;
  idleMs: number;
  clock: Clock;
  /** Builds (does not start) one overflow connection. */
  create: (key: string) => C;
}

/** A call to route: its tool's policy name (a prompt's, prefixed `prompt `); undefined for a request that takes no questions (a read, a completion). */
export interface RoutedCall {
  name: string | undefined;
}

/** One call a connection carries: its tool (if any), whether another call shared the connection meanwhile, whether a question came. */
interface Held {
  name: string | undefined;
  shared: boolean;
  asked: boolean;
}

export class OverflowRouter<C extends Routable> {
  private readonly pool: ConnectionPool<C>;
  /** The calls each connection carries now. */
  private readonly held = new Map<C, Held[]>();
  /** Tools seen asking while alone on their connection (bounded by the service's list). */
  private readonly askers = new Set<string>();
  /**
   * Tools in flight beside others when a question came: one of them asked. Routed like askers until
   * one runs alone to its end without a question (then it is cleared), so a burst of ambiguous
   * questions does not keep every tool on connections of its own for good.
   */
  private readonly suspects = new Set<string>();
  private seq = 0;

  constructor(private readonly o: OverflowOptions<C>) {
    o.main.on('asking', () => this.asked(o.main));
    this.pool = new ConnectionPool<C>({
      service: o.service,
      max: Math.max(1, o.max),
      idleMs: o.idleMs,
      clock: o.clock,
      create: (key) => {
        const c = o.create(key);
        c.on('asking', () => this.asked(c));
        return c;
      },
    });
  }

  /** Overflow connections open now (besides the main one). */
  get size(): number {
    return this.pool.size;
  }

  /** What is known of a tool: seen asking alone, suspected (in flight when an ambiguous question came), or nothing. */
  learned(name: string): 'asks' | 'suspected' | undefined {
    return this.askers.has(name) ? 'asks' : this.suspects.has(name) ? 'suspected' : undefined;
  }

  /**
   * The connection for one call, held until `release`. Throws ERR_SERVICE_UNAVAILABLE when every
   * connection waits for an agent and the bound is reached.
   */
  async acquire(call: RoutedCall): Promise<{ conn: C; release: () => void }> {
    const { main } = this.o;
    // A 2026 service names the call in every request it makes; a service not connected yet is waited for on main.
    if (this.o.max === 0 || main.era !== 'legacy') return this.hold(main, undefined, call.name);
    const open: Array<{ key: string | undefined; conn: C }> = [{ key: undefined, conn: main }];
    for (const [key, conn] of this.pool.entries()) if (conn.state !== 'down' && conn.state !== 'stopped') open.push({ key, conn });
    const ready = open.filter((e) => e.conn.waiting === 0);
    const calls = (c: C) => this.held.get(c)?.length ?? 0;
    const mayAsk = (n: string | undefined) => n !== undefined && (this.askers.has(n) || this.suspects.has(n));
    const asking = (c: C) => this.held.get(c)?.some((h) => mayAsk(h.name)) === true;
    const alone = mayAsk(call.name);
    const free = ready.find((e) => (alone ? calls(e.conn) === 0 : !asking(e.conn)));
    if (free) return this.hold(free.key === undefined ? main : undefined, free.key, call.name);
    if (this.pool.size < this.o.max) return this.hold(undefined, `overflow-${++this.seq}`, call.name);
    // Past the bound: the least busy connection that is not waiting.
    const least = ready.reduce<(typeof ready)[number] | undefined>((best, e) => (best && calls(best.conn) <= calls(e.conn) ? best : e), undefined);
    if (least) return this.hold(least.key === undefined ? main : undefined, least.key, call.name);
    throw new GatewayError(
      'ERR_SERVICE_UNAVAILABLE',
      `service "${this.o.service}": all ${this.o.max + 1} connections are waiting for agents to answer input requests (overflow.max ${this.o.max}); retry shortly`,
      { service: this.o.service, reason: 'overflow_full' },
    );
  }

  /** Closes every overflow connection (the main one belongs to the caller). */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** Closes overflow connections idle for idleMs (the pool's reaper does this on the clock; public for tests). */
  reap(): number {
    return this.pool.reap();
  }

  /** Holds `conn` (main) or the pool's connection `key` (created on first use) for one call; synchronous up to the start. */
  private async hold(conn: C | undefined, key: string | undefined, name: string | undefined): Promise<{ conn: C; release: () => void }> {
    const pooled = key === undefined ? undefined : this.pool.acquire(key);
    // The pool made (or found) the slot synchronously: count the call now, before anything awaits.
    const c = conn ?? (key === undefined ? undefined : this.pool.peek(key));
    if (c === undefined) return pooled ?? Promise.reject(new Error('no connection to hold'));
    const calls = this.held.get(c) ?? [];
    for (const other of calls) other.shared = true;
    const h: Held = { name, shared: calls.length > 0, asked: false };
    calls.push(h);
    this.held.set(c, calls);
    let released = false;
    const unhold = () => {
      if (released) return;
      released = true;
      calls.splice(calls.indexOf(h), 1);
      if (calls.length === 0 && this.held.get(c) === calls) this.held.delete(c);
      // Alone from start to end, and no question: this one was not the asker.
      if (h.name !== undefined && !h.shared && !h.asked) this.suspects.delete(h.name);
    };
    if (!pooled) return { conn: c, release: unhold };
    try {
      const got = await pooled;
      return {
        conn: got.conn,
        release: () => {
          unhold();
          got.release();
        },
      };
    } catch (e) {
      unhold();
      throw e;
    }
  }

  /** An input request arrived on `conn`: the call it carries asked, or (several) one of them did. */
  private asked(conn: C): void {
    const calls = this.held.get(conn) ?? [];
    for (const h of calls) h.asked = true;
    const [only] = calls;
    if (calls.length === 1 && only?.name !== undefined) {
      this.askers.add(only.name);
      this.suspects.delete(only.name);
      return;
    }
    for (const h of calls) if (h.name !== undefined && !this.askers.has(h.name)) this.suspects.add(h.name);
  }
}
