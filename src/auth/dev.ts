/**
 * Local development without an identity provider: a dev signing key created once in a git-ignored
 * folder, and `micro-mcp token` to mint tokens for it. The authenticator trusts this key only when
 * the gateway listens on loopback (see createAuthenticator).
 */
import { hkdfSync, randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { JSONWebKeySet, JWK } from 'jose';
import { createWhole } from '../create-whole.js';
import { GatewayError } from '../errors.js';
import { DEFAULT_DEV_KEY_DIR, DEV_ISSUER } from './config.js';

export const DEV_ALG = 'ES256';
const PRIVATE_FILE = 'dev-signing-key.private.jwk.json';
const PUBLIC_FILE = 'dev-signing-key.jwks.json';
/** Audience a dev token gets when none is given: the default `make run` listener. */
export const DEFAULT_DEV_AUDIENCE = 'http://127.0.0.1:8080/mcp';
const MAX_DEV_TTL_S = 7 * 24 * 3600;

export interface DevKey {
  privateJwk: JWK;
  publicJwks: JSONWebKeySet;
  kid: string;
}

function publicOf(jwk: JWK): JWK {
  const { d: _d, ...pub } = jwk;
  return pub;
}

/**
 * Returns the dev signing key in `dir`, creating it (ES256, files 0600, folder 0700) on first use.
 * Concurrent first calls converge on one key: the private file is created whole, once (createWhole).
 */
export async function ensureDevKey(dir: string = DEFAULT_DEV_KEY_DIR): Promise<DevKey> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privPath = join(dir, PRIVATE_FILE);
  let privateJwk: JWK;
  try {
    privateJwk = JSON.parse(await readFile(privPath, 'utf8')) as JWK;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new GatewayError('ERR_CONFIG_INVALID', `the dev signing key in ${dir} is unreadable`, { dir }, { cause: err });
    }
    const { privateKey } = await generateKeyPair(DEV_ALG, { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(jwk);
    privateJwk = { ...jwk, kid, alg: DEV_ALG, use: 'sig' };
    if (!(await createWhole(privPath, `${JSON.stringify(privateJwk)}\n`, 0o600))) {
      // Another process won the race: use its key.
      privateJwk = JSON.parse(await readFile(privPath, 'utf8')) as JWK;
    }
  }
  if (typeof privateJwk.d !== 'string' || typeof privateJwk.kid !== 'string') {
    throw new GatewayError('ERR_CONFIG_INVALID', `the dev signing key in ${dir} is malformed`, { dir });
  }
  const publicJwks: JSONWebKeySet = { keys: [publicOf(privateJwk)] };
  // The public half is derived, so rewriting it is always safe (atomic rename, same 0600 mode).
  const pubPath = join(dir, PUBLIC_FILE);
  const tmp = `${pubPath}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, `${JSON.stringify(publicJwks, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, pubPath);
  return { privateJwk, publicJwks, kid: privateJwk.kid };
}

/**
 * A state binding key for dev-mode replicas that share one dev key folder (and so one dev key):
 * derived from the private key, so it is as secret as the key that signs every dev token.
 */
export function devStateKey(key: DevKey): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(String(key.privateJwk.d), 'base64url'), Buffer.alloc(0), 'micro-mcp dev state binding', 32));
}

/** Parses "90", "90s", "15m", "2h", "1d" into seconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value <= 0) throw new GatewayError('ERR_BAD_REQUEST', 'a duration must be positive');
    return Math.floor(value);
  }
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new GatewayError('ERR_BAD_REQUEST', `not a duration: use e.g. 90s, 15m, 2h, 1d`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const s = n * (unit === 's' ? 1 : unit === 'm' ? 60 : unit === 'h' ? 3600 : 86400);
  if (s <= 0) throw new GatewayError('ERR_BAD_REQUEST', 'a duration must be positive');
  return s;
}

export interface DevTokenOptions {
  sub: string;
  groups?: string[] | string;
  scopes?: string[] | string;
  /** Lifetime: seconds or "15m"-style. At most 7 days. */
  ttl: string | number;
  purpose?: string;
  /** Purposes the token grants (the `purposes` claim). */
  purposes?: string[] | string;
  clientId?: string;
  /** The gateway's canonical resource URI, e.g. http://127.0.0.1:8080/mcp. */
  audience: string;
  issuer?: string;
  /** Key folder; default ".dev/keys". */
  keyDir?: string;
  /** An already loaded key (skips the folder). */
  key?: DevKey;
}

function splitList(v: string[] | string | undefined, sep: RegExp): string[] {
  if (v === undefined) return [];
  const parts = Array.isArray(v) ? v : v.split(sep);
  return parts.map((s) => s.trim()).filter((s) => s.length > 0);
}

