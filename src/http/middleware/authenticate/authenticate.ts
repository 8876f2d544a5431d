import type { MiddlewareHandler } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { GatewayError, isGatewayError } from '../../../errors.js';
import type { Principal } from '../../../types.js';
import { clientIp, type GatewayEnv } from '../../context.js';

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
}

/**
 * Every request is authenticated on its own (a 2025 session id never stands in for a token): the
 * bearer token from the Authorization header only (never the query string) becomes `c.var.principal`;
 * anything else is answered with the RFC 6750 challenge and audited.
 */
export const authenticate = (opts: AuthenticateOptions): MiddlewareHandler<GatewayEnv> =>
  async function authenticate(c, next) {
    let principal: Principal;
    try {
      if (c.req.query('access_token') !== undefined) throw new GatewayError('ERR_AUTH_INVALID', 'tokens are accepted only in the Authorization header');
      principal = await opts.auth.authenticate(c.req.header('authorization'));
    } catch (e) {
      const ge = isGatewayError(e) ? e : new GatewayError('ERR_AUTH_INVALID', 'authentication failed');
      await opts.onRefused(ge, { requestId: c.var.requestId, clientIp: clientIp(c) });
      return challengeResponse(opts.auth, ge);
    }
    c.set('principal', principal);
    await next();
    return undefined;
  };

/** The challenge as a Response (shared with the step-up middleware). */
export function challengeResponse(auth: EdgeAuthenticator, e: GatewayError): Response {
  const ch = auth.challenge(e);
  return new Response(JSON.stringify(ch.body), { status: ch.status, headers: { 'content-type': 'application/json', ...ch.headers } });
}
