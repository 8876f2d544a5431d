/**
 * `make bench`: every path an agent could take to the same service, measured in one run.
 *
 * Paths (the same SDK v2 client on each, the same service code behind each: test/bench/bench-service.ts):
 * - direct over stdio: one client on the service's stdio (the floor: no HTTP at all);
 * - direct over Streamable HTTP: the service on loopback; 2025 clients get real sessions;
 * - the gateway (dev JWT auth, Rego + Cedar with the repo policies, audit with fsync always, a
 *   per-call service credential) with the service over stdio;
 * - `mcp-proxy` (npm, a dev dependency): stdio-to-Streamable-HTTP, no auth, no policy, no audit.
 * Calls: `echo` with a new text every call and `read` (mounted as fs.read behind the gateway, so the
 * fs policies decide) with a new path every call; 1, 16 and 64 agents (read: 1 and 16); both eras;
 * each cell measured on every path in interleaved rounds (ROUNDS). Then an open-loop run at a fixed rate per path
 * (latency from each call's due time: no coordinated omission), memory (idle RSS, 1,000 open 2025
 * sessions), time to ready, a CPU profile of the gateway, and the in-process micro-benchmarks.
 * Writes test/bench/RESULTS.md and test/bench/results.json. Loopback only; everything it starts is stopped.
 *
 * BENCH_PROFILE_OUT=FILE keeps the profiled run's .cpuprofile (open it in Chrome DevTools).
 * BENCH_SCALE=0.2 (any factor) shrinks every count, for a quick look; BENCH_ONLY=load,open,memory,profile,micro
 * runs a subset (the files are written only by a full run).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { CLI, connect, eventually, ROOT, startGateway, type Era, type Gateway } from '../helpers/harness.js';
import {
  echoWork,
  type LoadSample,
  mergeSamples,
  percentile,
  readWork,
  runLoad,
  runOpenLoop,
  sampleLoad,
  type LoadResult,
  type OpenLoopResult,
  type Workload,
} from './load.js';
import { runMicro, type MicroRow } from './micro.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVICE = path.join(here, 'bench-service.js');
const HOOK = path.join(here, 'profile-hook.js');
const RESULTS = path.join(ROOT, 'test', 'bench', 'RESULTS.md');
const RESULTS_JSON = path.join(ROOT, 'test', 'bench', 'results.json');
const MCP_PROXY = path.join(ROOT, 'node_modules', 'mcp-proxy', 'dist', 'bin', 'mcp-proxy.mjs');

const SCALE = Number(process.env.BENCH_SCALE ?? '1') || 1;
const scaled = (n: number) => Math.max(20, Math.round(n * SCALE));
type Agents = 1 | 16 | 64;
/** Per concurrency: measured calls (total), warm-up calls per client, time cap of the measured phase. */
const PLAN: Record<Agents, { calls: number; warmupPerClient: number; capMs: number }> = {
  1: { calls: scaled(1000), warmupPerClient: scaled(100), capMs: 8_000 },
  16: { calls: scaled(3000), warmupPerClient: scaled(20), capMs: 8_000 },
  64: { calls: scaled(3000), warmupPerClient: scaled(20), capMs: 8_000 },
};
/**
 * Each row group is measured in this many rounds, the paths taking turns within a round (each round
 * starting one path later): a slow spell of a shared machine then falls on every path alike instead
 * of on whichever path was being measured. A path's row merges its rounds (load.ts mergeSamples).
 */
const ROUNDS = 3;
const ERAS: Era[] = ['modern', 'legacy'];
const ERA_LABEL: Record<Era, string> = { modern: '2026-07-28', legacy: '2025-11-25' };
type Kind = 'echo' | 'read';
const CELLS: Array<[Kind, Agents]> = [
  ['echo', 1],
  ['echo', 16],
  ['echo', 64],
  ['read', 1],
  ['read', 16],
];
/** The open-loop schedule: below what every path sustains at 16 agents, so the queueing shown is the path's own. */
const OPEN_RATE = 250;
const OPEN_MS = Math.max(1000, Math.round(4000 * SCALE));

