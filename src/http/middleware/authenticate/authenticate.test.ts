import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Hono } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { createAuthenticator } from '../../../auth/authenticator.js';
import { mintDevToken } from '../../../auth/dev.js';
import type { GatewayError } from '../../../errors.js';
import '../../context.js';
import { authenticate } from './index.js';

const RESOURCE = 'http://127.0.0.1:8080/mcp';

describe('authenticate middleware (real dev-key authenticator)', () => {
  let dir: string;
  let a: Hono;
  let refused: Array<[GatewayError, RefusalFacts]>;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mmcp-authn-'));
    const auth = await createAuthenticator({ mode: 'dev', dev_key_dir: dir }, { resource: RESOURCE, loopback: true });
    a = new Hono();
    a.use('*', async (c, next) => {
      c.set('requestId', 'req-3');
      await next();
    });
    a.use('*', authenticate({ auth, onRefused: async (e, f) => void refused.push([e, f]) }));
    a.post('/mcp', (c) => c.json({ id: c.var.principal.id, groups: c.var.principal.groups, scopes: c.var.principal.scopes }));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const token = (sub: string) => mintDevToken({ keyDir: dir, sub, groups: ['eng'], scopes: ['fs:read'], ttl: '5m', audience: RESOURCE });

  test('a valid bearer token becomes c.var.principal', async () => {
    refused = [];
    const r = await a.request('/mcp', { method: 'POST', headers: { authorization: `Bearer ${await token('alice')}` } });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { id: 'alice', groups: ['eng'], scopes: ['fs:read'] });
    assert.equal(refused.length, 0);
  });

  test('no token: 401 with the resource metadata challenge, recorded as ERR_AUTH_MISSING', async () => {
    refused = [];
    const r = await a.request('/mcp', { method: 'POST' });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"');
    assert.equal(((await r.json()) as { code: string }).code, 'ERR_AUTH_MISSING');
    assert.deepEqual(
      refused.map(([e, f]) => [e.code, f]),
      [['ERR_AUTH_MISSING', { requestId: 'req-3', clientIp: null }]],
    );
  });

  test('a token in the query string is refused even when valid (ERR_AUTH_INVALID), and never echoed', async () => {
    refused = [];
    const t = await token('alice');
    const r = await a.request(`/mcp?access_token=${t}`, { method: 'POST', headers: { authorization: `Bearer ${t}` } });
    assert.equal(r.status, 401);
    const body = await r.text();
    assert.equal((JSON.parse(body) as { code: string }).code, 'ERR_AUTH_INVALID');
    assert.ok(!body.includes(t) && !(r.headers.get('www-authenticate') ?? '').includes(t), 'the token is never echoed');
    assert.deepEqual(
      refused.map(([e]) => [e.code, e.message]),
      [['ERR_AUTH_INVALID', 'tokens are accepted only in the Authorization header']],
    );
  });

  test('a forged token: 401 invalid_token, recorded with its precise code', async () => {
    refused = [];
    const t = await token('mallory');
    const forged = t.slice(0, -4) + (t.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const r = await a.request('/mcp', { method: 'POST', headers: { authorization: `Bearer ${forged}` } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/);
    assert.deepEqual(
      refused.map(([e]) => e.code),
      ['ERR_AUTH_SIGNATURE'],
    );
  });
});
