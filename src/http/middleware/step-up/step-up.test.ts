import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import type { GatewayError } from '../../../errors.js';
import type { Principal } from '../../../types.js';
import '../../context.js';
import { stepUp } from './index.js';

const alice: Principal = {
  id: 'alice',
  type: 'user',
  issuer: 'urn:t',
  groups: ['eng'],
  attributes: {},
  scopes: ['http:fetch'],
  client: { id: 'c' },
  purpose: null,
};

/** A challenge shaped like src/auth's (only the parts this middleware passes on). */
const auth = {
  authenticate: async () => alice,
  challenge: (e: GatewayError) => ({
    status: 403,
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${String(e.data?.required_scopes)}"` },
    body: { error: 'insufficient_scope', code: e.code },
  }),
};

function app(body: unknown, lift: string[] | undefined) {
  const asked: Array<[string, string]> = [];
  const refused: Array<[GatewayError, RefusalFacts]> = [];
  const a = new Hono();
  a.use('*', async (c, next) => {
    c.set('requestId', 'req-1');
    c.set('principal', alice);
    c.set('body', body);
    await next();
  });
  a.use(
    '*',
    stepUp({
      auth,
      scopesToLift: (p, tool) => {
        asked.push([p.id, tool]);
        return lift;
      },
      onRefused: async (e, f) => void refused.push([e, f]),
    }),
  );
  a.post('/mcp', (c) => c.text('passed'));
  return { a, asked, refused };
}

const post = (a: Hono) => a.request('/mcp', { method: 'POST' });
const call = (name: unknown) => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { path: '/secret' } } });

describe('step-up middleware', () => {
  test('a tools/call hidden only for want of scope is 403 insufficient_scope naming the scopes, and recorded first', async () => {
    const { a, asked, refused } = app(call('fs.read'), ['fs:read']);
    const r = await post(a);
    assert.equal(r.status, 403);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer error="insufficient_scope", scope="fs:read"');
    assert.deepEqual(await r.json(), { error: 'insufficient_scope', code: 'ERR_INSUFFICIENT_SCOPE' });
    assert.deepEqual(asked, [['alice', 'fs.read']]);
    assert.equal(refused.length, 1);
    const [e, f] = refused[0]!;
    assert.equal(e.code, 'ERR_INSUFFICIENT_SCOPE');
    assert.deepEqual(e.data, { required_scopes: ['fs:read'] });
    assert.deepEqual(f, { requestId: 'req-1', clientIp: null, principal: alice, method: 'tools/call', tool: 'fs.read' });
  });

  test('a tools/call the list phase does not hide for want of scope passes on, unrecorded', async () => {
    const { a, asked, refused } = app(call('fs.read'), undefined);
    assert.equal(await (await post(a)).text(), 'passed');
    assert.deepEqual(asked, [['alice', 'fs.read']]);
    assert.equal(refused.length, 0);
  });

  test('other methods, batches and malformed calls are not its business (the pipeline decides them)', async () => {
    for (const body of [
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      [call('fs.read')],
      call(42),
      { jsonrpc: '2.0', id: 1, method: 'tools/call' },
      undefined,
    ]) {
      const { a, asked, refused } = app(body, ['fs:read']);
      assert.equal(await (await post(a)).text(), 'passed', JSON.stringify(body));
      assert.equal(asked.length, 0);
      assert.equal(refused.length, 0);
    }
  });
});
