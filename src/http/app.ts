/**
 * The Hono app: /mcp (both eras), the OAuth metadata and JWKS documents, /healthz, /readyz.
 * Edge checks run before anything is parsed or authenticated: request id, Host/Origin (DNS rebinding),
 * content type, body cap (413 while streaming, whatever Content-Length says), JSON parse.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { GatewayError, isGatewayError, toHttpStatus } from '../errors.js';
import type { McpFront } from '../front/front.js';
import { jsonRpcError } from '../front/front.js';
import type { Logger, Principal } from '../types.js';

/** What the edge needs from authentication (implemented by auth/). */
export interface EdgeAuth {
  authenticate(authorization: string | undefined): Promise<Principal>;
  /** The response for a refused request: 401 with WWW-Authenticate, or 403 insufficient_scope. */
  challenge(e: GatewayError): { status: number; headers: Record<string, string>; body: unknown };
  /** RFC 9728 Protected Resource Metadata. */
  metadata(): Record<string, unknown>;
  /**
   * Called for every refused authentication or step-up, to audit it; the answer waits for it, so a
   * refusal is on record before the caller hears of it.
   */
  onRefused?: (e: GatewayError, facts: RefusalFacts) => Promise<void>;
}

export interface AppDeps {
  front: McpFront;
  auth: EdgeAuth;
  log: Logger;
  maxBodyBytes: number;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  /** The gateway's JWKS for per-service credentials. */
  jwks: () => Record<string, unknown>;
  health: () => { ready: boolean; detail: Record<string, unknown> };
  clientIp: (c: Context) => string | null;
  /** Called when an edge limit (the body size cap) refuses a request, to audit it. */
  onLimitRefused?: (limit: string, facts: RefusalFacts) => Promise<void>;
  /** Scopes a tools/call needs before it could be allowed (403 insufficient_scope), or undefined. */
  stepUp: (principal: Principal, body: unknown, requestId: string) => Promise<string[] | undefined>;
}

type Vars = { requestId: string; parsedBody: unknown };

