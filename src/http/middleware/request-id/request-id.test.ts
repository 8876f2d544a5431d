import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import '../../context.js';
import { requestId } from './index.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function app() {
  const a = new Hono();
  a.use('*', requestId());
  a.get('/seen', (c) => c.text(c.var.requestId));
  // A handler that builds its own Response (as the MCP SDK does) still gets the header.
  a.get('/raw', () => new Response('raw', { headers: { 'content-type': 'text/plain' } }));
  return a;
}

describe('request-id middleware', () => {
  test('a well-formed X-Request-Id is kept, exposed as c.var.requestId and echoed', async () => {
    const r = await app().request('/seen', { headers: { 'x-request-id': 'trace-1.a:b_C' } });
    assert.equal(await r.text(), 'trace-1.a:b_C');
    assert.equal(r.headers.get('x-request-id'), 'trace-1.a:b_C');
  });

  test('a missing, malformed or oversized id is replaced by a fresh UUID', async () => {
    for (const given of [undefined, 'has space', 'a"quote', 'x'.repeat(129), '']) {
      const r = await app().request('/seen', given === undefined ? {} : { headers: { 'x-request-id': given } });
      const id = await r.text();
      assert.match(id, UUID, `replaced: ${String(given)}`);
      assert.equal(r.headers.get('x-request-id'), id);
    }
  });

  test('the id is stamped on a response the handler built itself', async () => {
    const r = await app().request('/raw', { headers: { 'x-request-id': 'abc' } });
    assert.equal(await r.text(), 'raw');
    assert.equal(r.headers.get('x-request-id'), 'abc');
  });
});
