/**
 * Where verification keys come from: a JWKS URL (cached, refreshed on an unknown `kid` with a
 * cooldown, fetched with a timeout and never following redirects), a JWKS file (re-read on an
 * unknown `kid`), or a fixed in-memory set (dev mode). Every key set is sanitised on load: only
 * public, signature-capable, asymmetric keys survive, so a JWKS that leaks a private or symmetric
 * key can never turn into "HS256 signed with the public key".
 */
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, errors as joseErrors } from 'jose';
import type { CryptoKey, FlattenedJWSInput, JSONWebKeySet, JWK, JWSHeaderParameters } from 'jose';
import { readCapped } from '../read-capped.js';
import { GatewayError } from '../errors.js';

/** A key resolver as jose's `jwtVerify` expects it, plus cache control. */
export interface KeySource {
  (protectedHeader: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey>;
  /** Loads (or re-loads) the key set now; rejects with ERR_AUTH_JWKS_UNAVAILABLE. */
  reload(): Promise<void>;
  /** The sanitised public key set currently in use (undefined before the first load). */
  current(): JSONWebKeySet | undefined;
}

export interface RemoteKeySourceOptions {
  /** Milliseconds before a JWKS fetch is abandoned. */
  timeoutMs: number;
  /** Minimum milliseconds between refreshes triggered by an unknown `kid` (flood protection). */
  cooldownMs: number;
  /** Milliseconds after which the cached set is refreshed on next use even without an unknown kid. */
  maxAgeMs: number;
  /** Largest JWKS response accepted, in bytes. */
  maxBytes?: number;
  /** Clock in ms for the cooldown and the max age. Default Date.now. */
  now?: () => number;
}

// Private / symmetric JWK members. A published JWKS must never carry them; we drop them rather than
// trust them, so a key can only ever be used to verify.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;
const ASYMMETRIC_KTY = new Set(['RSA', 'EC', 'OKP']);

/** Keeps only public asymmetric signing keys; throws on a document that is not a JWKS. */
export function sanitizeJwks(doc: unknown): JSONWebKeySet {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set is not a JSON Web Key Set');
  }
  const keys: JWK[] = [];
  for (const raw of (doc as { keys: unknown[] }).keys) {
    if (typeof raw !== 'object' || raw === null) continue;
    const jwk = raw as JWK;
    if (typeof jwk.kty !== 'string' || !ASYMMETRIC_KTY.has(jwk.kty)) continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    const pub: Record<string, unknown> = { ...jwk };
    for (const m of PRIVATE_MEMBERS) delete pub[m];
    keys.push(pub as JWK);
  }
  return { keys };
}

function mapLookupError(err: unknown): never {
  if (err instanceof GatewayError) throw err;
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    throw new GatewayError('ERR_AUTH_KEY_UNKNOWN', 'no trusted key matches the token', undefined, { cause: err });
  }
  throw err;
}

/**
 * Shared machinery: a loader that returns a fresh sanitised set, wrapped with kid-miss refresh,
 * cooldown, max age and single-flight reloads.
 */
function cachingKeySource(load: () => Promise<JSONWebKeySet>, opts: { cooldownMs: number; maxAgeMs: number; now?: () => number }): KeySource {
  const now = opts.now ?? Date.now;
  let jwks: JSONWebKeySet | undefined;
  let local: ReturnType<typeof createLocalJWKSet> | undefined;
  let loadedAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<void> | undefined;

  const reload = (): Promise<void> => {
    // Single flight: a burst of unknown-kid tokens costs one fetch, not one each.
    pending ??= (async () => {
      try {
        const next = await load();
        local = createLocalJWKSet(next);
        jwks = next;
        loadedAt = now();
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };

  const resolve = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    if (local === undefined || now() - loadedAt >= opts.maxAgeMs) {
      try {
        await reload();
      } catch (err) {
        // A stale set is still better than none while the issuer is briefly unreachable.
        if (local === undefined) throw err;
      }
    }
    try {
      return await local!(header, token);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey && now() - loadedAt >= opts.cooldownMs) {
        await reload();
        try {
          return await local!(header, token);
        } catch (again) {
          return mapLookupError(again);
        }
      }
      return mapLookupError(err);
    }
  };
  return Object.assign(resolve, { reload, current: () => jwks });
}

/** Keys from an HTTPS (or loopback HTTP) JWKS endpoint. Redirects are refused, not followed. */
export function remoteKeySource(url: string, opts: RemoteKeySourceOptions): KeySource {
  const maxBytes = opts.maxBytes ?? 256 * 1024;
  const load = async (): Promise<JSONWebKeySet> => {
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'GET',
        redirect: 'manual',
        signal: AbortSignal.timeout(opts.timeoutMs),
        headers: { accept: 'application/jwk-set+json, application/json' },
      });
    } catch (cause) {
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', timedOut ? 'the key set endpoint timed out' : 'the key set endpoint is unreachable', undefined, {
        cause,
      });
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', `the key set endpoint answered HTTP ${res.status}`, {
        status: res.status,
      });
    }
    let text: string;
    try {
      text = await readBody(res, maxBytes);
    } catch (cause) {
      if (cause instanceof GatewayError) throw cause;
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set endpoint timed out', undefined, { cause });
    }
    try {
      return sanitizeJwks(JSON.parse(text));
    } catch (cause) {
      if (cause instanceof GatewayError) throw cause;
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set is not valid JSON', undefined, { cause });
    }
  };
  return cachingKeySource(load, opts);
}

/** The response body as text, refused (and the stream cancelled) once it exceeds `maxBytes`. */
async function readBody(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  const body = declared > maxBytes ? 'too_large' : res.body === null ? Buffer.alloc(0) : await readCapped(res.body, maxBytes);
  if (body === 'too_large') {
    await res.body?.cancel().catch(() => undefined);
    throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set is too large');
  }
  return body.toString('utf8');
}

/** Keys from a JWKS file, re-read when a token names a kid the file did not have at last read. */
export function fileKeySource(path: string, opts: { cooldownMs: number; maxAgeMs: number; now?: () => number }): KeySource {
  const load = async (): Promise<JSONWebKeySet> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set file cannot be read', undefined, { cause });
    }
    try {
      return sanitizeJwks(JSON.parse(text));
    } catch (cause) {
      if (cause instanceof GatewayError) throw cause;
      throw new GatewayError('ERR_AUTH_JWKS_UNAVAILABLE', 'the key set file is not valid JSON', undefined, { cause });
    }
  };
  return cachingKeySource(load, opts);
}

/** A fixed key set (dev mode, tests). */
export function staticKeySource(jwks: JSONWebKeySet): KeySource {
  const clean = sanitizeJwks(jwks);
  return cachingKeySource(async () => clean, { cooldownMs: Number.POSITIVE_INFINITY, maxAgeMs: Number.POSITIVE_INFINITY });
}
