/**
 * The HTTP front door (Hono): /mcp for both protocol eras, the OAuth metadata and JWKS documents,
 * /healthz and /readyz. A request to /mcp passes the edge middleware in data-path order, each one
 * adding to the typed request context (context.ts), before the MCP face serves it:
 *
 *   request-id -> host-origin -> body-cap -> authenticate -> well-formed -> era -> step-up -> MCP face
 */
import { Hono } from 'hono';
import type { Refusals } from '../audit/refusals.js';
import type { McpFace } from '../mcp-face/face.js';
import { EdgeFacts } from '../mcp-face/request-context.js';
import type { Logger, Principal } from '../types.js';
import { clientIp, edgeError, type GatewayEnv } from './context.js';
import { authenticate, type EdgeAuthenticator } from './middleware/authenticate/index.js';
import { bodyCap } from './middleware/body-cap/index.js';
import { era } from './middleware/era/index.js';
import { hostOrigin } from './middleware/host-origin/index.js';
import { requestId } from './middleware/request-id/index.js';
import { stepUp } from './middleware/step-up/index.js';
import { wellFormed } from './middleware/well-formed/index.js';

export interface AppDeps {
  face: McpFace;
  auth: EdgeAuthenticator & { protectedResourceMetadata(): object };
  refusals: Refusals;
  /** The list-phase answer to step-up (ListView.stepUpScopes). */
  scopesToLift: (principal: Principal, tool: string, requestId: string) => string[] | undefined;
  log: Logger;
  maxBodyBytes: number;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  /** The gateway's public keys for per-service credentials. */
  jwks: () => object;
  health: () => { ready: boolean; detail: Record<string, unknown> };
}

export function createApp(d: AppDeps): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const refused = (e: Parameters<Refusals['authFailure']>[0], f: Parameters<Refusals['authFailure']>[1]) => d.refusals.authFailure(e, f);

  app.use('*', requestId());
  app.use('*', hostOrigin({ hosts: d.allowedHosts, origins: d.allowedOrigins }));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const h = d.health();
    return c.json({ status: h.ready ? 'ready' : 'not_ready', ...h.detail }, h.ready ? 200 : 503);
  });
  const prm = () => Response.json(d.auth.protectedResourceMetadata());
  app.get('/.well-known/oauth-protected-resource', prm);
  app.get('/.well-known/oauth-protected-resource/mcp', prm);
  app.get('/.well-known/jwks.json', () => Response.json(d.jwks()));

  app.on(
    ['POST', 'GET', 'DELETE'],
    '/mcp',
    bodyCap({ maxBytes: d.maxBodyBytes, onRefused: (limit, f) => d.refusals.limitRefused(limit, f) }),
    authenticate({ auth: d.auth, onRefused: refused }),
    wellFormed(),
    era({ maxBodyBytes: d.maxBodyBytes }),
    stepUp({ auth: d.auth, scopesToLift: d.scopesToLift, onRefused: refused }),
    async (c) => {
      try {
        return await d.face.handle(c.req.raw, new EdgeFacts(c.var.principal, c.var.era, c.var.requestId, clientIp(c)), c.var.body);
      } catch (e) {
        d.log.error({ err: (e as Error).message, request_id: c.var.requestId }, 'unhandled error serving /mcp');
        return edgeError(c, 500, -32603, 'Internal error');
      }
    },
  );
  app.all('/mcp', (c) => c.json({ error: 'method not allowed' }, 405, { allow: 'GET, POST, DELETE' }));
  app.notFound((c) => c.json({ error: 'not found' }, 404));
  app.onError((e, c) => {
    d.log.error({ err: e.message, request_id: c.var.requestId }, 'unhandled error');
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}
