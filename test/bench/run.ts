/**
 * `make bench`: the gateway against a direct call to the same service, measured in one run.
 *
 * 1. The bench service (test/bench/bench-service.ts) on loopback over Streamable HTTP: the direct baseline.
 * 2. The real gateway (dist/src/cli/main.js serve) with the same service over stdio, dev auth, both
 *    policy engines with the repo's policies, audit to a temp file: one with fsync always (the
 *    default), one with fsync never; a third, profiled, gateway for the CPU profile afterwards.
 * 3. tools/call latency (p50/p99) and throughput with real SDK v2 clients, 1 and 16 clients, both eras.
 * 4. Micro-benchmarks of one policy decision and of authenticate.
 * Prints Markdown and writes it to test/bench/RESULTS.md. Loopback only; everything it starts is stopped.
 *
 * BENCH_SCALE=0.2 (any factor) shrinks every count, for a quick look.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { CLI, connect, eventually, ROOT, startGateway, type Era, type Gateway } from '../helpers/harness.js';
import { runLoad, type LoadResult } from './load.js';
import { runMicro, type MicroRow } from './micro.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVICE = path.join(here, 'bench-service.js');
const HOOK = path.join(here, 'profile-hook.js');
const RESULTS = path.join(ROOT, 'test', 'bench', 'RESULTS.md');

const SCALE = Number(process.env.BENCH_SCALE ?? '1') || 1;
const scaled = (n: number) => Math.max(20, Math.round(n * SCALE));
/** Per concurrency: measured calls (total), warm-up calls per client, time cap of the measured phase. */
const PLAN = {
  1: { calls: scaled(1000), warmupPerClient: scaled(100), capMs: 8_000 },
  16: { calls: scaled(4000), warmupPerClient: scaled(20), capMs: 8_000 },
} as const;
const CONCURRENCY = [1, 16] as const;
const ERAS: Era[] = ['modern', 'legacy'];
const ERA_LABEL: Record<Era, string> = { modern: '2026-07-28', legacy: '2025-11-25 (session)' };

type Variant = 'direct' | 'fsync always' | 'fsync never';
interface Row {
  variant: Variant;
  era: Era;
  r: LoadResult;
}

const cleanups: Array<() => Promise<unknown>> = [];
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

// ---- processes --------------------------------------------------------------------------------------

/** The bench service over HTTP, as its own process (like the gateway's stdio copy of it). */
async function startDirectService(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [SERVICE, '--http'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => stopProc(proc));
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const url = await eventually(() => /listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(out)?.[1], 15_000, 20).catch((): never => {
    throw new Error(`bench service did not start:\n${out}`);
  });
  if (url === undefined) throw new Error('bench service printed no URL');
  return { url, proc };
}

async function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(t);
}

