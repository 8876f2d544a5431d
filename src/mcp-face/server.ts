/**
 * The MCP face agents talk to: one low-level SDK `Server` whose handlers hand each request to the
 * pipeline (list view or call pipeline) with the request's CallContext. Built per 2026-era request
 * (stateless) or per 2025-era session; either way it holds no catalog copy, only handler closures.
 */
import {
  CLIENT_CAPABILITIES_META_KEY,
  isInputRequiredResult,
  LOG_LEVEL_META_KEY,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  Server,
} from '@modelcontextprotocol/server';
import type {
  ClientCapabilities,
  CreateMessageRequest,
  LoggingLevel,
  RequestId,
  RequestOptions,
  ServerContext,
  StandardSchemaV1,
} from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { CallPipeline } from '../pipeline/call-pipeline.js';
import type { ListView } from '../pipeline/list-view.js';
import { isLogLevel, LOG_LEVELS } from '../pipeline/log-levels.js';
import type { CallContext, ProbePort, StatePort } from '../pipeline/ports.js';
import type { ResourceSubscriptions } from '../pipeline/subscriptions.js';

export const SERVER_INFO = { name: 'micro-mcp', version: '0.1.0' };

const INSTRUCTIONS =
  'Micro-MCP gateway. Tools are namespaced by service (fs.read, http.fetchText, ...). Every call is decided by policy; ' +
  `declare why you call a tool in params._meta["micro-mcp/purpose"] when a policy asks for a purpose.`;

/** Everything that depends on the caller is private and not cached: lists are filtered per principal. */
const PRIVATE = { ttlMs: 0, cacheScope: 'private' as const };

/**
 * Params handed to a handler unchecked, for the methods whose bad input the handler itself refuses
 * and audits (the SDK's own check would answer before anything is recorded).
 */
const UNCHECKED: StandardSchemaV1<Record<string, unknown>> = {
  '~standard': {
    version: 1,
    vendor: 'micro-mcp',
    validate: (v: unknown) => ({ value: typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {} }),
  },
};

/** The requests a 2025 session's server sends its agent for a call's input round. */
type InteractionMethod = Parameters<CallPipeline['answerFailed']>[2];
const INTERACTION_METHODS: ReadonlySet<string> = new Set<InteractionMethod>(['elicitation/create', 'sampling/createMessage', 'roots/list']);
const isInteractionMethod = (m: string): m is InteractionMethod => INTERACTION_METHODS.has(m);

/** request()'s second argument is a result schema or the options. */
const isSchema = (v: unknown): boolean => typeof v === 'object' && v !== null && '~standard' in v;

/** What the face is built from: the pipeline, the state signer, and where a request's context comes from. */
export interface FaceDeps {
  calls: CallPipeline;
  lists: ListView;
  state: StatePort;
  probes: ProbePort;
  subscriptions: ResourceSubscriptions;
  /** The CallContext of the request a handler serves (from the HTTP edge, or the stdio principal). */
  contextOf: (ctx: ServerContext) => CallContext;
}

/**
 * The SDK's Server, closed without a stack trace: a 2026-07-28 request is served by a Server of its
 * own, and every close builds a ConnectionClosed SdkError (for whatever is still pending), whose
 * stack capture was 3-4.5% of the gateway's busy CPU per call in make bench's profiles. The error
 * keeps its code and message, which is all anything here reads from it.
 */
