/**
 * `make stress`: floods a real gateway on loopback from hostile clients and reports what they cost
 * it (issue #12): connections held, the gateway's memory before, at the peak and after the flood,
 * and the refusals per cause from its audit log. Bounded in count and time; loopback only. The
 * tests (test/e2e/hostile-clients.test.ts) prove the same behaviours with small floods.
 *
 *   STRESS_SCALE=0.2 shrinks every count, for a quick look.
 */
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import path from 'node:path';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readRecords } from '../helpers/audit.js';
import { echoService, type Gateway, ROOT, startGateway } from '../helpers/harness.js';

const SCALE = Number(process.env.STRESS_SCALE ?? '1') || 1;
const n = (x: number) => Math.max(10, Math.round(x * SCALE));
const OUT = path.join(ROOT, 'test', 'bench', 'STRESS.md');
const log = (s: string) => process.stderr.write(`stress: ${s}\n`);

/** The gateway process's resident memory, MiB (VmRSS). */
function rssMiB(gw: Gateway): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

/** The gateway's own count of open connections is not exposed; the client side counts what stays open. */
function openSockets(sockets: Socket[]): number {
  return sockets.filter((s) => !s.destroyed).length;
}

const until = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

async function idle(gw: Gateway): Promise<number> {
  // Memory settles after the clients are gone: sample until two readings a second apart agree.
  let prev = rssMiB(gw);
  for (let i = 0; i < 10; i++) {
    await until(1000);
    const cur = rssMiB(gw);
    if (Math.abs(cur - prev) <= 1) return cur;
    prev = cur;
  }
  return prev;
}

