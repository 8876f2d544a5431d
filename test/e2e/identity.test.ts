/**
 * Identity through the real gateway: forged and broken tokens are refused with 401 and a precise code
 * while the gateway keeps serving; the real SDK client discovers the metadata from the 401, gets a token
 * from a (local, real) OAuth authorization server and succeeds; a call that needs more scope is answered
 * 403 insufficient_scope (step-up).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, ClientCredentialsProvider, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { base64url, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import path from 'node:path';
import { connect, echoService, eventually, rawPost, ROOT, startGateway, type Gateway } from '../helpers/harness.js';

/** A minimal, real OAuth 2.1 authorization server on loopback: metadata, JWKS, client_credentials. */
async function startAuthServer() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'as-key-1', alg: 'ES256', use: 'sig' };
  let issued = 0;
  const server: Server = createServer(async (req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/oauth-authorization-server' || req.url === '/.well-known/openid-configuration') {
      return json(200, {
        issuer: base,
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        jwks_uri: `${base}/jwks`,
        grant_types_supported: ['client_credentials'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (req.url === '/jwks') return json(200, { keys: [jwk] });
    if (req.url === '/token' && req.method === 'POST') {
      let body = '';
      for await (const c of req) body += c;
      const form = new URLSearchParams(body);
      const basic = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
      if (basic !== 'agent-1:test-only-secret' || form.get('grant_type') !== 'client_credentials') return json(401, { error: 'invalid_client' });
      issued++;
      const token = await new SignJWT({ scope: 'echo:call', client_id: 'agent-1', purpose: 'e2e-tests' })
        .setProtectedHeader({ alg: 'ES256', kid: 'as-key-1', typ: 'at+jwt' })
        .setIssuer(base)
        .setSubject('agent-1')
        .setAudience(form.get('resource') ?? 'missing-resource')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
      return json(200, { access_token: token, token_type: 'Bearer', expires_in: 300, scope: 'echo:call' });
    }
    json(404, { error: 'not_found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, privateKey, issued: () => issued, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('identity through the gateway', () => {
  let as: Awaited<ReturnType<typeof startAuthServer>>;
  let gw: Gateway;

  before(async () => {
    as = await startAuthServer();
    gw = await startGateway({
      auth: {
        mode: 'jwt',
        issuer: as.url,
        jwks_url: `${as.url}/jwks`,
        authorization_servers: [as.url],
        scopes_supported: ['echo:call'],
        dev_key_dir: undefined,
      },
      services: { echo: echoService() },
    });
  });
  after(async () => {
    await gw?.stop();
    await as?.close();
  });

  const sign = (
    claims: Record<string, unknown>,
    opts: { exp?: string | number; nbf?: string | number; iss?: string; aud?: string; kid?: string; noExp?: boolean; sub?: string } = {},
  ) => {
    let j = new SignJWT({ scope: 'echo:call', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'as-key-1' })
      .setIssuer(opts.iss ?? as.url)
      .setSubject(opts.sub ?? 'agent-1')
      .setAudience(opts.aud ?? gw.mcpUrl)
      .setIssuedAt();
    if (!opts.noExp) j = j.setExpirationTime(opts.exp ?? '5m');
    if (opts.nbf !== undefined) j = j.setNotBefore(opts.nbf);
    return j.sign(as.privateKey);
  };

  test('forged and broken tokens: 401 with a precise code, and the gateway keeps serving', async () => {
    const good = await sign({});
    const [h, p, s] = good.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const hsWithPublicKey = await new SignJWT({ scope: 'echo:call' })
      .setProtectedHeader({ alg: 'HS256', kid: 'as-key-1' })
      .setIssuer(as.url)
      .setSubject('agent-1')
      .setAudience(gw.mcpUrl)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JSON.stringify((await (await fetch(`${as.url}/jwks`)).json()) as object)));
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['missing', undefined, /ERR_AUTH_MISSING/],
      ['expired', await sign({}, { exp: Math.floor(Date.now() / 1000) - 3600 }), /ERR_AUTH_EXPIRED/],
      ['not yet valid', await sign({}, { nbf: Math.floor(Date.now() / 1000) + 3600 }), /ERR_AUTH_NOT_YET_VALID/],
      ['wrong issuer', await sign({}, { iss: 'https://evil.example' }), /ERR_AUTH_ISSUER/],
      ['wrong audience', await sign({}, { aud: 'https://other.example/mcp' }), /ERR_AUTH_AUDIENCE/],
      ['alg none', `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${p}.`, /ERR_AUTH_ALGORITHM/],
      ['HS256 signed with the public key', hsWithPublicKey, /ERR_AUTH_ALGORITHM/],
      ['unknown kid', await sign({}, { kid: 'nobody' }), /ERR_AUTH_KEY_UNKNOWN/],
      ['tampered payload', `${h}.${base64url.encode(JSON.stringify({ ...payload, sub: 'admin' }))}.${s}`, /ERR_AUTH_SIGNATURE/],
      ['missing exp', await sign({}, { noExp: true }), /ERR_AUTH_CLAIM_MISSING/],
      ['oversized', await sign({ pad: 'x'.repeat(9_000) }), /ERR_AUTH_TOO_LARGE/],
      ['garbage', 'not-a-token', /ERR_AUTH_INVALID/],
      ['meant to live 100 years', await sign({}, { exp: '36500d' }), /ERR_AUTH_LIFETIME/],
      ['a NUL byte in the subject', await sign({}, { sub: 'agent-1\u0000root' }), /ERR_AUTH_INVALID/],
    ];
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    });
    for (const [name, token, code] of cases) {
      const r = await rawPost(gw, body, token === undefined ? {} : { authorization: `Bearer ${token}` });
      assert.equal(r.status, 401, name);
      const www = r.headers.get('www-authenticate') ?? '';
      assert.match(www, /^Bearer /, name);
      assert.match(www, /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/, name);
      const text = await r.text();
      assert.match(text, code, `${name}: ${text}`);
      if (token) assert.ok(!text.includes(token) && !www.includes(token), `${name}: the token must not be echoed`);
    }
    // A token in the query string is not accepted, even a valid one.
    const q = await fetch(`${gw.mcpUrl}?access_token=${good}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body,
    });
    assert.equal(q.status, 401);
    // Still serving.
    const ok = await rawPost(gw, body, { authorization: `Bearer ${good}` });
    assert.equal(ok.status, 200);
  });

  test('Protected Resource Metadata at both well-known paths names this resource and its issuer', async () => {
    for (const p of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      const m = (await (await fetch(`${gw.url}${p}`)).json()) as { resource: string; authorization_servers: string[]; bearer_methods_supported: string[] };
      assert.equal(m.resource, gw.mcpUrl);
      assert.deepEqual(m.authorization_servers, [as.url]);
      assert.deepEqual(m.bearer_methods_supported, ['header']);
    }
  });

  test('the real SDK client discovers the metadata from the 401, gets a token and succeeds (both eras)', async () => {
    for (const mode of [{ pin: '2026-07-28' }, 'legacy'] as const) {
      const before = as.issued();
      const provider = new ClientCredentialsProvider({ clientId: 'agent-1', clientSecret: 'test-only-secret', expectedIssuer: as.url });
      const client = new Client({ name: 'oauth-agent', version: '1' }, { versionNegotiation: { mode } });
      await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
      assert.ok(as.issued() > before, 'a token was fetched from the authorization server the metadata named');
      const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'authorized' } });
      assert.equal((r.content as Array<{ text: string }>)[0]!.text, 'authorized');
      await client.close();
    }
  });

  test('a call that needs more scope is answered 403 insufficient_scope with the needed scope', async () => {
    const token = await sign({ scope: 'other:call' });
    const r = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo.echo', arguments: { text: 'x' } } }), {
      authorization: `Bearer ${token}`,
    });
    assert.equal(r.status, 403);
    const www = r.headers.get('www-authenticate') ?? '';
    assert.match(www, /error="insufficient_scope"/);
    assert.match(www, /scope="[^"]*echo:call[^"]*"/);
    // The SDK client surfaces it as a step-up failure (no provider to re-authorize with).
    const client = await connect(gw, 'modern', { token });
    await assert.rejects(client.callTool({ name: 'echo.echo', arguments: { text: 'x' } }), (e: Error) => /scope/i.test(`${e.name} ${e.message}`));
    await client.close();
  });
});

describe('service credential keys rotate without dropping calls', () => {
  let gw: Gateway;
  before(async () => {
    const { fsServiceEntry } = await import('../helpers/attacks.js');
    const sample = path.join(ROOT, 'services', 'fs', 'sample');
    gw = await startGateway({
      auth: { service_credentials: { ttl_s: 1, rotate_every_s: 2 } },
      services: { fs: fsServiceEntry(['--root', sample], [sample]) },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test('calls keep working across several key rotations (the sandboxed service re-reads the JWKS)', async () => {
    const client = await connect(gw, 'modern', { token: await gw.token({ groups: ['eng'], scopes: ['fs:read'] }) });
    // The gateway publishes the key that signs now first (Minter.jwks()).
    const activeKid = async () => ((await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys[0]!.kid;
    const ROTATIONS = 3;
    const actives = [await activeKid()];
    const signers = new Set<string>();
    let calls = 0;
    // Call, and watch the published keys, until the active key has changed ROTATIONS times; every
    // call must succeed. The deadline only fails the test (rotate_every_s is 2).
    await eventually(
      async () => {
        const before = await activeKid();
        const r = await client.callTool({ name: 'fs.stat', arguments: { path: '/eng/runbook.md' } });
        assert.notEqual(r.isError, true, JSON.stringify(r.content));
        calls++;
        const after = await activeKid();
        // The active key only ever moves to a fresh one, so unchanged around the call means it signed it.
        if (before === after) signers.add(after);
        if (after !== actives.at(-1)) actives.push(after);
        return actives.length > ROTATIONS;
      },
      30_000,
      50,
    );
    assert.equal(new Set(actives).size, actives.length, `each rotation brought a new key: ${actives.join(', ')}`);
    assert.ok(signers.size >= 2, `calls were signed by ${signers.size} keys over ${calls} calls`);
    assert.ok([...signers].every((k) => actives.includes(k)));
    await client.close();
  });
});
