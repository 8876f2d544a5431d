/**
 * The gateway as an OAuth 2.1 resource server: verifies bearer JWTs into a Principal and answers
 * the clients it refuses.
 *
 * Fail closed throughout: anything not positively verified is refused, with a precise error code
 * (never the token, never its claims) so operators can tell an expired token from a forged one.
 *
 * The pieces, in the order a request meets them:
 *   resolveVerification   config + listener -> key source and verify options   (once, at start)
 *   bearerToken           Authorization header -> compact JWS, cheap checks first
 *   tokenCache            a token verified before -> its Principal, never past `exp`
 *   tokenVerifier         compact JWS -> verified JWT payload (jose)
 *   principalFromClaims   payload -> frozen Principal                           (principal.ts)
 *   challenger, protectedResourceMetadata   the HTTP answers                    (challenge.ts)
 */
import { createHash } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyOptions } from 'jose';
import { GatewayError } from '../errors.js';
import type { Principal } from '../types.js';
import { challenger, protectedResourceMetadata, resourceMetadataUrl } from './challenge.js';
import type { Challenge, ProtectedResourceMetadata } from './challenge.js';
import { AUTH_DEFAULTS, DEFAULT_DEV_KEY_DIR, DEV_ISSUER } from './config.js';
import type { AuthConfig } from './config.js';
import { ensureDevKey } from './dev.js';
import { fail, failFromJose } from './failures.js';
import { fileKeySource, remoteKeySource, staticKeySource } from './jwks.js';
import type { KeySource } from './jwks.js';
import { principalFromClaims } from './principal.js';

export interface AuthenticatorContext {
  /** The gateway's canonical resource URI (RFC 8707), e.g. http://127.0.0.1:8080/mcp. */
  resource: string;
  /** True when the gateway listens only on a loopback address; required for dev mode. */
  loopback: boolean;
  /** Clock in ms for `exp`/`nbf`/`iat`, the token cache and JWKS refreshes. Default Date.now. */
  now?: () => number;
  /**
   * Where single-use token ids are remembered when several replicas must share them (the shared
   * state); default: in this process, bounded by `replay_cache_max_entries`.
   */
  replay?: { firstSight(id: string, ttlMs: number): Promise<boolean> };
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

const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function configError(message: string, key: string): GatewayError {
  return new GatewayError('ERR_CONFIG_INVALID', message, { key: `auth.${key}` });
}

function isLoopbackUrl(u: URL): boolean {
  return LOOPBACK_HOSTS.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname);
}

/** What verifying a token needs, resolved once from the config and the listener. */
interface Verification {
  keys: KeySource;
  issuer: string;
  /** Checked before any key lookup, so `none` and HS* never reach a verifier. */
  algorithms: ReadonlySet<string>;
  /** For jose, without `currentDate` (taken from the clock per token). */
  jose: JWTVerifyOptions;
  clockToleranceS: number;
  maxTokenBytes: number;
  maxLifetimeS: number;
}

/** The canonical resource URI: derived by the caller from server.public_url or the listen address. */
function resolveResource(resource: string): URL {
  if (!URL.canParse(resource)) throw configError('the resource URI must be an absolute URL', 'resource');
  const url = new URL(resource);
  if (url.hash !== '' || !/^https?:$/.test(url.protocol)) {
    throw configError('the resource URI must be an http(s) URL without a fragment', 'resource');
  }
  return url;
}

/**
 * Where the verification keys come from: the dev key, a JWKS URL or a JWKS file. The schema has
 * already picked exactly one per mode; jwks_url's host is checked here.
 */