type PathName = 'direct stdio' | 'direct HTTP' | 'gateway' | 'mcp-proxy';
const PATH_LABEL: Record<PathName, string> = {
  'direct stdio': 'direct, service over stdio (floor)',
  'direct HTTP': 'direct, service over Streamable HTTP',
  gateway: 'Micro-MCP (auth, Rego + Cedar, audit fsync always)',
  'mcp-proxy': 'mcp-proxy (no auth, policy or audit)',
};
interface Row {
  path: PathName;
  era: Era;
  kind: Kind;
  r: LoadResult;
}
interface OpenRow {
  path: PathName;
  era: Era;
  r: OpenLoopResult;
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

/** A free loopback port (mcp-proxy takes a port, not 0). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** mcp-proxy in front of the bench service over stdio, Streamable HTTP only (its sessions for 2025). */
async function startMcpProxy(): Promise<{ url: string; proc: ChildProcess }> {
  if (!existsSync(MCP_PROXY)) throw new Error('mcp-proxy is not installed (npm ci installs the dev dependency)');
  const port = await freePort();
  const proc = spawn(process.execPath, [MCP_PROXY, '--host', '127.0.0.1', '--port', String(port), '--server', 'stream', '--', process.execPath, SERVICE], {
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanups.push(() => stopProc(proc));
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const url = `http://127.0.0.1:${port}/mcp`;
  // Ready when an MCP client gets through to the service behind it.
  await eventually(
    async () => {
      const c = await directClient(url, 'legacy').catch(() => undefined);
      if (c === undefined) return undefined;
      await c.close();
      return true;
    },
    20_000,
    100,
  ).catch((): never => {
    throw new Error(`mcp-proxy did not start:\n${out}`);
  });
  return { url, proc };
}

/** One client on the service's stdio, spawned for it. */
async function stdioClient(era: Era): Promise<Client> {
  const client = new Client(
    { name: `bench-stdio-${era}`, version: '1.0.0' },
    { capabilities: {}, versionNegotiation: era === 'modern' ? { mode: { pin: '2026-07-28' } } : { mode: 'legacy' } },
  );
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [SERVICE], env: { PATH: process.env.PATH ?? '' } }));
  return client;
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
async function gateway(fsync: 'always' | 'never', env: Record<string, string> = {}, extra: Record<string, unknown> = {}, home?: string): Promise<Gateway> {
  const dir = home ?? mkdtempSync(path.join(tmpdir(), 'micro-mcp-bench-'));
  if (home === undefined) cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const gw = await startGateway(
    {
      services: {
        echo: { transport: 'stdio', command: 'node', args: [SERVICE] },
        // The bench service's `read` as fs.read: the fs policies decide on the canonical path.
        fs: { transport: 'stdio', command: 'node', args: [SERVICE], resource: { kind: 'path', arg: 'path' } },
      },
      audit: { fsync },
      ...extra,
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
  // The policy time of each tools/call decision as the gateway recorded it (both engines, measured
  // in the call, with whatever the call ran before it in the caches): what a decision costs there.
  const policyUs = new Map<string, number[]>();
  for (const f of readdirSync(dir)) {
    if (!f.startsWith('audit.jsonl')) continue;
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue;
      records++;
      const r: { kind?: unknown; method?: unknown; tool?: unknown; metrics?: { timer_policy_eval_ns?: unknown } } = JSON.parse(line);
      const ns = r.metrics?.timer_policy_eval_ns;
      if (r.kind !== 'decision' || r.method !== 'tools/call' || typeof r.tool !== 'string' || typeof ns !== 'number') continue;
      const list = policyUs.get(r.tool) ?? [];
      list.push(ns / 1000);
      policyUs.set(r.tool, list);
    }
  }
  if (records < expected) throw new Error(`audit has ${records} records; the calls made need at least ${expected}`);
  const v = spawnSync(process.execPath, [CLI, 'audit', 'verify', dir], { encoding: 'utf8', timeout: 60_000 });
  if (v.status !== 0) throw new Error(`audit verify failed: ${v.stdout}${v.stderr}`);
  const times = [...policyUs]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([tool, us]) => {
      const sorted = Float64Array.from(us).sort();
      return `${tool} p50 ${fmt(percentile(sorted, 50), 1)} µs, p99 ${fmt(percentile(sorted, 99), 1)} µs (${us.length} decisions)`;
    });
  return (
    `${records} records, chain verified; policy time of a tools/call decision inside the gateway (both engines, ` +
    `the records' timer_policy_eval_ns over the whole run; echo is answered from the memos, read a new path every call): ${times.join('; ')}`
  );
}

// ---- measuring ----------------------------------------------------------------------------------------

interface Target {
  path: PathName;
  /** A client factory for this era; `shared`: one client carries every agent (stdio has one pipe). */
  make: (era: Era) => () => Promise<Client>;
  shared: boolean;
  work: Record<Kind, Workload>;
  gw?: Gateway;
  /** The pid of the path's server side (its process tree is measured), given the clients of a round. */
  serverPid: (clients: readonly Client[]) => number | undefined;
}

async function clientsFor(t: Target, era: Era, n: number): Promise<{ clients: Client[]; close: () => Promise<void> }> {
  const make = t.make(era);
  const made = t.shared ? [await make()] : await Promise.all(Array.from({ length: n }, make));
  const clients = t.shared ? Array.from({ length: n }, () => made[0]!) : made;
  // A 2025 session ends only on DELETE (closing the client does not send it): end each one, as a
  // well-behaved agent does, so sessions do not pile up against the per-principal cap.
  const end = async (c: Client) => {
    const t = c.transport;
    if (era === 'legacy' && t instanceof StreamableHTTPClientTransport) await t.terminateSession().catch(() => undefined);
    await c.close().catch(() => undefined);
  };
  return { clients, close: async () => void (await Promise.all(made.map(end))) };
}

/** Calls per path, era and call kind in the warm-up before the first row (16 agents). */
const WARM_UP_CALLS = scaled(1500);

/**
 * Every path warmed up before the first row is measured, on the calls the rows make: V8 tiers up the
 * services, the gateway, mcp-proxy and this process's clients over several seconds, and the per-round
 * warm-up (PLAN) alone left the first row groups on cold code. Measured before this warm-up: the
 * 2026-07-28 echo group at one agent, the first measured, was 2-3x slower on every path than the same
 * group measured again right after (direct HTTP 256 -> 854 calls/s, the gateway 115 -> 246).
 * Returns the gateway's calls and failures, for the audit check.
 */
async function warmUpAll(targets: readonly Target[]): Promise<{ calls: number; errors: number }> {
  const gateway = { calls: 0, errors: 0 };
  for (const era of ERAS)
    for (const kind of ['echo', 'read'] as const)
      for (const t of targets) {
        const { clients, close } = await clientsFor(t, era, 16);
        try {
          const r = await runLoad(clients, { calls: WARM_UP_CALLS, warmupPerClient: 0, capMs: 10_000, work: t.work[kind] });
          if (t.gw) {
            gateway.calls += r.calls;
            gateway.errors += r.errors;
          }
        } finally {
          await close();
        }
      }
  return gateway;
}

/** One round of one path: fresh clients (and 2025 sessions), its warm-up, then its share of the calls. */
async function sampleRound(t: Target, era: Era, kind: Kind, c: Agents): Promise<LoadSample> {
  const { clients, close } = await clientsFor(t, era, c);
  try {
    const plan = PLAN[c];
    const pid = t.serverPid(clients);
    return await sampleLoad(clients, {
      ...plan,
      calls: Math.ceil(plan.calls / ROUNDS),
      capMs: plan.capMs / ROUNDS,
      work: t.work[kind],
      ...(pid !== undefined ? { serverCpuMs: () => treeCpuMs(pid) } : {}),
    });
  } finally {
    await close();
  }
}

/** One row group: every path in ROUNDS interleaved rounds, one row per path. */
async function measure(targets: readonly Target[], era: Era, kind: Kind, c: Agents): Promise<Row[]> {
  const samples = targets.map((): LoadSample[] => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (k + round) % targets.length;
      samples[i]!.push(await sampleRound(targets[i]!, era, kind, c));
    }
  }
  return targets.map((t, i) => {
    const r = mergeSamples(samples[i]!);
    log(
      `${t.path.padEnd(12)} ${era.padEnd(6)} ${kind.padEnd(4)} c=${String(c).padEnd(2)} ${fmt(r.callsPerSec, 0).padStart(6)} calls/s  p50 ${fmt(r.p50Ms, 2)} ms  p99 ${fmt(r.p99Ms, 2)} ms  cpu/call ${fmt(cpuPerCallUs(r, 'server'), 0)} + ${fmt(cpuPerCallUs(r, 'client'), 0)} µs${r.capped ? ' (time cap)' : ''}${errorNote(r)}`,
    );
    return { path: t.path, era, kind, r };
  });
}

