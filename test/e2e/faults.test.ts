/**
 * Faults (issue #12, point 9), against a real gateway: the audit file removed or its path made
 * unwritable, a service killed mid-call, a remote service that hangs. In each case the agent gets a
 * clear error, nothing is forwarded without a decision record (calls are refused while the audit
 * cannot be written, and /readyz says so), and service resumes by itself when the cause goes away.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { readRecords, verifyCli } from '../helpers/audit.js';
import { PROC_FD_READ } from '../corpora/harness.js';
import { codeReadFlags } from '../helpers/attacks.js';
import { connect, echoService, eventually, type Gateway, ROOT, startGateway } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

const FS_MAIN = path.join(ROOT, 'dist', 'services', 'fs', 'main.js');
const text = (r: { content?: unknown }) => (r.content as Array<{ text: string }>)[0]!.text;
type RpcError = { code?: number; message: string; data?: { code?: string } };
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: RpcError) => e,
  );

async function ready(gw: Gateway): Promise<{ status: number; body: Record<string, any> }> {
  const r = await fetch(`${gw.url}/readyz`);
  return { status: r.status, body: (await r.json()) as Record<string, any> };
}

/** The pid of the process whose command line names `needle` (a service the gateway spawned). */
function pidOf(needle: string): number | undefined {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (cmd.includes(needle) && cmd.some((a) => a.endsWith('echo-service.js'))) return Number(e);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

describe('the audit log fails and comes back', () => {
  let gw: Gateway;
  let client: Client;
  let marker: string;
  before(async () => {
    marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-faults-')), 'marker.log');
    // Each answer waits for its outcome record: once a call is answered, its record is acknowledged,
    // so the chain's last record is known when the file is removed (otherwise an outcome written but
    // not yet acknowledged is refused with the removed file, and the chain rightly resumes before it).
    gw = await startGateway({ services: { echo: echoService({}, marker) }, audit: { outcome_before_answer: true } });
    client = await connect(gw, 'modern');
  });
  after(async () => {
    await client?.close();
    await gw?.stop();
  });

  test('audit file removed and its path unwritable: calls refused and readiness says so; both undone: service resumes, on record', async () => {
    const dir = path.join(gw.dir, 'audit');
    const file = path.join(dir, 'audit.jsonl');
    assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'before' } })), 'before');
    // The answer came after its outcome record was acknowledged: it is the last record on disk.
    const before = readRecords(dir).at(-1)!.rec;
    assert.equal(before.kind, 'outcome');
    // Removed, and a directory in its place so that it cannot simply be created again.
    rmSync(file);
    mkdirSync(file);
    const e = await failure(client.callTool({ name: 'echo.slow', arguments: { tag: 'while-down', ms: 10 } }));
    assert.equal(e?.data?.code, 'ERR_AUDIT_UNAVAILABLE');
    assert.equal(e?.message, 'the audit log is unavailable; call refused');
    const down = await ready(gw);
    assert.equal(down.status, 503);
    assert.equal(down.body.audit, 'unavailable');
    const again = await failure(client.callTool({ name: 'echo.echo', arguments: { text: 'still down' } }));
    assert.equal(again?.data?.code, 'ERR_AUDIT_UNAVAILABLE');
    rmSync(file, { recursive: true });
    await eventually(async () => (await ready(gw)).status === 200, 15_000);
    assert.equal(text(await client.callTool({ name: 'echo.slow', arguments: { tag: 'after', ms: 10 } })), 'finished');
    const marks = readFileSync(marker, 'utf8');
    assert.ok(marks.includes('started after'), 'the call after recovery reached the service');
    assert.ok(!marks.includes('started while-down'), 'the refused call never reached the service');
    const recs = readRecords(dir).map((l) => l.rec as Record<string, any>);
    const resumed = recs[0]!;
    assert.equal(resumed.type, 'audit_resumed', 'the new file starts with the resumption');
    assert.equal(resumed.details.reason, 'EREMOVED');
    assert.equal(resumed.details.file_recreated, true);
    assert.deepEqual([resumed.seq, resumed.prev_hash], [before.seq + 1, before.hash], 'the chain continues from the last record on disk');
    const v = verifyCli(dir);
    assert.equal(v.code, 0, v.out);
    assert.match(v.out, new RegExp(`seq ${before.seq + 1}\\.\\.`), 'what was removed is missing from the chain, and verify (with --genesis) can tell');
    assert.equal(verifyCli('--genesis', dir).code, 1);
  });
});

