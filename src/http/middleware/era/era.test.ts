import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import '../../context.js';
import { era } from './index.js';

function app(body: unknown) {
  const a = new Hono();
  a.use('*', async (c, next) => {
    c.set('body', body);
    await next();
  });
  a.use('*', era({ maxBodyBytes: 1 << 20 }));
  a.post('/mcp', (c) => c.text(c.var.era));
  return a;
}

const envelope = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

describe('era middleware', () => {
  test('a request with the 2026-07-28 envelope and headers is modern', async () => {
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: envelope } };
    const r = await app(body).request('/mcp', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' },
      body: JSON.stringify(body),
    });
    assert.equal(await r.text(), 'modern');
  });

  test('a 2025 initialize and a 2025 session request are legacy', async () => {
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    };
    const r1 = await app(init).request('/mcp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(init) });
    assert.equal(await r1.text(), 'legacy');
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
    const r2 = await app(list).request('/mcp', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'mcp-session-id': 'x', 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify(list),
    });
    assert.equal(await r2.text(), 'legacy');
  });
});