async function measureOpen(t: Target, era: Era): Promise<OpenRow> {
  const { clients, close } = await clientsFor(t, era, 16);
  try {
    // A short closed-loop warm-up on the same clients first.
    await runLoad(clients, { calls: 16, warmupPerClient: scaled(20), capMs: 5_000, work: t.work.echo });
    const r = await runOpenLoop(clients, { rate: OPEN_RATE, durationMs: OPEN_MS, work: t.work.echo });
    log(
      `open loop ${t.path.padEnd(12)} ${era.padEnd(6)} ${OPEN_RATE}/s: p50 ${fmt(r.p50Ms, 2)} ms  p99 ${fmt(r.p99Ms, 2)} ms  max ${fmt(r.maxMs, 1)} ms  dropped ${r.dropped}`,
    );
    return { path: t.path, era, r };
  } finally {
    await close();
  }
}

/** Records `calls` calls must leave when `failed` of them failed: a decision and an outcome each, a decision for a failed one. */
const recordsFor = (calls: number, failed: number) => 2 * (calls - failed) + failed;

/**
 * Audit records the calls of these rows must have left: a decision and an outcome per answered call,
 * at least a decision per failed one (a denial has no outcome). Warm-up included.
 */
const expectedRecords = (rows: Row[]) =>
  rows.reduce((s, x) => {
    const warm = ROUNDS * x.r.clients * PLAN[x.r.clients as Agents].warmupPerClient;
    return s + recordsFor(x.r.calls + warm, x.r.errors + x.r.warmupErrors);
  }, 0);

