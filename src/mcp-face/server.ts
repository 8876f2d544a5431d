/**
 * The MCP face agents talk to: one low-level SDK `Server` whose handlers hand each request to the
 * pipeline (list view or call pipeline) with the request's CallContext. Built per 2026-era request
 * (stateless) or per 2025-era session; either way it holds no catalog copy, only handler closures.
 */
import { Server } from '@modelcontextprotocol/server';
import type { ServerContext } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { CallPipeline } from '../pipeline/call-pipeline.js';
import type { ListView } from '../pipeline/list-view.js';
import type { CallContext, ProbePort, StatePort } from '../pipeline/ports.js';

export const SERVER_INFO = { name: 'micro-mcp', version: '0.1.0' };

const INSTRUCTIONS =
  'Micro-MCP gateway. Tools are namespaced by service (fs.read, http.fetchText, ...). Every call is decided by policy; ' +
  `declare why you call a tool in params._meta["micro-mcp/purpose"] when a policy asks for a purpose.`;

/** Everything that depends on the caller is private and not cached: lists are filtered per principal. */
const PRIVATE = { ttlMs: 0, cacheScope: 'private' as const };

/** What the face is built from: the pipeline, the state signer, and where a request's context comes from. */
export interface FaceDeps {
  calls: CallPipeline;
  lists: ListView;
  state: StatePort;
  probes: ProbePort;
  /** The CallContext of the request a handler serves (from the HTTP edge, or the stdio principal). */
  contextOf: (ctx: ServerContext) => CallContext;
}

export function buildServer(d: FaceDeps): Server {
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
      // Our requestState is signed and bound to the principal; anything else (forged, tampered,
      // expired, another principal's) is refused, and recorded, before a handler runs.
      verify: async (token, ctx) => {
        const cc = d.contextOf(ctx);
        try {
          return d.state.verify(principalKey(cc.principal), token);
        } catch (e) {
          await d.probes.refused(cc, { method: ctx.mcpReq.method, code: 'ERR_INPUT_STATE_INVALID', message: 'Invalid or expired requestState' });
          throw e;
        }
      },
    },
  });
  const { calls, lists } = d;
  // Whether the agent can ask its user (consent): from the request's envelope on 2026-07-28, from
  // initialize on a 2025 session; the SDK answers both through the server's client capabilities.
  const contextOf = (ctx: ServerContext): CallContext => ({ ...d.contextOf(ctx), canElicit: server.getClientCapabilities()?.elicitation !== undefined });
  server.setRequestHandler('tools/list', (req, ctx) => lists.tools(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('tools/call', (req, ctx) => calls.callTool(contextOf(ctx), req.params, ctx));
  server.setRequestHandler('prompts/list', (req, ctx) => lists.prompts(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('prompts/get', (req, ctx) => calls.getPrompt(contextOf(ctx), req.params, ctx));
  server.setRequestHandler('resources/list', (req, ctx) => lists.resources(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('resources/templates/list', (req, ctx) => lists.resourceTemplates(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('resources/read', (req, ctx) => calls.readResource(contextOf(ctx), req.params, ctx));
  server.onerror = () => undefined;
  return server;
}
