/**
 * Sandboxed services: a compromised service (test/fixtures/hostile-service.ts, no Node permission
 * model, so only the OS sandbox holds it) runs through a REAL gateway under exactly the sandbox
 * settings the fs and http services get (src/config/examples/dev.yaml):
 *  - fs settings (`sandbox: {read: [data]}`): no network at all, nothing but its code, the gateway's
 *    credential JWKS and its data;
 *  - http settings (`sandbox: {network: true}`): the network, but no data;
 *  - `sandbox: {mode: none}` as the control that shows the probes would see a breach, and the
 *    warning naming the service;
 *  - fail closed: a missing bwrap, a bwrap that fails, a missing `read` path: the service does not
 *    start and /readyz says why;
 *  - the services die with the gateway;
 *  - the real fs and http services serve calls from inside their sandboxes (bwrap is their process).
 * Absence is shown by events: the payload's own connect error (never a wait for a connection that
 * does not come) and ENOENT from its reads.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { fsServiceEntry, httpServiceEntry, shippedPolicyDir, stopGateway } from '../helpers/attacks.js';
import { startOrigin } from '../helpers/policy.js';
import { DIST, ROOT, connect, eventually, runDirOf, startGateway, type Gateway } from '../helpers/harness.js';

const HOSTILE = path.join(DIST, 'test', 'fixtures', 'hostile-service.js');
const SCOPES = ['hostilefs:call', 'hostilehttp:call', 'hostilenone:call'];
const CREDENTIAL_ENV_NAMES = ['MICRO_MCP_CREDENTIAL_AUDIENCE', 'MICRO_MCP_CREDENTIAL_ISSUER', 'MICRO_MCP_CREDENTIAL_JWKS_FILE'];

interface Report {
  connect?: string;
  reads: Record<string, string>;
  uid: number;
  env: string[];
  processes: string[];
}

const hostile = (sandbox: Record<string, unknown>): Record<string, unknown> => ({ transport: 'stdio', command: 'node', args: [HOSTILE], sandbox });

let base: string;
let dataDir: string;
let secret: string;
let visible: string;
let listener: Server;
let port: number;
const accepted: Socket[] = [];
let connectionWaiters: Array<(s: Socket) => void> = [];

before(async () => {
  base = mkdtempSync(path.join(tmpdir(), 'micro-mcp-sandbox-'));
  dataDir = path.join(base, 'data');
  mkdirSync(dataDir);
  visible = path.join(dataDir, 'visible.txt');
  writeFileSync(visible, 'data the fs-like service may read\n');
  secret = path.join(base, 'secret.txt'); // outside every view
  writeFileSync(secret, 'TOP-SECRET-OUTSIDE-THE-SANDBOX\n');
  // The loopback listener the payloads try to reach; every connection it accepts is recorded.
  listener = createServer((s) => {
    accepted.push(s);
    const ws = connectionWaiters;
    connectionWaiters = [];
    for (const w of ws) w(s);
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  port = (listener.address() as { port: number }).port;
});
after(async () => {
  for (const s of accepted) s.destroy();
  await new Promise<void>((r) => listener.close(() => r()));
  rmSync(base, { recursive: true, force: true });
});

const nextConnection = () => new Promise<Socket>((r) => connectionWaiters.push(r));

async function probe(client: Client, service: string, args: Record<string, unknown>): Promise<Report> {
  const r = await client.callTool({ name: `${service}.probe`, arguments: args });
  assert.equal(r.isError, undefined, JSON.stringify(r).slice(0, 300));
  return r.structuredContent as unknown as Report;
}

describe('a compromised service under the fs and http sandbox settings, through a real gateway', () => {
  let gw: Gateway;
  let client: Client;
  /** Files the payload tries to read, by what they are. */
  let files: Record<'secret' | 'data' | 'passwd' | 'gatewaySource' | 'devKey' | 'audit' | 'jwks', string>;

  before(async () => {
    gw = await startGateway({
      services: {
        hostilefs: hostile({ mode: 'bwrap', read: [dataDir] }),
        hostilehttp: hostile({ mode: 'bwrap', network: true }),
        hostilenone: hostile({ mode: 'none' }),
      },
    });
    client = await connect(gw, 'modern', { token: await gw.token({ scopes: SCOPES }) });
    const keyDir = path.join(gw.dir, 'keys');
    files = {
      secret,
      data: visible,
      passwd: '/etc/passwd',
      gatewaySource: path.join(ROOT, 'src', 'cli', 'main.ts'),
      devKey: path.join(keyDir, readdirSync(keyDir).find((f) => f.endsWith('.json') || f.endsWith('.pem')) ?? readdirSync(keyDir)[0]!),
      audit: path.join(gw.dir, 'audit', 'audit.jsonl'),
      jwks: path.join(runDirOf(gw), 'service-jwks.json'),
    };
  });
  after(async () => {
    await client?.close();
    if (gw) await stopGateway(gw);
  });

  test('every hostile service started: sandboxed ones under bwrap, the control without, and that is logged by name', async () => {
    const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; state: string }> };
    assert.deepEqual(ready.services.map((s) => `${s.name}:${s.state}`).sort(), ['hostilefs:ready', 'hostilehttp:ready', 'hostilenone:ready']);
    const lines = gw.output().split('\n');
    assert.ok(
      lines.some((l) => /"service":"hostilenone"/.test(l) && /service runs WITHOUT an OS sandbox/.test(l) && /"level":40/.test(l)),
      'a warning line names the unsandboxed service',
    );
    assert.ok(!lines.some((l) => /"service":"hostile(fs|http)"/.test(l) && /WITHOUT an OS sandbox/.test(l)), 'no warning for the sandboxed ones');
    assert.ok(lines.some((l) => /"service":"hostilefs"/.test(l) && /"sandbox":"bwrap"/.test(l) && /service ready/.test(l)));
  });

  test('control (sandbox: none): the same payload reaches the listener and reads the outside file', async () => {
    const seen = nextConnection();
    const r = await probe(client, 'hostilenone', { connect_port: port, read_paths: [files.secret, files.passwd] });
    assert.equal(r.connect, 'connected');
    await seen;
    assert.match(r.reads[files.secret]!, /^read \d+ bytes$/);
    assert.match(r.reads[files.passwd]!, /^read \d+ bytes$/);
  });

  test('fs settings: no socket reaches the loopback listener (the payload gets ECONNREFUSED/ENETUNREACH)', async () => {
    const before = accepted.length;
    const r = await probe(client, 'hostilefs', { connect_port: port });
    // The payload's own answer is the event: its connect was refused inside its network namespace.
    assert.ok(['ECONNREFUSED', 'ENETUNREACH'].includes(r.connect ?? ''), `connect outcome: ${r.connect}`);
    assert.equal(accepted.length, before, 'the listener accepted nothing');
  });

  test('fs settings: only its code, the credential JWKS and its data are visible; nothing else exists', async () => {
    const r = await probe(client, 'hostilefs', { read_paths: Object.values(files) });
    assert.match(r.reads[files.data]!, /^read \d+ bytes$/, 'its data');
    assert.match(r.reads[files.jwks]!, /^read \d+ bytes$/, 'the gateway JWKS it verifies credentials with');
    for (const k of ['secret', 'passwd', 'gatewaySource', 'devKey', 'audit'] as const) {
      assert.equal(r.reads[files[k]], 'ENOENT', `${k} is outside the view`);
    }
  });

  test('http settings: the network is there (the listener sees the connection)', async () => {
    const seen = nextConnection();
    const r = await probe(client, 'hostilehttp', { connect_port: port });
    assert.equal(r.connect, 'connected');
    await seen;
  });

  test('http settings: no data and no file beyond its code (and the name-lookup files)', async () => {
    const r = await probe(client, 'hostilehttp', { read_paths: [...Object.values(files), '/etc/shadow', '/etc/hostname'] });
    assert.match(r.reads[files.jwks]!, /^read \d+ bytes$/);
    for (const k of ['secret', 'data', 'passwd', 'gatewaySource', 'devKey', 'audit'] as const) {
      assert.equal(r.reads[files[k]], 'ENOENT', `${k} is outside the view`);
    }
    assert.equal(r.reads['/etc/shadow'], 'ENOENT');
    assert.equal(r.reads['/etc/hostname'], 'ENOENT');
  });

  test('own user, PID namespace and a clean environment', async () => {
    for (const service of ['hostilefs', 'hostilehttp']) {
      const r = await probe(client, service, {});
      assert.equal(r.uid, 65534, `${service} runs as nobody inside its user namespace`);
      // bwrap adds PWD (the sandbox's working directory, "/"); nothing of the gateway's environment.
      assert.deepEqual(r.env, [...CREDENTIAL_ENV_NAMES, 'PWD'], `${service} environment`);
      assert.ok(r.processes.length <= 3, `${service} sees only its own sandbox's processes: ${JSON.stringify(r.processes)}`);
      assert.ok(!r.processes.some((p) => p.includes('cli/main.js')), `${service} cannot see the gateway`);
    }
    const control = await probe(client, 'hostilenone', {});
    assert.ok(
      control.processes.some((p) => p.includes('cli/main.js')),
      'the control sees the gateway (so the check above could fail)',
    );
  });
});