/** The 16-client modern echo run again, on a gateway whose CPU profile covers exactly that run. */
async function profileRun(): Promise<{ summary: ProfileSummary; r: LoadResult }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-bench-prof-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'gateway.cpuprofile');
  const gw = await gateway('always', { NODE_OPTIONS: `--import=${HOOK}`, MICRO_MCP_BENCH_PROFILE: file });
  const clients = await Promise.all(Array.from({ length: 16 }, () => connect(gw, 'modern')));
  const work = echoWork('echo.echo');
  try {
    await runLoad(clients, { calls: 16, warmupPerClient: PLAN[16].warmupPerClient, capMs: PLAN[16].capMs, work });
    gw.proc.kill('SIGUSR2');
    const r = await runLoad(clients, { ...PLAN[16], warmupPerClient: 0, work });
    gw.proc.kill('SIGUSR2');
    await eventually(() => existsSync(file), 15_000, 50);
    if (process.env.BENCH_PROFILE_OUT) copyFileSync(file, process.env.BENCH_PROFILE_OUT);
    return { summary: summarizeProfile(file, 15), r };
  } finally {
    await Promise.all(clients.map((cl) => cl.close().catch(() => undefined)));
    await gw.stop();
  }
}

const errorNote = (r: { errors: number; warmupErrors?: number; errorKinds: Record<string, number> }) =>
  r.errors + (r.warmupErrors ?? 0) === 0
    ? ''
    : `  ${r.errors} errors (+${r.warmupErrors ?? 0} in warm-up): ${Object.entries(r.errorKinds)
        .map(([k, n]) => `${n}x ${k}`)
        .join(' | ')}`;

// ---- report -------------------------------------------------------------------------------------------

const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
/** CPU time per measured call (µs) of a row's server side (the path's process tree) or of its clients (this process). */
const cpuPerCallUs = (r: LoadResult, side: 'server' | 'client') => ((side === 'server' ? r.serverCpuMs : r.clientCpuMs) * 1000) / Math.max(1, r.calls);
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const PATHS: PathName[] = ['direct stdio', 'direct HTTP', 'gateway', 'mcp-proxy'];

function loadTable(rows: Row[]): string {
  const out = [
    '| path | era | call | agents | calls | errors | calls/s | vs direct HTTP | p50 ms | p99 ms | p50 added over direct HTTP | server CPU µs/call | client CPU µs/call |',
    '|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const era of ERAS) {
    for (const [kind, c] of CELLS) {
      const base = rows.find((x) => x.path === 'direct HTTP' && x.era === era && x.kind === kind && x.r.clients === c);
      for (const p of PATHS) {
        const x = rows.find((y) => y.path === p && y.era === era && y.kind === kind && y.r.clients === c);
        if (!x) continue;
        const r = x.r;
        const rel = base ? ratio(r.callsPerSec, base.r.callsPerSec) : 'n/a';
        const added = base && p !== 'direct HTTP' ? `${fmt(r.p50Ms - base.r.p50Ms, 2)} ms` : '';
        out.push(
          `| ${PATH_LABEL[p]} | ${ERA_LABEL[era]} | ${kind} | ${c} | ${r.calls}${r.capped ? ' (cap)' : ''} | ${r.errors} | ${fmt(r.callsPerSec, 0)} | ${rel} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${added} | ${fmt(cpuPerCallUs(r, 'server'), 0)} | ${fmt(cpuPerCallUs(r, 'client'), 0)} |`,
        );
      }
    }
  }
  return out.join('\n');
}

function openTable(rows: OpenRow[]): string {
  const out = ['| path | era | scheduled | answered | errors | dropped | p50 ms | p99 ms | max ms |', '|---|---|--:|--:|--:|--:|--:|--:|--:|'];
  for (const x of rows)
    out.push(
      `| ${PATH_LABEL[x.path]} | ${ERA_LABEL[x.era]} | ${x.r.scheduled} | ${x.r.ok} | ${x.r.errors} | ${x.r.dropped} | ${fmt(x.r.p50Ms, 2)} | ${fmt(x.r.p99Ms, 2)} | ${fmt(x.r.maxMs, 1)} |`,
    );
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
    `Gateway main thread during ${r.calls} calls (16 clients, 2026-07-28, echo, fsync always; ${fmt(r.callsPerSec, 0)} calls/s while profiled): ` +
      `${fmt(p.totalMs, 0)} ms sampled, ${fmt(p.idlePct, 1)}% idle; shares below are of the busy time.`,
    '',
    b.join('\n'),
    '',
    f.join('\n'),
    '',
    a.join('\n'),
  ].join('\n');
}