class FaceServer extends Server {
  protected override _onclose(): void {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super._onclose();
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/**
 * `subscriptions`: whether this server's agent can subscribe to resources. A 2025 agent subscribes
 * here (resources/subscribe); a 2026-07-28 agent over HTTP on subscriptions/listen, whose URIs the
 * face decides before the SDK acknowledges them. A 2026-07-28 stdio agent's listen is served by the
 * SDK's stdio entry, where no URI would be decided: not declaring the capability there keeps its
 * acknowledgement honest (the SDK honours resourceSubscriptions only when it is declared).
 *
 * `modern`: a Server for one 2026-07-28 request over HTTP (built for every such request). It gets
 * the handlers of that era's methods only: the SDK answers logging/setLevel and
 * resources/subscribe/unsubscribe of a 2026-07-28 request with -32601 before any handler runs, an
 * input round is a result rather than a request to the agent (so the 2025 shim's legs are never
 * taken), and it has no agent that could hold a subscription. Registering the rest, wrapping
 * request/createMessage and dropping the empty agent on close cost ~1% of the gateway's CPU per call.
 */
export function buildServer(d: FaceDeps, opts: { subscriptions: boolean; modern?: boolean } = { subscriptions: true }): Server {
  const server = new FaceServer(SERVER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { listChanged: true, ...(opts.subscriptions ? { subscribe: true } : {}) },
      completions: {},
      logging: {},
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
  // This server's agent: a 2025 session (one Server each) keeps its logging/setLevel here.
  let sessionLevel: LoggingLevel | undefined;
  const contextOf = (ctx: ServerContext): CallContext => {
    const cc = d.contextOf(ctx);
    const envelope: Record<string, unknown> = { ...ctx.mcpReq.envelope };
    const asked = envelope[LOG_LEVEL_META_KEY];
    const declared = cc.era === 'modern' ? envelope[CLIENT_CAPABILITIES_META_KEY] : server.getClientCapabilities();
    return {
      ...cc,
      logLevel: cc.era === 'modern' ? (isLogLevel(asked) ? asked : undefined) : (sessionLevel ?? 'debug'),
      capabilities: typeof declared === 'object' && declared !== null ? (declared as ClientCapabilities) : undefined,
      // Whether the agent can ask its user (consent): what it declared, like every other capability.
      canElicit: typeof declared === 'object' && declared !== null && 'elicitation' in declared && declared.elicitation !== undefined,
    };
  };
  // A 2025 session's answers go through the SDK's shim, which checks them; when one fails it ends the
  // agent's request with a tool error and never retries, so the round's call is ended at once (recorded)
  // instead of holding its service until the input request expires. Keyed by the agent's request id.
  const rounds = new Map<RequestId, { cc: CallContext; state: string }>();
  server.setRequestHandler('tools/list', (req, ctx) => lists.tools(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    rounds.delete(ctx.mcpReq.id);
    const cc = contextOf(ctx);
    const r = await calls.callTool(cc, req.params, ctx);
    if (cc.era !== 'modern' && isInputRequiredResult(r) && typeof r.requestState === 'string') rounds.set(ctx.mcpReq.id, { cc, state: r.requestState });
    return r;
  });
  server.setRequestHandler('prompts/list', (req, ctx) => lists.prompts(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('prompts/get', (req, ctx) => calls.getPrompt(contextOf(ctx), req.params, ctx));
  server.setRequestHandler('resources/list', (req, ctx) => lists.resources(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('resources/templates/list', (req, ctx) => lists.resourceTemplates(contextOf(ctx), req.params?.cursor));
  server.setRequestHandler('resources/read', (req, ctx) => calls.readResource(contextOf(ctx), req.params, ctx));
  server.setRequestHandler('completion/complete', (req, ctx) => calls.complete(contextOf(ctx), req.params, ctx));
  server.onerror = () => undefined;
  if (opts.modern) return server;

  server.setRequestHandler('logging/setLevel', { params: UNCHECKED }, async (params, ctx) => {
    if (!isLogLevel(params.level)) {
      const message = `Invalid params: unknown log level; the levels are ${LOG_LEVELS.join(', ')}`;
      await d.probes.refused(d.contextOf(ctx), { method: 'logging/setLevel', code: 'ERR_LOG_LEVEL_INVALID', message });
      throw new ProtocolError(-32602, message);
    }
    sessionLevel = params.level;
    return {};
  });
  // The legs of the SDK's 2025 shim: elicitation/create and roots/list end in request(), whose
  // result check throws; sampling/createMessage checks its result again in createMessage().
  const legFailed = async (method: string, options: RequestOptions | undefined, e: unknown): Promise<void> => {
    const id = options?.relatedRequestId;
    const round = id !== undefined ? rounds.get(id) : undefined;
    if (id === undefined || round === undefined || !isInteractionMethod(method)) return;
    rounds.delete(id);
    const malformed = e instanceof SdkError && e.code === SdkErrorCode.InvalidResult;
    await calls.answerFailed(round.cc, round.state, method, malformed).catch(() => undefined);
  };
  const request = server.request.bind(server) as (req: { method: string }, a?: unknown, b?: unknown) => Promise<unknown>;
  server.request = (async (req: { method: string }, a?: unknown, b?: unknown) => {
    try {
      return await request(req, a, b);
    } catch (e) {
      await legFailed(req.method, (isSchema(a) ? b : a) as RequestOptions | undefined, e);
      throw e;
    }
  }) as typeof server.request;
  const createMessage = server.createMessage.bind(server) as (params: CreateMessageRequest['params'], options?: RequestOptions) => Promise<unknown>;
  server.createMessage = (async (params: CreateMessageRequest['params'], options?: RequestOptions) => {
    try {
      return await createMessage(params, options);
    } catch (e) {
      await legFailed('sampling/createMessage', options, e);
      throw e;
    }
  }) as typeof server.createMessage;
  // This server's agent (a 2025 session; the stdio client): its subscriptions end with it.
  const agent = {};
  server.setRequestHandler('resources/subscribe', async (req, ctx) => {
    await d.subscriptions.subscribe(agent, contextOf(ctx), req.params, ctx, (uri) => server.sendResourceUpdated({ uri }));
    return {};
  });
  server.setRequestHandler('resources/unsubscribe', async (req) => {
    d.subscriptions.unsubscribe(agent, req.params.uri);
    return {};
  });
  server.onclose = () => d.subscriptions.dropAgent(agent);
  return server;
}
