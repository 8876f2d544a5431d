/**
 * One /mcp endpoint, both protocol eras:
 * - 2026-07-28: stateless; the SDK's createMcpHandler (strict modern leg) serves each request from a
 *   fresh Server (server/discover, _meta envelope, Mcp-Method/Mcp-Name checks, subscriptions/listen).
 * - 2025-03-26 / 2025-06-18 / 2025-11-25: sessions. Ids come from crypto.randomUUID (a CSPRNG); each
 *   session is bound to the principal that created it, and another principal's session id is answered
 *   404 exactly like an unknown one. A session id is never authentication: every request carries its
 *   own token, verified before it reaches this file.
 */
import { randomUUID } from 'node:crypto';
import {
  createMcpHandler,
  isLegacyRequest,
  WebStandardStreamableHTTPServerTransport,
  type AuthInfo,
  type McpHttpHandler,
  type Server,
  type ServerContext,
} from '@modelcontextprotocol/server';
import type { Logger, Principal } from '../types.js';
import type { Gateway } from './gateway.js';
import type { StatePort } from './ports.js';
import { buildServer } from './server.js';
import type { ChangeKind } from '../catalog/catalog.js';

/** What the HTTP edge established about one request before handing it to the front. */
export interface RequestFacts {
  principal: Principal;
  requestId: string;
  clientIp: string | null;
  parsedBody: unknown;
}

interface Session {
  id: string;
  owner: string;
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  lastSeen: number;
}

export interface FrontOptions {
  maxBodyBytes: number;
  sessionIdleMs: number;
  maxSessions: number;
  log: Logger;
}

const ownerKey = (p: Principal) => `${p.issuer}\u0000${p.id}`;

/** The request's facts travel to handlers inside AuthInfo.extra (the SDK passes it through untouched). */
function authInfoFor(f: RequestFacts): AuthInfo {
  return {
    token: '', // never the agent's token: nothing downstream needs it
    clientId: f.principal.client.id ?? '',
    scopes: f.principal.scopes,
    ...(f.principal.expires_at ? { expiresAt: f.principal.expires_at } : {}),
    extra: { principal: f.principal, requestId: f.requestId, clientIp: f.clientIp },
  };
}

function factsOf(ctx: ServerContext): { principal: Principal; requestId: string; clientIp: string | null } {
  const extra = ctx.http?.authInfo?.extra as { principal?: Principal; requestId?: string; clientIp?: string | null } | undefined;
  if (!extra?.principal) throw new Error('request reached a handler without an authenticated principal');
  return { principal: extra.principal, requestId: extra.requestId ?? 'unknown', clientIp: extra.clientIp ?? null };
}

export class McpFront {
  private readonly modern: McpHttpHandler;
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly gw: Gateway,
    private readonly state: StatePort,
    private readonly opts: FrontOptions,
  ) {
    this.modern = createMcpHandler(
      () =>
        buildServer(gw, state, {
          era: 'modern',
          principalOf: (ctx) => factsOf(ctx).principal,
          sessionId: () => null,
          requestIdOf: (ctx) => factsOf(ctx).requestId,
          clientIpOf: (ctx) => factsOf(ctx).clientIp,
        }),
      {
        legacy: 'reject',
        maxRequestBodySize: opts.maxBodyBytes,
        onerror: (e) => opts.log.debug({ err: e.message }, 'mcp handler'),
      },
    );
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, opts.sessionIdleMs)).unref();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  async handle(req: Request, facts: RequestFacts): Promise<Response> {
    const authInfo = authInfoFor(facts);
    if (!(await isLegacyRequest(req, facts.parsedBody, { maxRequestBodySize: this.opts.maxBodyBytes }))) {
      return this.modern.fetch(req, { authInfo, parsedBody: facts.parsedBody });
    }
    return this.legacy(req, facts, authInfo);
  }

  /** Tells every agent that a list changed (2025 sessions: list_changed; 2026: subscriptions/listen streams). */
  listChanged(kind: ChangeKind): void {
    if (kind === 'tools') this.modern.notify.toolsChanged();
    if (kind === 'prompts') this.modern.notify.promptsChanged();
    if (kind === 'resources') this.modern.notify.resourcesChanged();
    for (const s of this.sessions.values()) {
      const send =
        kind === 'tools' ? s.server.sendToolListChanged() : kind === 'prompts' ? s.server.sendPromptListChanged() : s.server.sendResourceListChanged();
      void Promise.resolve(send).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.modern.close();
    await Promise.all([...this.sessions.values()].map((s) => s.transport.close().catch(() => undefined)));
    this.sessions.clear();
  }

  private async legacy(req: Request, facts: RequestFacts, authInfo: AuthInfo): Promise<Response> {
    const sid = req.headers.get('mcp-session-id');
    if (sid) {
      const s = this.sessions.get(sid);
      if (!s || s.owner !== ownerKey(facts.principal)) {
        // Unknown, expired, or another principal's: the same answer, so ids cannot be probed.
        return jsonRpcError(404, -32001, 'Session not found');
      }
      s.lastSeen = Date.now();
      return s.transport.handleRequest(req, { parsedBody: facts.parsedBody, authInfo });
    }
    if (req.method !== 'POST') return jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (!isInitialize(facts.parsedBody)) return jsonRpcError(400, -32000, 'Bad Request: no session; send initialize first');
    if (this.sessions.size >= this.opts.maxSessions) return jsonRpcError(503, -32000, 'Too many sessions; try again later');

    let session: Session | undefined;
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      maxRequestBodySize: this.opts.maxBodyBytes,
      onsessioninitialized: (id) => {
        session = { id, owner: ownerKey(facts.principal), transport, server, lastSeen: Date.now() };
        this.sessions.set(id, session);
      },
      onsessionclosed: (id) => {
        this.sessions.delete(id);
      },
    });
    const server = buildServer(this.gw, this.state, {
      era: 'legacy',
      principalOf: (ctx) => factsOf(ctx).principal,
      sessionId: () => session?.id ?? null,
      requestIdOf: (ctx) => factsOf(ctx).requestId,
      clientIpOf: (ctx) => factsOf(ctx).clientIp,
    });
    transport.onclose = () => {
      if (session) this.sessions.delete(session.id);
    };
    await server.connect(transport);
    return transport.handleRequest(req, { parsedBody: facts.parsedBody, authInfo });
  }

  private sweep(): void {
    const cutoff = Date.now() - this.opts.sessionIdleMs;
    for (const s of this.sessions.values()) {
      if (s.lastSeen < cutoff) {
        this.sessions.delete(s.id);
        void s.transport.close().catch(() => undefined);
      }
    }
  }
}

function isInitialize(body: unknown): boolean {
  const one = Array.isArray(body) ? body[0] : body;
  return !!one && typeof one === 'object' && (one as { method?: unknown }).method === 'initialize';
}

export function jsonRpcError(status: number, code: number, message: string, data?: Record<string, unknown>): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message, ...(data ? { data } : {}) }, id: null }), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}
