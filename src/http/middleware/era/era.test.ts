import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import '../../context.js';
import { isLegacyRequest } from '@modelcontextprotocol/server';
import { era } from './index.js';
import { claimsEnvelope } from './era.js';

function app(body: unknown) {
  const a = new Hono();
  a.use('*', async (c, next) => {
    c.set('body', body);
    await next();
  });
  a.use('*', era({ maxBodyBytes: 1 << 20 }));
  a.post('/mcp', (c) => c.text(c.get('era')));
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

describe('claimsEnvelope: the era without the SDK classifier, only where the SDK agrees', () => {
  const full = envelope;
  const call = (meta: unknown, extra: Record<string, unknown> = {}) => ({
    jsonrpc: '2.0',
    id: 7,
    method: 'tools/call',
    params: { name: 'x', _meta: meta },
    ...extra,
  });
  // [name, body, claimsEnvelope expected]
  const bodies: [string, unknown, boolean][] = [
    ['a valid 2026-07-28 call', call(full), true],
    ['a call with the claim only (envelope invalid)', call({ 'io.modelcontextprotocol/protocolVersion': '2026-07-28' }), true],
    ['a claim naming a 2025 revision', call({ ...full, 'io.modelcontextprotocol/protocolVersion': '2025-11-25' }), true],
    ['a claim that is not a string', call({ ...full, 'io.modelcontextprotocol/protocolVersion': 123 }), true],
    ['a notification with the claim', { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, _meta: full } }, true],
    [
      'a notification whose claim is not a string',
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': null } } },
      true,
    ],
    ['no jsonrpc member', { id: 1, method: 'tools/list', params: { _meta: full } }, true],
    ['a null id', { jsonrpc: '2.0', id: null, method: 'tools/list', params: { _meta: full } }, true],
    ['no method', { jsonrpc: '2.0', id: 1, params: { _meta: full } }, true],
    ['subscriptions/listen', { jsonrpc: '2.0', id: 1, method: 'subscriptions/listen', params: { notifications: {}, _meta: full } }, true],
    [
      'initialize with the claim',
      {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' }, _meta: full },
      },
      false,
    ],
    [
      'initialize with an invalid claim',
      { jsonrpc: '2.0', id: 1, method: 'initialize', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': 5 } } },
      false,
    ],
    ['a posted result with the claim', { jsonrpc: '2.0', id: 1, result: {}, params: { _meta: full } }, false],
    ['a posted error with the claim', { jsonrpc: '2.0', id: 1, error: { code: 1, message: 'm' }, params: { _meta: full } }, false],
    ['a 2025 call', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x' } }, false],
    ['a 2025 call with other _meta', call({ progressToken: 1 }), false],
    ['_meta as a list', call([full]), false],
    ['params as a list', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: [{ _meta: full }] }, false],
    ['a batch', [call(full)], false],
  ];
  const headerSets: Record<string, string>[] = [
    {},
    { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call' },
    { 'mcp-protocol-version': '2025-11-25' },
    { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' },
    { 'mcp-session-id': 'abc', 'mcp-protocol-version': '2025-06-18' },
  ];

  test('answers true exactly for the bodies that carry the claim outside initialize and responses', () => {
    for (const [name, body, expected] of bodies) assert.equal(claimsEnvelope(body), expected, name);
  });

  test('the SDK never calls a body it claims legacy, and the middleware routes every body as the SDK would', async () => {
    let checked = 0;
    for (const [name, body] of bodies) {
      for (const headers of headerSets) {
        const init = { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
        const sdk = await isLegacyRequest(new Request('http://127.0.0.1/mcp', init), body);
        if (claimsEnvelope(body)) assert.equal(sdk, false, `${name} ${JSON.stringify(headers)}`);
        const r = await app(body).request('/mcp', init);
        assert.equal(await r.text(), sdk ? 'legacy' : 'modern', `${name} ${JSON.stringify(headers)}`);
        checked++;
      }
    }
    assert.equal(checked, bodies.length * headerSets.length);
  });
});
