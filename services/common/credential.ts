/**
 * A service trusts only the gateway: every tool call must carry a credential the gateway minted for
 * THIS service and THIS tool. The contract (where the credential travels, its `typ`, algorithm,
 * claims, longest lifetime and the env the gateway sets) is schemas/contracts/service-credential.ts,
 * which the gateway mints against; this module verifies against it with jose and node only, nothing
 * from src/: services are separate processes and separate deploys.
 *
 * What is checked: JOSE `typ`, algorithm, signature against the gateway's published keys, `iss` =
 * the gateway, `aud` = this service, `exp`/`nbf`/`iat` with a small skew, the longest lifetime, the
 * claims a service relies on, and a `scope` that names the tool being called.
 */
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import type { CryptoKey, FlattenedJWSInput, JSONWebKeySet, JWK, JWSHeaderParameters, JWTPayload } from 'jose';
import {
  CREDENTIAL_ENV,
  CREDENTIAL_META_KEY,
  MAX_CREDENTIAL_LIFETIME_S,
  SERVICE_CREDENTIAL_ALGS,
  SERVICE_CREDENTIAL_TYP,
  toolScope,
} from '../../schemas/contracts/service-credential.js';
import type { CredentialReach, ServiceCredentialClaims } from '../../schemas/contracts/service-credential.js';

export type CredentialErrorCode =
  | 'ERR_CREDENTIAL_MISSING'
  | 'ERR_CREDENTIAL_INVALID'
  | 'ERR_CREDENTIAL_EXPIRED'
  | 'ERR_CREDENTIAL_AUDIENCE'
  | 'ERR_CREDENTIAL_ISSUER'
  | 'ERR_CREDENTIAL_SCOPE'
  | 'ERR_CREDENTIAL_REPLAYED'
  | 'ERR_CREDENTIAL_KEYS_UNAVAILABLE';

/** A refused credential. The message is safe to show: it never contains the token or its claims. */
export class CredentialError extends Error {
  readonly code: CredentialErrorCode;
  constructor(code: CredentialErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CredentialError';
    this.code = code;
  }
}

/** What a verified credential tells the service (`jti` is for the service's own logs, not a secret). */
export type ServiceCredential = Pick<ServiceCredentialClaims, 'sub' | 'scope' | 'purpose' | 'decision_id' | 'jti' | 'exp'> & {
  client_id: string | null;
  /** What the gateway's decision narrowed this call to; null when the credential carries no reach. */
  reach: CredentialReach | null;
};

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * The `reach` claim, checked member by member: a malformed reach refuses the credential (fail closed)
 * rather than being read as "no narrowing".
 */
function parseReach(v: unknown): CredentialReach | null {
  if (v === undefined) return null;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
  const r = v as Record<string, unknown>;
  const out: CredentialReach = {};
  for (const k of Object.keys(r))
    if (k !== 'hosts' && k !== 'ports' && k !== 'roots') throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
  if (r.hosts !== undefined) {
    if (!isStringList(r.hosts)) throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
    out.hosts = r.hosts.map((h) => h.toLowerCase());
  }
  if (r.ports !== undefined) {
    if (!Array.isArray(r.ports) || !r.ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) {
      throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
    }
    out.ports = r.ports as number[];
  }
  if (r.roots !== undefined) {
    if (!isStringList(r.roots) || !r.roots.every((x) => x.startsWith('/')))
      throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
    out.roots = r.roots;
  }
  return out;
}

/**
 * The claims a service relies on and their JSON types, checked at run time after jose. Also jose's
 * `requiredClaims`, in this order (it decides which missing claim an error names).
 */
const RELIED_ON = {
  exp: 'number',
  iat: 'number',
  sub: 'string',
  scope: 'string',
  decision_id: 'string',
  jti: 'string',
} as const satisfies { [K in keyof ServiceCredentialClaims]?: ServiceCredentialClaims[K] extends number ? 'number' : 'string' };

/** True when every claim in RELIED_ON has its type. */
function hasReliedOnClaims(payload: JWTPayload): payload is JWTPayload & Pick<ServiceCredentialClaims, keyof typeof RELIED_ON> {
  return Object.entries(RELIED_ON).every(([claim, type]) => typeof payload[claim] === type);
}

export interface CredentialVerifierOptions {
  /** This service's audience, `serviceAudience(<name>)` in the contract. */
  audience: string;
  /** The gateway's issuer id ("micro-mcp:gateway" unless configured). */
  issuer: string;
  /** The JWKS file the gateway keeps current (stdio services). */
  jwksFile?: string;
  /** The gateway's `/.well-known/jwks.json` (remote services). */
  jwksUrl?: string;
  /** Allowed clock skew, seconds. Default 5. */
  clockToleranceS?: number;
  /** Default SERVICE_CREDENTIAL_ALGS (EdDSA and ES256). */
  algorithms?: string[];
  /** Refuse a token id seen before (within its lifetime). Default false: enable once the gateway
   *  is known to mint one credential per forwarded call. */
  rejectReplay?: boolean;
}

