/**
 * Closed-loop load: N real SDK clients, each with its own connection (and, for 2025, its own session),
 * calling one tool back to back. A fixed count after a warm-up, with a time cap so a regression makes
 * the bench slower to report, never endless.
 */
import { performance } from 'node:perf_hooks';
import type { Client } from '@modelcontextprotocol/client';

export interface LoadResult {
  clients: number;
  calls: number;
  /** Wall time of the measured phase (ms). */
  wallMs: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** True when the time cap ended the run before `calls` reached the requested count. */
  capped: boolean;
  /** Measured calls that failed (counted in `calls`, not in the latencies). */
  errors: number;
  /** Warm-up calls that failed (a broken setup fails them all and aborts instead). */
  warmupErrors: number;
  /** Distinct error messages (warm-up and measured), with the policy reasons of a denial (never arguments or tokens). */
  errorKinds: Record<string, number>;
  /**
   * CPU time (user + system, ms) of the measured phase: the path's server-side processes (LoadOptions.serverCpuMs;
   * NaN when not measured) and this process, where every client of the path runs.
   */
  serverCpuMs: number;
  clientCpuMs: number;
}

export interface LoadOptions {
  /** Measured calls in total, across all clients. */
  calls: number;
  /** Unmeasured calls per client first (JIT, connection pools, the service's first requests). */
  warmupPerClient: number;
  /** Hard stop for the measured phase (ms). */
  capMs: number;
  /** What each call sends and must get back. */
  work: Workload;
  /** CPU time (ms) the path's server-side processes have used so far, read before and after the measured phase. */
  serverCpuMs?: () => number;
}

/**
 * One kind of call: the tool name on this path ("echo" direct, "echo.echo" through the gateway), the
 * arguments of call i and the text it must return. Calls are numbered across the whole process
 * (nextCall), so no call repeats the arguments of an earlier one, in any round, row or warm-up, and
 * no cache (the gateway's decision memos) can answer it from a call before.
 */
export interface Workload {
  tool: string;
  args: (i: number) => Record<string, unknown>;
  expect: (i: number) => string;
}

/** echo: {text: "bench <i>"} -> "bench <i>". */
export const echoWork = (tool: string): Workload => ({ tool, args: (i) => ({ text: `bench ${i}` }), expect: (i) => `bench ${i}` });

/** A read of a path that differs on every call; the bench service answers with the path. */
export const readWork = (tool: string): Workload => ({
  tool,
  args: (i) => ({ path: `/eng/bench/doc-${i}.md` }),
  expect: (i) => `/eng/bench/doc-${i}.md`,
});

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The number of the next call made by this process: every call's arguments are new. */
let calls = 0;
const nextCall = (): number => calls++;

async function callOnce(client: Client, work: Workload, i: number): Promise<void> {
  const r = await client.callTool({ name: work.tool, arguments: work.args(i) });
  const got = (r.content as Array<{ text?: string }> | undefined)?.[0]?.text;
  // A wrong or error answer would make a fast number meaningless: stop the bench instead.
  if (r.isError === true || got !== work.expect(i)) throw new Error(`${work.tool}: unexpected result (isError=${String(r.isError)})`);
}

/** The message of a failed call, plus the deciding reasons when a policy denied it. */
function describeError(e: unknown): string {
  const err = e as { message?: unknown; data?: { reasons?: Array<{ message?: unknown }> } };
  const reasons = Array.isArray(err.data?.reasons) ? ` (${err.data.reasons.map((r) => String(r.message)).join('; ')})` : '';
  return `${String(err.message ?? e)}${reasons}`.slice(0, 300);
}

/**
 * Runs the load on these clients (concurrency = clients.length) and returns latency and throughput.
 * Failed calls are counted and described; more than 10% failed warm-up calls abort (the setup is broken).
 */
export async function runLoad(clients: readonly Client[], o: LoadOptions): Promise<LoadResult> {
  return (await sampleLoad(clients, o)).result;
}

/** One run's result with its answered calls' latencies (ms, ascending), for merging rounds. */
export interface LoadSample {
  result: LoadResult;
  latencies: Float64Array;
}