/** The issue's targets (#13), each checked against this run's own numbers: met or not, with the numbers. */
function targets(rows: Row[], micro: MicroRow[] | undefined, mem: MemoryReport | undefined): string[] {
  const out: string[] = [];
  const get = (p: PathName, era: Era, kind: Kind, c: Agents) => rows.find((x) => x.path === p && x.era === era && x.kind === kind && x.r.clients === c)?.r;
  const mark = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'met' : 'NOT met');
  for (const era of ERAS) {
    for (const kind of ['echo', 'read'] as const) {
      const g1 = get('gateway', era, kind, 1);
      const d1 = get('direct HTTP', era, kind, 1);
      if (g1 && d1) {
        const added = g1.p50Ms - d1.p50Ms;
        out.push(`- gateway-added p50, 1 agent, ${ERA_LABEL[era]}, ${kind}: ${fmt(added, 2)} ms (target <= 0.30): ${mark(added <= 0.3)}`);
      }
    }
    const g16 = get('gateway', era, 'echo', 16);
    const d16 = get('direct HTTP', era, 'echo', 16);
    if (g16 && d16) {
      const r = g16.callsPerSec / d16.callsPerSec;
      out.push(`- throughput at 16 agents, ${ERA_LABEL[era]}, echo: ${fmt(r, 2)}× direct HTTP (target >= 0.8×): ${mark(r >= 0.8)}`);
    }
    for (const c of [1, 16] as const) {
      const g = get('gateway', era, 'echo', c);
      const m = get('mcp-proxy', era, 'echo', c);
      if (g && m)
        out.push(
          `- ahead of mcp-proxy, ${c} agent(s), ${ERA_LABEL[era]}, echo: ${fmt(g.callsPerSec, 0)} vs ${fmt(m.callsPerSec, 0)} calls/s: ${mark(g.callsPerSec > m.callsPerSec)}`,
        );
    }
  }
  for (const era of ERAS) {
    const g = get('gateway', era, 'echo', 16);
    const d = get('direct HTTP', era, 'echo', 16);
    if (g && d)
      out.push(
        `- for scale: CPU per call at 16 agents, ${ERA_LABEL[era]}, echo: direct HTTP ${fmt(cpuPerCallUs(d, 'server'), 0)} µs in the service + ${fmt(cpuPerCallUs(d, 'client'), 0)} µs in its client; ` +
          `the gateway ${fmt(cpuPerCallUs(g, 'server'), 0)} µs with its service + ${fmt(cpuPerCallUs(g, 'client'), 0)} µs in its client; the two cores run all of it`,
      );
  }
  const floor = micro?.find((m) => m.name.includes('fdatasync'));
  if (floor) {
    out.push(
      `- for scale: one audit line appended + fdatasync on this disk takes ${fmt(floor.p50Us / 1000, 2)} ms p50 (p99 ${fmt(floor.p99Us / 1000, 2)} ms); ` +
        'with fsync always every decision record waits for one before the call is forwarded',
    );
  }
  if (micro) {
    const p50 = (needle: string) => micro.find((m) => m.name.includes(needle));
    const small = {
      rego: p50('fs.read, rego only, a new path'),
      cedar: p50('fs.read, cedar only, a new path'),
      both: p50('fs.read, rego + cedar, a new path'),
    };
    const large = { rego: p50('rules, rego only, a new tool'), cedar: p50('rules, cedar only, a new tool'), both: p50('rules, rego + cedar, a new tool') };
    const limits = { rego: 10, cedar: 45, both: 60 };
    for (const k of ['rego', 'cedar', 'both'] as const) {
      const s = small[k];
      const l = large[k];
      if (!s || !l) continue;
      out.push(
        `- decision p50, ${k}, new arguments each call: ${fmt(s.p50Us, 1)} µs (target <= ${limits[k]}): ${mark(s.p50Us <= limits[k])}; ` +
          `p99 ${fmt(s.p99Us, 1)} µs = ${fmt(s.p99Us / s.p50Us, 1)}× p50 (target <= 3×): ${mark(s.p99Us <= 3 * s.p50Us)}; ` +
          `1,000 rules ${fmt(l.p50Us, 1)} µs = ${fmt(l.p50Us / s.p50Us, 1)}× the example set (target <= 3×): ${mark(l.p50Us <= 3 * s.p50Us)}`,
      );
    }
  }
  if (mem) {
    out.push(
      `- gateway idle RSS: ${fmt(mem.gatewaySettled.mib, 0)} MiB settled, ${fmt(mem.gatewayIdleMiB, 0)} MiB at ready (target <= 100): ${mark(mem.gatewaySettled.mib <= 100)}`,
    );
    out.push(`- 1,000 open 2025 sessions: +${fmt(mem.sessionsDeltaMiB, 0)} MiB (target <= 100): ${mark(mem.sessionsDeltaMiB <= 100)}`);
    out.push(
      `- serve ready after a build: ${fmt(mem.readyMs.cached, 0)} ms with the policy compile cached, ${fmt(mem.readyMs.cold, 0)} ms cold (target <= 1000): ${mark(mem.readyMs.cached <= 1000)}`,
    );
  }
  return out;
}