export interface CredentialVerifier {
  /** Verifies the credential for a call of `tool` (the tool's local name); throws CredentialError. */
  verify(token: string | undefined, call: { tool: string }): Promise<ServiceCredential>;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

function publicKeysOnly(doc: unknown): JSONWebKeySet {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new CredentialError('ERR_CREDENTIAL_KEYS_UNAVAILABLE', 'the gateway key set is malformed');
  }
  const keys: JWK[] = [];
  for (const raw of (doc as { keys: unknown[] }).keys) {
    if (typeof raw !== 'object' || raw === null) continue;
    const jwk: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
    if (jwk.kty !== 'EC' && jwk.kty !== 'OKP' && jwk.kty !== 'RSA') continue;
    for (const m of PRIVATE_MEMBERS) delete jwk[m];
    keys.push(jwk as JWK);
  }
  return { keys };
}

type KeyResolver = (h: JWSHeaderParameters, t: FlattenedJWSInput) => Promise<CryptoKey>;

/** Keys from the gateway's JWKS file, re-read (at most once a second) when a kid is unknown. */
function fileKeys(path: string): KeyResolver {
  let local: ReturnType<typeof createLocalJWKSet> | undefined;
  let loadedAt = 0;
  let pending: Promise<void> | undefined;
  const load = (): Promise<void> =>
    (pending ??= (async () => {
      try {
        const text = await readFile(path, 'utf8');
        local = createLocalJWKSet(publicKeysOnly(JSON.parse(text)));
        loadedAt = Date.now();
      } catch (cause) {
        if (cause instanceof CredentialError) throw cause;
        throw new CredentialError('ERR_CREDENTIAL_KEYS_UNAVAILABLE', 'the gateway key set cannot be read', { cause });
      } finally {
        pending = undefined;
      }
    })());
  return async (h, t) => {
    if (local === undefined) await load();
    try {
      return await local!(h, t);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey && Date.now() - loadedAt >= 1000) {
        await load();
        return local!(h, t);
      }
      throw err;
    }
  };
}

function mapError(err: unknown): never {
  if (err instanceof CredentialError) throw err;
  if (err instanceof joseErrors.JWTExpired) throw new CredentialError('ERR_CREDENTIAL_EXPIRED', 'the call credential has expired', { cause: err });
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') throw new CredentialError('ERR_CREDENTIAL_AUDIENCE', 'the call credential is for another service', { cause: err });
    if (err.claim === 'iss') throw new CredentialError('ERR_CREDENTIAL_ISSUER', 'the call credential was not issued by the gateway', { cause: err });
    if (err.claim === 'nbf' || err.claim === 'iat') {
      throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid yet', { cause: err });
    }
  }
  if (err instanceof joseErrors.JWKSTimeout) {
    throw new CredentialError('ERR_CREDENTIAL_KEYS_UNAVAILABLE', 'the gateway key set is unavailable', { cause: err });
  }
  throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid', { cause: err });
}

/** True for an https URL, or an http URL on loopback: where a service may fetch the gateway's keys. */
export function jwksUrlAllowed(u: URL): boolean {
  const loopback = u.hostname === 'localhost' || u.hostname === '[::1]' || /^127\./.test(u.hostname);
  return u.protocol === 'https:' || (u.protocol === 'http:' && loopback);
}

/**
 * Builds the verifier a service installs in front of every tool call. Exactly one of `jwksFile`
 * and `jwksUrl` is required; a JWKS URL must be https unless it is on loopback.
 */
