/**
 * `make soak` (issue #15): a bounded loopback soak. Sixteen agents (half on 2026-07-28, half on 2025
 * sessions that end and start again every few calls) call a stdio service and a remote Streamable
 * HTTP service through one gateway for SOAK_MINUTES (default 10). Every SOAK_REPORT_S (default 30)
 * it prints the gateway's RSS, the window's p50/p99 and the gateway's own counts of sessions,
 * streams and calls in flight (/readyz). At the end every client is closed and the gateway must be
 * back to zero sessions, streams and calls in flight, with RSS within SOAK_RSS_SLACK_MIB (default
 * 32) of the first window after warm-up; otherwise it exits 1. Results go to test/bench/SOAK.md.
 *
 *   SOAK_MINUTES=1 SOAK_REPORT_S=10 make soak     a quick look
 *   SOAK_NODE_OPTIONS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp/heap" make soak
 *                                                 then `kill -USR2 <gateway pid>` twice and diff the snapshots
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { connect, echoService, eventually, type Gateway, ROOT, startGateway } from '../helpers/harness.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? '10');
const REPORT_S = Number(process.env.SOAK_REPORT_S ?? '30');
const AGENTS = Number(process.env.SOAK_AGENTS ?? '16');
const SLACK_MIB = Number(process.env.SOAK_RSS_SLACK_MIB ?? '32');
/** A 2025 agent ends its session and starts a new one after this many calls (sessions must not leak). */
const CALLS_PER_SESSION = 25;
const OUT = path.join(ROOT, 'test', 'bench', 'SOAK.md');
const SERVICE = path.join(ROOT, 'dist', 'test', 'bench', 'bench-service.js');
const log = (s: string) => process.stderr.write(`soak: ${s}\n`);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Counts {
  sessions: number;
  streams: number;
  in_flight: number;
}

async function counts(gw: Gateway): Promise<Counts> {
  const r = (await (await fetch(`${gw.url}/readyz`)).json()) as Counts;
  return { sessions: r.sessions, streams: r.streams, in_flight: r.in_flight };
}

