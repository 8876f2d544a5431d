import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import { hostOrigin } from './index.js';

function app() {
  const a = new Hono();
  a.use('*', hostOrigin({ hosts: ['127.0.0.1', 'localhost', 'MCP.example.com'], origins: ['localhost', 'app.example.com'] }));
  a.get('/', (c) => c.text('ok'));
  return a;
}

const get = (headers: Record<string, string>) => app().request('http://127.0.0.1/', { headers });

describe('host-origin middleware (DNS rebinding)', () => {
  test('an allowed Host passes, with any port and in any case', async () => {
    for (const host of ['127.0.0.1:8080', 'localhost', 'mcp.example.COM:443']) {
      const r = await get({ host });
      assert.equal(r.status, 200, host);
    }
  });

  test('a foreign or malformed Host is 403 "Forbidden: Host not allowed"', async () => {
    for (const host of ['evil.example', 'attacker.localhost', '127.0.0.1@evil', '[::1']) {
      const r = await get({ host });
      assert.equal(r.status, 403, host);
      assert.deepEqual(await r.json(), { jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Host not allowed' }, id: null });
    }
  });

  test('an allowed Origin passes, a foreign or malformed one is 403 "Forbidden: Origin not allowed"', async () => {
    assert.equal((await get({ host: 'localhost', origin: 'https://app.example.com' })).status, 200);
    assert.equal((await get({ host: 'localhost', origin: 'http://localhost:3000' })).status, 200);
    for (const origin of ['https://evil.example', 'null', 'not a url']) {
      const r = await get({ host: 'localhost', origin });
      assert.equal(r.status, 403, origin);
      assert.equal(((await r.json()) as { error: { message: string } }).error.message, 'Forbidden: Origin not allowed');
    }
  });

  test('an empty host list is refused when the middleware is built, not per request', () => {
    assert.throws(() => hostOrigin({ hosts: [], origins: [] }), /allowed_hosts must not be empty/);
  });
});
