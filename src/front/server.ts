/**
 * The MCP face: one low-level SDK `Server` whose handlers walk the gateway's data path. Built per
 * 2026-era request (stateless) or per 2025-era session; either way it holds no catalog copy, only
 * handler closures over the shared Gateway.
 */
import { Server } from '@modelcontextprotocol/server';
import type { ServerContext } from '@modelcontextprotocol/server';
import type { Principal } from '../types.js';
import { principalKey } from '../auth/state.js';
import type { CallContext, Gateway } from './gateway.js';
import type { StatePort } from './ports.js';

export const SERVER_INFO = { name: 'micro-mcp', version: '0.1.0' };

const INSTRUCTIONS =
  'Micro-MCP gateway. Tools are namespaced by service (fs.read, http.fetchText, ...). Every call is decided by policy; ' +
  `declare why you call a tool in params._meta["micro-mcp/purpose"] when a policy asks for a purpose.`;

/** Everything that depends on the caller is private and not cached: lists are filtered per principal. */
const PRIVATE = { ttlMs: 0, cacheScope: 'private' as const };

export interface FaceContext {
  era: 'legacy' | 'modern';
  /** The principal of the request being served (per request: each request is authenticated on its own). */
  principalOf: (ctx: ServerContext) => Principal;
  sessionId: () => string | null;
  requestIdOf: (ctx: ServerContext) => string;
  clientIpOf: (ctx: ServerContext) => string | null;
}

export function buildServer(gw: Gateway, state: StatePort, face: FaceContext): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { listChanged: true },
    },
    instructions: INSTRUCTIONS,
    cacheHints: {
      'tools/list': PRIVATE,
      'prompts/list': PRIVATE,
      'resources/list': PRIVATE,
      'resources/templates/list': PRIVATE,
      'resources/read': PRIVATE,
    },
    requestState: {
      // Our requestState is signed and bound to the principal; anything else is refused before a handler runs.
      verify: (token, ctx) => state.verify(principalKey(face.principalOf(ctx)), token),
    },
  });
  const cc = (ctx: ServerContext): CallContext => ({
    principal: face.principalOf(ctx),
    era: face.era,
    sessionId: face.sessionId(),
    requestId: face.requestIdOf(ctx),
    clientIp: face.clientIpOf(ctx),
  });
  const p = (x: unknown) => (x ?? {}) as Record<string, unknown>;
  server.setRequestHandler('tools/list', (req, ctx) => gw.listTools(cc(ctx), req.params) as never);
  server.setRequestHandler('tools/call', (req, ctx) => gw.callTool(cc(ctx), p(req.params), ctx) as never);
  server.setRequestHandler('prompts/list', (req, ctx) => gw.listPrompts(cc(ctx), req.params) as never);
  server.setRequestHandler('prompts/get', (req, ctx) => gw.getPrompt(cc(ctx), p(req.params), ctx) as never);
  server.setRequestHandler('resources/list', (req, ctx) => gw.listResources(cc(ctx), req.params) as never);
  server.setRequestHandler('resources/templates/list', (req, ctx) => gw.listResourceTemplates(cc(ctx), req.params) as never);
  server.setRequestHandler('resources/read', (req, ctx) => gw.readResource(cc(ctx), p(req.params), ctx) as never);
  server.onerror = () => undefined;
  return server;
}