interface Row {
  flood: string;
  sent: string;
  held: string;
  before: number;
  peak: number;
  after: number;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-stress-'));
  const gw = await startGateway(
    {
      server: { headers_timeout_ms: 5000, request_timeout_ms: 10_000, max_connections_per_ip: 256, auth_failures_per_minute_per_ip: 120 },
      services: { echo: echoService() },
    },
    { dir },
  );
  const port = Number(new URL(gw.url).port);
  const rows: Row[] = [];
  try {
    const base = await idle(gw);
    log(`gateway idle at ${base} MiB`);

    // 1. Slow headers without a token, from 8 addresses (64 each, 512 in all): held until headers_timeout_ms.
    {
      const sockets: Socket[] = [];
      for (let i = 0; i < n(512); i++) {
        const s = netConnect({ host: '127.0.0.1', port, localAddress: `127.0.1.${1 + (i % 8)}` });
        s.on('error', () => undefined);
        s.resume(); // read (and drop) the 408, so the close that follows it is seen
        s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `);
        sockets.push(s);
      }
      await until(1000);
      const peak = rssMiB(gw);
      const heldAtPeak = openSockets(sockets);
      await Promise.all(sockets.map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))));
      rows.push({
        flood: 'slow headers, no token',
        sent: `${sockets.length} sockets`,
        held: `${heldAtPeak} until headers_timeout_ms (5 s), then 0`,
        before: base,
        peak,
        after: await idle(gw),
      });
    }

    // 2. Stalled ~900 kB bodies without a token: answered 401 from the headers, bodies never read.
    {
      const count = n(200);
      let refused = 0;
      const sockets: Socket[] = [];
      const answers = await Promise.all(
        Array.from({ length: count }, (_, i) => {
          return new Promise<number>((resolve) => {
            const req = httpRequest({
              host: '127.0.0.1',
              port,
              localAddress: `127.0.2.${1 + (i % 8)}`,
              path: '/mcp',
              method: 'POST',
              agent: false,
              headers: { host: `127.0.0.1:${port}`, 'content-type': 'application/json', 'content-length': String(900 * 1024) },
            });
            req.on('socket', (sock) => sockets.push(sock));
            req.on('response', (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            });
            req.on('error', () => resolve(0));
            req.write(Buffer.alloc(64 * 1024, 0x20)); // a first 64 kB, then it stalls
          });
        }),
      );
      refused = answers.filter((s) => s === 401).length;
      const peak = rssMiB(gw);
      for (const s of sockets) s.destroy();
      rows.push({
        flood: 'stalled 900 kB bodies, no token',
        sent: `${count} requests`,
        held: `${refused} answered 401 before the body`,
        before: rows.at(-1)!.after,
        peak,
        after: await idle(gw),
      });
    }

    // 3. Forged tokens from one address: verified until its failure budget is spent, then 429 unverified.
    {
      const count = n(1000);
      const codes = new Map<number, number>();
      for (let i = 0; i < count; i += 50) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(50, count - i) }, () =>
            fetch(`${gw.url}/mcp`, {
              method: 'POST',
              headers: { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA', 'content-type': 'application/json' },
              body: '{}',
            })
              .then((r) => r.status)
              .catch(() => 0),
          ),
        );
        for (const c of batch) codes.set(c, (codes.get(c) ?? 0) + 1);
      }
      const peak = rssMiB(gw);
      rows.push({
        flood: 'forged tokens, one address',
        sent: `${count} requests`,
        held: [...codes].map(([c, k]) => `${k}x ${c}`).join(', '),
        before: rows.at(-1)!.after,
        peak,
        after: await idle(gw),
      });
    }

    // 4. One principal opening sessions: its ceiling refuses it, not the others.
    {
      const alice = {
        authorization: `Bearer ${await gw.token({ sub: 'greedy' })}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      };
      const init = JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 's', version: '1' } },
      });
      const codes = new Map<number, number>();
      for (let i = 0; i < n(300); i++) {
        const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: alice, body: init });
        await r.body?.cancel();
        codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
      }
      const bob = await fetch(`${gw.url}/mcp`, {
        method: 'POST',
        headers: { ...alice, authorization: `Bearer ${await gw.token({ sub: 'bystander' })}` },
        body: init,
      });
      await bob.body?.cancel();
      const peak = rssMiB(gw);
      rows.push({
        flood: 'one principal opening sessions',
        sent: `${n(300)} initialize`,
        held: `${[...codes].map(([c, k]) => `${k}x ${c}`).join(', ')}; another principal: ${bob.status}`,
        before: rows.at(-1)!.after,
        peak,
        after: await idle(gw),
      });
    }

    // Stopped first: the counts of suppressed refusals are written when their window ends, or at stop.
    await gw.stop();
    const refusals = new Map<string, number>();
    for (const l of readRecords(path.join(dir, 'audit'))) {
      const r = l.rec as Record<string, any>;
      if (r.kind !== 'event') continue;
      const cause =
        r.type === 'limit_refused' ? `limit_refused ${r.details?.limit}` : r.type === 'refusals_suppressed' ? `suppressed ${r.details?.refused_type}` : r.type;
      refusals.set(cause, (refusals.get(cause) ?? 0) + (r.type === 'refusals_suppressed' ? Number(r.details?.suppressed ?? 0) : 1));
    }
    const md = [
      '# Stress results',
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} by \`make stress\` (test/bench/stress.ts), scale ${SCALE}, in ${Math.round((Date.now() - t0) / 1000)} s. Gateway RSS in MiB (VmRSS).`,
      '',
      '| flood | sent | what the gateway held / answered | RSS before | peak | after |',
      '|---|---|---|--:|--:|--:|',
      ...rows.map((r) => `| ${r.flood} | ${r.sent} | ${r.held} | ${r.before} | ${r.peak} | ${r.after} |`),
      '',
      '| refusals on the audit record (written one by one, or counted in refusals_suppressed) | count |',
      '|---|--:|',
      ...[...refusals].sort().map(([k, v]) => `| ${k} | ${v} |`),
      '',
    ].join('\n');
    process.stdout.write(`${md}\n`);
    writeFileSync(OUT, md);
    log(`wrote ${path.relative(ROOT, OUT)}`);
  } finally {
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
