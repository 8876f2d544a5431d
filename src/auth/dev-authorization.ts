/**
 * Development mode's own OAuth 2.1 authorization server, so an OAuth-capable MCP client (the SDKs'
 * OAuthClientProvider, the Inspector) logs in to `make run` without a pasted token: RFC 8414 metadata,
 * dynamic client registration (RFC 7591, public clients only), the authorization code grant with PKCE
 * (S256 only), RFC 9207 `iss` in the redirect, RFC 8707 `resource` = the gateway's /mcp. Tokens are
 * signed by the dev key, exactly like `micro-mcp token`.
 *
 * The authorize step approves at once for the configured dev user (there is no login page): it exists
 * only in dev mode, which listens on loopback only, and redirect URIs must be loopback URLs, so a code
 * never leaves the machine. Never built with `auth.mode: jwt` (the schema refuses the section there).
 * HTTP routes live in src/http/app.ts; this module holds the rules and the (bounded, in-memory) state.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import { type DevKey, mintDevToken } from './dev.js';

/** `auth.dev_authorization`, with its defaults applied. */
export interface DevAuthorizationOptions {
  subject: string;
  groups: string[];
  scopes: string[];
  tokenTtlS: number;
}

export const DEV_AUTHORIZATION_DEFAULTS: DevAuthorizationOptions = {
  subject: 'dev',
  groups: ['eng'],
  scopes: ['fs:read', 'http:fetch', 'vector:read', 'github:read'],
  tokenTtlS: 3600,
};

/** An OAuth error answer (RFC 6749 §5.2 / RFC 7591 §3.2.2): HTTP status and JSON body. */
export interface OAuthError {
  status: number;
  error: string;
  error_description: string;
}

interface Client {
  client_id: string;
  redirect_uris: string[];
  client_name?: string;
  issued: number;
}

interface Code {
  clientId: string;
  redirectUri: string;
  challenge: string;
  scope: string[];
  expires: number;
}

const MAX_CLIENTS = 1000;
const MAX_CODES = 1000;
const CODE_TTL_MS = 60_000;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const err = (status: number, error: string, error_description: string): OAuthError => ({ status, error, error_description });

export const AUTHORIZE_PATH = '/oauth/authorize';
export const TOKEN_PATH = '/oauth/token';
export const REGISTER_PATH = '/oauth/register';

/** A redirect URI a dev client may register: http(s) on a loopback host, no fragment (RFC 8252 §7.3). */
function loopbackRedirect(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2000) return undefined;
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return undefined;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hash !== '' || value.includes('#')) return undefined;
  return LOOPBACK_HOSTS.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname) ? value : undefined;
}

export class DevAuthorizationServer {
  private readonly clients = new Map<string, Client>();
  private readonly codes = new Map<string, Code>();

  /**
   * @param issuer   the gateway's origin (the authorization server's issuer identifier, RFC 8414)
   * @param resource the gateway's canonical resource URI (`<origin>/mcp`), the tokens' audience
   * @param tokenIssuer the `iss` the authenticator expects of dev tokens
   */
  constructor(
    readonly issuer: string,
    private readonly resource: string,
    private readonly tokenIssuer: string,
    private readonly key: DevKey,
    private readonly opts: DevAuthorizationOptions,
    private readonly clock: Clock,
  ) {}