/** What is known about a refused request (the principal only when the token itself was valid). */
export interface RefusalFacts {
  requestId: string;
  clientIp: string | null;
  principal?: Principal;
  method?: string;
  tool?: string;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(d: AppDeps): Hono<{ Variables: Vars }> {
  const app = new Hono<{ Variables: Vars }>();

  app.use('*', requestId());
  app.use('*', hostAndOrigin(d.allowedHosts, d.allowedOrigins));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const h = d.health();
    return c.json({ status: h.ready ? 'ready' : 'not_ready', ...h.detail }, h.ready ? 200 : 503);
  });
  const prm = (c: Context) => c.json(d.auth.metadata());
  app.get('/.well-known/oauth-protected-resource', prm);
  app.get('/.well-known/oauth-protected-resource/mcp', prm);
  app.get('/.well-known/jwks.json', (c) => c.json(d.jwks()));

  const bodyTooLarge = async (c: Context<{ Variables: Vars }>) => {
    await d.onLimitRefused?.('max_body_bytes', { requestId: c.get('requestId'), clientIp: d.clientIp(c) });
    return tooLarge(c, d.maxBodyBytes);
  };
  app.on(['POST', 'GET', 'DELETE'], '/mcp', readJsonBody(d.maxBodyBytes, bodyTooLarge), async (c) => {
    const requestId = c.get('requestId');
    const clientIp = d.clientIp(c);
    let principal: Principal;
    try {
      if (c.req.query('access_token') !== undefined) {
        throw new GatewayError('ERR_AUTH_INVALID', 'tokens are accepted only in the Authorization header');
      }
      principal = await d.auth.authenticate(c.req.header('authorization'));
    } catch (e) {
      const ge = isGatewayError(e) ? e : new GatewayError('ERR_AUTH_INVALID', 'authentication failed');
      await d.auth.onRefused?.(ge, { requestId, clientIp });
      const ch = d.auth.challenge(ge);
      return new Response(JSON.stringify(ch.body), { status: ch.status, headers: { 'content-type': 'application/json', ...ch.headers } });
    }
    try {
      const stepUp = await d.stepUp(principal, c.get('parsedBody'), requestId);
      if (stepUp) {
        const e = new GatewayError('ERR_INSUFFICIENT_SCOPE', 'this call needs more scope', { required_scopes: stepUp });
        const name = (c.get('parsedBody') as { params?: { name?: unknown } }).params?.name;
        await d.auth.onRefused?.(e, { requestId, clientIp, principal, method: 'tools/call', ...(typeof name === 'string' ? { tool: name } : {}) });
        const ch = d.auth.challenge(e);
        return new Response(JSON.stringify(ch.body), { status: ch.status, headers: { 'content-type': 'application/json', ...ch.headers } });
      }
      return await d.front.handle(c.req.raw, { principal, requestId, clientIp, parsedBody: c.get('parsedBody') });
    } catch (e) {
      d.log.error({ err: (e as Error).message, request_id: requestId }, 'unhandled error serving /mcp');
      return jsonRpcError(500, -32603, 'Internal error');
    }
  });
  app.all('/mcp', (c) => c.json({ error: 'method not allowed' }, 405, { allow: 'GET, POST, DELETE' }));
  app.notFound((c) => c.json({ error: 'not found' }, 404));
  app.onError((e, c) => {
    d.log.error({ err: e.message, request_id: c.get('requestId') }, 'unhandled error');
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}

/** X-Request-Id: the caller's if well-formed, else a fresh one; echoed on the response. */
function requestId(): MiddlewareHandler<{ Variables: Vars }> {
  return async function requestId(c, next) {
    const given = c.req.header('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    c.set('requestId', id);
    await next();
    c.res.headers.set('x-request-id', id);
  };
}

/**
 * DNS-rebinding protection: the Host header must name this gateway, and a browser Origin (when sent)
 * must be allowed. Both lists are validated once here, not per request.
 */
export function hostAndOrigin(hosts: readonly string[], origins: readonly string[]): MiddlewareHandler<{ Variables: Vars }> {
  if (hosts.length === 0) throw new Error('allowed_hosts must not be empty');
  const hostSet = new Set(hosts.map((h) => h.toLowerCase()));
  const originSet = new Set(origins.map((h) => h.toLowerCase()));
  return async function hostAndOrigin(c, next) {
    const host = hostnameOf(c.req.header('host'));
    if (!host || !hostSet.has(host)) {
      return c.json({ jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Host not allowed' }, id: null }, 403);
    }
    const origin = c.req.header('origin');
    if (origin !== undefined) {
      let oh: string | undefined;
      try {
        oh = new URL(origin).hostname.toLowerCase();
      } catch {
        oh = undefined;
      }
      if (!oh || !originSet.has(oh)) {
        return c.json({ jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Origin not allowed' }, id: null }, 403);
      }
    }
    await next();
    return undefined;
  };
}

function hostnameOf(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * Reads a POST body under the cap while it streams (a lying or absent Content-Length cannot get past
 * it), requires application/json, parses once, and answers malformed JSON with a JSON-RPC parse error.
 */
function readJsonBody(max: number, tooLarge: (c: Context<{ Variables: Vars }>) => Promise<Response>): MiddlewareHandler<{ Variables: Vars }> {
  return async function readJsonBody(c, next) {
    if (c.req.method !== 'POST') {
      c.set('parsedBody', undefined);
      await next();
      return undefined;
    }
    const ct = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/json') {
      return c.json({ jsonrpc: '2.0', error: { code: -32000, message: 'Unsupported Media Type: Content-Type must be application/json' }, id: null }, 415);
    }
    const declared = Number(c.req.header('content-length') ?? '0');
    if (declared > max) return tooLarge(c);
    const chunks: Uint8Array[] = [];
    let size = 0;
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (incoming) {
      // On Node, read the socket stream itself: materialising the web Request's ReadableStream
      // costs more than parsing (it was the largest single item in the gateway's CPU profile).
      const over = await new Promise<boolean>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > max) {
            // Stop reading (the rest is never buffered) and answer; the connection closes after it.
            incoming.off('data', onData);
            incoming.pause();
            resolve(true);
            return;
          }
          chunks.push(chunk);
        };
        incoming.on('data', onData);
        incoming.once('end', () => resolve(false));
        incoming.once('error', reject);
      });
      if (over) return tooLarge(c);
    } else if (c.req.raw.body) {
      const reader = c.req.raw.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > max) {
          await reader.cancel().catch(() => undefined);
          return tooLarge(c);
        }
        chunks.push(value);
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return c.json({ jsonrpc: '2.0', error: { code: -32700, message: 'Parse error: the body is not valid JSON' }, id: null }, 400);
    }
    if (parsed === null || typeof parsed !== 'object') {
      return c.json({ jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request: expected a JSON-RPC object or batch' }, id: null }, 400);
    }
    c.set('parsedBody', parsed);
    await next();
    return undefined;
  };
}

function tooLarge(c: Context, max: number): Response {
  const e = new GatewayError('ERR_BODY_TOO_LARGE', `request body exceeds ${max} bytes`);
  return c.json({ jsonrpc: '2.0', error: { code: -32000, message: e.message, data: { code: e.code } }, id: null }, toHttpStatus(e.code) as 413, {
    connection: 'close',
  });
}
