/**
 * The gateway as an OAuth 2.1 resource server: verifies bearer JWTs into a Principal, builds the
 * RFC 6750 / RFC 9728 challenges and the Protected Resource Metadata document.
 *
 * Fail closed throughout: anything not positively verified is refused, with a precise error code
 * (never the token, never its claims) so operators can tell an expired token from a forged one.
 */
import { createHash } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyOptions } from 'jose';
import { GatewayError, isGatewayError, toHttpStatus } from '../errors.js';
import type { GatewayErrorCode } from '../errors.js';
import type { Principal } from '../types.js';
import { AUTH_DEFAULTS, DEFAULT_DEV_KEY_DIR, DEV_ISSUER } from './config.js';
import type { AsymmetricAlgorithm, AuthConfig } from './config.js';
import { ensureDevKey } from './dev.js';
import { fileKeySource, remoteKeySource, staticKeySource } from './jwks.js';
import type { KeySource } from './jwks.js';

export interface AuthenticatorContext {
  /** The gateway's canonical resource URI (RFC 8707), e.g. http://127.0.0.1:8080/mcp. */
  resource: string;
  /** True when the gateway listens only on a loopback address; required for dev mode. */
  loopback: boolean;
}

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

export interface Authenticator {
  /** Verifies the `Authorization` header value; resolves to a frozen Principal or throws GatewayError. */
  authenticate(authorizationHeader: string | undefined): Promise<Principal>;
  /**
   * The HTTP answer for an authentication (401/503) or scope (403) failure. The `scope` parameter
   * names the error's `data.required_scopes` (step-up), else every supported scope.
   */
  challenge(error: unknown): Challenge;
  /** The RFC 9728 metadata document, served at `/.well-known/oauth-protected-resource[/<path>]`. */
  protectedResourceMetadata(): ProtectedResourceMetadata;
  /** Absolute URL of the path-suffixed metadata document, as advertised in challenges. */
  readonly resourceMetadataUrl: string;
  /** The `iss` tokens must carry. */
  readonly issuer: string;
  /** Loads the key set now (for /readyz); rejects with ERR_AUTH_JWKS_UNAVAILABLE. */
  ready(): Promise<void>;
  /** Verified-token cache counters; test/bench/micro.ts checks with them that it measured what it names. */
  stats(): { cacheHits: number; cacheMisses: number; cacheSize: number };
}

const WELL_KNOWN = '/.well-known/oauth-protected-resource';
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function configError(message: string, key: string): GatewayError {
  return new GatewayError('ERR_CONFIG_INVALID', message, { key: `auth.${key}` });
}

function isLoopbackUrl(u: URL): boolean {
  return LOOPBACK_HOSTS.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname);
}

/** Reads a claim by name or dotted path. */
function claimAt(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function firstClaim(payload: JWTPayload, names: string | readonly string[]): unknown {
  for (const n of typeof names === 'string' ? [names] : names) {
    const v = claimAt(payload, n);
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

function stringList(v: unknown, sep: RegExp): string[] {
  if (typeof v === 'string') return v.split(sep).filter((s) => s.length > 0);
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s.length > 0);
  return [];
}

/** RFC 8693 `act`: the outermost actor is the party calling now; nested ones acted before it. */
function actorChain(act: unknown): string[] {
  const chain: string[] = [];
  let cur = act;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    const sub = (cur as Record<string, unknown>).sub ?? (cur as Record<string, unknown>).client_id;
    if (typeof sub === 'string') chain.push(sub);
    cur = (cur as Record<string, unknown>).act;
  }
  return chain;
}

/** Keeps header parameter values inside the RFC 6750 quoted-string alphabet (no `"` or `\`). */
function headerSafe(s: string): string {
  return s.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '');
}

