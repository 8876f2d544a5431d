/**
 * No escape by race: while a hostile neighbour process keeps swapping a directory inside the served
 * root for a symlink to a directory outside it (and back), the REAL fs service (a child process
 * under Node's permission model, over its MCP interface with real credentials) and the same service
 * behind a REAL gateway (in its bubblewrap sandbox) never return a name, size or content from the
 * outside directory, through list, search, stat or read.
 *
 * Bounded for `make test`: at most MICRO_MCP_RACE_CALLS calls (default 600 direct, a third of that
 * through the gateway) or MICRO_MCP_RACE_MS milliseconds (default 8000) per run, whichever comes
 * first. `make soak-race` runs the same test with 20,000 calls and 120 s.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startService, type RunningService } from '../corpora/harness.js';
import { callOutcome, fsServiceEntry, permissivePolicyDir, stopGateway } from '../helpers/attacks.js';
import { DIST, connect, startGateway, type Gateway } from '../helpers/harness.js';

const CALLS = Number(process.env.MICRO_MCP_RACE_CALLS ?? 600);
const BUDGET_MS = Number(process.env.MICRO_MCP_RACE_MS ?? 8000);
const SWAPPER = path.join(DIST, 'test', 'fixtures', 'dir-swapper.js');
/** The outside file's size: a number no inside entry has. */
const SECRET_SIZE = 31337;

let base: string;
let pub: string;
let outside: string;

before(() => {
  base = mkdtempSync(path.join(tmpdir(), 'micro-mcp-fs-race-'));
  pub = path.join(base, 'pub');
  outside = path.join(base, 'outside');
  // Inside: pub/d/{shared.txt, inside-1.txt, sub/inside-2.txt}. Outside: the same shape with secret
  // names, sizes and contents, and a shared.txt of its own (what a read through a swapped parent
  // would open).
  mkdirSync(path.join(pub, 'd', 'sub'), { recursive: true });
  writeFileSync(path.join(pub, 'd', 'shared.txt'), 'inside shared needle\n');
  writeFileSync(path.join(pub, 'd', 'inside-1.txt'), 'inside needle\n');
  writeFileSync(path.join(pub, 'd', 'sub', 'inside-2.txt'), 'inside needle two\n');
  mkdirSync(path.join(outside, 'sub'), { recursive: true });
  const secret = (label: string) => `TOP-SECRET ${label} needle\n`.padEnd(SECRET_SIZE, '#');
  writeFileSync(path.join(outside, 'shared.txt'), secret('shared'));
  writeFileSync(path.join(outside, 'TOP-SECRET-name.txt'), secret('name'));
  writeFileSync(path.join(outside, 'sub', 'TOP-SECRET-sub.txt'), secret('sub'));
  writeFileSync(path.join(outside, 'sub', 'inside-2.txt'), secret('inside-2'));
});
after(() => rmSync(base, { recursive: true, force: true }));

/** Starts the swapper on pub/d; resolves once it has swapped (its own "swapping" line). */
async function startSwapper(): Promise<{ proc: ChildProcess; stop: () => Promise<number> }> {
  const proc = spawn(process.execPath, [SWAPPER, path.join(pub, 'd'), outside], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (s: string) => {
      out += s;
      if (out.includes('swapping\n')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`swapper exited early (${code}): ${out}`)));
  });
  return {
    proc,
    stop: async () => {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.stdin!.end();
      await exited;
      const m = /done (\d+)/.exec(out);
      assert.ok(m, `the swapper reported its swaps: ${out}`);
      return Number(m[1]);
    },
  };
}

/** The calls raced against the swapper (service-local tool names), chosen round-robin. */
const PROBES: Array<[string, Record<string, unknown>]> = [
  ['list', { path: '/pub/d' }],
  ['list', { path: '/pub/d/sub' }],
  ['search', { path: '/pub', query: 'needle' }],
  ['search', { path: '/pub/d', query: 'secret' }],
  ['read', { path: '/pub/d/shared.txt' }],
  ['read', { path: '/pub/d/sub/inside-2.txt' }],
  ['stat', { path: '/pub/d/shared.txt' }],
  ['stat', { path: '/pub/d/sub/inside-2.txt' }],
];

interface Tally {
  calls: number;
  ok: number;
  refused: number;
  leaks: string[];
}

/** What an answer must never contain: an outside name, content or size. */
function leakIn(dump: string): string | undefined {
  if (dump.includes('TOP-SECRET')) return 'an outside name or content';
  if (dump.includes(`"size":${SECRET_SIZE}`) || dump.includes(`${SECRET_SIZE} bytes`)) return 'an outside size';
  if (dump.includes(base)) return 'a host path';
  return undefined;
}