async function directClient(url: string, era: Era): Promise<Client> {
  const client = new Client(
    { name: `bench-direct-${era}`, version: '1.0.0' },
    { capabilities: {}, versionNegotiation: era === 'modern' ? { mode: { pin: '2026-07-28' } } : { mode: 'legacy' } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

/** A gateway in its own temp dir (kept until its audit trail was checked). */
async function gateway(fsync: 'always' | 'never', env: Record<string, string> = {}): Promise<Gateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-bench-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const gw = await startGateway(
    {
      services: { echo: { transport: 'stdio', command: 'node', args: [SERVICE] } },
      audit: { fsync },
    },
    { dir, env },
  );
  cleanups.push(() => gw.stop());
  return gw;
}

/**
 * Stops the gateway (SIGTERM flushes the audit) and proves the audit kept up: every record the calls
 * needed (see expectedRecords), and an intact hash chain (`micro-mcp audit verify`).
 */
async function stopAndCheckAudit(gw: Gateway, expected: number): Promise<string> {
  const code = await gw.stop();
  if (code !== 0) throw new Error(`gateway exited with ${code}:\n${gw.output().slice(-2000)}`);
  const dir = path.join(gw.dir, 'audit');
  let records = 0;
  for (const f of readdirSync(dir))
    if (f.startsWith('audit.jsonl'))
      records += readFileSync(path.join(dir, f), 'utf8')
        .split('\n')
        .filter((l) => l !== '').length;
  if (records < expected) throw new Error(`audit has ${records} records; the calls made need at least ${expected}`);
  const v = spawnSync(process.execPath, [CLI, 'audit', 'verify', dir], { encoding: 'utf8', timeout: 60_000 });
  if (v.status !== 0) throw new Error(`audit verify failed: ${v.stdout}${v.stderr}`);
  return `${records} records, chain verified`;
}

// ---- measuring ----------------------------------------------------------------------------------------

async function measure(variant: Variant, era: Era, c: 1 | 16, make: () => Promise<Client>, tool: string): Promise<Row> {
  const clients = await Promise.all(Array.from({ length: c }, make));
  try {
    const r = await runLoad(clients, { ...PLAN[c], tool });
    log(
      `${variant.padEnd(12)} ${era.padEnd(6)} c=${String(c).padEnd(2)} ${fmt(r.callsPerSec, 0).padStart(6)} calls/s  p50 ${fmt(r.p50Ms, 2)} ms  p99 ${fmt(r.p99Ms, 2)} ms${r.capped ? ' (time cap)' : ''}${errorNote(r)}`,
    );
    return { variant, era, r };
  } finally {
    await Promise.all(clients.map((cl) => cl.close().catch(() => undefined)));
  }
}

/**
 * Audit records the calls of these rows must have left: a decision and an outcome per answered call,
 * at least a decision per failed one (a denial has no outcome). Warm-up included.
 */
const expectedRecords = (rows: Row[]) =>
  rows.reduce((s, x) => {
    const warm = x.r.clients * PLAN[x.r.clients as 1 | 16].warmupPerClient;
    const failed = x.r.errors + x.r.warmupErrors;
    return s + 2 * (x.r.calls + warm - failed) + failed;
  }, 0);

/** The 16-client modern run again, on a gateway whose CPU profile covers exactly that run. */
async function profileRun(): Promise<{ summary: ProfileSummary; r: LoadResult }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-bench-prof-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'gateway.cpuprofile');
  const gw = await gateway('always', { NODE_OPTIONS: `--import=${HOOK}`, MICRO_MCP_BENCH_PROFILE: file });
  const clients = await Promise.all(Array.from({ length: 16 }, () => connect(gw, 'modern')));
  try {
    await runLoad(clients, { calls: 16, warmupPerClient: PLAN[16].warmupPerClient, capMs: PLAN[16].capMs, tool: 'echo.echo' });
    gw.proc.kill('SIGUSR2');
    const r = await runLoad(clients, { ...PLAN[16], warmupPerClient: 0, tool: 'echo.echo' });
    gw.proc.kill('SIGUSR2');
    await eventually(() => existsSync(file), 15_000, 50);
    return { summary: summarizeProfile(file, 15), r };
  } finally {
    await Promise.all(clients.map((cl) => cl.close().catch(() => undefined)));
    await gw.stop();
  }
}

const errorNote = (r: LoadResult) =>
  r.errors + r.warmupErrors === 0
    ? ''
    : `  ${r.errors} errors (+${r.warmupErrors} in warm-up): ${Object.entries(r.errorKinds)
        .map(([k, n]) => `${n}x ${k}`)
        .join(' | ')}`;

// ---- report -------------------------------------------------------------------------------------------

const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');

