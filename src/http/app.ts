/**
 * The HTTP front door (Hono): /mcp for both protocol eras, the OAuth metadata and JWKS documents,
 * /healthz and /readyz. A request to /mcp passes the edge middleware in data-path order, each one
 * adding to the typed request context (context.ts), before the MCP face serves it:
 *
 *   client-address -> request-id -> host-origin -> authenticate -> body-cap -> well-formed -> era -> step-up -> MCP face
 *
 * The token is checked before the body is read: a caller without a valid token costs a header
 * parse and (at most, within its address's failure budget) one signature check, never a buffered body.
 */
import { type Context, Hono } from 'hono';
import { cors } from 'hono/cors';
import type { Refusals } from '../audit/refusals.js';
import { AUTHORIZE_PATH, type DevAuthorizationServer, type OAuthError, REGISTER_PATH, TOKEN_PATH } from '../auth/dev-authorization.js';
import { readCapped } from '../read-capped.js';
import type { McpFace } from '../mcp-face/face.js';
import { EdgeFacts } from '../mcp-face/request-context.js';
import type { Holdings, KeyedRate } from '../limits/keyed.js';
import type { Logger, Principal } from '../types.js';
import { clientIp, edgeError, type GatewayEnv } from './context.js';
import { authenticate, type EdgeAuthenticator } from './middleware/authenticate/index.js';
import { clientAddress } from './middleware/client-address/index.js';
import { bodyCap } from './middleware/body-cap/index.js';
import { era } from './middleware/era/index.js';
import { hostOrigin } from './middleware/host-origin/index.js';
import { requestId } from './middleware/request-id/index.js';
import { stepUp } from './middleware/step-up/index.js';
import { wellFormed } from './middleware/well-formed/index.js';

/** The edge's fair shares for unauthenticated work (built by the composition root from `server:`). */
export interface EdgeLimits {
  /** Tokens being verified at once. */
  verifying: Holdings;
  /** Failed authentications per client address. */
  authFailures: KeyedRate;
  /** Request bodies being read at once per client address. */
  bodies: Holdings;
}

export interface AppDeps {
  face: McpFace;
  limits: EdgeLimits;
  auth: EdgeAuthenticator & { protectedResourceMetadata(): object };
  refusals: Refusals;
  /** The list-phase answer to step-up (ListView.stepUpScopes). */
  scopesToLift: (principal: Principal, tool: string, requestId: string) => string[] | undefined;
  /** The canonical name of an exposed tool name (Catalog.tool(name).canonical), for step-up records. */
  canonicalTool?: (tool: string) => string | undefined;
  log: Logger;
  maxBodyBytes: number;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  /** server.cors: exact browser origins (normalised, URL.origin) and the preflight cache time. */
  cors?: { origins: readonly string[]; maxAgeS: number };
  /** Proxies whose X-Forwarded-For names the caller (server.trusted_proxies). */
  trustedProxies: readonly string[];
  /** The gateway's public keys for per-service credentials (every replica's, with shared state). */
  jwks: () => Promise<object>;
  health: () => { ready: boolean; detail: Record<string, unknown> };
  /** Dev mode's loopback authorization server (auth.dev_authorization); absent otherwise. */
  devAuthorization?: DevAuthorizationServer;
}

/** Largest registration or token request body the dev authorization server reads. */
const MAX_OAUTH_BODY = 16 * 1024;

