import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import { createStateBinder, principalKey } from './state.js';

const invalid = (e: unknown): boolean => e instanceof GatewayError && e.code === 'ERR_INPUT_STATE_INVALID';

describe('state binding', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-state-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('round-trips for the principal it was issued to', async () => {
    const b = await createStateBinder();
    const alice = principalKey({ issuer: 'https://idp', id: 'alice' });
    const token = b.signState(alice, { round: 2, service: 'fs' });
    assert.deepEqual(b.verifyState(alice, token), { round: 2, service: 'fs' });
    assert.ok(!token.includes('alice'), 'the principal is bound by the MAC, not written into the token');
  });

  it('refuses it for any other principal, including the same sub from another issuer', async () => {
    const b = await createStateBinder();
    const token = b.signState(principalKey({ issuer: 'https://idp', id: 'alice' }), { x: 1 });
    assert.throws(() => b.verifyState(principalKey({ issuer: 'https://idp', id: 'bob' }), token), invalid);
    assert.throws(() => b.verifyState(principalKey({ issuer: 'https://other', id: 'alice' }), token), invalid);
  });

  it('refuses tampered, truncated, garbage and cross-kind tokens', async () => {
    const b = await createStateBinder();
    const token = b.signState('alice', { admin: false }, { kind: 'requestState' });
    const [v, , sig] = token.split('.');
    const forged = `${v}.${Buffer.from(JSON.stringify({ p: { admin: true }, exp: 9e9 })).toString('base64url')}.${sig}`;
    assert.throws(() => b.verifyState('alice', forged, { kind: 'requestState' }), invalid);
    assert.throws(() => b.verifyState('alice', token.slice(0, -2), { kind: 'requestState' }), invalid);
    assert.throws(() => b.verifyState('alice', 'garbage', { kind: 'requestState' }), invalid);
    assert.throws(() => b.verifyState('alice', token, { kind: 'subscription' }), invalid);
    assert.deepEqual(b.verifyState('alice', token, { kind: 'requestState' }), { admin: false });
  });

  it('refuses expired state', async () => {
    let now = Date.now();
    const b = await createStateBinder({ ttl_s: 60 }, () => now);
    const token = b.signState('alice', 'sub-1');
    now += 59_000;
    assert.equal(b.verifyState('alice', token), 'sub-1');
    now += 2_000;
    assert.throws(() => b.verifyState('alice', token), invalid);
  });

  it('per-process keys do not verify each other; a shared key file does (replicas)', async () => {
    const a = await createStateBinder();
    const b = await createStateBinder();
    assert.throws(() => b.verifyState('alice', a.signState('alice', 1)), invalid);
    const keyFile = join(dir, 'state.key');
    await writeFile(keyFile, randomBytes(48).toString('base64url'), { mode: 0o600 });
    const r1 = await createStateBinder({ key_file: keyFile });
    const r2 = await createStateBinder({ key_file: keyFile });
    assert.deepEqual(r2.verifyState('alice', r1.signState('alice', { ok: true })), { ok: true });
  });

  it('refuses a key file that is too short', async () => {
    const keyFile = join(dir, 'short.key');
    await writeFile(keyFile, 'c2hvcnQ');
    await assert.rejects(createStateBinder({ key_file: keyFile }), (e: unknown) => e instanceof GatewayError && e.code === 'ERR_CONFIG_INVALID');
  });
});

describe('state binding port aliases', () => {
  it('sign/verify are the same functions as signState/verifyState', async () => {
    const b = await createStateBinder();
    assert.deepEqual(b.verify('alice', b.signState('alice', { a: 1 })), { a: 1 });
    assert.throws(() => b.verifyState('bob', b.sign('alice', { a: 1 })), invalid);
  });
});
