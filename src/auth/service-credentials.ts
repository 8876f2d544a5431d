/**
 * Per-service credentials instead of token passthrough. For every forwarded call the gateway mints a
 * short-lived (<= 60 s) token for that one service: `aud` = "micro-mcp:service:<name>" (a stable
 * name, the same for stdio and remote services and unaffected by URL changes), `sub` = the
 * principal, `scope` = "tool:<local tool name>", plus the purpose and the decision id.
 *
 * Keys rotate on a schedule without dropping in-flight calls: the *next* key is published one period
 * before it signs anything, and a retired key stays published until every token it signed expired.
 * Services get the public keys from `/.well-known/jwks.json` (remote) or from a JWKS file the
 * gateway rewrites atomically on every rotation (stdio; they re-read it on an unknown kid).
 */
import { generateKeyPair as nodeGenerateKeyPair, randomUUID, sign as nodeSign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import type { JSONWebKeySet, JWK } from 'jose';
import { CREDENTIAL_ENV, SERVICE_CREDENTIAL_TYP, serviceAudience, toolScope } from '../../schemas/contracts/service-credential.js';
import type { CredentialReach, ServiceCredentialAlg, ServiceCredentialClaims } from '../../schemas/contracts/service-credential.js';
import { GatewayError } from '../errors.js';
import type { Principal } from '../types.js';
import { AUTH_DEFAULTS } from './config.js';
import type { ServiceCredentialsConfig } from './config.js';

// Verifiers allow a few seconds of clock skew; keep retired keys that much longer.
const RETIRE_SLACK_MS = 10_000;

export interface MintRequest {
  /** Service name as configured ("fs"). */
  service: string;
  principal: Pick<Principal, 'id'> & Partial<Pick<Principal, 'client'>>;
  /** The tool name as the service knows it (ToolFacts.local_name, e.g. "read"). */
  tool: string;
  purpose: string | null;
  decisionId: string;
  /** What the decision narrowed this call to (hosts and ports, or roots); the service enforces it. */
  reach?: CredentialReach | undefined;
}

export interface ServiceCredentialMinterOptions extends ServiceCredentialsConfig {
  /** Clock in ms, for tests. */
  now?: () => number;
  /** Start the rotation timer (default true). Tests call rotate() by hand. */
  autoRotate?: boolean;
}

export interface Minter {
  /** A signed credential for one forwarded call to one service. */
  mint(req: MintRequest): Promise<string>;
  /**
   * The public keys to publish at `/.well-known/jwks.json`: the key that signs now first, then the
   * next one (published a period before it signs), then retired keys whose tokens may still live.
   */
  jwks(): JSONWebKeySet;
  /** The `aud` a service must expect. */
  audienceFor(service: string): string;
  /** Environment for a stdio service at spawn: its audience, our issuer, the JWKS file. */
  serviceEnv(service: string): Record<string, string>;
  /** Rotates now: the pre-published next key becomes active. Rotation on schedule calls this. */
  rotate(): Promise<void>;
  readonly issuer: string;
  readonly ttlSeconds: number;
  /** Path of the JWKS file kept current for stdio services, if configured. */
  readonly jwksFile: string | undefined;
  /** Stops the rotation timer. */
  close(): void;
}

interface SigningKey {
  kid: string;
  alg: ServiceCredentialAlg;
  privateKey: KeyObject;
  /** base64url of the protected header, built once per key. */
  headerB64: string;
  publicJwk: JWK;
  /** Ms timestamp of the last token signed, for retirement. */
  lastUsed: number;
  /** For retired keys: when it may leave the JWKS. */
  retireAt?: number;
}

const generateKeyPair = promisify(nodeGenerateKeyPair);

async function newKey(alg: ServiceCredentialAlg): Promise<SigningKey> {
  const { privateKey, publicKey } = alg === 'EdDSA' ? await generateKeyPair('ed25519') : await generateKeyPair('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const jwk: JWK = alg === 'EdDSA' ? { kty: kty!, crv: crv!, x: x! } : { kty: kty!, crv: crv!, x: x!, y: y! };
  const kid = await calculateJwkThumbprint(jwk);
  const header = { alg, kid, typ: SERVICE_CREDENTIAL_TYP };
  return {
    kid,
    alg,
    privateKey,
    headerB64: Buffer.from(JSON.stringify(header)).toString('base64url'),
    publicJwk: { ...jwk, kid, alg, use: 'sig' },
    lastUsed: 0,
  };
}

/**
 * Compact JWS with node:crypto directly (jose's SignJWT goes through WebCrypto: ~180 µs per ES256
 * token here). Signed on the event loop, one microtask after the call: the pipeline mints right
 * after appending the decision record, whose writer pump (queued by that append, so it runs first)
 * has by then handed its fdatasync to the thread pool, and the signing overlaps the disk's wait.
 * Signing on the thread pool instead (crypto.sign with a callback) saved nothing: measured again at
 * 16 agents, 1,043 against 1,048 µs of the gateway's CPU per call.
 *
 * EdDSA is the default because of what it costs in the gateway, not in a tight loop. In a loop
 * Ed25519 is the slower (~38 against ~30 µs per signature, OpenSSL 3.0). In the gateway at 16 agents,
 * one build with the two algorithms alternated in one run (blocks of 2,000 calls, 12 rounds), it took
 * ~48 µs less of the gateway's CPU per call in the 2026-07-28 era (892 -> 843 and, arms swapped,
 * 908 -> 860 µs; ~4% more calls/s both times), and made no difference in the 2025 era (1,028 ->
 * 1,048 and 1,303 -> 1,307 µs). The cause was not measured; P-256's signing reads a larger precomputed
 * table, which the agents and services sharing the cores may evict. Services verify either with
 * jose, like any other JWS.
 */
function signCompact(key: SigningKey, claims: ServiceCredentialClaims): Promise<string> {
  const input = `${key.headerB64}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return Promise.resolve().then(() => {
    const data = Buffer.from(input);
    const signature = key.alg === 'EdDSA' ? nodeSign(null, data, key.privateKey) : nodeSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  });
}

/**
 * Creates the minter with a fresh (non-extractable, in-memory) key pair and starts rotation.
 * ttl_s (1..MAX_CREDENTIAL_LIFETIME_S) is enforced by the config schema at load; throws
 * GatewayError(ERR_CONFIG_INVALID) for a rotation period shorter than twice the ttl.
 */
export async function createServiceCredentialMinter(options: ServiceCredentialMinterOptions = {}): Promise<Minter> {
  const now = options.now ?? Date.now;
  const ttl = options.ttl_s ?? AUTH_DEFAULTS.service_credentials.ttl_s;
  const rotateEvery = options.rotate_every_s ?? AUTH_DEFAULTS.service_credentials.rotate_every_s;
  // A key must outlive the tokens it signs by a margin. Stays in code: it relates two fields, and
  // the schema (JSON Schema cannot compare values) only bounds each one.
  if (!(rotateEvery >= 2 * ttl)) {
    throw new GatewayError('ERR_CONFIG_INVALID', 'rotate_every_s must be at least twice ttl_s', {
      key: 'auth.service_credentials.rotate_every_s',
    });
  }
  const issuer = options.issuer ?? AUTH_DEFAULTS.service_credentials.issuer;
  // Absolute, because the path is handed to child processes that may run in another cwd.
  const jwksFile = options.jwks_file ? resolve(options.jwks_file) : undefined;

  const alg = options.alg ?? AUTH_DEFAULTS.service_credentials.alg;
  let active = await newKey(alg);
  let next = await newKey(alg);
  let retired: SigningKey[] = [];

  const prune = (): void => {
    const t = now();
    retired = retired.filter((k) => (k.retireAt ?? 0) > t);
  };
  const jwks = (): JSONWebKeySet => {
    prune();
    return { keys: [active, next, ...retired].map((k) => ({ ...k.publicJwk })) };
  };

  // Writes serialise so an older set can never overwrite a newer one.
  let writing: Promise<void> = Promise.resolve();
  const writeJwks = (): Promise<void> => {
    if (!jwksFile) return Promise.resolve();
    const doc = `${JSON.stringify(jwks(), null, 2)}\n`;
    writing = writing
      .catch(() => undefined)
      .then(async () => {
        await mkdir(dirname(jwksFile), { recursive: true });
        const tmp = `${jwksFile}.${process.pid}.${randomUUID()}.tmp`;
        await writeFile(tmp, doc, { mode: 0o644 });
        await chmod(tmp, 0o644);
        await rename(tmp, jwksFile); // atomic: a reader sees the old or the new set, never half
      });
    return writing;
  };

  const rotate = async (): Promise<void> => {
    const fresh = await newKey(alg);
    const old = active;
    // Everything `old` signed expires within ttl of its last use.
    old.retireAt = Math.max(old.lastUsed, now()) + ttl * 1000 + RETIRE_SLACK_MS;
    retired.push(old);
    active = next; // already published for a whole period, so every verifier knows it
    next = fresh;
    await writeJwks();
  };

  await writeJwks();
  let timer: NodeJS.Timeout | undefined;
  if (options.autoRotate !== false) {
    timer = setInterval(() => {
      rotate().catch(() => undefined); // a failed rotation keeps the current key; retried next tick
    }, rotateEvery * 1000);
    timer.unref();
  }

  const mint = async (req: MintRequest): Promise<string> => {
    if (!req.service || !req.tool || !req.decisionId || !req.principal?.id) {
      throw new GatewayError('ERR_INTERNAL', 'a service credential needs service, tool, principal and decision id');
    }
    const key = active;
    const t = now();
    key.lastUsed = t;
    const iat = Math.floor(t / 1000);
    const claims: ServiceCredentialClaims = {
      iss: issuer,
      sub: req.principal.id,
      aud: serviceAudience(req.service),
      iat,
      nbf: iat,
      exp: iat + ttl,
      jti: randomUUID(),
      scope: toolScope(req.tool),
      decision_id: req.decisionId,
      purpose: req.purpose ?? null,
    };
    if (req.principal.client?.id) claims.client_id = req.principal.client.id;
    if (req.reach !== undefined) claims.reach = req.reach;
    return signCompact(key, claims);
  };

  return {
    mint,
    jwks,
    audienceFor: serviceAudience,
    serviceEnv: (service: string) => ({
      [CREDENTIAL_ENV.audience]: serviceAudience(service),
      [CREDENTIAL_ENV.issuer]: issuer,
      ...(jwksFile ? { [CREDENTIAL_ENV.jwksFile]: jwksFile } : {}),
    }),
    rotate,
    issuer,
    ttlSeconds: ttl,
    jwksFile,
    close: () => {
      if (timer) clearInterval(timer);
    },
  };
}
