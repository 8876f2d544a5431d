/**
 * What the gateway answers a client it cannot serve yet: the RFC 6750 challenge (401 with
 * `WWW-Authenticate: Bearer ...`, 403 insufficient_scope for step-up, 503 when the issuer's keys are
 * unreachable) and the RFC 9728 Protected Resource Metadata that tells the client where to get a
 * token.
 */
import { isGatewayError, toHttpStatus } from '../errors.js';
import type { GatewayErrorCode } from '../errors.js';
import { describeFailure } from './failures.js';

/** An HTTP answer to an authentication failure, ready to send. */
export interface Challenge {
  status: number;
  headers: Record<string, string>;
  body: { error: string; error_description: string; code: GatewayErrorCode };
}

/** RFC 9728 Protected Resource Metadata. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers?: string[];
  scopes_supported?: string[];
  bearer_methods_supported: ['header'];
  resource_name: string;
  [extra: string]: unknown;
}

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** RFC 9728 §3.1: the metadata URL of `resource`, its path appended to the well-known path. */
export function resourceMetadataUrl(resource: URL): string {
  const suffix = resource.pathname === '/' ? '' : resource.pathname.replace(/\/$/, '');
  return `${resource.origin}${WELL_KNOWN}${suffix}`;
}

/** The metadata document for `resource`. Authorization servers default to the issuer when it is a URL. */
export function protectedResourceMetadata(
  resource: string,
  issuer: string,
  opts: { authorization_servers?: readonly string[]; scopes_supported?: readonly string[] },
): ProtectedResourceMetadata {
  const authorizationServers = opts.authorization_servers ?? (/^https?:\/\//.test(issuer) ? [issuer] : undefined);
  return {
    resource,
    ...(authorizationServers ? { authorization_servers: [...authorizationServers] } : {}),
    ...(opts.scopes_supported ? { scopes_supported: [...opts.scopes_supported] } : {}),
    bearer_methods_supported: ['header'],
    resource_name: 'Micro-MCP gateway',
  };
}

/** Keeps header parameter values inside the RFC 6750 quoted-string alphabet (no `"` or `\`). */
function headerSafe(s: string): string {
  return s.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '');
}

/**
 * Builds `challenge(error)`: the answer for an authentication or step-up failure. Its `scope`
 * names the error's `data.required_scopes` (step-up), else every supported scope.
 */
export function challenger(metadataUrl: string, scopesSupported: readonly string[] = []): (error: unknown) => Challenge {
  const defaultScope = scopesSupported.join(' ');
  return function challenge(error: unknown): Challenge {
    const code: GatewayErrorCode = isGatewayError(error) ? error.code : 'ERR_AUTH_INVALID';
    const listed = isGatewayError(error) ? error.data?.required_scopes : undefined;
    const required = Array.isArray(listed) ? listed.filter((s): s is string => typeof s === 'string') : undefined;
    const scope = headerSafe(required === undefined ? defaultScope : required.join(' ')).trim();
    const description = describeFailure(code);
    if (code === 'ERR_AUTH_JWKS_UNAVAILABLE' || code === 'ERR_AUTH_REPLAY_CACHE_FULL') {
      // Our fault, not the token's: 503 and no invalid_token, so clients retry rather than re-authorize.
      return {
        status: toHttpStatus(code),
        headers: { 'retry-after': '5', 'cache-control': 'no-store', 'content-type': 'application/json' },
        body: { error: 'temporarily_unavailable', error_description: description, code },
      };
    }
    const params: string[] = [];
    let status = 401;
    let oauthError: string;
    if (code === 'ERR_INSUFFICIENT_SCOPE') {
      status = 403;
      oauthError = 'insufficient_scope';
      params.push(`error="insufficient_scope"`);
    } else if (code === 'ERR_AUTH_MISSING') {
      // RFC 6750 §3.1: no error code when the request carried no credentials at all.
      oauthError = 'invalid_request';
    } else {
      oauthError = 'invalid_token';
      params.push(`error="invalid_token"`);
    }
    if (code !== 'ERR_AUTH_MISSING') params.push(`error_description="${headerSafe(description)}"`);
    params.push(`resource_metadata="${headerSafe(metadataUrl)}"`);
    if (scope) params.push(`scope="${scope}"`);
    return {
      status,
      headers: {
        'www-authenticate': `Bearer ${params.join(', ')}`,
        'cache-control': 'no-store',
        'content-type': 'application/json',
      },
      body: { error: oauthError, error_description: description, code },
    };
  };
}