/** Mints a token signed by the dev key. For local development and tests only. */
export async function mintDevToken(opts: DevTokenOptions): Promise<string> {
  if (!opts.sub) throw new GatewayError('ERR_BAD_REQUEST', 'a subject (--sub) is required');
  const ttl = parseDuration(opts.ttl);
  if (ttl > MAX_DEV_TTL_S) throw new GatewayError('ERR_BAD_REQUEST', 'a dev token lives at most 7 days');
  const key = opts.key ?? (await ensureDevKey(opts.keyDir ?? DEFAULT_DEV_KEY_DIR));
  const signingKey = await importJWK(key.privateJwk, DEV_ALG);
  const claims: Record<string, unknown> = {
    groups: splitList(opts.groups, /[\s,]+/),
    scope: splitList(opts.scopes, /\s+/).join(' '),
    client_id: opts.clientId ?? 'micro-mcp-cli',
  };
  if (opts.purpose) claims.purpose = opts.purpose;
  const purposes = splitList(opts.purposes, /[\s,]+/);
  if (purposes.length > 0) claims.purposes = purposes;
  // One clock reading for iat, nbf and exp: jose reads the clock for each relative time, and a second
  // boundary between two readings made a 15-minute token live 901 s.
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: DEV_ALG, kid: key.kid, typ: 'at+jwt' })
    .setIssuer(opts.issuer ?? DEV_ISSUER)
    .setSubject(opts.sub)
    .setAudience(opts.audience)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + ttl)
    .setJti(randomUUID())
    .sign(signingKey);
}

const USAGE =
  'usage: micro-mcp token --sub <id> [--groups "eng,ops"] [--scopes "fs:read http:fetch"] [--ttl 15m]\n' +
  '                       [--purpose P] [--purposes "a b"] [--port N | --aud URI] [--client ID] [--iss ISSUER] [--key-dir DIR]\n' +
  '  --port N   the audience of a gateway on 127.0.0.1:N (make run PORT=N), i.e. --aud http://127.0.0.1:N/mcp\n' +
  `  --aud URI  the gateway's resource URI (default ${DEFAULT_DEV_AUDIENCE})\n`;

/**
 * `micro-mcp token ...`: prints just the token (and a newline) on `out`. Returns the exit code;
 * usage errors go to `err`. The key folder defaults to $MICRO_MCP_DEV_KEY_DIR or ".dev/keys".
 */
export async function tokenCommand(
  argv: string[],
  out: { write(chunk: string): unknown },
  err: { write(chunk: string): unknown } = process.stderr,
): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        sub: { type: 'string' },
        groups: { type: 'string' },
        scopes: { type: 'string' },
        ttl: { type: 'string', default: '15m' },
        purpose: { type: 'string' },
        purposes: { type: 'string' },
        aud: { type: 'string' },
        port: { type: 'string' },
        client: { type: 'string' },
        iss: { type: 'string', default: DEV_ISSUER },
        'key-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    err.write(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const sub = str('sub');
  if (!sub) {
    err.write(`--sub is required\n${USAGE}`);
    return 2;
  }
  const port = str('port');
  if (port !== undefined && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    err.write(`--port must be a TCP port (1-65535)\n${USAGE}`);
    return 2;
  }
  if (port !== undefined && str('aud') !== undefined) {
    err.write(`give --port or --aud, not both\n${USAGE}`);
    return 2;
  }
  try {
    const opts: DevTokenOptions = {
      sub,
      ttl: str('ttl') ?? '15m',
      audience: port !== undefined ? `http://127.0.0.1:${Number(port)}/mcp` : (str('aud') ?? DEFAULT_DEV_AUDIENCE),
      issuer: str('iss') ?? DEV_ISSUER,
      keyDir: str('key-dir') ?? process.env.MICRO_MCP_DEV_KEY_DIR ?? DEFAULT_DEV_KEY_DIR,
    };
    const groups = str('groups');
    const scopes = str('scopes');
    const purpose = str('purpose');
    const purposes = str('purposes');
    const client = str('client');
    if (groups !== undefined) opts.groups = groups;
    if (scopes !== undefined) opts.scopes = scopes;
    if (purpose !== undefined) opts.purpose = purpose;
    if (purposes !== undefined) opts.purposes = purposes;
    if (client !== undefined) opts.clientId = client;
    out.write(`${await mintDevToken(opts)}\n`);
    return 0;
  } catch (e) {
    err.write(`${(e as Error).message}\n`);
    return 2;
  }
}