/** runLoad, keeping the latencies: several rounds of one path merge into one result (mergeSamples). */
export async function sampleLoad(clients: readonly Client[], o: LoadOptions): Promise<LoadSample> {
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  const failed = (e: unknown) => {
    const k = describeError(e);
    errorKinds[k] = (errorKinds[k] ?? 0) + 1;
  };
  let warmupErrors = 0;
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < o.warmupPerClient; i++) {
        await callOnce(c, o.work, nextCall()).catch((e: unknown) => {
          warmupErrors++;
          failed(e);
        });
      }
    }),
  );
  if (warmupErrors > 0.1 * clients.length * o.warmupPerClient) {
    throw new Error(`${o.work.tool}: ${warmupErrors} warm-up calls failed: ${Object.keys(errorKinds).join(' | ')}`);
  }
  const lat = new Float64Array(o.calls);
  let issued = 0;
  let ok = 0;
  const server0 = o.serverCpuMs?.() ?? Number.NaN;
  const client0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + o.capMs;
  await Promise.all(
    clients.map(async (c) => {
      while (issued < o.calls && performance.now() < deadline) {
        issued++;
        const t = performance.now();
        try {
          await callOnce(c, o.work, nextCall());
          lat[ok++] = performance.now() - t;
        } catch (e) {
          errors++;
          failed(e);
        }
      }
    }),
  );
  const wallMs = performance.now() - start;
  const client = process.cpuUsage(client0);
  const serverCpuMs = (o.serverCpuMs?.() ?? Number.NaN) - server0;
  const measured = lat.subarray(0, ok).sort();
  return {
    result: {
      clients: clients.length,
      calls: ok + errors,
      wallMs,
      ...latencyStats(measured, wallMs),
      capped: ok + errors < o.calls,
      errors,
      warmupErrors,
      errorKinds,
      serverCpuMs,
      clientCpuMs: (client.user + client.system) / 1000,
    },
    latencies: measured,
  };
}

/** Throughput and latency of answered calls (ms, ascending) over a measured wall time. */
function latencyStats(sorted: Float64Array, wallMs: number): Pick<LoadResult, 'callsPerSec' | 'p50Ms' | 'p99Ms' | 'meanMs'> {
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    callsPerSec: (sorted.length / wallMs) * 1000,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: sum / Math.max(1, sorted.length),
  };
}

/**
 * Rounds of one path as one result: calls, errors and wall time added up (calls/s = answered calls
 * over the rounds' measured time together), percentiles over every round's latencies at once.
 */