export function createCredentialVerifier(opts: CredentialVerifierOptions): CredentialVerifier {
  if (!opts.audience || !opts.issuer) throw new TypeError('audience and issuer are required');
  if (!!opts.jwksFile === !!opts.jwksUrl) throw new TypeError('exactly one of jwksFile and jwksUrl is required');
  let keys: KeyResolver;
  if (opts.jwksUrl) {
    const u = new URL(opts.jwksUrl);
    if (!jwksUrlAllowed(u)) {
      throw new TypeError('jwksUrl must use https (http only on loopback)');
    }
    // jose fetches with redirect: 'manual', a timeout, and refreshes on an unknown kid.
    keys = createRemoteJWKSet(u, { timeoutDuration: 3000, cooldownDuration: 1000, cacheMaxAge: 600_000 });
  } else {
    keys = fileKeys(opts.jwksFile!);
  }
  const algorithms = opts.algorithms ?? [...SERVICE_CREDENTIAL_ALGS];
  const tolerance = opts.clockToleranceS ?? 5;
  const seen = new Map<string, number>(); // jti -> exp (s), only with rejectReplay

  return {
    async verify(token: string | undefined, call: { tool: string }): Promise<ServiceCredential> {
      if (typeof token !== 'string' || token.length === 0) {
        throw new CredentialError('ERR_CREDENTIAL_MISSING', 'the call carries no gateway credential');
      }
      if (token.length > 8192) throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          algorithms,
          issuer: opts.issuer,
          audience: opts.audience,
          typ: SERVICE_CREDENTIAL_TYP,
          clockTolerance: tolerance,
          requiredClaims: Object.keys(RELIED_ON),
          maxTokenAge: MAX_CREDENTIAL_LIFETIME_S + tolerance,
        }));
      } catch (err) {
        mapError(err);
      }
      if (!hasReliedOnClaims(payload)) throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential is not valid');
      const { sub, scope, exp, iat, jti, decision_id } = payload;
      // A longer-lived token was not minted by a well-behaved gateway: refuse rather than trust.
      if (exp - iat > MAX_CREDENTIAL_LIFETIME_S) {
        throw new CredentialError('ERR_CREDENTIAL_INVALID', 'the call credential lives too long');
      }
      if (!scope.split(' ').includes(toolScope(call.tool))) {
        throw new CredentialError('ERR_CREDENTIAL_SCOPE', 'the call credential does not cover this tool');
      }
      if (opts.rejectReplay) {
        const nowS = Date.now() / 1000;
        for (const [k, e] of seen) if (e + tolerance < nowS) seen.delete(k);
        if (seen.has(jti)) throw new CredentialError('ERR_CREDENTIAL_REPLAYED', 'the call credential was already used');
        seen.set(jti, exp);
      }
      const purpose = payload.purpose;
      const client = payload.client_id;
      return {
        sub,
        scope,
        purpose: typeof purpose === 'string' ? purpose : null,
        decision_id,
        client_id: typeof client === 'string' ? client : null,
        jti,
        exp,
        reach: parseReach(payload.reach),
      };
    },
  };
}

/** Builds the verifier from the env the gateway sets at spawn; throws if it is incomplete. */
export function credentialVerifierFromEnv(env: NodeJS.ProcessEnv = process.env): CredentialVerifier {
  const audience = env[CREDENTIAL_ENV.audience];
  const issuer = env[CREDENTIAL_ENV.issuer];
  const jwksFile = env[CREDENTIAL_ENV.jwksFile];
  const jwksUrl = env[CREDENTIAL_ENV.jwksUrl];
  if (!audience || !issuer || (!jwksFile && !jwksUrl)) {
    throw new TypeError(
      `credential verification needs ${CREDENTIAL_ENV.audience}, ${CREDENTIAL_ENV.issuer} and ${CREDENTIAL_ENV.jwksFile} or ${CREDENTIAL_ENV.jwksUrl}`,
    );
  }
  return createCredentialVerifier(jwksFile ? { audience, issuer, jwksFile } : { audience, issuer, jwksUrl: jwksUrl! });
}

/** The credential in a request's `_meta` (stdio), if any. */
export function credentialFromMeta(meta: unknown): string | undefined {
  if (typeof meta !== 'object' || meta === null) return undefined;
  const v = (meta as Record<string, unknown>)[CREDENTIAL_META_KEY];
  return typeof v === 'string' ? v : undefined;
}

/** The bearer credential in an `Authorization` header value (remote services), if any. */
export function credentialFromAuthorization(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer +(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

/** The parts of the SDK's ServerContext the credential lives in (structural: no SDK import here). */
export interface CredentialCarrier {
  mcpReq: { _meta?: unknown };
  http?: { authInfo?: { token?: string } };
}

/**
 * Adapts a verifier to services/common/guard.ts `setCredentialVerifier`: the `_meta` credential
 * (stdio) wins, else the HTTP bearer token the transport put into `authInfo` (remote; with
 * @modelcontextprotocol/node set `req.auth = { token, clientId: '', scopes: [] }` from the header).
 * Throws CredentialError on failure, which guardCall turns into a refusal; resolves with the verified
 * credential, whose `reach` the tool enforces.
 */
export function guardWith(verifier: CredentialVerifier): (ctx: CredentialCarrier, toolName: string) => Promise<ServiceCredential> {
  return async (ctx, toolName) => {
    const token = credentialFromMeta(ctx.mcpReq._meta) ?? ctx.http?.authInfo?.token;
    return verifier.verify(token, { tool: toolName });
  };
}