function loadTable(rows: Row[]): string {
  const out = [
    '| path | agent era | clients | calls | errors | calls/s | vs direct | p50 ms | vs direct | p99 ms | vs direct |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const era of ERAS) {
    for (const c of CONCURRENCY) {
      const base = rows.find((x) => x.variant === 'direct' && x.era === era && x.r.clients === c);
      for (const x of rows.filter((y) => y.era === era && y.r.clients === c)) {
        const r = x.r;
        const path = x.variant === 'direct' ? 'direct (service over HTTP)' : `gateway, audit ${x.variant}`;
        const rel = (a: number, b: number | undefined) => (x.variant === 'direct' || b === undefined ? '1.00×' : ratio(a, b));
        out.push(
          `| ${path} | ${ERA_LABEL[era]} | ${c} | ${r.calls}${r.capped ? ' (cap)' : ''} | ${r.errors} | ${fmt(r.callsPerSec, 0)} | ${rel(r.callsPerSec, base?.r.callsPerSec)} | ${fmt(r.p50Ms, 2)} | ${rel(r.p50Ms, base?.r.p50Ms)} | ${fmt(r.p99Ms, 2)} | ${rel(r.p99Ms, base?.r.p99Ms)} |`,
        );
      }
    }
  }
  return out.join('\n');
}

function microTable(rows: MicroRow[]): string {
  const out = ['| operation | runs | mean µs | p50 µs | p99 µs |', '|---|--:|--:|--:|--:|'];
  for (const m of rows) out.push(`| ${m.name} | ${m.n} | ${fmt(m.meanUs, 1)} | ${fmt(m.p50Us, 1)} | ${fmt(m.p99Us, 1)} |`);
  return out.join('\n');
}

function profileTables(p: ProfileSummary, r: LoadResult): string {
  const f = ['| self time | function | where |', '|--:|---|---|'];
  for (const x of p.functions) f.push(`| ${fmt(x.pct, 1)}% | \`${x.name}\` | ${x.where} |`);
  const a = ['| self time | package / module |', '|--:|---|'];
  for (const x of p.areas) a.push(`| ${fmt(x.pct, 1)}% | ${x.name} |`);
  const b = ['| self time | part of the gateway (native frames counted for their JS caller) |', '|--:|---|'];
  for (const x of p.buckets) if (x.pct >= 0.5) b.push(`| ${fmt(x.pct, 1)}% | ${x.name} |`);
  return [
    `Gateway main thread during ${r.calls} calls (16 clients, 2026-07-28, fsync always; ${fmt(r.callsPerSec, 0)} calls/s while profiled): ` +
      `${fmt(p.totalMs, 0)} ms sampled, ${fmt(p.idlePct, 1)}% idle; shares below are of the busy time.`,
    '',
    b.join('\n'),
    '',
    f.join('\n'),
    '',
    a.join('\n'),
  ].join('\n');
}

// ---- main ---------------------------------------------------------------------------------------------

/** BENCH_ONLY=direct,always,never,profile,micro runs a subset (RESULTS.md is written only by a full run). */
const ONLY = new Set((process.env.BENCH_ONLY ?? 'direct,always,never,profile,micro').split(',').map((x) => x.trim()));
/** More failed calls than this share of a run fails the bench: a broken setup fails nearly all. */
const MAX_ERROR_SHARE = 0.01;

