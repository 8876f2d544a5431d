/**
 * One owner of the process lifecycle (issue #12, point 8): the runtime folder is private (mkdtemp,
 * 0700), and after a failed start, a signal during start-up, or a normal stop, no runtime folder, no
 * audit lock and no service process is left behind. `audit verify | head` ends quietly.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { openAuditLog } from '../../src/audit/index.js';
import { CLI, echoService, ROOT } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A test's own folders: TMPDIR for the gateway (where its runtime folder goes), audit, marker. */
function scene() {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-life-'));
  dirs.push(dir);
  const tmp = path.join(dir, 'tmp');
  spawnSync('mkdir', ['-p', tmp]);
  return { dir, tmp, audit: path.join(dir, 'audit'), marker: path.join(dir, 'marker.log') };
}

function writeConfig(s: ReturnType<typeof scene>, extra: { server?: Record<string, unknown>; startDelayMs?: number; regoDir?: string } = {}): string {
  const echo = echoService({}, s.marker);
  if (extra.startDelayMs) {
    echo.args = [...(echo.args as string[]), '--start-delay', String(extra.startDelayMs)];
    // The gateway waits for the held handshake, not for its own connect timeout (15 s by default).
    echo.connect_timeout_ms = extra.startDelayMs * 2;
  }
  const cfg = {
    server: { host: '127.0.0.1', port: 0, ...extra.server },
    auth: { mode: 'dev', dev_key_dir: path.join(s.dir, 'keys') },
    policy: { rego: { dir: extra.regoDir ?? path.join(ROOT, 'policies', 'rego') }, cedar: { dir: path.join(ROOT, 'policies', 'cedar') }, watch: false },
    audit: { file: path.join(s.audit, 'audit.jsonl') },
    services: { echo },
  };
  const file = path.join(s.dir, 'gateway.yaml');
  writeFileSync(file, stringify(cfg));
  return file;
}

function start(s: ReturnType<typeof scene>, config: string) {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], {
    env: { PATH: process.env.PATH ?? '', HOME: s.dir, TMPDIR: s.tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (x: string) => (out += x));
  proc.stderr.setEncoding('utf8').on('data', (x: string) => (out += x));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited, output: () => out };
}

/** Processes whose command line names this scene's marker file: the services this gateway spawned. */
function servicesOf(s: ReturnType<typeof scene>): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(s.marker)) pids.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

/** Nothing of the gateway is left: no runtime folder in its TMPDIR, no audit lock, no service process. */
function assertNothingLeft(s: ReturnType<typeof scene>): void {
  assert.deepEqual(readdirSync(s.tmp), [], 'the runtime folder is removed');
  const locks = existsSync(s.audit) ? readdirSync(s.audit).filter((f) => f.endsWith('.lock')) : [];
  assert.deepEqual(locks, [], 'the audit lock is released');
  assert.deepEqual(servicesOf(s), [], 'no service process is left');
}

describe('process lifecycle', () => {
  test('a normal stop: the runtime folder was private while serving, and nothing is left after SIGTERM', async () => {
    const s = scene();
    const g = start(s, writeConfig(s));
    await fileLine(s.marker, 'spawned');
    await new Promise<void>((resolve, reject) => {
      const check = () => (/listening on/.test(g.output()) ? resolve() : undefined);
      g.proc.stdout.on('data', check);
      g.proc.once('exit', () => reject(new Error(`exited early:\n${g.output()}`)));
      check();
    });
    const [runDir] = readdirSync(s.tmp);
    assert.match(runDir ?? '', /^micro-mcp-[A-Za-z0-9]{6}$/, 'a mkdtemp name, not the pid');
    assert.equal(statSync(path.join(s.tmp, runDir!)).mode & 0o777, 0o700);
    assert.ok(existsSync(path.join(s.tmp, runDir!, 'service-jwks.json')), 'the service key set lives there');
    assert.equal(servicesOf(s).length, 1, 'the echo service runs');
    g.proc.kill('SIGTERM');
    assert.equal(await g.exited, 0);
    assert.match(g.output(), /SIGTERM: draining in-flight calls/);
    assertNothingLeft(s);
  });

  test('a failed start after services were spawned releases everything and exits 1 with the reason', async () => {
    const s = scene();
    // The authenticator refuses a resource URI with a fragment: a step after the audit log, the keys
    // and the service process were acquired.
    const g = start(s, writeConfig(s, { server: { public_url: 'http://127.0.0.1:1/#fragment' } }));
    assert.equal(await g.exited, 1);
    assert.match(g.output(), /ERR_CONFIG_INVALID: the resource URI must be an http\(s\) URL without a fragment/);
    assert.ok(readFileSync(s.marker, 'utf8').includes('spawned'), 'the service had been spawned');
    assert.doesNotMatch(g.output(), /listening on/);
    assertNothingLeft(s);
  });

  test('a policy set that does not compile fails the start while a service is still starting: exit 1, nothing left', { timeout: 15_000 }, async () => {
    const s = scene();
    // The policy set loads while the services start. The service holds its handshake for 30 s, beyond
    // this test's timeout: the start ends in time only by failing at the policy error, not by waiting
    // for the service (whether its process got as far as its marker before it was stopped varies).
    const regoDir = path.join(s.dir, 'rego');
    spawnSync('mkdir', ['-p', regoDir]);
    writeFileSync(path.join(regoDir, 'authz.rego'), 'package micro_mcp.authz\n\nallow if {\n  input.x ==\n}\n');
    const g = start(s, writeConfig(s, { startDelayMs: 30_000, regoDir }));
    assert.equal(await g.exited, 1);
    assert.match(g.output(), /ERR_POLICY_COMPILE/);
    assert.match(g.output(), /authz\.rego:\d+/);
    assert.doesNotMatch(g.output(), /listening on/);
    assertNothingLeft(s);
  });

  test('a SIGTERM during start-up stops the start: exit 0, never "listening", nothing left', async () => {
    const s = scene();
    // The service holds its handshake for 30 s, so the gateway is certainly still starting when the
    // signal comes (the start would otherwise finish long before the test's deadline).
    const g = start(s, writeConfig(s, { startDelayMs: 30_000 }));
    await fileLine(s.marker, 'spawned');
    assert.equal(servicesOf(s).length, 1);
    g.proc.kill('SIGTERM');
    assert.equal(await g.exited, 0);
    assert.doesNotMatch(g.output(), /listening on/);
    assertNothingLeft(s);
  });

  test('`micro-mcp audit verify FILE | true` ends quietly: a reader that leaves early is not an error', async () => {
    const s = scene();
    const file = path.join(s.dir, 'audit.jsonl');
    const log = await openAuditLog({ file, fsync: 'never' });
    for (let i = 0; i < 20; i++) await log.event({ type: 'policy_reload', details: { i } });
    await log.close();
    // `true` exits without reading, so verify's writes meet a closed pipe (EPIPE) every time.
    for (let i = 0; i < 5; i++) {
      const r = spawnSync('bash', ['-c', `node ${JSON.stringify(CLI)} audit verify ${JSON.stringify(file)} | true; echo "status \${PIPESTATUS[0]}"`], {
        encoding: 'utf8',
      });
      assert.equal(r.stdout, 'status 0\n');
      assert.equal(r.stderr, '', 'no trace on stderr');
    }
  });
});
