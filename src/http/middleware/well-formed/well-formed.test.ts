import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import '../../context.js';
import { isWellFormedJson, wellFormed } from './index.js';

function app() {
  const a = new Hono();
  a.use('*', async (c, next) => {
    c.set('body', JSON.parse(await c.req.text()));
    await next();
  });
  a.use('*', wellFormed());
  a.post('/mcp', (c) => c.text('passed'));
  return a;
}

const post = (raw: string) => app().request('/mcp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });

describe('well-formed middleware', () => {
  // Raw JSON text: the escapes below are what an agent sends on the wire.
  const cases: Array<[string, string]> = [
    ['a tool name', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read\\ud800","arguments":{}}}'],
    ['an argument value', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read","arguments":{"path":"/eng/\\udc00x"}}}'],
    ['an argument name', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read","arguments":{"p\\ud83d":"/eng"}}}'],
    ['a _meta value', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read","_meta":{"micro-mcp/purpose":"x\\udfff"}}}'],
    ['a nested value', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"b":["\\ud800"]}]}}}'],
  ];
  for (const [what, raw] of cases) {
    test(`a lone surrogate in ${what} is refused with -32602, the request id kept, the value never echoed`, async () => {
      const r = await post(raw);
      assert.equal(r.status, 400);
      const body = (await r.json()) as { id: unknown; error: { code: number; message: string } };
      assert.equal(body.id, 7);
      assert.equal(body.error.code, -32602);
      assert.match(body.error.message, /well-formed Unicode/);
      assert.ok(!/eng|purpose|fs\.read/.test(JSON.stringify(body)));
    });
  }

  test('a well-formed pair (an emoji), plain text and a batch of good messages pass', async () => {
    assert.equal(
      await (await post('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"t":"\\ud83d\\ude00 ok"}}}')).text(),
      'passed',
    );
    assert.equal(
      await (await post('[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]')).text(),
      'passed',
    );
  });

  test('a batch with one bad message is refused as a whole (id null)', async () => {
    const r = await post('[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"\\ud800"}}]');
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { id: unknown }).id, null);
  });

  test('isWellFormedJson walks deep values without recursion', () => {
    let deep: unknown = '\ud800';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.equal(isWellFormedJson(deep), false);
    assert.equal(isWellFormedJson({ a: ['\ud83d\ude00'] }), true);
  });
});