async function startRemote(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [SERVICE, '--http'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const url = await eventually(() => /listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(out)?.[1], 15_000);
  return { url: url!, proc };
}

interface Row {
  at_s: number;
  calls: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  rss_mib: number;
  sessions: number;
  streams: number;
  in_flight: number;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-soak-'));
  const remote = await startRemote();
  const gw = await startGateway(
    { services: { echo: echoService(), bench: { transport: 'http', url: remote.url } } },
    { dir, env: process.env.SOAK_NODE_OPTIONS ? { NODE_OPTIONS: process.env.SOAK_NODE_OPTIONS } : {} },
  );
  let stop = false;
  let window: number[] = [];
  let errors = 0;
  const errorKinds = new Map<string, number>();
  const oneCall = async (c: Client, i: number, n: number) => {
    const name = n % 2 === 0 ? 'echo.echo' : 'bench.echo';
    const t = performance.now();
    try {
      const r = await c.callTool({ name, arguments: { text: `agent ${i} call ${n}` } });
      if (r.isError) throw new Error('tool error');
      window.push(performance.now() - t);
    } catch (e) {
      errors++;
      const k = (e as Error).message.slice(0, 80);
      errorKinds.set(k, (errorKinds.get(k) ?? 0) + 1);
    }
  };
  const agent = async (i: number) => {
    const era = i % 2 === 0 ? 'modern' : 'legacy';
    const token = await gw.token({ sub: `soak-${i}`, scopes: ['echo:call', 'bench:call'] });
    let n = 0;
    while (!stop) {
      const c = await connect(gw, era, { token });
      try {
        for (let k = 0; !stop && (era === 'modern' || k < CALLS_PER_SESSION); k++) {
          if (k % 10 === 0) await c.listTools();
          await oneCall(c, i, n++);
        }
      } finally {
        // A well-behaved 2025 client ends its session (DELETE); one that does not is what the idle timeout is for.
        if (era === 'legacy') await (c.transport as { terminateSession?: () => Promise<void> } | undefined)?.terminateSession?.();
        await c.close();
      }
    }
  };
  const rows: Row[] = [];
  const t0 = Date.now();
  log(`${AGENTS} agents for ${MINUTES} min, a report every ${REPORT_S} s; gateway pid ${gw.proc.pid}`);
  const agents = Array.from({ length: AGENTS }, (_, i) => agent(i));
  const report = async () => {
    const w = window.sort((a, b) => a - b);
    window = [];
    const row: Row = {
      at_s: Math.round((Date.now() - t0) / 1000),
      calls: w.length,
      errors,
      p50_ms: Number(quantile(w, 0.5).toFixed(2)),
      p99_ms: Number(quantile(w, 0.99).toFixed(2)),
      rss_mib: rssMiB(gw.proc.pid!),
      ...(await counts(gw)),
    };
    errors = 0;
    rows.push(row);
    log(
      `${row.at_s}s calls=${row.calls} errors=${row.errors} p50=${row.p50_ms}ms p99=${row.p99_ms}ms rss=${row.rss_mib}MiB sessions=${row.sessions} streams=${row.streams} in_flight=${row.in_flight}`,
    );
  };
  const deadline = t0 + MINUTES * 60_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, Math.min(REPORT_S * 1000, deadline - Date.now())));
    await report();
  }
  stop = true;
  await Promise.all(agents);
  // Every client closed: the gateway must hold nothing for them any more.
  const end = await eventually(
    async () => {
      const c = await counts(gw);
      return c.sessions === 0 && c.streams === 0 && c.in_flight === 0 ? c : undefined;
    },
    15_000,
    200,
  ).catch(() => undefined);
  const finalCounts = end ?? (await counts(gw));
  const rssEnd = rssMiB(gw.proc.pid!);
  await gw.stop();
  remote.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });

  // The first window is warm-up (JIT, pools); the baseline is the second, or the first if there is one.
  const base = rows[Math.min(1, rows.length - 1)]?.rss_mib ?? Number.NaN;
  const peak = Math.max(...rows.slice(Math.min(1, rows.length - 1)).map((r) => r.rss_mib));
  const last = rows.at(-1)?.rss_mib ?? Number.NaN;
  const flat = last - base <= SLACK_MIB;
  const leakFree = finalCounts.sessions === 0 && finalCounts.streams === 0 && finalCounts.in_flight === 0;
  const total = rows.reduce((s, r) => s + r.calls, 0);
  const failed = rows.reduce((s, r) => s + r.errors, 0);

  const md = [
    '# Soak (`make soak`)',
    '',
    `${new Date().toISOString().slice(0, 10)}: ${AGENTS} agents (half 2026-07-28, half 2025 sessions renewed every ${CALLS_PER_SESSION} calls) for ${MINUTES} min on loopback,`,
    'calling a stdio service and a remote Streamable HTTP service in turn through one gateway (2 cores).',
    '',
    '| at (s) | calls | errors | p50 (ms) | p99 (ms) | gateway RSS (MiB) | sessions | streams | in flight |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.at_s} | ${r.calls} | ${r.errors} | ${r.p50_ms} | ${r.p99_ms} | ${r.rss_mib} | ${r.sessions} | ${r.streams} | ${r.in_flight} |`),
    '',
    `${total} calls, ${failed} failed${errorKinds.size > 0 ? ` (${[...errorKinds].map(([k, v]) => `${v} x "${k}"`).join(', ')})` : ''}.`,
    `RSS after warm-up ${base} MiB, peak ${peak} MiB, last window ${last} MiB, after every client closed ${rssEnd} MiB: ${flat ? 'flat' : 'GROWING'} (slack ${SLACK_MIB} MiB).`,
    `After every client closed: ${finalCounts.sessions} sessions, ${finalCounts.streams} streams, ${finalCounts.in_flight} calls in flight${leakFree ? '' : ' (LEAK)'}.`,
    '',
  ].join('\n');
  writeFileSync(OUT, md);
  log(`wrote ${path.relative(ROOT, OUT)}`);
  if (!flat || !leakFree || failed > 0) {
    log(`FAILED: ${!flat ? 'memory grew; ' : ''}${!leakFree ? 'sessions, streams or calls left over; ' : ''}${failed > 0 ? `${failed} calls failed` : ''}`);
    process.exitCode = 1;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`soak failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
