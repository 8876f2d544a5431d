/**
 * 2025-era Streamable HTTP sessions (2025-03-26, 2025-06-18, 2025-11-25). Ids come from
 * crypto.randomUUID (a CSPRNG); each session is bound to the principal that created it, and another
 * principal's session id is answered exactly like an unknown one, so ids cannot be probed. A session
 * id is never authentication: every request carries its own token, verified before it gets here.
 */
import { randomUUID } from 'node:crypto';
import { WebStandardStreamableHTTPServerTransport, type AuthInfo, type Server } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { Holdings } from '../limits/keyed.js';
import type { Principal } from '../types.js';

export interface Session {
  readonly id: string;
  readonly owner: string;
  readonly transport: WebStandardStreamableHTTPServerTransport;
  readonly server: Server;
  lastSeen: number;
  /** Gives the session's place back (per principal and in all). */
  readonly release: () => void;
}

/** What a transport's handleRequest is given besides the request. */
export interface HandleOptions {
  parsedBody: unknown;
  authInfo: AuthInfo;
}

export interface SessionOptions {
  maxBodyBytes: number;
  idleMs: number;
  /** Open sessions in all. */
  max: number;
  /** Open sessions per principal: one principal at its ceiling never takes another's place. */
  maxPerPrincipal: number;
  /** Prefix of every session id (`<replica>-<uuid>`), so a load balancer can route a session home. */
  idPrefix: string;
  clock: Clock;
}

export class Sessions {
  private readonly byId = new Map<string, Session>();
  private readonly places: Holdings;
  private sweeper: NodeJS.Timeout;

  constructor(private readonly opts: SessionOptions) {
    this.places = new Holdings(opts.maxPerPrincipal, opts.max);
    this.sweeper = this.scheduleSweep();
  }

  get size(): number {
    return this.byId.size;
  }

  values(): IterableIterator<Session> {
    return this.byId.values();
  }

  /** The session with this id if `principal` owns it (and marks it used); undefined otherwise. */
  find(id: string, principal: Principal): Session | undefined {
    const s = this.byId.get(id);
    if (!s || s.owner !== principalKey(principal)) return undefined;
    s.lastSeen = this.opts.clock.now();
    return s;
  }

  /**
   * Serves an `initialize` request by opening a session for `principal` on `server` (from the
   * factory). The session takes its place when the SDK has initialised it and gives it back when it
   * closes, is deleted or idles out; an initialize that creates no session takes none. Refused when
   * the principal (or the gateway) is at its ceiling of sessions.
   */
  async initialize(principal: Principal, server: Server, req: Request, handled: HandleOptions): Promise<Response | { refused: 'per_principal' | 'total' }> {
    const owner = principalKey(principal);
    const place = this.places.take(owner);
    if ('refused' in place) return { refused: place.refused === 'per_key' ? 'per_principal' : 'total' };
    let session: Session | undefined;
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => `${this.opts.idPrefix}-${randomUUID()}`,
      maxRequestBodySize: this.opts.maxBodyBytes,
      onsessioninitialized: (sid) => {
        session = { id: sid, owner, transport, server, lastSeen: this.opts.clock.now(), release: place.release };
        this.byId.set(sid, session);
      },
      onsessionclosed: (sid) => this.forget(sid),
    });
    transport.onclose = () => (session ? this.forget(session.id) : place.release());
    await server.connect(transport);
    const res = await transport.handleRequest(req, handled);
    if (session === undefined) {
      place.release();
      void transport.close().catch(() => undefined);
    }
    return res;
  }

  private forget(id: string): void {
    const s = this.byId.get(id);
    if (s === undefined) return;
    this.byId.delete(id);
    s.release();
  }

  async close(): Promise<void> {
    this.opts.clock.clearTimeout(this.sweeper);
    await Promise.all([...this.byId.values()].map((s) => s.transport.close().catch(() => undefined)));
    this.byId.clear();
  }

  private scheduleSweep(): NodeJS.Timeout {
    return this.opts.clock.setTimeout(
      () => {
        this.sweep();
        this.sweeper = this.scheduleSweep();
      },
      Math.min(60_000, this.opts.idleMs),
    );
  }

  /** Closes sessions idle longer than `idleMs`. */
  sweep(): void {
    const cutoff = this.opts.clock.now() - this.opts.idleMs;
    for (const s of this.byId.values()) {
      if (s.lastSeen < cutoff) {
        this.forget(s.id);
        void s.transport.close().catch(() => undefined);
      }
    }
  }
}