export function createApp(d: AppDeps): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const refused = (e: Parameters<Refusals['authFailure']>[0], f: Parameters<Refusals['authFailure']>[1]) => d.refusals.authFailure(e, f);

  app.use('*', clientAddress({ trustedProxies: d.trustedProxies }));
  app.use('*', requestId());
  app.use('*', hostOrigin({ hosts: d.allowedHosts, origins: d.allowedOrigins, ...(d.cors ? { exactOrigins: d.cors.origins } : {}) }));
  if (d.cors) {
    // Browser clients: only the listed origins, for the endpoints an MCP client reaches (the MCP
    // endpoint, the metadata documents, dev mode's OAuth endpoints); the preflight is answered here,
    // before authentication (a browser sends it without the Authorization header).
    const mw = cors({
      origin: [...d.cors.origins],
      allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      allowHeaders: [
        'Authorization',
        'Content-Type',
        'Accept',
        'Mcp-Session-Id',
        'Mcp-Protocol-Version',
        'Mcp-Method',
        'Mcp-Name',
        'Last-Event-ID',
        'X-Request-Id',
      ],
      exposeHeaders: ['Mcp-Session-Id', 'WWW-Authenticate', 'Mcp-Protocol-Version'],
      maxAge: d.cors.maxAgeS,
    });
    for (const p of ['/mcp', '/.well-known/*', '/oauth/*']) app.use(p, mw);
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const h = d.health();
    return c.json({ status: h.ready ? 'ready' : 'not_ready', ...h.detail }, h.ready ? 200 : 503);
  });
  const prm = () => Response.json(d.auth.protectedResourceMetadata());
  app.get('/.well-known/oauth-protected-resource', prm);
  app.get('/.well-known/oauth-protected-resource/mcp', prm);
  app.get('/.well-known/jwks.json', async () => Response.json(await d.jwks()));
  if (d.devAuthorization) serveDevAuthorization(app, d.devAuthorization, d.refusals, d.log);

  const authenticating = authenticate({
    auth: d.auth,
    onRefused: refused,
    failures: d.limits.authFailures,
    verifying: d.limits.verifying,
    onLimited: (limit, f) => d.refusals.limitRefused(limit, f),
  });
  app.on(
    ['POST', 'GET', 'DELETE'],
    '/mcp',
    // Timed for the call's trace: the authentication span is a child of the call's span.
    async function timedAuthenticate(c, next) {
      const startMs = performance.now();
      return authenticating(c, async () => {
        const traceparent = c.req.header('traceparent');
        const tracestate = c.req.header('tracestate');
        c.set('edge', { startMs, authStartMs: startMs, authEndMs: performance.now(), traceparent, tracestate });
        await next();
      });
    },
    bodyCap({ maxBytes: d.maxBodyBytes, inFlight: d.limits.bodies, onRefused: (limit, f) => d.refusals.limitRefused(limit, f) }),
    wellFormed({
      onRefused: (f) => d.refusals.probeRefused(f, { code: 'ERR_MALFORMED_UNICODE', message: 'names, arguments and _meta values must be well-formed Unicode' }),
    }),
    era({ maxBodyBytes: d.maxBodyBytes }),
    stepUp({ auth: d.auth, scopesToLift: d.scopesToLift, onRefused: refused, ...(d.canonicalTool ? { canonicalTool: d.canonicalTool } : {}) }),
    async (c) => {
      try {
        const res = await d.face.handle(
          withResponseSignal(c.req.raw, c.env),
          new EdgeFacts(c.get('principal'), c.get('era'), c.get('requestId'), clientIp(c), c.get('edge'), bearerOf(c.req.header('authorization'))),
          c.get('body'),
        );
        // A request the face refused before any handler ran (unknown or foreign session, header/body
        // mismatch, a malformed envelope): probing is on the record.
        if (res.status >= 400 && res.status < 500) await recordRejected(c, res);
        return res;
      } catch (e) {
        d.log.error({ err: (e as Error).message, request_id: c.get('requestId') }, 'unhandled error serving /mcp');
        return edgeError(c, 500, -32603, 'Internal error');
      }
    },
  );
  app.all('/mcp', (c) => c.json({ error: 'method not allowed' }, 405, { allow: 'GET, POST, DELETE' }));

  async function recordRejected(c: Context<GatewayEnv>, res: Response): Promise<void> {
    const body: unknown = await res
      .clone()
      .json()
      .catch(() => undefined);
    const error = typeof body === 'object' && body !== null && 'error' in body && typeof body.error === 'object' && body.error !== null ? body.error : {};
    const code = 'code' in error && typeof error.code === 'number' ? `JSONRPC_${error.code}` : `HTTP_${res.status}`;
    const message = 'message' in error && typeof error.message === 'string' ? error.message.slice(0, 200) : `HTTP ${res.status}`;
    const sent = c.get('body');
    const method = typeof sent === 'object' && sent !== null && 'method' in sent && typeof sent.method === 'string' ? sent.method : c.req.method;
    await d.refusals.probeRefused({ requestId: c.get('requestId'), clientIp: clientIp(c), principal: c.get('principal'), method }, { code, message });
  }
  app.notFound((c) => c.json({ error: 'not found' }, 404));
  app.onError((e, c) => {
    d.log.error({ err: e.message, request_id: c.get('requestId') }, 'unhandled error');
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}

/**
 * The routes of dev mode's authorization server (src/auth/dev-authorization.ts). Every refusal is an
 * OAuth error answer and a `probe_refused` audit event (method `oauth/<endpoint>`, code
 * `ERR_OAUTH_<error>`); an issued token is logged with its subject, client and scope, never the token.
 */
function serveDevAuthorization(app: Hono<GatewayEnv>, as: DevAuthorizationServer, refusals: Refusals, log: Logger): void {
  const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' };
  const refuse = async (c: Context<GatewayEnv>, endpoint: string, e: OAuthError) => {
    await refusals.probeRefused(
      { requestId: c.get('requestId'), clientIp: clientIp(c), method: `oauth/${endpoint}` },
      { code: `ERR_OAUTH_${e.error.toUpperCase()}`, message: e.error_description },
    );
    return c.json({ error: e.error, error_description: e.error_description }, e.status as 400, noStore);
  };
  const body = async (c: Context<GatewayEnv>): Promise<string | undefined> => {
    const raw = c.req.raw.body ? await readCapped(c.req.raw.body, MAX_OAUTH_BODY) : Buffer.alloc(0);
    return raw === 'too_large' ? undefined : raw.toString('utf8');
  };
  app.get('/.well-known/oauth-authorization-server', (c) => c.json(as.metadata()));
  app.post(REGISTER_PATH, async (c) => {
    const text = await body(c);
    let parsed: unknown;
    try {
      parsed = text === undefined ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const r = as.register(parsed);
    if ('error' in r) return refuse(c, 'register', r);
    log.info({ client_id: r.body.client_id, client_name: r.body.client_name }, 'dev authorization server registered a client');
    return c.json(r.body, 201, noStore);
  });
  app.get(AUTHORIZE_PATH, async (c) => {
    const r = as.authorize(new URL(c.req.url).searchParams);
    if ('error' in r) return refuse(c, 'authorize', r);
    const error = new URL(r.redirect).searchParams.get('error');
    if (error !== null)
      await refusals.probeRefused(
        { requestId: c.get('requestId'), clientIp: clientIp(c), method: 'oauth/authorize' },
        { code: `ERR_OAUTH_${error.toUpperCase()}`, message: 'authorization request refused' },
      );
    return c.redirect(r.redirect, 302);
  });
  app.post(TOKEN_PATH, async (c) => {
    const text = await body(c);
    if (text === undefined) return refuse(c, 'token', { status: 400, error: 'invalid_request', error_description: 'the request body is too large' });
    if (!(c.req.header('content-type') ?? '').startsWith('application/x-www-form-urlencoded'))
      return refuse(c, 'token', { status: 400, error: 'invalid_request', error_description: 'the body must be application/x-www-form-urlencoded' });
    const form = new URLSearchParams(text);
    const r = await as.token(form);
    if ('error' in r) return refuse(c, 'token', r);
    log.info({ client_id: form.get('client_id'), scope: r.body.scope }, 'dev authorization server issued a token');
    return c.json(r.body, 200, noStore);
  });
}

/** The credential of an `Authorization: Bearer ...` header (already verified by authenticate). */
function bearerOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const sp = header.indexOf(' ');
  return sp > 0 && header.slice(0, sp).toLowerCase() === 'bearer' ? header.slice(sp + 1).trim() : undefined;
}

/**
 * The request as the MCP face gets it, with a `signal` of its own that aborts when the response
 * closes unfinished (the client went away) or the request errs: what @hono/node-server's request
 * gives, without turning its lightweight request into a full web Request. Reading `signal` there
 * builds one, with a body stream over a body the edge has already read (measured: 4.3% of the
 * gateway's CPU on the 2026-07-28 path, where the SDK reads `request.signal` on every call). Every
 * other property still comes from the request itself. Without node bindings (tests on app.request),
 * the request as it is.
 */
function withResponseSignal(raw: Request, env: GatewayEnv['Bindings'] | undefined): Request {
  const incoming = env?.incoming;
  const outgoing = env?.outgoing;
  if (incoming === undefined || outgoing === undefined) return raw;
  const ac = new AbortController();
  outgoing.once('close', () => {
    if (incoming.errored) ac.abort(incoming.errored.toString());
    else if (!outgoing.writableFinished) ac.abort('Client connection prematurely closed.');
  });
  return Object.create(raw, { signal: { value: ac.signal, enumerable: true } }) as Request;
}
