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
}

export interface LoadOptions {
  /** Measured calls in total, across all clients. */
  calls: number;
  /** Unmeasured calls per client first (JIT, connection pools, the service's first requests). */
  warmupPerClient: number;
  /** Hard stop for the measured phase (ms). */
  capMs: number;
  /** Tool name to call ("echo" direct, "echo.echo" through the gateway). */
  tool: string;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

async function callOnce(client: Client, tool: string, i: number): Promise<void> {
  const text = `bench ${i}`;
  const r = await client.callTool({ name: tool, arguments: { text } });
  const got = (r.content as Array<{ text?: string }> | undefined)?.[0]?.text;
  // A wrong or error answer would make a fast number meaningless: stop the bench instead.
  if (r.isError === true || got !== text) throw new Error(`${tool}: unexpected result (isError=${String(r.isError)})`);
}

/** Runs the load on these clients (concurrency = clients.length) and returns latency and throughput. */
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
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  const failed = (e: unknown) => {
    const k = describeError(e);
    errorKinds[k] = (errorKinds[k] ?? 0) + 1;
  };
  let warmupErrors = 0;
  await Promise.all(
    clients.map(async (c, k) => {
      for (let i = 0; i < o.warmupPerClient; i++) {
        await callOnce(c, o.tool, k * 1_000_000 + i).catch((e: unknown) => {
          warmupErrors++;
          failed(e);
        });
      }
    }),
  );
  if (warmupErrors > 0.1 * clients.length * o.warmupPerClient) {
    throw new Error(`${o.tool}: ${warmupErrors} warm-up calls failed: ${Object.keys(errorKinds).join(' | ')}`);
  }
  const lat = new Float64Array(o.calls);
  let issued = 0;
  let ok = 0;
  const start = performance.now();
  const deadline = start + o.capMs;
  await Promise.all(
    clients.map(async (c) => {
      while (issued < o.calls && performance.now() < deadline) {
        const i = issued++;
        const t = performance.now();
        try {
          await callOnce(c, o.tool, i);
          lat[ok++] = performance.now() - t;
        } catch (e) {
          errors++;
          failed(e);
        }
      }
    }),
  );
  const wallMs = performance.now() - start;
  const measured = lat.subarray(0, ok).sort();
  let sum = 0;
  for (const v of measured) sum += v;
  return {
    clients: clients.length,
    calls: ok + errors,
    wallMs,
    callsPerSec: (ok / wallMs) * 1000,
    p50Ms: percentile(measured, 50),
    p99Ms: percentile(measured, 99),
    meanMs: sum / Math.max(1, ok),
    capped: ok + errors < o.calls,
    errors,
    warmupErrors,
    errorKinds,
  };
}

/** Times a synchronous or asynchronous operation `n` times after `warmup` runs; per-op µs. */
export async function microBench(fn: () => unknown, n: number, warmup: number): Promise<{ n: number; meanUs: number; p50Us: number; p99Us: number }> {
  for (let i = 0; i < warmup; i++) await fn();
  const lat = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = fn();
    // Only await real promises: an extra microtask tick would inflate a synchronous decide().
    if (r instanceof Promise) await r;
    const d = (performance.now() - t) * 1000;
    lat[i] = d;
    sum += d;
  }
  lat.sort();
  return { n, meanUs: sum / n, p50Us: percentile(lat, 50), p99Us: percentile(lat, 99) };
}
