/**
 * Issue #11 point 6, OAuth in development mode: the gateway's loopback authorization server (RFC 8414
 * metadata, RFC 7591 registration, authorization code + PKCE S256, dev-key tokens), listed in the
 * protected-resource metadata, so the real SDK OAuth clients (2.x and 1.x) log in without a pasted
 * token and call a tool; every malformed or foreign request gets its exact OAuth error and is audited.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { Client as Client1 } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError as UnauthorizedError1 } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport as Transport1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { readRecords } from '../helpers/audit.js';
import { echoService, type Gateway, startGateway } from '../helpers/harness.js';
import { LoopbackOAuthProvider } from '../helpers/oauth.js';

const REDIRECT = 'http://127.0.0.1:33418/callback';
const text = (r: unknown) => (r as { content: Array<{ text: string }> }).content[0]!.text;
/** A purpose group eng is granted (the example policies ask open-world tools for one). */
const PURPOSE = { 'micro-mcp/purpose': 'docs-research' };
const b64url = (b: Buffer) => b.toString('base64url');

describe('dev mode authorization server', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      services: { echo: echoService() },
      auth: { dev_authorization: { subject: 'oauth-dev', groups: ['eng'], scopes: ['echo:call', 'fs:read'], token_ttl_s: 600 } },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  const post = (p: string, body: string, type: string) => fetch(`${gw.url}${p}`, { method: 'POST', headers: { 'content-type': type }, body });
  const register = async (redirect = REDIRECT) =>
    (await (await post('/oauth/register', JSON.stringify({ redirect_uris: [redirect], client_name: 't' }), 'application/json')).json()) as {
      client_id: string;
    };
  /** One authorize round by hand: the code (or the error redirect) for a fresh verifier. */
  const authorize = async (clientId: string, extra: Record<string, string> = {}) => {
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 's1',
      resource: gw.mcpUrl,
      ...extra,
    });
    const r = await fetch(`${gw.url}/oauth/authorize?${q}`, { redirect: 'manual' });
    return { r, verifier, location: r.headers.get('location') === null ? undefined : new URL(r.headers.get('location')!) };
  };
  const tokenRequest = (form: Record<string, string>) => post('/oauth/token', new URLSearchParams(form).toString(), 'application/x-www-form-urlencoded');

  test('the protected-resource metadata lists the gateway itself; RFC 8414 metadata describes it', async () => {
    const prm = (await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.equal(prm.resource, gw.mcpUrl);
    assert.deepEqual(prm.authorization_servers, [gw.url]);
    const r = await fetch(`${gw.url}/.well-known/oauth-authorization-server`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), {
      issuer: gw.url,
      authorization_endpoint: `${gw.url}/oauth/authorize`,
      token_endpoint: `${gw.url}/oauth/token`,
      registration_endpoint: `${gw.url}/oauth/register`,
      scopes_supported: ['echo:call', 'fs:read'],
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code'],
      token_endpoint_auth_methods_supported: ['none'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    });
  });

  test('the SDK 2.x OAuth client logs in (registration, PKCE, token) and calls a tool', async () => {
    const provider = new LoopbackOAuthProvider(REDIRECT);
    const first = new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider });
    const client = new Client({ name: 'oauth-2x', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await assert.rejects(client.connect(first), (e: unknown) => e instanceof UnauthorizedError);
    assert.ok(provider.callback, 'the authorize step redirected back');
    assert.equal(provider.authorizationUrl?.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(provider.authorizationUrl?.searchParams.get('resource'), gw.mcpUrl);
    assert.equal(provider.callback.searchParams.get('iss'), gw.url);
    assert.equal(provider.callback.searchParams.get('state'), 'e2e-state');
    await first.finishAuth(provider.callback.searchParams);
    assert.ok(provider.accessToken);

    const again = new Client({ name: 'oauth-2x', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await again.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
    try {
      assert.equal(text(await again.callTool({ name: 'echo.echo', arguments: { text: 'via oauth' }, _meta: PURPOSE })), 'via oauth');
    } finally {
      await again.close();
    }
    const clientId = provider.clientInformation()?.client_id;
    const [decision] = readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec as Record<string, unknown>)
      .filter((r) => r.kind === 'decision' && (r.principal as { id: string }).id === 'oauth-dev');
    assert.equal(decision?.tool, 'echo.echo');
    assert.deepEqual(decision?.client, { id: clientId });
    assert.deepEqual((decision?.principal as { groups: string[] } | undefined)?.groups, ['eng']);
    assert.deepEqual(decision?.scopes, ['echo:call', 'fs:read']);
  });

  test('the SDK 1.x OAuth client logs in and calls a tool', async () => {
    const provider = new LoopbackOAuthProvider(REDIRECT);
    const first = new Transport1(new URL(gw.mcpUrl), { authProvider: provider });
    await assert.rejects(new Client1({ name: 'oauth-1x', version: '1.0.0' }).connect(first), (e: unknown) => e instanceof UnauthorizedError1);
    assert.ok(provider.callback);
    await first.finishAuth(provider.callback.searchParams.get('code')!);
    const client = new Client1({ name: 'oauth-1x', version: '1.0.0' });
    await client.connect(new Transport1(new URL(gw.mcpUrl), { authProvider: provider }));
    try {
      assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'sdk 1' }, _meta: PURPOSE })), 'sdk 1');
    } finally {
      await client.close();
    }
  });

  test('registration refuses a redirect URI off loopback', async () => {
    const r = await post('/oauth/register', JSON.stringify({ redirect_uris: ['https://evil.example/cb'] }), 'application/json');
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), {
      error: 'invalid_redirect_uri',
      error_description: 'the development authorization server accepts only http(s) loopback redirect URIs without a fragment',
    });
    const bad = await post('/oauth/register', '{not json', 'application/json');
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { error: 'invalid_client_metadata', error_description: 'the body must be a JSON object' });
  });

  test('authorize: an unknown client or redirect URI is answered, never redirected; no PKCE or plain PKCE is refused', async () => {
    const unknown = await authorize('dev-nobody');
    assert.equal(unknown.r.status, 400);
    assert.deepEqual(await unknown.r.json(), { error: 'invalid_client', error_description: 'unknown client_id: register first (RFC 7591)' });
    const { client_id } = await register();
    const foreign = await authorize(client_id, { redirect_uri: 'http://127.0.0.1:1/other' });
    assert.equal(foreign.r.status, 400);
    assert.deepEqual(await foreign.r.json(), { error: 'invalid_request', error_description: 'redirect_uri is not one the client registered' });
    const plain = await authorize(client_id, { code_challenge_method: 'plain' });
    assert.equal(plain.r.status, 302);
    assert.equal(plain.location?.searchParams.get('error'), 'invalid_request');
    assert.equal(plain.location?.searchParams.get('error_description'), 'PKCE with code_challenge_method=S256 is required');
    assert.equal(plain.location?.searchParams.get('code'), null);
    const otherResource = await authorize(client_id, { resource: 'http://127.0.0.1:1/mcp' });
    assert.equal(otherResource.location?.searchParams.get('error'), 'invalid_target');
    const noScope = await authorize(client_id, { scope: 'github:write' });
    assert.equal(noScope.location?.searchParams.get('error'), 'invalid_scope');
  });

  test('token: a wrong verifier burns the code; a code works once; the token is a dev token for /mcp', async () => {
    const { client_id } = await register();
    const wrong = await authorize(client_id);
    const code = wrong.location!.searchParams.get('code')!;
    const base = { grant_type: 'authorization_code', client_id, redirect_uri: REDIRECT, resource: gw.mcpUrl };
    const r1 = await tokenRequest({ ...base, code, code_verifier: b64url(randomBytes(32)) });
    assert.equal(r1.status, 400);
    assert.deepEqual(await r1.json(), { error: 'invalid_grant', error_description: 'code_verifier does not match the code_challenge' });
    const r2 = await tokenRequest({ ...base, code, code_verifier: wrong.verifier });
    assert.deepEqual(await r2.json(), { error: 'invalid_grant', error_description: 'the authorization code is unknown, used or expired' });

    const ok = await authorize(client_id, { scope: 'fs:read github:write' });
    const good = { ...base, code: ok.location!.searchParams.get('code')!, code_verifier: ok.verifier };
    const r3 = await tokenRequest(good);
    assert.equal(r3.status, 200);
    assert.equal(r3.headers.get('cache-control'), 'no-store');
    const body = (await r3.json()) as { access_token: string; token_type: string; expires_in: number; scope: string };
    assert.deepEqual({ ...body, access_token: typeof body.access_token }, { access_token: 'string', token_type: 'Bearer', expires_in: 600, scope: 'fs:read' });
    const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.deepEqual([claims.sub, claims.aud, claims.iss, claims.scope, claims.client_id], ['oauth-dev', gw.mcpUrl, 'urn:micro-mcp:dev', 'fs:read', client_id]);
    const replay = await tokenRequest(good);
    assert.deepEqual(await replay.json(), { error: 'invalid_grant', error_description: 'the authorization code is unknown, used or expired' });
    const grant = await tokenRequest({ grant_type: 'password', username: 'a', password: 'b' });
    assert.deepEqual(await grant.json(), { error: 'unsupported_grant_type', error_description: 'only grant_type=authorization_code' });

    // Each refusal is on the record, without the code or the verifier.
    const events = readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec as Record<string, unknown>)
      .filter((r) => r.kind === 'event' && r.method === 'oauth/token');
    assert.deepEqual(
      events.map((e) => (e.error as { code: string }).code),
      ['ERR_OAUTH_INVALID_GRANT', 'ERR_OAUTH_INVALID_GRANT', 'ERR_OAUTH_INVALID_GRANT', 'ERR_OAUTH_UNSUPPORTED_GRANT_TYPE'],
    );
    const recorded = JSON.stringify(events);
    assert.ok(!recorded.includes(code) && !recorded.includes(wrong.verifier) && !recorded.includes(ok.verifier));
  });
});

describe('dev mode authorization server: off switch and jwt mode', () => {
  test('dev_authorization.enabled: false serves no authorization server and advertises none', async () => {
    const gw = await startGateway({ services: { echo: echoService() }, auth: { dev_authorization: { enabled: false } } });
    try {
      assert.equal((await fetch(`${gw.url}/.well-known/oauth-authorization-server`)).status, 404);
      const prm = (await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
      assert.equal('authorization_servers' in prm, false);
    } finally {
      await gw.stop();
    }
  });

  test('a jwt-mode config with dev_authorization does not start', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-oauth-'));
    try {
      const err = await startGateway(
        {
          services: { echo: echoService() },
          auth: { mode: 'jwt', issuer: 'https://login.example', jwks_file: path.join(dir, 'jwks.json'), dev_key_dir: undefined, dev_authorization: {} },
        },
        { dir },
      ).then(
        async (g) => {
          await g.stop();
          return null;
        },
        (e: Error) => e,
      );
      assert.ok(err);
      assert.match(err.message, /ERR_CONFIG_INVALID/);
      assert.match(err.message, /\/auth\/dev_authorization: must NOT be valid/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
