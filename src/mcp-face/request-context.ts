/**
 * How a request's context crosses the SDK: the HTTP edge establishes who asks (and which request,
 * from where, in which era) before the SDK sees the request; the SDK hands handlers only what the
 * transport was given as `AuthInfo`. So the edge's facts travel as one typed object inside
 * `AuthInfo.extra`, and handlers read them back with `callContextOf`, checked by class, not cast.
 */
import type { AuthInfo, ServerContext } from '@modelcontextprotocol/server';
import type { CallContext, EdgeTiming } from '../pipeline/ports.js';
import type { Principal } from '../types.js';

export type { EdgeTiming };

/** What the edge knows about one request (the 2025 session id is the transport's to know). */
export class EdgeFacts {
  constructor(
    readonly principal: Principal,
    readonly era: CallContext['era'],
    readonly requestId: string,
    readonly clientIp: string | null,
    readonly edge?: EdgeTiming,
    /** The agent's bearer token, only for finding it in results (CallContext.credential); never recorded. */
    readonly credential?: string,
  ) {}
}

const EXTRA_KEY = 'micro-mcp/edge';

/** The AuthInfo a transport receives for one request. Never the agent's token: nothing downstream needs it. */
export function authInfoFor(f: EdgeFacts): AuthInfo {
  return {
    token: '',
    clientId: f.principal.client.id ?? '',
    scopes: f.principal.scopes,
    ...(f.principal.expires_at ? { expiresAt: f.principal.expires_at } : {}),
    extra: { [EXTRA_KEY]: f },
  };
}

/** The CallContext of the request a handler serves; a request that bypassed the edge is a bug, not a caller. */
export function callContextOf(ctx: ServerContext): CallContext {
  const f = ctx.http?.authInfo?.extra?.[EXTRA_KEY];
  if (!(f instanceof EdgeFacts)) throw new Error('a request reached an MCP handler without passing the HTTP edge');
  return edgeContext(f, ctx.sessionId ?? null);
}

/** The CallContext of a request the edge has seen, in the given 2025 session (null: none). */
export function edgeContext(f: EdgeFacts, sessionId: string | null): CallContext {
  return {
    principal: f.principal,
    era: f.era,
    sessionId,
    requestId: f.requestId,
    clientIp: f.clientIp,
    edge: f.edge,
    ...(f.credential !== undefined ? { credential: f.credential } : {}),
  };
}
