import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { GatewayMetrics } from './metrics.js';
import { parseListen, startMetricsListener } from './metrics-listener.js';

const log = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined, child: () => log };
const metrics = new GatewayMetrics(
  { sessions: () => 0, streams: () => 0, inFlight: () => 0, services: () => [], policyRevision: () => 'sha256:x' },
  { defaultMetrics: false },
);

test('metrics.listen is host:port', () => {
  assert.deepEqual(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.throws(() => parseListen('127.0.0.1'), { code: 'ERR_CONFIG_INVALID', message: 'metrics.listen must be host:port, not "127.0.0.1"' });
  assert.throws(() => parseListen('127.0.0.1:70000'), { code: 'ERR_CONFIG_INVALID' });
});

test('an open (tokenless) metrics listener is refused off loopback; a short or missing token file is refused', async () => {
  await assert.rejects(startMetricsListener({ listen: '0.0.0.0:0', metrics, log }), {
    code: 'ERR_CONFIG_INVALID',
    message: 'metrics.listen on 0.0.0.0 (not loopback) needs metrics.token_file',
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'metrics-listener-'));
  const short = path.join(dir, 'short');
  writeFileSync(short, 'abc\n');
  await assert.rejects(startMetricsListener({ listen: '127.0.0.1:0', tokenFile: short, metrics, log }), {
    code: 'ERR_CONFIG_INVALID',
    message: 'metrics.token_file must hold a token of at least 16 characters',
  });
  await assert.rejects(startMetricsListener({ listen: '127.0.0.1:0', tokenFile: path.join(dir, 'none'), metrics, log }), {
    code: 'ERR_CONFIG_INVALID',
    message: 'metrics.token_file cannot be read: ENOENT',
  });
});

test('an open loopback listener serves /metrics to anyone, only GET', async () => {
  const l = await startMetricsListener({ listen: '127.0.0.1:0', metrics, log });
  try {
    const r = await fetch(l.url);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /^micro_mcp_policy_revision_info\{revision="sha256:x"\} 1$/m);
    assert.equal((await fetch(l.url, { method: 'POST' })).status, 405);
  } finally {
    await l.close();
  }
});
