/**
 * One /mcp endpoint, both protocol eras, behind the HTTP edge (which has authenticated the request
 * and classified its era):
 * - 2026-07-28: stateless; the SDK's createMcpHandler (strict modern leg) serves each request from a
 *   fresh Server (server/discover, _meta envelope, Mcp-Method/Mcp-Name checks, subscriptions/listen).
 *   A subscriptions/listen that names resources gets a handler (and event bus) of its own: each URI
 *   is decided by policy first and the acknowledgement lists only those granted, and an update
 *   reaches that stream only (pipeline/subscriptions decides whom to tell), never every stream.
 * - 2025-03-26 / 2025-06-18 / 2025-11-25: sessions bound to their principal (sessions.ts).
 */
import { type AuthInfo, createMcpHandler, type CreateMcpHandlerOptions, InMemoryServerEventBus, type McpHttpHandler } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { Holdings } from '../limits/keyed.js';
import type { Logger } from '../types.js';
import type { ChangeKind } from '../upstream/catalog.js';
import type { RequestScope } from '../pipeline/call-pipeline.js';
import { authInfoFor, callContextOf, type EdgeFacts, edgeContext } from './request-context.js';
import { buildServer, type FaceDeps } from './server.js';
import { Sessions } from './sessions.js';
import { isRecord } from '../canonical.js';

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
  /** The handlers of the open listen streams that name resources (one each). */
  private readonly resourceStreams = new Set<McpHttpHandler>();
  private readonly handlerOptions: CreateMcpHandlerOptions;
  private readonly sessions: Sessions;
  private readonly streams: Holdings;
  private readonly deps: FaceDeps;
  private readonly onLimited: NonNullable<FaceOptions['onLimited']>;
  /** The Server for one 2026-07-28 request (that era's handlers only). */
  private readonly modernServer = () => buildServer(this.deps, { subscriptions: true, modern: true });

  constructor(pipeline: Omit<FaceDeps, 'contextOf'>, opts: FaceOptions) {
    this.onLimited = opts.onLimited ?? (() => undefined);
    this.deps = { ...pipeline, contextOf: callContextOf };
    this.handlerOptions = {
      legacy: 'reject',
      maxRequestBodySize: opts.maxBodyBytes,
      onerror: (e) => opts.log.debug({ err: e.message }, 'mcp handler'),
    };
    this.modern = createMcpHandler(this.modernServer, this.handlerOptions);
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
      const named = resourceListen(parsedBody);
      // Only list changes asked for (or a filter the SDK will refuse): the shared handler serves it.
      if (named === undefined) return this.stream(facts, () => this.modern.fetch(req, { authInfo, parsedBody }));
      if (named === 'malformed') {
        const message = 'Invalid params: notifications.resourceSubscriptions must be a list of resource URIs (strings)';
        await this.deps.probes.refused(edgeContext(facts, null), { method: 'subscriptions/listen', code: 'ERR_BAD_REQUEST', message });
        return Response.json({ jsonrpc: '2.0', id: requestIdOf(parsedBody), error: { code: -32602, message } }, { status: 400 });
      }
      return this.stream(facts, () => this.listenToResources(req, facts, authInfo, named.body, named.uris));
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

  /**
   * A 2026-07-28 subscriptions/listen naming resources (`uris`): each decided by policy and recorded
   * (pipeline/subscriptions) before the SDK acknowledges the stream with only the granted ones. The
   * stream has a handler of its own, so an update published for it reaches it alone; its
   * subscriptions end when it ends (closed by the agent, cancelled, or the gateway shutting down).
   */
  private async listenToResources(req: Request, facts: EdgeFacts, authInfo: AuthInfo, body: ListenBody, uris: string[]): Promise<Response> {
    const handler = createMcpHandler(this.modernServer, { ...this.handlerOptions, bus: new InMemoryServerEventBus() });
    // The agent whose subscriptions these are: this stream.
    const stream = {};
    const scope: RequestScope = { mcpReq: { _meta: agentMeta(body.params._meta), signal: req.signal, notify: async () => undefined } };
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.resourceStreams.delete(handler);
      this.deps.subscriptions.dropAgent(stream);
      void handler.close().catch(() => undefined);
    };
    // The agent gone (while its URIs are decided, or later): a body nobody reads would end nowhere else.
    req.signal.addEventListener('abort', end, { once: true });
    const granted = await this.deps.subscriptions.listen(stream, edgeContext(facts, null), uris, scope, (uri) => handler.notify.resourceUpdated(uri));
    if (ended || req.signal.aborted) {
      // Gone while its URIs were decided: the rest were not decided, nothing was kept (pipeline/subscriptions).
      end();
      return new Response(null, { status: 499 });
    }
    this.resourceStreams.add(handler);
    const notifications = { ...body.params.notifications, resourceSubscriptions: granted };
    let res: Response;
    try {
      res = await handler.fetch(req, { authInfo, parsedBody: { ...body, params: { ...body.params, notifications } } });
    } catch (e) {
      end();
      throw e;
    }
    if (res.body === null || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      end();
      return res;
    }
    return new Response(releasedAtEnd(res.body, end), { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  /** Tells every agent that a list changed (2025 sessions: list_changed; 2026: subscriptions/listen streams). */
  listChanged(kind: ChangeKind): void {
    for (const h of [this.modern, ...this.resourceStreams]) {
      if (kind === 'tools') h.notify.toolsChanged();
      if (kind === 'prompts') h.notify.promptsChanged();
      if (kind === 'resources') h.notify.resourcesChanged();
    }
    for (const s of this.sessions.values()) {
      const sent =
        kind === 'tools' ? s.server.sendToolListChanged() : kind === 'prompts' ? s.server.sendPromptListChanged() : s.server.sendResourceListChanged();
      void Promise.resolve(sent).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.resourceStreams].map((h) => h.close()));
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

/** A subscriptions/listen body as far as the gateway reads it (the SDK validates the rest). */
interface ListenBody {
  params: { notifications: Record<string, unknown>; _meta?: unknown };
}

/**
 * A listen body and the resource URIs it names; undefined when it names none (the SDK answers the
 * rest: list changes, or a filter it refuses), 'malformed' when they are not a list of strings.
 */
function resourceListen(body: unknown): { body: ListenBody & Record<string, unknown>; uris: string[] } | 'malformed' | undefined {
  if (!isRecord(body) || !isRecord(body.params) || !isRecord(body.params.notifications)) return undefined;
  const uris: unknown = body.params.notifications.resourceSubscriptions;
  if (uris === undefined || (Array.isArray(uris) && uris.length === 0)) return undefined;
  if (!Array.isArray(uris) || !uris.every((u) => typeof u === 'string')) return 'malformed';
  return { body: { ...body, params: { ...body.params, notifications: body.params.notifications } }, uris };
}

/** The JSON-RPC id of a request body, to answer it (null when it has none that JSON-RPC allows). */
function requestIdOf(body: unknown): string | number | null {
  const id = isRecord(body) ? body.id : undefined;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

/** The agent's own `_meta` keys of a request (the protocol envelope and progress token left out), as a handler sees them. */
function agentMeta(meta: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!isRecord(meta)) return out;
  for (const [k, v] of Object.entries(meta)) if (!k.startsWith('io.modelcontextprotocol/') && k !== 'progressToken') out[k] = v;
  return out;
}

function isInitialize(body: unknown): boolean {
  const one: unknown = Array.isArray(body) ? body[0] : body;
  return typeof one === 'object' && one !== null && 'method' in one && one.method === 'initialize';
}

/** A JSON-RPC error answered before any MCP server sees the request. */
export function jsonRpcError(status: number, code: number, message: string): Response {
  return Response.json({ jsonrpc: '2.0', error: { code, message }, id: null }, { status });
}
