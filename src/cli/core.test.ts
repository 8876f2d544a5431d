import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { authConfigOf, createStateBinder } from '../auth/index.js';
import { parseConfig } from '../config/load.js';
import { isGatewayError } from '../errors.js';
import { replicaStateKey } from './core.js';

const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-core-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const configOf = (auth: string, state: string) =>
  parseConfig(`${auth}\n${state}\nservices:\n  echo: { transport: stdio, command: node, args: [x.js] }\n`, path.join(dir, 'gateway.yaml'), { env: {} });

describe('the state binding key of a replica', () => {
  test('one replica (no shared state) keeps a random key per process', async () => {
    const cfg = configOf('auth: { mode: dev }', '');
    assert.equal(await replicaStateKey(cfg, authConfigOf(cfg.auth)), undefined);
  });

  test('shared state in jwt mode without a shared key file is a config error naming the key', async () => {
    const cfg = configOf('auth: { mode: jwt, issuer: https://idp.example, jwks_file: jwks.json }', 'state: { redis: "redis://127.0.0.1:6379" }');
    await assert.rejects(
      replicaStateKey(cfg, authConfigOf(cfg.auth)),
      (e: unknown) => isGatewayError(e) && e.code === 'ERR_CONFIG_INVALID' && e.data?.key === 'auth.state_binding.key_file',
    );
  });

  test('dev-mode replicas sharing a dev key folder derive the same key, so state from one verifies at the other', async () => {
    const keys = path.join(dir, 'keys');
    const cfg = configOf(`auth: { mode: dev, dev_key_dir: ${keys} }`, 'state: { redis: "redis://127.0.0.1:6379" }');
    const [a, b] = [await replicaStateKey(cfg, authConfigOf(cfg.auth)), await replicaStateKey(cfg, authConfigOf(cfg.auth))];
    assert.ok(a && b && a.length === 32 && a.equals(b));
    const [one, two] = [await createStateBinder({}, Date.now, a), await createStateBinder({}, Date.now, b)];
    assert.deepEqual(two.verifyState('p', one.signState('p', { o: 2 })), { o: 2 });
    const other = await createStateBinder({});
    assert.throws(
      () => other.verifyState('p', one.signState('p', { o: 2 })),
      (e: unknown) => isGatewayError(e) && e.code === 'ERR_INPUT_STATE_INVALID',
    );
  });

  test('a key file, when given, wins over the derived key', async () => {
    const file = path.join(dir, 'state.key');
    writeFileSync(file, Buffer.alloc(32, 7).toString('base64url'));
    const cfg = configOf(`auth: { mode: dev, state_binding: { key_file: ${file} } }`, 'state: { redis: "redis://127.0.0.1:6379" }');
    assert.equal(await replicaStateKey(cfg, authConfigOf(cfg.auth)), undefined);
  });
});
