/**
 * Issue #11 point 6, CORS: server.cors lets listed browser origins reach /mcp, the metadata documents
 * and dev mode's OAuth endpoints (preflights answered, the MCP headers exposed), while the Origin check
 * against DNS rebinding keeps refusing everything else. Exact headers, over real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { echoService, type Gateway, rawPost, startGateway } from '../helpers/harness.js';

const ORIGIN = 'http://localhost:6274';
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'browser', version: '1' } },
});

describe('CORS with server.cors', () => {
  let gw: Gateway;
  before(async () => {
    // Written with upper case and the default port: normalised to what a browser sends.
    gw = await startGateway({
      server: { cors: { origins: ['HTTP://LOCALHOST:6274', 'https://app.example:443'], max_age_s: 120 } },
      services: { echo: echoService() },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test('a preflight for /mcp is answered with the methods and headers MCP needs', async () => {
    const r = await fetch(gw.mcpUrl, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,mcp-protocol-version' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
    assert.equal(r.headers.get('access-control-allow-methods'), 'GET,POST,DELETE,OPTIONS');
    assert.equal(
      r.headers.get('access-control-allow-headers'),
      'Authorization,Content-Type,Accept,Mcp-Session-Id,Mcp-Protocol-Version,Mcp-Method,Mcp-Name,Last-Event-ID,X-Request-Id',
    );
    assert.equal(r.headers.get('access-control-max-age'), '120');
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
    assert.match(r.headers.get('vary') ?? '', /Origin/);
  });

  test('a 401 exposes WWW-Authenticate to the listed origin; a session exposes Mcp-Session-Id', async () => {
    const denied = await rawPost(gw, INIT, { origin: ORIGIN });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), ORIGIN);
    assert.equal(denied.headers.get('access-control-expose-headers'), 'Mcp-Session-Id,WWW-Authenticate,Mcp-Protocol-Version');
    assert.match(denied.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="/);

    const ok = await rawPost(gw, INIT, { origin: ORIGIN, authorization: `Bearer ${await gw.token({ scopes: ['echo:call'] })}` });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    assert.equal(ok.headers.get('access-control-expose-headers'), 'Mcp-Session-Id,WWW-Authenticate,Mcp-Protocol-Version');
    assert.match(ok.headers.get('mcp-session-id') ?? '', /^r[0-9a-f]{8}-[0-9a-f-]{36}$/);
    await ok.body?.cancel();
  });

  test('the metadata documents and the dev authorization server answer the listed origins', async () => {
    for (const p of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-authorization-server']) {
      const r = await fetch(`${gw.url}${p}`, { headers: { origin: 'https://app.example' } });
      assert.equal(r.status, 200, p);
      assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example', p);
      await r.body?.cancel();
    }
    const pre = await fetch(`${gw.url}/oauth/token`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
  });

  test('another origin is still refused by the DNS-rebinding check, and gets no CORS grant', async () => {
    for (const method of ['OPTIONS', 'POST']) {
      const r = await fetch(gw.mcpUrl, {
        method,
        headers: { origin: 'http://evil.example', 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: INIT } : {}),
      });
      assert.equal(r.status, 403, method);
      assert.deepEqual(await r.json(), { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Forbidden: Origin not allowed' } });
      assert.equal(r.headers.get('access-control-allow-origin'), null);
    }
    // A loopback origin passes the rebinding check (its hostname is allowed) but is not a CORS origin.
    const r = await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`, { headers: { origin: 'http://localhost:9999' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });
});

describe('CORS without server.cors', () => {
  test('no CORS headers, and no preflight answer', async () => {
    const gw = await startGateway({ services: { echo: echoService() } });
    try {
      const pre = await fetch(gw.mcpUrl, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
      assert.equal(pre.status, 405);
      assert.equal(pre.headers.get('access-control-allow-origin'), null);
      const r = await rawPost(gw, INIT, { origin: ORIGIN });
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('access-control-allow-origin'), null);
      assert.equal(r.headers.get('access-control-expose-headers'), null);
    } finally {
      await gw.stop();
    }
  });
});