describe('a service killed mid-call', () => {
  let gw: Gateway;
  let client: Client;
  let marker: string;
  before(async () => {
    marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-faults-')), 'marker.log');
    gw = await startGateway({ services: { echo: echoService({ restart: { initial_delay_ms: 50, max_delay_ms: 200 } }, marker) } });
    client = await connect(gw, 'legacy');
  });
  after(async () => {
    await client?.close();
    await gw?.stop();
  });

  test('the call fails with a clear error and its outcome is recorded; the restarted service serves the next call', async () => {
    const call = failure(client.callTool({ name: 'echo.slow', arguments: { tag: 'killed', ms: 30_000 } }));
    await fileLine(marker, 'started killed');
    process.kill(pidOf(marker)!, 'SIGKILL');
    const e = await call;
    assert.equal(e?.data?.code, 'ERR_SERVICE_UNAVAILABLE');
    const recs = readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec as Record<string, any>);
    const d = recs.filter((r) => r.kind === 'decision' && r.tool === 'echo.slow').at(-1)!;
    const o = await eventually(() => readRecords(path.join(gw.dir, 'audit')).find((l) => l.rec.kind === 'outcome' && l.rec.decision_id === d.decision_id));
    assert.deepEqual([(o!.rec as Record<string, any>).outcome, (o!.rec as Record<string, any>).error.code], ['service_error', 'ERR_SERVICE_UNAVAILABLE']);
    await eventually(async () => {
      try {
        return text(await client.callTool({ name: 'echo.echo', arguments: { text: 'back' } })) === 'back';
      } catch {
        return false;
      }
    }, 20_000);
  });
});

describe('a remote service that hangs', () => {
  let gw: Gateway;
  let service: ChildProcess;
  let client: Client;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-faults-fs-'));
    writeFileSync(path.join(dir, 'hello.txt'), 'hello\n');
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    gw = await startGateway({
      services: {
        fs: {
          transport: 'http',
          url: `http://127.0.0.1:${port}/mcp`,
          call_timeout_ms: 1000,
          restart: { initial_delay_ms: 50, max_delay_ms: 200 },
          resource: { kind: 'path', arg: 'path' },
        },
      },
    });
    const args = [
      '--experimental-permission',
      ...codeReadFlags(),
      `--allow-fs-read=${dir}`,
      PROC_FD_READ,
      FS_MAIN,
      '--root',
      `public=${dir}`,
      '--http-port',
      String(port),
    ];
    const cred = [
      '--credential-audience',
      'micro-mcp:service:fs',
      '--credential-issuer',
      'micro-mcp:gateway',
      '--credential-jwks-url',
      `${gw.url}/.well-known/jwks.json`,
    ];
    service = spawn(process.execPath, [...args, ...cred], { stdio: ['ignore', 'ignore', 'ignore'], env: { PATH: process.env.PATH ?? '' } });
    client = await connect(gw, 'modern', { token: await gw.token({ groups: ['eng'], scopes: ['fs:read'] }) });
    await eventually(async () => (await ready(gw)).body.services?.[0]?.state === 'ready', 15_000);
  });
  after(async () => {
    await client?.close();
    service?.kill('SIGCONT');
    service?.kill();
    await gw?.stop();
  });

  test('a call to a stopped (hanging) remote service ends with ERR_SERVICE_TIMEOUT after call_timeout_ms; it works again once the service runs', async () => {
    const read = () => client.callTool({ name: 'fs.stat', arguments: { path: '/public/hello.txt' } });
    assert.notEqual((await read()).isError, true);
    service.kill('SIGSTOP');
    const e = await failure(read());
    assert.equal(e?.data?.code, 'ERR_SERVICE_TIMEOUT');
    assert.equal(e?.message, 'service "fs" did not answer in time');
    service.kill('SIGCONT');
    await eventually(async () => {
      try {
        return (await read()).isError !== true;
      } catch {
        return false;
      }
    }, 15_000);
    assert.ok(existsSync(path.join(gw.dir, 'audit', 'audit.jsonl')));
  });
});