async function resolveKeySource(options: AuthConfig, now: () => number): Promise<KeySource> {
  const cooldownMs = (options.jwks_cooldown_s ?? AUTH_DEFAULTS.jwks_cooldown_s) * 1000;
  const maxAgeMs = (options.jwks_max_age_s ?? AUTH_DEFAULTS.jwks_max_age_s) * 1000;
  if (options.mode === 'dev') {
    const dev = await ensureDevKey(options.dev_key_dir ?? DEFAULT_DEV_KEY_DIR);
    return staticKeySource(dev.publicJwks);
  }
  if (options.jwks_url !== undefined) {
    // Plain HTTP would let anyone on the path substitute keys; loopback is the only exception.
    // Stays in code: telling loopback from look-alikes (127.0.0.1.evil.example, user@host) needs a
    // URL parser, not a schema pattern.
    const u = URL.canParse(options.jwks_url) ? new URL(options.jwks_url) : undefined;
    if (!u || (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackUrl(u)))) {
      throw configError('jwks_url must use https (http is allowed only on loopback)', 'jwks_url');
    }
    const timeoutMs = options.jwks_timeout_ms ?? AUTH_DEFAULTS.jwks_timeout_ms;
    return remoteKeySource(u.href, { timeoutMs, cooldownMs, maxAgeMs, now });
  }
  return fileKeySource(options.jwks_file, { cooldownMs: Math.min(cooldownMs, 1000), maxAgeMs, now });
}

/**
 * Config + listener -> what verifying a token needs. Ranges, enums and the choice of key source
 * were checked by schemas/config-auth.schema.json at load; this refuses, with
 * GatewayError(ERR_CONFIG_INVALID), only what needs the listener, which the schema cannot see.
 */
async function resolveVerification(options: AuthConfig, ctx: { resource: URL; loopback: boolean; now: () => number }): Promise<Verification> {
  if (options.mode === 'dev' && !ctx.loopback) {
    throw configError('dev mode trusts a local key and is allowed only when the gateway listens on loopback', 'mode');
  }
  const issuer = options.issuer ?? DEV_ISSUER;
  if (issuer === DEV_ISSUER && !ctx.loopback) {
    throw configError('the dev issuer is trusted only when the gateway listens on loopback', 'issuer');
  }
  const algorithms = [...(options.algorithms ?? AUTH_DEFAULTS.algorithms)];
  const clockToleranceS = options.clock_tolerance_s ?? AUTH_DEFAULTS.clock_tolerance_s;
  const jose: JWTVerifyOptions = {
    algorithms,
    issuer,
    audience: options.audience ?? ctx.resource.href,
    clockTolerance: clockToleranceS,
    requiredClaims: [...new Set(['exp', ...(options.required_claims ?? [])])],
    ...(options.token_type ? { typ: options.token_type } : {}),
  };
  return {
    keys: await resolveKeySource(options, ctx.now),
    issuer,
    algorithms: new Set(algorithms),
    jose,
    clockToleranceS,
    maxTokenBytes: options.max_token_bytes ?? AUTH_DEFAULTS.max_token_bytes,
    maxLifetimeS: options.max_token_lifetime_s ?? AUTH_DEFAULTS.max_token_lifetime_s,
  };
}

/**
 * The compact JWS in an `Authorization: Bearer <token>` header. Size and shape are checked before
 * any parsing, so an oversized or garbage header costs neither a regex nor a decode.
 */
function bearerToken(header: string | undefined, maxTokenBytes: number): string {
  if (header === undefined || header.trim() === '') fail('ERR_AUTH_MISSING');
  if (header.length > maxTokenBytes + 32) fail('ERR_AUTH_TOO_LARGE', { max_bytes: maxTokenBytes });
  const m = /^(\S+)(?: +(.*))?$/.exec(header.trim());
  if (!m || m[1]!.toLowerCase() !== 'bearer') fail('ERR_AUTH_MISSING');
  const token = (m[2] ?? '').trim();
  if (token === '') fail('ERR_AUTH_INVALID');
  if (Buffer.byteLength(token) > maxTokenBytes) fail('ERR_AUTH_TOO_LARGE', { max_bytes: maxTokenBytes });
  if (!TOKEN_SHAPE.test(token)) fail('ERR_AUTH_INVALID');
  return token;
}

/**
 * Principals of tokens verified before, by SHA-256 of the token; an entry never outlives the
 * token's `exp` nor `maxAgeMs`, and the oldest entry makes room for a new one.
 * Measured on the 2-core dev box: ~400 µs per ES256 verify through jose, ~7 µs per cache hit.
 */