const DESCRIPTIONS: Partial<Record<GatewayErrorCode, string>> = {
  ERR_AUTH_MISSING: 'a bearer token is required in the Authorization header',
  ERR_AUTH_EXPIRED: 'the token has expired',
  ERR_AUTH_NOT_YET_VALID: 'the token is not valid yet',
  ERR_AUTH_ISSUER: 'the token was issued by an untrusted issuer',
  ERR_AUTH_AUDIENCE: 'the token was not issued for this resource',
  ERR_AUTH_ALGORITHM: 'the token signing algorithm is not allowed',
  ERR_AUTH_SIGNATURE: 'the token signature is invalid',
  ERR_AUTH_KEY_UNKNOWN: 'the token was signed by an unknown key',
  ERR_AUTH_CLAIM_MISSING: 'the token lacks a required claim',
  ERR_AUTH_TOO_LARGE: 'the token is too large',
  ERR_AUTH_INVALID: 'the token is malformed',
  ERR_AUTH_JWKS_UNAVAILABLE: 'the token issuer keys are unavailable; try again later',
  ERR_INSUFFICIENT_SCOPE: 'the token lacks the scope this request needs',
};

function fail(code: GatewayErrorCode, data?: Record<string, unknown>, cause?: unknown): never {
  throw new GatewayError(code, DESCRIPTIONS[code] ?? 'authentication failed', data, cause ? { cause } : undefined);
}

/** Translates jose's errors into our stable codes. Only claim *names* survive into `data`. */
function mapJoseError(err: unknown): never {
  if (isGatewayError(err)) throw err;
  if (err instanceof joseErrors.JWTExpired) fail('ERR_AUTH_EXPIRED', { claim: 'exp' }, err);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') fail('ERR_AUTH_CLAIM_MISSING', { claim: err.claim }, err);
    if (err.claim === 'iss') fail('ERR_AUTH_ISSUER', { claim: 'iss' }, err);
    if (err.claim === 'aud') fail('ERR_AUTH_AUDIENCE', { claim: 'aud' }, err);
    if (err.claim === 'nbf') fail('ERR_AUTH_NOT_YET_VALID', { claim: 'nbf' }, err);
    fail('ERR_AUTH_INVALID', { claim: err.claim }, err);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) fail('ERR_AUTH_ALGORITHM', undefined, err);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) fail('ERR_AUTH_SIGNATURE', undefined, err);
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    fail('ERR_AUTH_KEY_UNKNOWN', undefined, err);
  }
  fail('ERR_AUTH_INVALID', undefined, err);
}

function deepFreezePrincipal(p: Principal): Principal {
  Object.freeze(p.groups);
  Object.freeze(p.scopes);
  Object.freeze(p.client);
  for (const v of Object.values(p.attributes)) if (Array.isArray(v)) Object.freeze(v);
  Object.freeze(p.attributes);
  return Object.freeze(p);
}

/**
 * Builds the authenticator from the `auth` config section, which schemas/config-auth.schema.json
 * has already validated at load (ranges, enums, jwt mode's issuer and single key source). Throws
 * GatewayError(ERR_CONFIG_INVALID) only for what the schema cannot see: the listener (dev mode
 * and the dev issuer need loopback), the resource URI the caller derived, and jwks_url's host.
 */