/** Runs the probes `width` at a time until `calls` are done or the time budget is spent. */
async function race(
  calls: number,
  width: number,
  one: (tool: string, args: Record<string, unknown>) => Promise<{ ok: boolean; dump: string }>,
): Promise<Tally> {
  const tally: Tally = { calls: 0, ok: 0, refused: 0, leaks: [] };
  const deadline = Date.now() + BUDGET_MS;
  let next = 0;
  const worker = async () => {
    while (next < calls && Date.now() < deadline) {
      const [tool, args] = PROBES[next++ % PROBES.length]!;
      const r = await one(tool, args);
      tally.calls++;
      if (r.ok) tally.ok++;
      else tally.refused++;
      const leak = leakIn(r.dump);
      if (leak) tally.leaks.push(`${tool} ${JSON.stringify(args)}: ${leak}: ${r.dump.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return tally;
}

/** Runs `fn` while the swapper runs; returns its tally and the swapper's count of swaps. */
async function underSwapper(fn: () => Promise<Tally>): Promise<{ tally: Tally; swaps: number }> {
  const swapper = await startSwapper();
  const outcome = await fn().then(
    (tally) => ({ tally }),
    (error: unknown) => ({ error }),
  );
  const swaps = await swapper.stop();
  if ('error' in outcome) throw outcome.error;
  return { tally: outcome.tally, swaps };
}

function assertHeld({ tally: t, swaps }: { tally: Tally; swaps: number }, diagnostic: (msg: string) => void): void {
  diagnostic(`${t.calls} calls (${t.ok} answered, ${t.refused} refused) against ${swaps} swaps; ${t.leaks.length} leaked`);
  assert.deepEqual(t.leaks.slice(0, 5), [], `${t.leaks.length} of ${t.calls} calls leaked from outside the root`);
  assert.ok(swaps > 0, 'the swapper swapped');
  // The race was really run: some calls met the swapped state (refused) and some the real one.
  assert.ok(t.refused > 0, `no call met a swapped directory in ${t.calls} calls (${swaps} swaps): the test did not exercise the race`);
  assert.ok(t.ok > 0, `no call succeeded in ${t.calls} calls: the service was not serving`);
}

describe('fs listing, search, stat and read under a directory <-> symlink swapper', () => {
  test('straight to the fs service over MCP: nothing from outside the root, ever', async (t) => {
    const svc: RunningService = await startService('fs', ['--root', `pub=${pub}`], { sandboxRead: [pub] });
    try {
      // Warm-up without the swapper: every probe works and shows the inside only.
      for (const [tool, args] of PROBES) {
        const r = await svc.call(tool, args);
        assert.equal(r.isError, undefined, `${tool} ${JSON.stringify(args)} works: ${JSON.stringify(r).slice(0, 300)}`);
      }
      const run = await underSwapper(() =>
        race(CALLS, 4, async (tool, args) => {
          const r = await svc.call(tool, args);
          return { ok: r.isError !== true, dump: JSON.stringify(r) };
        }),
      );
      assertHeld(run, (m) => t.diagnostic(m));
    } finally {
      await svc.close();
    }
  });

  describe('through a real gateway, the fs service in its sandbox', () => {
    let gw: Gateway;
    let policy: ReturnType<typeof permissivePolicyDir>;
    before(async () => {
      // The open test policy lets group eng read every canonical path: the service's own guard is
      // what the race meets.
      policy = permissivePolicyDir(['unused.test']);
      gw = await startGateway({
        policy: { decision_timeout_ms: 5000, rego: { dir: policy.rego }, cedar: { dir: policy.cedar } },
        services: { fs: fsServiceEntry(['--root', `pub=${pub}`], [pub]) },
      });
    });
    after(async () => {
      if (gw) await stopGateway(gw);
      if (policy) rmSync(policy.dir, { recursive: true, force: true });
    });

    test('nothing from outside the root, ever', async (t) => {
      const client = await connect(gw, 'modern', { token: await gw.token({ sub: 'mallory', groups: ['eng'], scopes: ['fs:read'], purpose: '' }) });
      try {
        const run = await underSwapper(() =>
          race(Math.ceil(CALLS / 3), 4, async (tool, args) => {
            const o = await callOutcome(client, `fs.${tool}`, args);
            assert.ok(o.kind === 'ok' || o.kind === 'service', `${tool}: a call ended as ${o.kind}: ${o.dump.slice(0, 300)}`);
            return { ok: o.kind === 'ok', dump: o.dump };
          }),
        );
        assertHeld(run, (m) => t.diagnostic(m));
      } finally {
        await client.close();
      }
    });
  });
});