function tokenCache(maxEntries: number, maxAgeMs: number, now: () => number) {
  const entries = new Map<string, { principal: Principal; until: number }>();
  let hits = 0;
  let misses = 0;
  return {
    keyOf: (token: string): string => createHash('sha256').update(token).digest('base64url'),
    get(key: string): Principal | undefined {
      const hit = entries.get(key);
      if (hit !== undefined && now() < hit.until) {
        hits++;
        return hit.principal;
      }
      if (hit !== undefined) entries.delete(key);
      misses++;
      return undefined;
    },
    set(key: string, principal: Principal, expS: number): void {
      if (entries.size >= maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
      entries.set(key, { principal, until: Math.min(expS * 1000, now() + maxAgeMs) });
    },
    stats: () => ({ cacheHits: hits, cacheMisses: misses, cacheSize: entries.size }),
  };
}

/**
 * Claims a policy compares and an audit record quotes must be plain text: a control character
 * (C0, DEL, C1) or a lone surrogate in the subject, a group, a scope, the client, the purpose or an
 * attribute refuses the token (ERR_AUTH_INVALID, naming the claim, never its value).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is this regex's job.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function wellFormed(p: Principal): Principal {
  const bad = (claim: string, v: unknown): void => {
    if (typeof v === 'string' && UNPRINTABLE.test(v)) fail('ERR_AUTH_INVALID', { claim });
    if (Array.isArray(v)) for (const x of v) bad(claim, x);
  };
  bad('subject', p.id);
  bad('groups', p.groups);
  bad('scopes', p.scopes);
  bad('client', p.client.id);
  bad('purpose', p.purpose);
  for (const [name, v] of Object.entries(p.attributes)) bad(name, v);
  return p;
}

/**
 * `jti` replay protection for issuers that mint a token per request: a token id is accepted once,
 * and remembered until its token expires. When the memory is full, new single-use tokens are refused
 * (forgetting an id early would let its token be replayed).
 */
function replayGuard(maxEntries: number, toleranceS: number, now: () => number) {
  const seen = new Map<string, number>();
  let sweptAt = 0;
  return {
    once(payload: JWTPayload, principalOf: (p: JWTPayload) => Principal): Principal {
      const principal = principalOf(payload);
      if (typeof payload.jti !== 'string') return principal;
      const t = now();
      if (t - sweptAt > 1000 || seen.size >= maxEntries) {
        sweptAt = t;
        for (const [id, until] of seen) if (until <= t) seen.delete(id);
      }
      const until = seen.get(payload.jti);
      if (until !== undefined && until > t) fail('ERR_AUTH_REPLAYED', { claim: 'jti' });
      if (seen.size >= maxEntries) fail('ERR_AUTH_REPLAY_CACHE_FULL');
      // Until the token can no longer verify: its exp plus the clock skew verification allows.
      seen.set(payload.jti, typeof payload.exp === 'number' ? (payload.exp + toleranceS) * 1000 : Number.POSITIVE_INFINITY);
      return principal;
    },
  };
}

/** The replay guard on the shared state: the first replica to see a token id wins; the store unreachable refuses. */
function sharedReplayGuard(store: { firstSight(id: string, ttlMs: number): Promise<boolean> }, toleranceS: number, now: () => number) {
  return {
    async once(payload: JWTPayload, principalOf: (p: JWTPayload) => Principal): Promise<Principal> {
      const principal = principalOf(payload);
      if (typeof payload.jti !== 'string') return principal;
      const ttlMs = typeof payload.exp === 'number' ? (payload.exp + toleranceS) * 1000 - now() : 24 * 3600_000;
      let first = false;
      try {
        first = await store.firstSight(`jti:${payload.jti}`, Math.max(1, ttlMs));
      } catch {
        fail('ERR_AUTH_REPLAY_CACHE_FULL');
      }
      if (!first) fail('ERR_AUTH_REPLAYED', { claim: 'jti' });
      return principal;
    },
  };
}

/** Compact JWS -> verified payload, or GatewayError with the precise code; times from `now`. */
function tokenVerifier(v: Verification, now: () => number): (token: string) => Promise<JWTPayload> {
  return async function verifyToken(token: string): Promise<JWTPayload> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      fail('ERR_AUTH_INVALID', undefined, err);
    }
    if (typeof alg !== 'string' || !v.algorithms.has(alg)) fail('ERR_AUTH_ALGORITHM');
    const t = now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, v.keys, { ...v.jose, currentDate: new Date(t) }));
    } catch (err) {
      failFromJose(err);
    }
    const nowS = Math.floor(t / 1000);
    // jose checks `iat` only with maxTokenAge; a token "issued in the future" is not valid yet.
    if (payload.iat !== undefined && payload.iat > nowS + v.clockToleranceS) {
      fail('ERR_AUTH_NOT_YET_VALID', { claim: 'iat' });
    }
    // A token meant to live for years is a leak waiting to happen: refuse what the issuer should not mint.
    if (typeof payload.exp === 'number' && payload.exp - (payload.iat ?? nowS) > v.maxLifetimeS) {
      fail('ERR_AUTH_LIFETIME', { claim: 'exp', max_lifetime_s: v.maxLifetimeS });
    }
    return payload;
  };
}

