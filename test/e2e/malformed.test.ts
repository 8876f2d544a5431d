/**
 * Malformed JSON-RPC of many shapes, in both eras: each gets a clear JSON-RPC error (never a 5xx, never
 * a hang), and the gateway keeps serving.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, echoService, modernEnvelope, rawPost, startGateway, type Gateway } from '../helpers/harness.js';

let gw: Gateway;
before(async () => {
  gw = await startGateway({ services: { echo: echoService() } });
});
after(async () => {
  await gw?.stop();
});

test('malformed JSON-RPC gets a clear error and the gateway keeps serving', async () => {
  const token = await gw.token();
  const H = { authorization: `Bearer ${token}` };
  const M = { ...H, 'mcp-protocol-version': '2026-07-28' };
  const env = modernEnvelope();
  const j = (v: unknown) => JSON.stringify(v);
  const cases: Array<[string, string, Record<string, string>, number]> = [
    ['params is a number', j({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: 5 }), H, -32600],
    ['empty batch', '[]', H, -32600],
    ['batch of non-messages', '[1,2,3]', H, -32600],
    ['method is a number', j({ jsonrpc: '2.0', id: 1, method: 123 }), H, -32600],
    ['jsonrpc 1.0', j({ jsonrpc: '1.0', id: 1, method: 'tools/list' }), H, -32600],
    ['neither id nor method', j({ jsonrpc: '2.0' }), H, -32600],
    ['2026: params is a number', j({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: 5 }), { ...M, 'mcp-method': 'tools/call' }, -32600],
    [
      '2026: malformed envelope',
      j({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': 42 } } }),
      { ...M, 'mcp-method': 'tools/list' },
      -32602,
    ],
    [
      '2026: unknown revision',
      j({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { ...env, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } }),
      { ...H, 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' },
      -32022,
    ],
    [
      '2026: tool name is an object',
      j({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: { x: 1 }, _meta: env } }),
      { ...M, 'mcp-method': 'tools/call' },
      -32602,
    ],
    [
      '2026: arguments is an array',
      j({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo.echo', arguments: [1, 2], _meta: env } }),
      { ...M, 'mcp-method': 'tools/call', 'mcp-name': 'echo.echo' },
      -32602,
    ],
    ['2026: unknown method', j({ jsonrpc: '2.0', id: 1, method: 'evil/method', params: { _meta: env } }), { ...M, 'mcp-method': 'evil/method' }, -32601],
    ['deeply nested params', `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`, H, -32000],
    ['2025: a call before initialize', j({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo.echo', arguments: {} } }), H, -32000],
    ['a response posted as a request', j({ jsonrpc: '2.0', id: 1, result: {} }), H, -32000],
  ];
  for (const [name, body, headers, code] of cases) {
    const r = await rawPost(gw, body, headers);
    assert.ok(r.status < 500, `${name}: ${r.status}`);
    const answer = (await r.json()) as { error?: { code: number; message: string } };
    assert.equal(answer.error?.code, code, `${name}: ${JSON.stringify(answer)}`);
    assert.ok(answer.error!.message.length > 0, name);
  }
  const client = await connect(gw, 'modern');
  const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'still serving' } });
  assert.equal((r.content as Array<{ text: string }>)[0]!.text, 'still serving');
  await client.close();
  assert.doesNotMatch(gw.output(), /unhandled error/);
});