  /** RFC 8414 authorization server metadata. */
  metadata(): Record<string, unknown> {
    return {
      issuer: this.issuer,
      authorization_endpoint: `${this.issuer}${AUTHORIZE_PATH}`,
      token_endpoint: `${this.issuer}${TOKEN_PATH}`,
      registration_endpoint: `${this.issuer}${REGISTER_PATH}`,
      scopes_supported: [...this.opts.scopes],
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code'],
      token_endpoint_auth_methods_supported: ['none'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    };
  }

  /** RFC 7591 registration: a public client (no secret) with loopback redirect URIs only. */
  register(body: unknown): { status: 201; body: Record<string, unknown> } | OAuthError {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return err(400, 'invalid_client_metadata', 'the body must be a JSON object');
    const m = body as Record<string, unknown>;
    const uris = m.redirect_uris;
    if (!Array.isArray(uris) || uris.length === 0 || uris.length > 10) return err(400, 'invalid_redirect_uri', 'redirect_uris must list 1 to 10 URIs');
    const redirects = uris.map(loopbackRedirect);
    if (redirects.some((u) => u === undefined))
      return err(400, 'invalid_redirect_uri', 'the development authorization server accepts only http(s) loopback redirect URIs without a fragment');
    const grants = m.grant_types;
    if (grants !== undefined && (!Array.isArray(grants) || !grants.includes('authorization_code')))
      return err(400, 'invalid_client_metadata', 'grant_types must include authorization_code');
    const name = typeof m.client_name === 'string' ? m.client_name.slice(0, 200) : undefined;
    const now = this.clock.now();
    const client: Client = { client_id: `dev-${randomBytes(16).toString('base64url')}`, redirect_uris: redirects as string[], issued: now };
    if (name !== undefined) client.client_name = name;
    this.clients.set(client.client_id, client);
    // Oldest first: a client that registers in a loop cannot grow the map without bound.
    while (this.clients.size > MAX_CLIENTS) this.clients.delete(this.clients.keys().next().value as string);
    return {
      status: 201,
      body: {
        client_id: client.client_id,
        client_id_issued_at: Math.floor(now / 1000),
        redirect_uris: client.redirect_uris,
        ...(name !== undefined ? { client_name: name } : {}),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
    };
  }

  /**
   * The authorization endpoint, approving at once for the dev user. Errors before the client and its
   * redirect URI are known are answered directly (never redirected, RFC 6749 §4.1.2.1); later ones go
   * back to the client's redirect URI.
   */
  authorize(q: URLSearchParams): { redirect: string } | OAuthError {
    const client = this.clients.get(q.get('client_id') ?? '');
    if (!client) return err(400, 'invalid_client', 'unknown client_id: register first (RFC 7591)');
    const redirectUri = q.get('redirect_uri') ?? (client.redirect_uris.length === 1 ? client.redirect_uris[0] : undefined);
    if (redirectUri === undefined || !client.redirect_uris.includes(redirectUri))
      return err(400, 'invalid_request', 'redirect_uri is not one the client registered');
    const back = (params: Record<string, string>) => {
      const u = new URL(redirectUri);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      const state = q.get('state');
      if (state !== null) u.searchParams.set('state', state);
      u.searchParams.set('iss', this.issuer);
      return { redirect: u.href };
    };
    if (q.get('response_type') !== 'code') return back({ error: 'unsupported_response_type', error_description: 'only response_type=code' });
    const challenge = q.get('code_challenge');
    if (q.get('code_challenge_method') !== 'S256' || challenge === null || !/^[A-Za-z0-9_-]{43}$/.test(challenge))
      return back({ error: 'invalid_request', error_description: 'PKCE with code_challenge_method=S256 is required' });
    const resource = q.get('resource');
    if (resource !== null && resource !== this.resource) return back({ error: 'invalid_target', error_description: `resource must be ${this.resource}` });
    const scope = this.grantedScope(q.get('scope'));
    if (scope === undefined) return back({ error: 'invalid_scope', error_description: 'none of the requested scopes is granted to the dev user' });
    const now = this.clock.now();
    for (const [k, c] of this.codes) if (c.expires <= now) this.codes.delete(k);
    while (this.codes.size >= MAX_CODES) this.codes.delete(this.codes.keys().next().value as string);
    const code = randomBytes(32).toString('base64url');
    this.codes.set(code, { clientId: client.client_id, redirectUri, challenge, scope, expires: now + CODE_TTL_MS });
    return back({ code });
  }

  /** The token endpoint: authorization_code + PKCE (S256), once per code. */
  async token(form: URLSearchParams): Promise<{ status: 200; body: Record<string, unknown> } | OAuthError> {
    if (form.get('grant_type') !== 'authorization_code') return err(400, 'unsupported_grant_type', 'only grant_type=authorization_code');
    const raw = form.get('code') ?? '';
    const code = this.codes.get(raw);
    // A code is good for one attempt, whatever its outcome (RFC 6749 §4.1.2).
    this.codes.delete(raw);
    if (!code || code.expires <= this.clock.now()) return err(400, 'invalid_grant', 'the authorization code is unknown, used or expired');
    if (form.get('client_id') !== code.clientId) return err(400, 'invalid_grant', 'the code was issued to another client');
    if (form.get('redirect_uri') !== null && form.get('redirect_uri') !== code.redirectUri)
      return err(400, 'invalid_grant', 'redirect_uri differs from the authorization request');
    const verifier = form.get('code_verifier') ?? '';
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || createHash('sha256').update(verifier).digest('base64url') !== code.challenge)
      return err(400, 'invalid_grant', 'code_verifier does not match the code_challenge');
    const resource = form.get('resource');
    if (resource !== null && resource !== this.resource) return err(400, 'invalid_target', `resource must be ${this.resource}`);
    const accessToken = await mintDevToken({
      sub: this.opts.subject,
      groups: this.opts.groups,
      scopes: code.scope,
      ttl: this.opts.tokenTtlS,
      audience: this.resource,
      issuer: this.tokenIssuer,
      clientId: code.clientId,
      key: this.key,
    });
    return {
      status: 200,
      body: { access_token: accessToken, token_type: 'Bearer', expires_in: this.opts.tokenTtlS, scope: code.scope.join(' ') },
    };
  }

  /** Requested ∩ the dev user's scopes (all of them when none is requested); undefined when nothing is left. */
  private grantedScope(requested: string | null): string[] | undefined {
    if (requested === null || requested.trim() === '') return [...this.opts.scopes];
    const asked = requested.split(' ').filter((s) => s.length > 0 && SCOPE_TOKEN.test(s));
    const granted = asked.filter((s) => this.opts.scopes.includes(s));
    return granted.length > 0 ? [...new Set(granted)] : undefined;
  }
}
