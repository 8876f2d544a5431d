/**
 * One /mcp endpoint, both protocol eras, behind the HTTP edge (which has authenticated the request
 * and classified its era):
 * - 2026-07-28: stateless; the SDK's createMcpHandler (strict modern leg) serves each request from a
 *   fresh Server (server/discover, _meta envelope, Mcp-Method/Mcp-Name checks, subscriptions/listen).
 * - 2025-03-26 / 2025-06-18 / 2025-11-25: sessions bound to their principal (sessions.ts).
 */
import { createMcpHandler, type McpHttpHandler } from '@modelcontextprotocol/server';
import type { Clock } from '../clock.js';
import type { Logger } from '../types.js';
import type { ChangeKind } from '../upstream/catalog.js';
import { authInfoFor, callContextOf, type EdgeFacts } from './request-context.js';
import { buildServer, type FaceDeps } from './server.js';
import { Sessions } from './sessions.js';

export interface FaceOptions {
  maxBodyBytes: number;
  sessionIdleMs: number;
  maxSessions: number;
  log: Logger;
  clock: Clock;
}

export class McpFace {
  private readonly modern: McpHttpHandler;
  private readonly sessions: Sessions;
  private readonly deps: FaceDeps;

  constructor(pipeline: Omit<FaceDeps, 'contextOf'>, opts: FaceOptions) {
    this.deps = { ...pipeline, contextOf: callContextOf };
    this.modern = createMcpHandler(() => buildServer(this.deps), {
      legacy: 'reject',
      maxRequestBodySize: opts.maxBodyBytes,
      onerror: (e) => opts.log.debug({ err: e.message }, 'mcp handler'),
    });
    this.sessions = new Sessions({ maxBodyBytes: opts.maxBodyBytes, idleMs: opts.sessionIdleMs, max: opts.maxSessions, clock: opts.clock });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Serves one authenticated request whose era the edge has classified. */
  async handle(req: Request, facts: EdgeFacts, parsedBody: unknown): Promise<Response> {
    const authInfo = authInfoFor(facts);
    if (facts.era === 'modern') return this.modern.fetch(req, { authInfo, parsedBody });
    const sid = req.headers.get('mcp-session-id');
    if (sid) {
      const s = this.sessions.find(sid, facts.principal);
      // Unknown, expired, or another principal's: the same answer, so ids cannot be probed.
      if (!s) return jsonRpcError(404, -32001, 'Session not found');
      return s.transport.handleRequest(req, { parsedBody, authInfo });
    }
    if (req.method !== 'POST') return jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (!isInitialize(parsedBody)) return jsonRpcError(400, -32000, 'Bad Request: no session; send initialize first');
    if (this.sessions.full) return jsonRpcError(503, -32000, 'Too many sessions; try again later');
    const transport = await this.sessions.open(facts.principal, buildServer(this.deps));
    return transport.handleRequest(req, { parsedBody, authInfo });
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

function isInitialize(body: unknown): boolean {
  const one: unknown = Array.isArray(body) ? body[0] : body;
  return typeof one === 'object' && one !== null && 'method' in one && one.method === 'initialize';
}

/** A JSON-RPC error answered before any MCP server sees the request. */
export function jsonRpcError(status: number, code: number, message: string): Response {
  return Response.json({ jsonrpc: '2.0', error: { code, message }, id: null }, { status });
}
