/**
 * One /mcp endpoint, both protocol eras, behind the HTTP edge (which has authenticated the request
 * and classified its era):
 * - 2026-07-28: stateless; the SDK's createMcpHandler (strict modern leg) serves each request from a
 *   fresh Server (server/discover, _meta envelope, Mcp-Method/Mcp-Name checks, subscriptions/listen).
 * - 2025-03-26 / 2025-06-18 / 2025-11-25: sessions bound to their principal (sessions.ts).
 */
import { createMcpHandler, type McpHttpHandler } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { Holdings } from '../limits/keyed.js';
import type { Logger } from '../types.js';
import type { ChangeKind } from '../upstream/catalog.js';
import { authInfoFor, callContextOf, type EdgeFacts } from './request-context.js';
import { buildServer, type FaceDeps } from './server.js';
import { Sessions } from './sessions.js';

export interface FaceOptions {
  maxBodyBytes: number;
  sessionIdleMs: number;
  maxSessions: number;
  maxSessionsPerPrincipal: number;
  /** Server-to-client streams (2025 GET streams, 2026 subscriptions/listen) per principal and in all. */
  maxStreamsPerPrincipal: number;
  maxStreams: number;
  /** This replica's name: 2025 session ids start with it. */
  replicaId: string;
  log: Logger;
  clock: Clock;
  /** Told of each session or stream refused by its ceiling (metrics count limit refusals by cause). */
  onLimited?: (limit: 'sessions_per_principal' | 'sessions' | 'streams_per_principal' | 'streams') => void;
}

export class McpFace {
  private readonly modern: McpHttpHandler;
  private readonly sessions: Sessions;
  private readonly streams: Holdings;
  private readonly deps: FaceDeps;
  private readonly onLimited: NonNullable<FaceOptions['onLimited']>;

  constructor(pipeline: Omit<FaceDeps, 'contextOf'>, opts: FaceOptions) {
    this.onLimited = opts.onLimited ?? (() => undefined);
    this.deps = { ...pipeline, contextOf: callContextOf };
    this.modern = createMcpHandler(() => buildServer(this.deps, { subscriptions: false }), {
      legacy: 'reject',
      maxRequestBodySize: opts.maxBodyBytes,
      onerror: (e) => opts.log.debug({ err: e.message }, 'mcp handler'),
    });
    this.sessions = new Sessions({
      maxBodyBytes: opts.maxBodyBytes,
      idleMs: opts.sessionIdleMs,
      max: opts.maxSessions,
      maxPerPrincipal: opts.maxSessionsPerPrincipal,
      idPrefix: opts.replicaId,
      clock: opts.clock,
    });
    this.streams = new Holdings(opts.maxStreamsPerPrincipal, opts.maxStreams);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Serves one authenticated request whose era the edge has classified. */
  async handle(req: Request, facts: EdgeFacts, parsedBody: unknown): Promise<Response> {
    const authInfo = authInfoFor(facts);
    if (facts.era === 'modern') {
      if (!isListen(parsedBody)) return this.modern.fetch(req, { authInfo, parsedBody });
      return this.stream(facts, () => this.modern.fetch(req, { authInfo, parsedBody }));
    }
    const sid = req.headers.get('mcp-session-id');
    if (sid) {
      const s = this.sessions.find(sid, facts.principal);
      // Unknown, expired, or another principal's: the same answer, so ids cannot be probed.
      if (!s) return jsonRpcError(404, -32001, 'Session not found');
      if (req.method !== 'GET') return s.transport.handleRequest(req, { parsedBody, authInfo });
      return this.stream(facts, () => s.transport.handleRequest(req, { parsedBody, authInfo }));
    }
    if (req.method !== 'POST') return jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (!isInitialize(parsedBody)) return jsonRpcError(400, -32000, 'Bad Request: no session; send initialize first');
    const r = await this.sessions.initialize(facts.principal, buildServer(this.deps), req, { parsedBody, authInfo });
    if (r instanceof Response) return r;
    this.onLimited(r.refused === 'per_principal' ? 'sessions_per_principal' : 'sessions');
    return r.refused === 'per_principal'
      ? jsonRpcError(429, -32029, 'Too many sessions for this principal; end one (DELETE) first')
      : jsonRpcError(503, -32000, 'Too many sessions; try again later');
  }

  /**
   * A long-lived server-to-client stream, counted per principal and in all while it is open: its
   * place is given back when the stream ends or the client goes away.
   */
  private async stream(facts: EdgeFacts, open: () => Promise<Response>): Promise<Response> {
    const place = this.streams.take(principalKey(facts.principal));
    if ('refused' in place) {
      this.onLimited(place.refused === 'per_key' ? 'streams_per_principal' : 'streams');
      return place.refused === 'per_key'
        ? jsonRpcError(429, -32029, 'Too many open streams for this principal; close one first')
        : jsonRpcError(503, -32000, 'Too many open streams; try again later');
    }
    let res: Response;
    try {
      res = await open();
    } catch (e) {
      place.release();
      throw e;
    }
    if (res.body === null || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      place.release();
      return res;
    }
    return new Response(releasedAtEnd(res.body, place.release), { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  /** Tells every agent that a list changed (2025 sessions: list_changed; 2026: subscriptions/listen streams). */
  listChanged(kind: ChangeKind): void {
    if (kind === 'tools') this.modern.notify.toolsChanged();
    if (kind === 'prompts') this.modern.notify.promptsChanged();
    if (kind === 'resources') this.modern.notify.resourcesChanged();
    for (const s of this.sessions.values()) {
      const sent =
        kind === 'tools' ? s.server.sendToolListChanged() : kind === 'prompts' ? s.server.sendPromptListChanged() : s.server.sendResourceListChanged();
      void Promise.resolve(sent).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.modern.close();
    await this.sessions.close();
  }
}

/** The stream relays `body` and calls `release` once when it ends, fails or is cancelled by the reader. */
function releasedAtEnd(body: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          ctl.close();
        } else ctl.enqueue(value);
      } catch (e) {
        release();
        ctl.error(e);
      }
    },
    async cancel(reason) {
      release();
      await reader.cancel(reason);
    },
  });
}

function isListen(body: unknown): boolean {
  return typeof body === 'object' && body !== null && 'method' in body && body.method === 'subscriptions/listen';
}

function isInitialize(body: unknown): boolean {
  const one: unknown = Array.isArray(body) ? body[0] : body;
  return typeof one === 'object' && one !== null && 'method' in one && one.method === 'initialize';
}

/** A JSON-RPC error answered before any MCP server sees the request. */
export function jsonRpcError(status: number, code: number, message: string): Response {
  return Response.json({ jsonrpc: '2.0', error: { code, message }, id: null }, { status });
}