test('the real fs and http services work in their sandboxes through a real gateway', async () => {
  const origin = await startOrigin('hello through the sandbox');
  // The shipped policies plus the test-only purpose local-dev (loopback hosts).
  const policies = shippedPolicyDir();
  const gw = await startGateway({
    services: {
      fs: fsServiceEntry(['--root', `eng=${dataDir}`], [dataDir]),
      http: httpServiceEntry(
        ['--allow-host', 'localhost', '--allow-http', '--allow-port', String(origin.port), '--test-resolve', 'localhost=127.0.0.1', '--test-allow-loopback'],
        { MICRO_MCP_HTTP_TEST_HOOKS: '1' },
      ),
    },
    policy: { decision_timeout_ms: 5000, rego: { dir: policies.rego }, cedar: { dir: policies.cedar } },
  });
  try {
    const client = await connect(gw, 'modern', { token: await gw.token({ groups: ['eng'], scopes: ['fs:read', 'http:fetch'], purpose: 'local-dev' }) });
    try {
      // The shipped policy lets group eng read /eng/**.
      const read = await client.callTool({ name: 'fs.read', arguments: { path: '/eng/visible.txt' } });
      assert.equal(read.isError, undefined, JSON.stringify(read).slice(0, 300));
      assert.equal((read.structuredContent as { text: string }).text, 'data the fs-like service may read\n');
      const listed = await client.callTool({ name: 'fs.list', arguments: { path: '/eng' } });
      assert.deepEqual(
        (listed.structuredContent as { entries: Array<{ name: string }> }).entries.map((e) => e.name),
        ['visible.txt'],
      );
      const fetched = await client.callTool({ name: 'http.fetchText', arguments: { url: `http://localhost:${origin.port}/` } });
      assert.equal(fetched.isError, undefined, JSON.stringify(fetched).slice(0, 300));
      assert.equal((fetched.structuredContent as { text: string }).text, 'hello through the sandbox');
    } finally {
      await client.close();
    }
    // Each service's process, as the gateway spawned it, is bwrap (the pid its "service ready" line names).
    for (const name of ['fs', 'http']) {
      const line = gw
        .output()
        .split('\n')
        .find((l) => l.includes(`"service":"${name}"`) && l.includes('"msg":"service ready"'));
      assert.ok(line, `${name} is ready`);
      const rec = JSON.parse(line) as { pid: number; sandbox: string };
      assert.equal(rec.sandbox, 'bwrap');
      assert.equal(path.basename(readlinkSync(`/proc/${rec.pid}/exe`)), 'bwrap', `${name} runs under bwrap`);
      assert.match(readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8'), name === 'fs' ? /--unshare-net/ : /^(?![\s\S]*--unshare-net)/);
    }
  } finally {
    await stopGateway(gw);
    await origin.close();
  }
});

describe('fail closed: a service that cannot be sandboxed as configured does not start, and /readyz says why', () => {
  const opaDir = (process.env.PATH ?? '').split(':').find((d) => {
    try {
      return readdirSync(d).includes('opa');
    } catch {
      return false;
    }
  });

  async function readyError(gw: Gateway, service: string): Promise<{ state: string; error?: string }> {
    const found = await eventually(async () => {
      const body = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; state: string; error?: string }> };
      const s = body.services.find((x) => x.name === service);
      return s?.error ? s : undefined;
    }, 15_000);
    assert.ok(found);
    return found;
  }

  test('a sandbox.read path that does not exist', async () => {
    const gw = await startGateway({ services: { broken: hostile({ read: [path.join(base, 'no-such-dir')] }), ok: hostile({}) } });
    try {
      const s = await readyError(gw, 'broken');
      // Down, or starting again (it retries with backoff): never ready, and the reason stays on show.
      assert.notEqual(s.state, 'ready');
      assert.match(s.error!, /a sandbox\.read path does not exist: .*no-such-dir/);
    } finally {
      await stopGateway(gw);
    }
  });

  test('bwrap is not installed (not on the gateway PATH)', async () => {
    assert.ok(opaDir, 'the opa CLI is on PATH');
    const gw = await startGateway({ services: { nobwrap: hostile({}) } }, { env: { PATH: opaDir } });
    try {
      const s = await readyError(gw, 'nobwrap');
      // Down, or starting again (it retries with backoff): never ready, and the reason stays on show.
      assert.notEqual(s.state, 'ready');
      assert.match(s.error!, /bubblewrap \(bwrap\) is not installed/);
    } finally {
      await stopGateway(gw);
    }
  });

  test('bwrap fails (cannot create namespaces)', async () => {
    const fake = mkdtempSync(path.join(tmpdir(), 'micro-mcp-fake-bwrap-'));
    writeFileSync(path.join(fake, 'bwrap'), '#!/bin/sh\necho "bwrap: Creating new namespace failed: Operation not permitted" >&2\nexit 1\n');
    chmodSync(path.join(fake, 'bwrap'), 0o755);
    const gw = await startGateway({ services: { badbwrap: hostile({}) } }, { env: { PATH: `${fake}:${opaDir}` } });
    try {
      const s = await readyError(gw, 'badbwrap');
      // Down, or starting again (it retries with backoff): never ready, and the reason stays on show.
      assert.notEqual(s.state, 'ready');
      assert.equal(s.error, 'sandbox failed: bwrap: Creating new namespace failed: Operation not permitted');
    } finally {
      await stopGateway(gw);
      rmSync(fake, { recursive: true, force: true });
    }
  });
});

test('a sandboxed service dies with the gateway, even one that ignores its stdin closing', async () => {
  const gw = await startGateway({ services: { hostilehttp: hostile({ network: true }) } });
  try {
    const client = await connect(gw, 'modern', { token: await gw.token({ scopes: SCOPES }) });
    const seen = nextConnection();
    const r = await client.callTool({ name: 'hostilehttp.hold', arguments: { connect_port: port } });
    assert.equal((r.structuredContent as { connect: string }).connect, 'connected');
    const socket = await seen;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.resume();
    // The gateway dies without a chance to stop anything: only --die-with-parent ends the service,
    // and its end closes the socket it holds (the event awaited here).
    gw.proc.kill('SIGKILL');
    await closed;
    await client.close().catch(() => undefined);
  } finally {
    // Killed, the gateway could not remove its run dir: it goes with the test's folder.
    await stopGateway(gw);
  }
});