/**
 * Builds the authenticator from the `auth` config section (validated by the schema at load).
 * Throws GatewayError(ERR_CONFIG_INVALID) for what only the listener can tell: dev mode or the dev
 * issuer off loopback, plain-http jwks_url off loopback, a resource URI that is not http(s).
 */
export async function createAuthenticator(options: AuthConfig, ctx: AuthenticatorContext): Promise<Authenticator> {
  const now = ctx.now ?? Date.now;
  const resource = resolveResource(ctx.resource);
  const v = await resolveVerification(options, { resource, loopback: ctx.loopback, now });
  const verifyToken = tokenVerifier(v, now);
  const claims = { ...AUTH_DEFAULTS.claims, ...options.claims };
  const maxEntries = options.token_cache?.max_entries ?? AUTH_DEFAULTS.token_cache.max_entries;
  const maxAgeMs = (options.token_cache?.max_age_s ?? AUTH_DEFAULTS.token_cache.max_age_s) * 1000;
  const cache = maxEntries > 0 ? tokenCache(maxEntries, maxAgeMs, now) : undefined;
  const metadataUrl = resourceMetadataUrl(resource);
  const metadata = protectedResourceMetadata(resource.href, v.issuer, options);

  const replay = !options.single_use_jti
    ? undefined
    : ctx.replay !== undefined
      ? sharedReplayGuard(ctx.replay, v.clockToleranceS, now)
      : replayGuard(options.replay_cache_max_entries ?? AUTH_DEFAULTS.replay_cache_max_entries, v.clockToleranceS, now);
  const principalOf = (payload: JWTPayload): Principal => wellFormed(principalFromClaims(payload, claims, v.issuer));

  const authenticate = async (header: string | undefined): Promise<Principal> => {
    const token = bearerToken(header, v.maxTokenBytes);
    if (cache === undefined) return replay ? await replay.once(await verifyToken(token), principalOf) : principalOf(await verifyToken(token));
    const key = cache.keyOf(token);
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const payload = await verifyToken(token);
    // A single-use token is never cached: its second use must meet the replay guard.
    if (replay !== undefined && typeof payload.jti === 'string') return await replay.once(payload, principalOf);
    const principal = principalOf(payload);
    if (typeof payload.exp === 'number') cache.set(key, principal, payload.exp);
    return principal;
  };

  return {
    authenticate,
    challenge: challenger(metadataUrl, options.scopes_supported),
    protectedResourceMetadata: () => structuredClone(metadata),
    resourceMetadataUrl: metadataUrl,
    issuer: v.issuer,
    ready: () => v.keys.reload(),
    stats: () => cache?.stats() ?? { cacheHits: 0, cacheMisses: 0, cacheSize: 0 },
  };
}
