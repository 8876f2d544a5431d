import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import type { GatewayEnv } from '../../context.js';
import { bodyCap } from './index.js';

const MAX = 1024;

function app() {
  const refused: Array<[string, RefusalFacts]> = [];
  const a = new Hono<GatewayEnv>();
  a.use('*', async (c, next) => {
    c.set('requestId', 'req-7');
    await next();
  });
  a.use('*', bodyCap({ maxBytes: MAX, onRefused: async (limit, f) => void refused.push([limit, f]) }));
  a.all('/mcp', (c) => c.json({ body: c.var.body ?? null }));
  return { a, refused };
}

const post = (a: Hono<GatewayEnv>, body: BodyInit, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  a.request('/mcp', { method: 'POST', headers, body, ...(body instanceof ReadableStream ? { duplex: 'half' } : {}) } as RequestInit);

async function rpcError(r: Response): Promise<{ code: number; message: string; data?: unknown }> {
  return ((await r.json()) as { error: { code: number; message: string; data?: unknown } }).error;
}

describe('body-cap middleware', () => {
  test('a JSON-RPC object or batch is parsed once into c.var.body', async () => {
    const { a } = app();
    const one = { jsonrpc: '2.0', id: 1, method: 'ping' };
    assert.deepEqual(await (await post(a, JSON.stringify(one), { 'content-type': 'application/json; charset=utf-8' })).json(), { body: one });
    assert.deepEqual(await (await post(a, JSON.stringify([one, one]))).json(), { body: [one, one] });
  });

  test('GET and DELETE carry no body', async () => {
    const { a } = app();
    assert.deepEqual(await (await a.request('/mcp')).json(), { body: null });
    assert.deepEqual(await (await a.request('/mcp', { method: 'DELETE' })).json(), { body: null });
  });

  test('a body that is not application/json is 415', async () => {
    const { a } = app();
    const r = await post(a, '{}', { 'content-type': 'text/plain' });
    assert.equal(r.status, 415);
    assert.deepEqual(await rpcError(r), { code: -32000, message: 'Unsupported Media Type: Content-Type must be application/json' });
  });

  test('malformed JSON is -32700, a scalar is -32600, both 400', async () => {
    const { a } = app();
    const bad = await post(a, '{"jsonrpc":');
    assert.equal(bad.status, 400);
    assert.deepEqual(await rpcError(bad), { code: -32700, message: 'Parse error: the body is not valid JSON' });
    const scalar = await post(a, '42');
    assert.equal(scalar.status, 400);
    assert.deepEqual(await rpcError(scalar), { code: -32600, message: 'Invalid Request: expected a JSON-RPC object or batch' });
  });

  test('a declared length over the cap is 413 before reading, recorded with the request id', async () => {
    const { a, refused } = app();
    const r = await post(a, 'x'.repeat(MAX + 1), { 'content-type': 'application/json', 'content-length': String(MAX + 1) });
    assert.equal(r.status, 413);
    assert.equal(r.headers.get('connection'), 'close');
    assert.deepEqual(await rpcError(r), { code: -32000, message: `request body exceeds ${MAX} bytes`, data: { code: 'ERR_BODY_TOO_LARGE' } });
    assert.deepEqual(refused, [['max_body_bytes', { requestId: 'req-7', clientIp: null }]]);
  });

  test('a streamed body without a length is cut at the cap (web stream)', async () => {
    const { a, refused } = app();
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        pulled++;
        if (pulled > 100) ctl.close();
        else ctl.enqueue(new Uint8Array(100).fill(0x20));
      },
    });
    const r = await post(a, stream);
    assert.equal(r.status, 413);
    assert.ok(pulled < 100, `reading stopped at the cap (${pulled} chunks pulled)`);
    assert.equal(refused.length, 1);
  });

  describe('on a real Node socket', () => {
    let server: ServerType;
    let port: number;
    before(async () => {
      const { a } = app();
      server = serve({ fetch: a.fetch, port: 0, hostname: '127.0.0.1' });
      await new Promise<void>((r) => server.once('listening', () => r()));
      port = (server.address() as AddressInfo).port;
    });
    after(() => server.close());

    test('a chunked body that lies about nothing but grows past the cap gets its 413 on the same connection', async () => {
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        let answered = false;
        const req = httpRequest(
          { host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
          (r) => {
            answered = true;
            let body = '';
            r.setEncoding('utf8').on('data', (s: string) => (body += s));
            r.on('end', () => {
              req.destroy();
              resolve({ status: r.statusCode ?? 0, body });
            });
          },
        );
        req.on('error', (e) => (answered ? undefined : reject(e)));
        // Keep writing until the server answers: the answer must come while the body still streams.
        const chunk = Buffer.alloc(256, 0x20);
        const pump = () => {
          if (answered || req.destroyed) return;
          if (req.write(chunk)) setImmediate(pump);
          else req.once('drain', pump);
        };
        pump();
      });
      assert.equal(res.status, 413);
      assert.match(res.body, /request body exceeds 1024 bytes/);
    });

    test('a body under the cap arriving in many chunks is read whole', async () => {
      const one = { jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'y'.repeat(600) } };
      const text = JSON.stringify(one);
      const res = await new Promise<string>((resolve, reject) => {
        const req = httpRequest(
          { host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
          (r) => {
            let body = '';
            r.setEncoding('utf8').on('data', (s: string) => (body += s));
            r.on('end', () => resolve(body));
          },
        );
        req.on('error', reject);
        for (let i = 0; i < text.length; i += 50) req.write(text.slice(i, i + 50));
        req.end();
      });
      assert.deepEqual(JSON.parse(res), { body: one });
    });
  });
});