// ---- memory and start ---------------------------------------------------------------------------------

interface MemoryReport {
  /** RSS once /readyz answers 200: start-up's garbage is still in it. */
  gatewayIdleMiB: number;
  /** RSS once it stopped moving (V8's memory reducer runs a few seconds after start-up), and after how long. */
  gatewaySettled: { mib: number; afterS: number };
  servicesIdleMiB: Array<{ name: string; mib: number }>;
  sessionsDeltaMiB: number;
  sessionsOpened: number;
  readyMs: { cold: number; cached: number };
}

/**
 * The RSS of an idle process once it stopped moving: sampled every second, from `minS` seconds on,
 * until 12 samples in a row lie within 1 MiB, at most `maxS` seconds (then the last sample). V8's
 * memory reducer acts ~8 s after the last full GC, and sometimes only in a second round at ~16 s:
 * the gateway sat at 105-106 MiB for 15 s and then dropped to 90, so a plateau that ends before
 * `minS` is not the idle state. The 1 s step is the sampling rate of the measurement, not a wait for
 * something that could be awaited: another process's RSS changes without any event to listen to.
 */
async function settledRss(pid: number, minS = 30, maxS = 60): Promise<{ mib: number; afterS: number }> {
  const samples: number[] = [];
  for (let s = 0; s <= maxS; s++) {
    samples.push(rssMiB(pid));
    const last = samples.slice(-12);
    if (s >= minS && Math.max(...last) - Math.min(...last) <= 1) return { mib: last[11] as number, afterS: s };
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { mib: samples[samples.length - 1] as number, afterS: maxS };
}

/** Resident set size of one process (Linux /proc), MiB. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Child pids of each process, from /proc. */
function childrenOf(): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.set(ppid, [...(out.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `pid` and every process below it. */
function processTree(pid: number, kids = childrenOf()): number[] {
  return [pid, ...(kids.get(pid) ?? []).flatMap((c) => processTree(c, kids))];
}

/**
 * CPU time (user + system, ms) used so far by `pid` and every live process below it: a gateway or
 * mcp-proxy with the service it runs (bwrap and the node inside), or a service alone. From the
 * utime and stime fields of /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux).
 */
function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks * 10;
}

/** Each child process tree of `pid` (a service: bwrap and the node inside it), summed. */
function childTrees(pid: number): Array<{ name: string; mib: number }> {
  const kids = childrenOf();
  return (kids.get(pid) ?? []).map((c) => {
    const pids = processTree(c, kids);
    const cmd = readFileSync(`/proc/${pids[pids.length - 1]}/cmdline`, 'utf8')
      .split('\0')
      .filter(Boolean);
    return {
      name: `${path.basename(cmd[0] ?? '?')} ${path.basename(cmd[cmd.length - 1] ?? '')} (${pids.length} processes)`,
      mib: pids.reduce((s, x) => s + rssMiB(x), 0),
    };
  });
}

async function untilReady(gw: Gateway): Promise<void> {
  await eventually(async () => ((await fetch(`${gw.url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined), 30_000, 5);
}

/** Opens one 2025 session the way a client does (initialize, then initialized) and keeps it open. */
async function openSession(gw: Gateway, token: string, k: number): Promise<void> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await fetch(gw.mcpUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: `bench-session-${k}`, version: '1.0.0' } },
    }),
  });
  await init.text();
  const sid = init.headers.get('mcp-session-id');
  if (init.status !== 200 || sid === null) throw new Error(`session ${k}: initialize answered ${init.status}`);
  const ack = await fetch(gw.mcpUrl, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  await ack.text();
  if (ack.status !== 202) throw new Error(`session ${k}: initialized answered ${ack.status}`);
}

const SESSIONS = 1000;

/**
 * Idle RSS of a fresh gateway and of its services, the cost of 1,000 open 2025 sessions, and the
 * time from spawning `micro-mcp serve` to /readyz 200: cold (a new home, nothing cached) and again
 * on the same home (what a restart after a build sees).
 */
async function memory(): Promise<MemoryReport> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-bench-mem-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const config = { server: { max_sessions_per_principal: SESSIONS } };
  const start = async () => {
    const t = performance.now();
    const gw = await gateway('always', {}, config, dir);
    await untilReady(gw);
    return { gw, ms: performance.now() - t };
  };
  const cold = await start();
  await cold.gw.stop();
  const warm = await start();
  const gw = warm.gw;
  try {
    const pid = gw.proc.pid as number;
    const gatewayIdleMiB = rssMiB(pid);
    const gatewaySettled = await settledRss(pid);
    const servicesIdleMiB = childTrees(pid);
    const token = await gw.token();
    for (let k = 0; k < SESSIONS; k += 16) await Promise.all(Array.from({ length: Math.min(16, SESSIONS - k) }, (_, j) => openSession(gw, token, k + j)));
    const after = rssMiB(pid);
    log(
      `memory: gateway idle ${fmt(gatewayIdleMiB, 1)} MiB at ready, ${fmt(gatewaySettled.mib, 1)} MiB settled, +${fmt(after - gatewaySettled.mib, 1)} MiB with ${SESSIONS} sessions; ready ${fmt(cold.ms, 0)} / ${fmt(warm.ms, 0)} ms`,
    );
    return {
      gatewayIdleMiB,
      gatewaySettled,
      servicesIdleMiB,
      sessionsDeltaMiB: after - gatewaySettled.mib,
      sessionsOpened: SESSIONS,
      readyMs: { cold: cold.ms, cached: warm.ms },
    };
  } finally {
    await gw.stop();
  }
}

// ---- main ---------------------------------------------------------------------------------------------

const ONLY = new Set((process.env.BENCH_ONLY ?? 'load,open,memory,profile,micro').split(',').map((x) => x.trim()));
const FULL = ['load', 'open', 'memory', 'profile', 'micro'].every((x) => ONLY.has(x));
/** More failed calls than this share of a run fails the bench: a broken setup fails nearly all. */
const MAX_ERROR_SHARE = 0.01;

async function main(): Promise<void> {
  const t0 = performance.now();
  const load0 = loadavg();
  const rows: Row[] = [];
  const open: OpenRow[] = [];
  const audits: string[] = [];

  // Every target is up at once (idle processes cost nothing) and each cell is measured on all of
  // them in interleaved rounds, so a change in machine load between cells skews the absolute numbers
  // but not the comparison within a cell, and a slow spell within a cell falls on every path alike.
  const targetsUp: Target[] = [];
  if (ONLY.has('load') || ONLY.has('open')) {
    const plain = { echo: echoWork('echo'), read: readWork('read') };
    // The service a round's stdio client spawned (one client carries every agent).
    const stdioPid = (clients: readonly Client[]) => {
      const t = clients[0]?.transport;
      return t instanceof StdioClientTransport ? (t.pid ?? undefined) : undefined;
    };
    targetsUp.push({ path: 'direct stdio', make: (era) => () => stdioClient(era), shared: true, work: plain, serverPid: stdioPid });
    const svc = await startDirectService();
    targetsUp.push({ path: 'direct HTTP', make: (era) => () => directClient(svc.url, era), shared: false, work: plain, serverPid: () => svc.proc.pid });
    const gw = await gateway('always');
    targetsUp.push({
      path: 'gateway',
      make: (era) => () => connect(gw, era),
      shared: false,
      work: { echo: echoWork('echo.echo'), read: readWork('fs.read') },
      gw,
      serverPid: () => gw.proc.pid,
    });
    const proxy = await startMcpProxy();
    targetsUp.push({ path: 'mcp-proxy', make: (era) => () => directClient(proxy.url, era), shared: false, work: plain, serverPid: () => proxy.proc.pid });
  }
  let warmedUp = { calls: 0, errors: 0 };
  if (ONLY.has('load')) {
    const w0 = performance.now();
    warmedUp = await warmUpAll(targetsUp);
    log(`warm-up: ${WARM_UP_CALLS} calls per path, era and call at 16 agents, ${fmt((performance.now() - w0) / 1000, 0)} s`);
    for (const era of ERAS) for (const [kind, c] of CELLS) rows.push(...(await measure(targetsUp, era, kind, c)));
  }
  if (ONLY.has('open')) {
    for (const era of ERAS) for (const t of targetsUp) open.push(await measureOpen(t, era));
  }
  for (const t of targetsUp) {
    if (t.gw && ONLY.has('load'))
      audits.push(
        `audit of the gateway: ${await stopAndCheckAudit(t.gw, expectedRecords(rows.filter((x) => x.path === 'gateway')) + recordsFor(warmedUp.calls, warmedUp.errors))}`,
      );
  }
  const mem = ONLY.has('memory') ? await memory() : undefined;
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
  const env = {
    date: new Date().toISOString(),
    node: process.version,
    cores: cpu.length,
    cpu: cpu[0]?.model.trim() ?? 'unknown CPU',
    platform: `${process.platform}/${process.arch}`,
    seconds: Math.round(secs),
    loadavg: { before: load0, after: load1 },
  };
  const goal = targets(rows, micro, mem);
  const md = [
    '# Benchmark results',
    '',
    `Measured ${env.date.slice(0, 10)} by \`make bench\` (test/bench/run.ts) on Node ${env.node}, ` +
      `${env.cores} cores (${env.cpu}), ${env.platform}; the whole run took ${fmt(secs, 0)} s. ` +
      `Load average before/after: ${la(load0)} / ${la(load1)} (other work on the machine skews the numbers; compare paths within one run, not runs).`,
    '',
    '## Targets of issue #13, from this run',
    '',
    ...(goal.length > 0 ? goal : ['- (a partial run: nothing to compare)']),
    '',
    '## tools/call on every path',
    '',
    'The same SDK v2 client on every path and the same service code behind it (test/bench/bench-service.ts). ' +
      '"direct, service over stdio": one client on the service\'s stdio pipe, every agent sharing it (the floor). ' +
      '"direct, service over Streamable HTTP": the service on loopback, 2025 agents with real sessions. ' +
      'Micro-MCP: dev JWT auth, Rego + Cedar with the repo policies, audit decision + outcome records (fsync always), ' +
      'a per-call service credential, the service over stdio. mcp-proxy (npm): the service over stdio behind its Streamable HTTP, ' +
      'its own sessions for 2025, no auth, policy or audit. `echo` sends a new text every call; `read` a new path every call ' +
      '(behind the gateway it is fs.read, decided by the fs policies on the canonical path; the service answers with the path, no disk I/O); ' +
      "calls are numbered across the whole run, so no call, round or warm-up repeats the arguments of an earlier one and the gateway's decision memos cannot answer a read. " +
      `Closed loop, each agent its own connection (and 2025 session); ${PLAN[1].calls} measured calls at 1 agent, ${PLAN[16].calls} at 16 and 64, ` +
      `after warm-up (first every path with ${WARM_UP_CALLS} calls per era and call at 16 agents, before any row; a run stops at ${PLAN[1].capMs / 1000} s: "(cap)"); each row group is measured in ${ROUNDS} rounds, the paths taking turns in each (fresh clients and warm-up every round; ` +
      'a row merges its rounds: calls/s over their measured time together, percentiles over all their calls). ' +
      'Clients, gateway and service share the same cores. ' +
      'CPU per call, user + system over the measured calls (/proc, 10 ms ticks): "server" is the path\'s process tree (the service alone on the direct paths; ' +
      'the gateway or mcp-proxy with the service it runs, bwrap included), "client" this process, where all the path\'s agents run.',
    '',
    loadTable(rows),
    '',
    ...audits.map((a) => `- ${a}`),
    ...rows.filter((x) => x.r.errors + x.r.warmupErrors > 0).map((x) => `- errors, ${x.path} ${x.era} ${x.kind} ${x.r.clients} agents:${errorNote(x.r)}`),
    '',
    ...(open.length > 0
      ? [
          "## Open loop: a fixed rate, latency from each call's due time",
          '',
          `${OPEN_RATE} echo calls/s for ${OPEN_MS / 1000} s over 16 agents, sent on schedule whether or not earlier calls were answered; ` +
            'each latency counts from when the call was due, so a stall shows in p99 instead of silently delaying the calls behind it ' +
            '(coordinated omission). At most 1,000 calls wait at once; beyond that a call is dropped and counted.',
          '',
          openTable(open),
          '',
        ]
      : []),
    ...(mem ? ['## Memory and start', '', ...memoryLines(mem), ''] : []),
    ...(micro ? ['## Per-call costs in the gateway (in-process)', '', microTable(micro), ''] : []),
    ...(prof ? ['## Where the gateway spends its CPU', '', profileTables(prof.summary, prof.r), ''] : []),
  ].join('\n');
  process.stdout.write(`${md}\n`);
  if (FULL) {
    writeFileSync(RESULTS, md);
    writeFileSync(
      RESULTS_JSON,
      `${JSON.stringify({ env, plan: PLAN, openLoop: { rate: OPEN_RATE, ms: OPEN_MS }, targets: goal, load: rows, open, memory: mem, micro, profile: prof?.summary }, null, 2)}\n`,
    );
    log(`wrote ${path.relative(ROOT, RESULTS)} and ${path.relative(ROOT, RESULTS_JSON)} (${fmt(secs, 0)} s)`);
  }
  const bad = rows.filter((x) => x.r.errors > MAX_ERROR_SHARE * x.r.calls);
  if (bad.length > 0) throw new Error(`${bad.length} run(s) had more than ${MAX_ERROR_SHARE * 100}% failed calls (see the errors above)`);
}

function memoryLines(m: MemoryReport): string[] {
  return [
    `- gateway idle RSS (started, services up, no client): ${fmt(m.gatewayIdleMiB, 1)} MiB at ready; ${fmt(m.gatewaySettled.mib, 1)} MiB settled (${m.gatewaySettled.afterS} s later, once V8 released start-up's garbage)`,
    ...m.servicesIdleMiB.map((s) => `- ${s.name} idle RSS: ${fmt(s.mib, 1)} MiB`),
    `- ${m.sessionsOpened} open 2025 sessions: gateway RSS +${fmt(m.sessionsDeltaMiB, 1)} MiB`,
    `- \`micro-mcp serve\` to ready: ${fmt(m.readyMs.cold, 0)} ms cold (policy compiled), ${fmt(m.readyMs.cached, 0)} ms with the compile cached`,
  ];
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