async function main(): Promise<void> {
  const t0 = performance.now();
  const load0 = loadavg();
  const rows: Row[] = [];
  const audits: string[] = [];

  // Every target is up at once (idle processes cost nothing) and each era x concurrency cell is
  // measured back to back on all of them, so a change in machine load between cells skews the
  // absolute numbers but not the ratios within a cell.
  const targets: Array<{ variant: Variant; make: (era: Era) => () => Promise<Client>; tool: string; gw?: Gateway }> = [];
  if (ONLY.has('direct')) {
    const svc = await startDirectService();
    targets.push({ variant: 'direct', make: (era) => () => directClient(svc.url, era), tool: 'echo' });
  }
  for (const v of ['fsync always', 'fsync never'] as const) {
    if (!ONLY.has(v.split(' ')[1]!)) continue;
    const gw = await gateway(v === 'fsync always' ? 'always' : 'never');
    targets.push({ variant: v, make: (era) => () => connect(gw, era), tool: 'echo.echo', gw });
  }
  for (const era of ERAS) {
    for (const c of CONCURRENCY) {
      for (const t of targets) rows.push(await measure(t.variant, era, c, t.make(era), t.tool));
    }
  }
  for (const t of targets) {
    if (t.gw) audits.push(`audit ${t.variant}: ${await stopAndCheckAudit(t.gw, expectedRecords(rows.filter((x) => x.variant === t.variant)))}`);
  }
  let prof: Awaited<ReturnType<typeof profileRun>> | undefined;
  if (ONLY.has('profile')) {
    log('profiled gateway run (16 clients, modern)');
    prof = await profileRun();
    log(`profiled run: ${fmt(prof.r.callsPerSec, 0)} calls/s${errorNote(prof.r)}`);
  }
  let micro: MicroRow[] | undefined;
  if (ONLY.has('micro')) {
    log('micro-benchmarks');
    micro = await runMicro(scaled(10_000));
    for (const m of micro) log(`${m.name}: mean ${fmt(m.meanUs, 1)} µs, p50 ${fmt(m.p50Us, 1)}, p99 ${fmt(m.p99Us, 1)}`);
  }

  const secs = (performance.now() - t0) / 1000;
  const load1 = loadavg();
  const cpu = cpus();
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const md = [
    '# Benchmark results',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`make bench\` (test/bench/run.ts) on Node ${process.version}, ` +
      `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${process.platform}/${process.arch}; the whole run took ${fmt(secs, 0)} s. ` +
      `Load average before/after: ${la(load0)} / ${la(load1)} (other work on the machine skews the numbers; compare ratios, not absolutes).`,
    '',
    '## tools/call: gateway vs direct',
    '',
    'One `echo` tool, the same code on both paths: direct = an SDK v2 client to the service over Streamable HTTP ' +
      '(its own process); gateway = SDK v2 client -> gateway (dev JWT auth, Rego + Cedar with the repo policies, ' +
      'audit decision + outcome records, per-call service credential) -> the service over stdio. ' +
      `Closed loop, each client its own connection (2025 era: one session per client); ${PLAN[1].calls} measured calls at 1 client and ` +
      `${PLAN[16].calls} at 16, after warm-up (a run stops early at ${PLAN[1].capMs / 1000} s: "(cap)"); each era x clients cell is measured on ` +
      `all paths back to back. "vs direct" compares with the direct row of the same era and concurrency ` +
      '(calls/s: below 1 is slower; latency: above 1 is slower). Clients, gateway and service share the same cores.',
    '',
    loadTable(rows),
    '',
    ...audits.map((a) => `- ${a}`),
    ...rows.filter((x) => x.r.errors + x.r.warmupErrors > 0).map((x) => `- errors, ${x.variant} ${x.era} ${x.r.clients} clients:${errorNote(x.r)}`),
    '',
    ...(micro ? ['## Per-call costs in the gateway (in-process)', '', microTable(micro), ''] : []),
    ...(prof ? ['## Where the gateway spends its CPU', '', profileTables(prof.summary, prof.r), ''] : []),
  ].join('\n');
  process.stdout.write(`${md}\n`);
  if (ONLY.size === 5) {
    writeFileSync(RESULTS, md);
    log(`wrote ${path.relative(ROOT, RESULTS)} (${fmt(secs, 0)} s)`);
  }
  const bad = rows.filter((x) => x.r.errors > MAX_ERROR_SHARE * x.r.calls);
  if (bad.length > 0) throw new Error(`${bad.length} run(s) had more than ${MAX_ERROR_SHARE * 100}% failed calls (see the errors above)`);
}

async function cleanup(): Promise<void> {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
}

process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
try {
  await main();
} catch (e) {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
