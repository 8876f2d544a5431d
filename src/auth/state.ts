/**
 * Binding of gateway-issued state to the principal it was issued to: 2025-era session ids,
 * 2026-07-28 `requestState`, subscription ids. Anything the gateway hands an agent to bring back is
 * HMAC-signed over (kind, principal, payload, expiry), so it is refused for any other principal,
 * if tampered with, or once expired. The principal is not written into the token, only into the MAC.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GatewayError } from '../errors.js';
import type { Principal } from '../types.js';
import { AUTH_DEFAULTS } from './config.js';
import type { StateBindingConfig } from './config.js';

export interface StateSignOptions {
  /** Domain separation: state signed as one kind never verifies as another. Default "state". */
  kind?: string;
  /** Lifetime in seconds; default from config (3600). */
  ttl_s?: number;
}

export interface StateBinder {
  /** Signs `payload` (JSON-serialisable) for `principalId`; returns an opaque URL-safe string. */
  signState<T>(principalId: string, payload: T, opts?: StateSignOptions): string;
  /** Returns the payload, or throws GatewayError(ERR_INPUT_STATE_INVALID) for another principal,
   *  a tampered or expired token, or one signed for another kind. */
  verifyState<T = unknown>(principalId: string, token: string, opts?: Pick<StateSignOptions, 'kind'>): T;
  /** Aliases with the names front/ports.ts StatePort uses. */
  sign<T>(principalId: string, payload: T, opts?: StateSignOptions): string;
  verify<T = unknown>(principalId: string, token: string, opts?: Pick<StateSignOptions, 'kind'>): T;
}

const VERSION = 'v1';

/**
 * Who owns gateway state (sessions, requestState, cursors, subscriptions): issuer and subject, since
 * two issuers may share a `sub`. The one definition; every owner check compares these keys.
 */
export function principalKey(p: Pick<Principal, 'issuer' | 'id'>): string {
  return `${p.issuer}\u0000${p.id}`;
}

async function loadKey(cfg: StateBindingConfig): Promise<Buffer> {
  if (!cfg.key_file) return randomBytes(32);
  let raw: Buffer;
  try {
    raw = await readFile(cfg.key_file);
  } catch (cause) {
    throw new GatewayError('ERR_CONFIG_INVALID', 'the state binding key file cannot be read', { key: 'auth.state_binding.key_file' }, { cause });
  }
  const text = raw.toString('utf8').trim();
  // Accept a base64url text file (what `openssl rand -base64 48` style tools produce) or raw bytes.
  const decoded = /^[A-Za-z0-9_\-+/=]+$/.test(text) ? Buffer.from(text, 'base64url') : raw;
  if (decoded.length < 32) {
    throw new GatewayError('ERR_CONFIG_INVALID', 'the state binding key must hold at least 32 bytes', {
      key: 'auth.state_binding.key_file',
    });
  }
  return decoded;
}

/**
 * Creates the binder. Without `key_file` the key is `sharedKey` if given (replicas in dev mode derive
 * one from the dev key they share), else random per process, which is right for one replica; several
 * replicas must share a key file so any replica accepts state from any other.
 */
export async function createStateBinder(cfg: StateBindingConfig = {}, now: () => number = Date.now, sharedKey?: Buffer): Promise<StateBinder> {
  const key = cfg.key_file || !sharedKey ? await loadKey(cfg) : sharedKey;
  const defaultTtl = cfg.ttl_s ?? AUTH_DEFAULTS.state_binding.ttl_s;

  const mac = (kind: string, principalId: string, body: string): Buffer =>
    createHmac('sha256', key).update(`${VERSION}\u0000${kind}\u0000${principalId}\u0000${body}`).digest();

  const invalid = (): never => {
    throw new GatewayError('ERR_INPUT_STATE_INVALID', 'the state token is not valid for this caller');
  };

  const binder: Omit<StateBinder, 'sign' | 'verify'> = {
    signState<T>(principalId: string, payload: T, opts: StateSignOptions = {}): string {
      const exp = Math.floor(now() / 1000) + (opts.ttl_s ?? defaultTtl);
      const body = Buffer.from(JSON.stringify({ p: payload, exp })).toString('base64url');
      return `${VERSION}.${body}.${mac(opts.kind ?? 'state', principalId, body).toString('base64url')}`;
    },
    verifyState<T = unknown>(principalId: string, token: string, opts: Pick<StateSignOptions, 'kind'> = {}): T {
      if (typeof token !== 'string' || token.length > 64 * 1024) return invalid();
      const parts = token.split('.');
      if (parts.length !== 3 || parts[0] !== VERSION) return invalid();
      const [, body, sig] = parts as [string, string, string];
      const given = Buffer.from(sig, 'base64url');
      const expected = mac(opts.kind ?? 'state', principalId, body);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return invalid();
      let parsed: { p: T; exp: number };
      try {
        parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { p: T; exp: number };
      } catch {
        return invalid();
      }
      if (typeof parsed.exp !== 'number' || Math.floor(now() / 1000) >= parsed.exp) return invalid();
      return parsed.p;
    },
  };
  return { ...binder, sign: binder.signState, verify: binder.verifyState };
}
