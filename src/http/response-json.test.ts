import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { installResponseJson } from './response-json.js';

describe('installResponseJson', () => {
  it('leaves the platform Response alone', () => {
    assert.equal(installResponseJson(Response), false);
  });

  it('gives a subclass that inherits json a json of its own with the same answer', async () => {
    class Light extends Response {}
    assert.equal(installResponseJson(Light), true);
    assert.equal(installResponseJson(Light), false, 'installed once');
    const r = Light.json({ jsonrpc: '2.0', id: 1, result: { ok: true } }, { status: 201, headers: { 'x-a': 'b' } });
    assert.ok(r instanceof Light);
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('x-a'), 'b');
    assert.equal(await r.text(), '{"jsonrpc":"2.0","id":1,"result":{"ok":true}}');
    const typed = Light.json([1], { headers: { 'Content-Type': 'application/json; charset=utf-8' } });
    assert.equal(typed.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.throws(() => Light.json(undefined), { name: 'TypeError', message: 'Response.json: the value cannot be represented as JSON' });
    const plain = Response.json({ a: 1 });
    assert.equal(plain.headers.get('content-type'), 'application/json');
  });
});