export function mergeSamples(parts: readonly LoadSample[]): LoadResult {
  const first = parts[0];
  if (first === undefined) throw new Error('mergeSamples: no rounds');
  const all = new Float64Array(parts.reduce((n, x) => n + x.latencies.length, 0));
  let at = 0;
  for (const x of parts) {
    all.set(x.latencies, at);
    at += x.latencies.length;
  }
  all.sort();
  const wallMs = parts.reduce((n, x) => n + x.result.wallMs, 0);
  const errorKinds: Record<string, number> = {};
  for (const x of parts) for (const [k, n] of Object.entries(x.result.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + n;
  return {
    clients: first.result.clients,
    calls: parts.reduce((n, x) => n + x.result.calls, 0),
    wallMs,
    ...latencyStats(all, wallMs),
    capped: parts.some((x) => x.result.capped),
    errors: parts.reduce((n, x) => n + x.result.errors, 0),
    warmupErrors: parts.reduce((n, x) => n + x.result.warmupErrors, 0),
    errorKinds,
    serverCpuMs: parts.reduce((n, x) => n + x.result.serverCpuMs, 0),
    clientCpuMs: parts.reduce((n, x) => n + x.result.clientCpuMs, 0),
  };
}

export interface OpenLoopResult {
  /** Calls per second the schedule asked for. */
  rate: number;
  /** Calls scheduled (rate x duration). */
  scheduled: number;
  /** Calls answered correctly. */
  ok: number;
  errors: number;
  /** Calls never sent because `maxOutstanding` were already waiting (counted as lost, not measured). */
  dropped: number;
  /** Answered calls per second over the run (until the last answer). */
  callsPerSec: number;
  /** Latency from the call's scheduled start, so a stall delays every call behind it (no coordinated omission). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errorKinds: Record<string, number>;
}

/**
 * Open loop: calls start on a fixed schedule (`rate` per second, spread over the clients in turn),
 * whether or not earlier calls have been answered. A closed loop waits for each answer before the
 * next call, so a stall delays the calls that would have been issued during it without recording
 * them (coordinated omission); here each call's latency counts from when it was due.
 */
export async function runOpenLoop(
  clients: readonly Client[],
  o: { rate: number; durationMs: number; work: Workload; maxOutstanding?: number },
): Promise<OpenLoopResult> {
  const scheduled = Math.round((o.rate * o.durationMs) / 1000);
  const maxOutstanding = o.maxOutstanding ?? 1000;
  const lat: number[] = [];
  const errorKinds: Record<string, number> = {};
  let errors = 0;
  let dropped = 0;
  let outstanding = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  let lastAnswer = start;
  for (let i = 0; i < scheduled; i++) {
    const due = start + (i * 1000) / o.rate;
    const wait = due - performance.now();
    // setTimeout has ~1 ms granularity: sleep only when ahead by more, else send now (late calls
    // are measured from `due`, so lateness of the generator itself counts against the path).
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    if (outstanding >= maxOutstanding) {
      dropped++;
      continue;
    }
    outstanding++;
    const c = clients[i % clients.length]!;
    // A call sent up to 1 ms before its due time (the timer's granularity) counts from when it was
    // sent; a late one from when it was due (the earlier of the two: lateness of the generator or of
    // the path behind earlier calls counts against the path, and no latency is negative).
    const from = Math.min(due, performance.now());
    pending.push(
      callOnce(c, o.work, nextCall()).then(
        () => {
          outstanding--;
          lastAnswer = performance.now();
          lat.push(lastAnswer - from);
        },
        (e: unknown) => {
          outstanding--;
          errors++;
          const k = describeError(e);
          errorKinds[k] = (errorKinds[k] ?? 0) + 1;
        },
      ),
    );
  }
  await Promise.all(pending);
  const sorted = Float64Array.from(lat).sort();
  return {
    rate: o.rate,
    scheduled,
    ok: lat.length,
    errors,
    dropped,
    callsPerSec: (lat.length / Math.max(1, lastAnswer - start)) * 1000,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
    errorKinds,
  };
}

/** Unmeasured runs at the start of each turn of microBenchInterleaved. */
const SETTLE_RUNS = 20;

export interface MicroTiming {
  n: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

/** Times a synchronous or asynchronous operation `n` times after `warmup` runs; per-op µs. */
export async function microBench(fn: () => unknown, n: number, warmup: number): Promise<MicroTiming> {
  const [t] = await microBenchInterleaved([fn], n, warmup, 1);
  return t!;
}

/**
 * Times operations that are compared with each other in alternation: after `warmup` runs of each,
 * `rounds` rounds in which every operation runs n/rounds times in turn, so that a change in the
 * machine's speed during the measurement falls on all of them alike and their ratio stays fair. Each
 * turn starts with a few unmeasured runs (SETTLE_RUNS): the first runs after a switch pay for caches
 * the other operation took over, a cost of the switching, not of the operation (measured: with 400
 * runs per turn they put a Rego decision's p99 at 4.2-4.5x its p50 in two runs, against 2.1-3.3x
 * when each row ran on its own; 2.6-3.3x with them left out).
 * One timing per operation, over all of its rounds; per-op µs.
 */
export async function microBenchInterleaved(fns: ReadonlyArray<() => unknown>, n: number, warmup: number, rounds: number): Promise<MicroTiming[]> {
  for (const fn of fns) for (let i = 0; i < warmup; i++) await fn();
  const lat = fns.map(() => new Float64Array(n));
  const sums = fns.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    // Round r measures calls [from, to) of each operation.
    const from = Math.floor((n * r) / rounds);
    const to = Math.floor((n * (r + 1)) / rounds);
    for (let k = 0; k < fns.length; k++) {
      const fn = fns[k]!;
      const into = lat[k]!;
      if (rounds > 1) for (let i = 0; i < SETTLE_RUNS; i++) await fn();
      for (let i = from; i < to; i++) {
        const t = performance.now();
        const res = fn();
        // Only await real promises: an extra microtask tick would inflate a synchronous decide().
        if (res instanceof Promise) await res;
        const d = (performance.now() - t) * 1000;
        into[i] = d;
        sums[k]! += d;
      }
    }
  }
  return lat.map((l, k) => {
    l.sort();
    return { n, meanUs: sums[k]! / n, p50Us: percentile(l, 50), p99Us: percentile(l, 99) };
  });
}
