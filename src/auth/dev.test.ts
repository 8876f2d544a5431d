import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { GatewayError } from '../errors.js';
import { createAuthenticator } from './authenticator.js';
import { DEV_ISSUER } from './config.js';
import { ensureDevKey, mintDevToken, parseDuration, tokenCommand } from './dev.js';

const RESOURCE = 'http://127.0.0.1:8080/mcp';

function sink(): { write(s: string): boolean; text: string } {
  return {
    text: '',
    write(s: string) {
      this.text += s;
      return true;
    },
  };
}

/**
 * Starts `n` threads that, round by round, each call ensureDevKey on that round's folder, all
 * released at once; resolves to each round's kids (or error messages).
 */
async function raceThreads(devModule: string, keyDirs: string[], n: number): Promise<string[][]> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const source = `
    const { workerData, parentPort } = require('node:worker_threads');
    const gate = new Int32Array(workerData.gate);
    import(workerData.devModule).then(async (m) => {
      parentPort.postMessage({ loaded: true });
      for (let round = 0; round < workerData.keyDirs.length; round++) {
        for (let g = Atomics.load(gate, 0); g <= round; g = Atomics.load(gate, 0)) Atomics.wait(gate, 0, g);
        let kid;
        try { kid = (await m.ensureDevKey(workerData.keyDirs[round])).kid; } catch (e) { kid = 'error: ' + e.message; }
        parentPort.postMessage({ round, kid });
      }
    });`;
  const kids: string[][] = keyDirs.map(() => []);
  let loaded = 0;
  let released = 0;
  const release = (): void => {
    Atomics.store(gate, 0, ++released);
    Atomics.notify(gate, 0);
  };
  const workers = Array.from({ length: n }, () => new Worker(source, { eval: true, workerData: { gate: gate.buffer, devModule, keyDirs } }));
  try {
    await new Promise<void>((resolve, reject) => {
      for (const w of workers) {
        w.on('error', reject);
        w.on('message', (m: { loaded?: boolean; round?: number; kid?: string }) => {
          if (m.loaded) {
            if (++loaded === n) release();
            return;
          }
          const got = kids[m.round ?? -1];
          if (got === undefined || m.kid === undefined) return reject(new Error('unexpected message from a racing thread'));
          got.push(m.kid);
          if (got.length < n) return;
          if (released === keyDirs.length) resolve();
          else release();
        });
      }
    });
    return kids;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

describe('dev mode', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-dev-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the dev key once, with 0600 files in a 0700 folder', async () => {
    const keyDir = join(dir, 'keys');
    const [a, b] = await Promise.all([ensureDevKey(keyDir), ensureDevKey(keyDir)]);
    const c = await ensureDevKey(keyDir);
    assert.equal(a.kid, b.kid);
    assert.equal(a.kid, c.kid);
    assert.equal((await stat(keyDir)).mode & 0o777, 0o700);
    for (const f of await readdir(keyDir)) assert.equal((await stat(join(keyDir, f))).mode & 0o777, 0o600, f);
    assert.equal(a.publicJwks.keys.length, 1);
    assert.equal(a.publicJwks.keys[0]!.d, undefined, 'the public set has no private part');
    assert.equal(typeof a.privateJwk.d, 'string');
  });

  it('first calls racing in threads released at once never read a half-written key: all get the one key on disk', async () => {
    // Threads (not one event loop) interleave the writer's create and write with the readers'.
    // Before the key was linked into place whole, about one round in ten failed here.
    const devModule = new URL('./dev.js', import.meta.url).href;
    const keyDirs = Array.from({ length: 60 }, (_, round) => join(dir, `race-${round}`));
    const kids = await raceThreads(devModule, keyDirs, 4);
    for (const [round, keyDir] of keyDirs.entries()) {
      const onDisk = await ensureDevKey(keyDir);
      assert.deepEqual(kids[round], Array(4).fill(onDisk.kid), `round ${round}`);
      assert.deepEqual((await readdir(keyDir)).sort(), ['dev-signing-key.jwks.json', 'dev-signing-key.private.jwk.json'], 'no temporary file is left');
    }
  });

  it('`micro-mcp token` prints just a token the dev-mode gateway accepts', async () => {
    const keyDir = join(dir, 'keys');
    const out = sink();
    const err = sink();
    const code = await tokenCommand(
      ['--sub', 'alice', '--groups', 'eng', '--scopes', 'fs:read http:fetch', '--ttl', '15m', '--purpose', 'incident-4711', '--key-dir', keyDir],
      out,
      err,
    );
    assert.equal(code, 0, err.text);
    assert.match(out.text, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = out.text.trim();
    const claims = decodeJwt(token);
    assert.equal(claims.exp! - claims.iat!, 900);
    assert.equal(claims.aud, RESOURCE);
    assert.equal(claims.iss, DEV_ISSUER);
    assert.equal(decodeProtectedHeader(token).alg, 'ES256');

    const auth = await createAuthenticator({ mode: 'dev', dev_key_dir: keyDir }, { resource: RESOURCE, loopback: true });
    const p = await auth.authenticate(`Bearer ${token}`);
    assert.equal(p.id, 'alice');
    assert.deepEqual(p.groups, ['eng']);
    assert.deepEqual(p.scopes, ['fs:read', 'http:fetch']);
    assert.equal(p.purpose, 'incident-4711');
    assert.equal(p.client.id, 'micro-mcp-cli');
  });

  it('the dev key is trusted only on loopback', async () => {
    const keyDir = join(dir, 'keys');
    await assert.rejects(
      createAuthenticator({ mode: 'dev', dev_key_dir: keyDir }, { resource: 'http://10.0.0.5:8080/mcp', loopback: false }),
      (e: unknown) => e instanceof GatewayError && e.code === 'ERR_CONFIG_INVALID',
    );
    // Nor by pointing jwt mode at the dev issuer.
    await assert.rejects(
      createAuthenticator({ mode: 'jwt', issuer: DEV_ISSUER, jwks_file: join(keyDir, 'dev-signing-key.jwks.json') }, { resource: RESOURCE, loopback: false }),
      (e: unknown) => e instanceof GatewayError && e.code === 'ERR_CONFIG_INVALID',
    );
  });

  it('a dev token for another audience is refused', async () => {
    const keyDir = join(dir, 'keys');
    const token = await mintDevToken({ sub: 'alice', ttl: '5m', audience: 'http://127.0.0.1:9090/mcp', keyDir });
    const auth = await createAuthenticator({ mode: 'dev', dev_key_dir: keyDir }, { resource: RESOURCE, loopback: true });
    await assert.rejects(auth.authenticate(`Bearer ${token}`), (e: unknown) => e instanceof GatewayError && e.code === 'ERR_AUTH_AUDIENCE');
  });

  it('usage errors exit 2 without a token', async () => {
    const out = sink();
    const err = sink();
    assert.equal(await tokenCommand(['--groups', 'eng'], out, err), 2);
    assert.equal(out.text, '');
    assert.match(err.text, /--sub is required/);
    assert.equal(await tokenCommand(['--sub', 'a', '--ttl', 'forever', '--key-dir', join(dir, 'keys')], out, err), 2);
    assert.equal(await tokenCommand(['--sub', 'a', '--bogus'], out, err), 2);
    assert.equal(out.text, '');
  });

  it('takes the gateway port (make run PORT=N) or the audience, not both', async () => {
    const keyDir = join(dir, 'keys');
    const out = sink();
    const err = sink();
    assert.equal(await tokenCommand(['--sub', 'a', '--port', '8181', '--key-dir', keyDir], out, err), 0, err.text);
    assert.equal(decodeJwt(out.text.trim()).aud, 'http://127.0.0.1:8181/mcp');
    const out2 = sink();
    assert.equal(await tokenCommand(['--sub', 'a', '--aud', 'http://localhost:9000/mcp', '--key-dir', keyDir], out2, err), 0, err.text);
    assert.equal(decodeJwt(out2.text.trim()).aud, 'http://localhost:9000/mcp');
    const bad = sink();
    assert.equal(await tokenCommand(['--sub', 'a', '--port', '8181', '--aud', 'http://x/mcp', '--key-dir', keyDir], sink(), bad), 2);
    assert.match(bad.text, /^give --port or --aud, not both\n/);
    const bad2 = sink();
    assert.equal(await tokenCommand(['--sub', 'a', '--port', '99999', '--key-dir', keyDir], sink(), bad2), 2);
    assert.match(bad2.text, /^--port must be a TCP port \(1-65535\)\n/);
  });

  it('parses durations', () => {
    assert.equal(parseDuration('90'), 90);
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('15m'), 900);
    assert.equal(parseDuration('2h'), 7200);
    assert.equal(parseDuration('1d'), 86400);
    assert.throws(() => parseDuration('0s'));
    assert.throws(() => parseDuration('-5m'));
  });
});
