import type { Context, MiddlewareHandler } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { GatewayError, isGatewayError } from '../../../errors.js';
import type { Holdings, KeyedRate } from '../../../limits/keyed.js';
import type { Principal } from '../../../types.js';
import { clientIp, edgeError, type GatewayEnv } from '../../context.js';

/** What the edge needs from src/auth. */
export interface EdgeAuthenticator {
  /** Verifies the `Authorization` header value; resolves to the Principal or throws GatewayError. */
  authenticate(authorizationHeader: string | undefined): Promise<Principal>;
  /** The HTTP answer to a refused request: 401 with WWW-Authenticate, or 403 insufficient_scope. */
  challenge(error: GatewayError): { status: number; headers: Record<string, string>; body: unknown };
}

export interface AuthenticateOptions {
  auth: EdgeAuthenticator;
  /** Records the refusal; the answer waits for it, so a refusal is on record before the caller hears of it. */
  onRefused: (e: GatewayError, facts: RefusalFacts) => Promise<void>;
  /**
   * Unauthenticated work is bounded: `failures` is each client address's budget of failed
   * authentications (past it, its requests are refused without verifying a token), `verifying`
   * the ceiling on tokens being verified at once.
   */
  failures?: KeyedRate;
  verifying?: Holdings;
  /** Records a request refused by those limits. */
  onLimited?: (limit: 'auth_failures_per_minute_per_ip' | 'max_unauthenticated_in_flight', facts: RefusalFacts) => Promise<void>;
}

/**
 * Every request is authenticated on its own (a 2025 session id never stands in for a token): the
 * bearer token from the Authorization header only (never the query string) becomes `c.get('principal')`;
 * anything else is answered with the RFC 6750 challenge and audited.
 */
export const authenticate = (opts: AuthenticateOptions): MiddlewareHandler<GatewayEnv> =>
  async function authenticate(c, next) {
    const ip = clientIp(c);
    const facts: RefusalFacts = { requestId: c.get('requestId'), clientIp: ip };
    if (opts.failures?.enabled && !opts.failures.allows(ip ?? 'unknown')) {
      await opts.onLimited?.('auth_failures_per_minute_per_ip', facts);
      return limited(c, 429, 'too many failed authentications from this address; retry later', 60);
    }
    const slot = opts.verifying?.take('all');
    if (slot !== undefined && 'refused' in slot) {
      await opts.onLimited?.('max_unauthenticated_in_flight', facts);
      return limited(c, 503, 'the gateway is busy verifying other requests; retry shortly', 1);
    }
    let principal: Principal;
    try {
      if (c.req.query('access_token') !== undefined) throw new GatewayError('ERR_AUTH_INVALID', 'tokens are accepted only in the Authorization header');
      principal = await opts.auth.authenticate(c.req.header('authorization'));
    } catch (e) {
      const ge = isGatewayError(e) ? e : new GatewayError('ERR_AUTH_INVALID', 'authentication failed');
      opts.failures?.take(ip ?? 'unknown');
      await opts.onRefused(ge, facts);
      return unread(c, challengeResponse(opts.auth, ge));
    } finally {
      slot?.release();
    }
    c.set('principal', principal);
    await next();
    return undefined;
  };

/** A refusal by an edge limit: JSON-RPC error -32029 with the stable code and Retry-After. */
function limited(c: Context<GatewayEnv>, status: 429 | 503, message: string, retryAfterS: number): Response {
  return unread(c, edgeError(c, status, -32029, message, { code: 'ERR_RATE_LIMITED', retry_after_s: retryAfterS }, { 'retry-after': String(retryAfterS) }));
}

/**
 * The token is checked before the body is read; a refused request's body is never read, so the
 * connection is closed after the answer rather than kept for a body nobody will consume.
 */
function unread(c: Context<GatewayEnv>, r: Response): Response {
  if (c.req.method === 'POST') r.headers.set('connection', 'close');
  return r;
}

/** The challenge as a Response (shared with the step-up middleware). */
export function challengeResponse(auth: EdgeAuthenticator, e: GatewayError): Response {
  const ch = auth.challenge(e);
  return new Response(JSON.stringify(ch.body), { status: ch.status, headers: { 'content-type': 'application/json', ...ch.headers } });
}