export async function createAuthenticator(options: AuthConfig, ctx: AuthenticatorContext): Promise<Authenticator> {
  // Derived by the caller from server.public_url or the listen address, not from this section.
  let resourceUrl: URL;
  try {
    resourceUrl = new URL(ctx.resource);
  } catch {
    throw configError('the resource URI must be an absolute URL', 'resource');
  }
  if (resourceUrl.hash !== '' || !/^https?:$/.test(resourceUrl.protocol)) {
    throw configError('the resource URI must be an http(s) URL without a fragment', 'resource');
  }
  const resource = resourceUrl.href;

  // The listener is not part of the config section, so only code can relate the two.
  const mode = options.mode;
  if (mode === 'dev' && !ctx.loopback) {
    throw configError('dev mode trusts a local key and is allowed only when the gateway listens on loopback', 'mode');
  }
  const issuer = options.issuer ?? DEV_ISSUER;
  if (issuer === DEV_ISSUER && !ctx.loopback) {
    throw configError('the dev issuer is trusted only when the gateway listens on loopback', 'issuer');
  }

  const algorithms: AsymmetricAlgorithm[] = [...(options.algorithms ?? AUTH_DEFAULTS.algorithms)];
  const allowedAlgs = new Set<string>(algorithms);
  const clockTolerance = options.clock_tolerance_s ?? AUTH_DEFAULTS.clock_tolerance_s;
  const maxTokenBytes = options.max_token_bytes ?? AUTH_DEFAULTS.max_token_bytes;
  const audience = options.audience ?? resource;

  const claims = { ...AUTH_DEFAULTS.claims, ...options.claims };
  const requiredClaims = [...new Set(['exp', ...(options.required_claims ?? [])])];

  let keys: KeySource;
  const cooldownMs = (options.jwks_cooldown_s ?? AUTH_DEFAULTS.jwks_cooldown_s) * 1000;
  const maxAgeMs = (options.jwks_max_age_s ?? AUTH_DEFAULTS.jwks_max_age_s) * 1000;
  if (options.mode === 'dev') {
    const dev = await ensureDevKey(options.dev_key_dir ?? DEFAULT_DEV_KEY_DIR);
    keys = staticKeySource(dev.publicJwks);
  } else if (options.jwks_url !== undefined) {
    // Plain HTTP would let anyone on the path substitute keys; loopback is the only exception.
    // Stays in code: telling loopback from look-alikes (127.0.0.1.evil.example, user@host) needs a
    // URL parser, not a schema pattern.
    const u = URL.canParse(options.jwks_url) ? new URL(options.jwks_url) : undefined;
    if (!u || (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackUrl(u)))) {
      throw configError('jwks_url must use https (http is allowed only on loopback)', 'jwks_url');
    }
    keys = remoteKeySource(u.href, {
      timeoutMs: options.jwks_timeout_ms ?? AUTH_DEFAULTS.jwks_timeout_ms,
      cooldownMs,
      maxAgeMs,
    });
  } else {
    keys = fileKeySource(options.jwks_file, { cooldownMs: Math.min(cooldownMs, 1000), maxAgeMs });
  }

  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    issuer,
    audience,
    clockTolerance,
    requiredClaims,
  };
  if (options.token_type) verifyOptions.typ = options.token_type;

  const cacheMax = options.token_cache?.max_entries ?? AUTH_DEFAULTS.token_cache.max_entries;
  const cacheMaxAgeMs = (options.token_cache?.max_age_s ?? AUTH_DEFAULTS.token_cache.max_age_s) * 1000;
  const cache = new Map<string, { principal: Principal; until: number }>();
  let cacheHits = 0;
  let cacheMisses = 0;

  const toPrincipal = (payload: JWTPayload): Principal => {
    const subject = claimAt(payload, claims.subject ?? 'sub');
    if (typeof subject !== 'string' || subject.length === 0) fail('ERR_AUTH_CLAIM_MISSING', { claim: claims.subject });
    const client = firstClaim(payload, claims.client ?? []);
    const purpose = claims.purpose ? claimAt(payload, claims.purpose) : undefined;
    const attributes: Record<string, unknown> = {};
    const chain = claims.actor ? actorChain(claimAt(payload, claims.actor)) : [];
    if (chain.length > 0) {
      attributes.actor = chain[0];
      attributes.actor_chain = chain;
    }
    for (const name of claims.attributes ?? []) {
      const v = claimAt(payload, name);
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[name] = v;
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) attributes[name] = [...v];
    }
    const p: Principal = {
      id: subject,
      type: 'user',
      issuer,
      groups: stringList(firstClaim(payload, claims.groups ?? []), /[\s,]+/),
      attributes,
      scopes: stringList(firstClaim(payload, claims.scopes ?? []), /\s+/),
      client: { id: typeof client === 'string' && client.length > 0 ? client : null },
      purpose: typeof purpose === 'string' && purpose.length > 0 ? purpose : null,
    };
    if (typeof payload.jti === 'string') p.token_id = payload.jti;
    if (typeof payload.exp === 'number') p.expires_at = payload.exp;
    return deepFreezePrincipal(p);
  };

  const authenticate = async (header: string | undefined): Promise<Principal> => {
    if (header === undefined || header.trim() === '') fail('ERR_AUTH_MISSING');
    // Cheap size check before any parsing: an oversized header must not cost a regex or a decode.
    if (header.length > maxTokenBytes + 32) fail('ERR_AUTH_TOO_LARGE', { max_bytes: maxTokenBytes });
    const m = /^(\S+)(?: +(.*))?$/.exec(header.trim());
    if (!m || m[1]!.toLowerCase() !== 'bearer') fail('ERR_AUTH_MISSING');
    const token = (m[2] ?? '').trim();
    if (token === '') fail('ERR_AUTH_INVALID');
    if (Buffer.byteLength(token) > maxTokenBytes) fail('ERR_AUTH_TOO_LARGE', { max_bytes: maxTokenBytes });
    if (!TOKEN_SHAPE.test(token)) fail('ERR_AUTH_INVALID');

    let key: string | undefined;
    if (cacheMax > 0) {
      // Measured on the 2-core dev box: ~400 µs per ES256 verify through jose, ~7 µs per cache hit.
      key = createHash('sha256').update(token).digest('base64url');
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (Date.now() < hit.until) {
          cacheHits++;
          return hit.principal;
        }
        cache.delete(key);
      }
      cacheMisses++;
    }

    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      fail('ERR_AUTH_INVALID', undefined, err);
    }
    // Checked before any key lookup so `none` and HS* never reach a verifier.
    if (typeof alg !== 'string' || !allowedAlgs.has(alg)) fail('ERR_AUTH_ALGORITHM');

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, verifyOptions));
    } catch (err) {
      mapJoseError(err);
    }
    const now = Math.floor(Date.now() / 1000);
    // jose checks `iat` only with maxTokenAge; a token "issued in the future" is not valid yet.
    if (payload.iat !== undefined && payload.iat > now + clockTolerance) fail('ERR_AUTH_NOT_YET_VALID', { claim: 'iat' });
    const principal = toPrincipal(payload);

    if (key !== undefined && typeof payload.exp === 'number') {
      const until = Math.min(payload.exp * 1000, Date.now() + cacheMaxAgeMs);
      if (cache.size >= cacheMax) cache.delete(cache.keys().next().value as string);
      cache.set(key, { principal, until });
    }
    return principal;
  };

  const suffixPath = resourceUrl.pathname === '/' ? '' : resourceUrl.pathname.replace(/\/$/, '');
  const resourceMetadataUrl = `${resourceUrl.origin}${WELL_KNOWN}${suffixPath}`;

  const authorizationServers =
    options.authorization_servers ?? (/^https?:\/\//.test(issuer) ? [issuer] : undefined);
  const metadata: ProtectedResourceMetadata = {
    resource,
    ...(authorizationServers ? { authorization_servers: [...authorizationServers] } : {}),
    ...(options.scopes_supported ? { scopes_supported: [...options.scopes_supported] } : {}),
    bearer_methods_supported: ['header'],
    resource_name: 'Micro-MCP gateway',
  };
  const defaultScope = (options.scopes_supported ?? []).join(' ');

  const challenge = (error: unknown): Challenge => {
    const code: GatewayErrorCode = isGatewayError(error) ? error.code : 'ERR_AUTH_INVALID';
    const required = isGatewayError(error) && Array.isArray(error.data?.required_scopes) ? (error.data.required_scopes as string[]) : undefined;
    const scope = headerSafe(required === undefined ? defaultScope : required.join(' ')).trim();
    const description = DESCRIPTIONS[code] ?? 'authentication failed';
    const params: string[] = [];
    let status: number;
    let oauthError: string;
    if (code === 'ERR_INSUFFICIENT_SCOPE') {
      status = 403;
      oauthError = 'insufficient_scope';
      params.push(`error="insufficient_scope"`);
    } else if (code === 'ERR_AUTH_JWKS_UNAVAILABLE') {
      // Our fault, not the token's: 503 and no invalid_token, so clients retry rather than re-authorize.
      return {
        status: toHttpStatus(code),
        headers: { 'retry-after': '5', 'cache-control': 'no-store', 'content-type': 'application/json' },
        body: { error: 'temporarily_unavailable', error_description: description, code },
      };
    } else if (code === 'ERR_AUTH_MISSING') {
      // RFC 6750 §3.1: no error code when the request carried no credentials at all.
      status = 401;
      oauthError = 'invalid_request';
    } else {
      status = 401;
      oauthError = 'invalid_token';
      params.push(`error="invalid_token"`);
    }
    if (code !== 'ERR_AUTH_MISSING') params.push(`error_description="${headerSafe(description)}"`);
    params.push(`resource_metadata="${headerSafe(resourceMetadataUrl)}"`);
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

  return {
    authenticate,
    challenge,
    protectedResourceMetadata: () => structuredClone(metadata),
    resourceMetadataUrl,
    issuer,
    ready: () => keys.reload(),
    stats: () => ({ cacheHits, cacheMisses, cacheSize: cache.size }),
  };
}
