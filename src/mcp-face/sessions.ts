/**
 * 2025-era Streamable HTTP sessions (2025-03-26, 2025-06-18, 2025-11-25). Ids come from
 * crypto.randomUUID (a CSPRNG); each session is bound to the principal that created it, and another
 * principal's session id is answered exactly like an unknown one, so ids cannot be probed. A session
 * id is never authentication: every request carries its own token, verified before it gets here.
 */
import { randomUUID } from 'node:crypto';
import { WebStandardStreamableHTTPServerTransport, type Server } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import type { Principal } from '../types.js';

export interface Session {
  readonly id: string;
  readonly owner: string;
  readonly transport: WebStandardStreamableHTTPServerTransport;
  readonly server: Server;
  lastSeen: number;
}

export interface SessionOptions {
  maxBodyBytes: number;
  idleMs: number;
  max: number;
  clock: Clock;
}

export class Sessions {
  private readonly byId = new Map<string, Session>();
  private sweeper: NodeJS.Timeout;

  constructor(private readonly opts: SessionOptions) {
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

  get full(): boolean {
    return this.byId.size >= this.opts.max;
  }

  /**
   * Opens a session for `principal` served by `server` (from the factory); it is registered when the
   * SDK has initialised it, and forgotten when the transport closes.
   */
  async open(principal: Principal, server: Server): Promise<WebStandardStreamableHTTPServerTransport> {
    const owner = principalKey(principal);
    let id: string | undefined;
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      maxRequestBodySize: this.opts.maxBodyBytes,
      onsessioninitialized: (sid) => {
        id = sid;
        this.byId.set(sid, { id: sid, owner, transport, server, lastSeen: this.opts.clock.now() });
      },
      onsessionclosed: (sid) => {
        this.byId.delete(sid);
      },
    });
    transport.onclose = () => {
      if (id !== undefined) this.byId.delete(id);
    };
    await server.connect(transport);
    return transport;
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
        this.byId.delete(s.id);
        void s.transport.close().catch(() => undefined);
      }
    }
  }
}
