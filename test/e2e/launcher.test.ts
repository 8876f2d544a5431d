/**
 * The `micro-mcp` command (bin/micro-mcp, package.json's bin): runs the CLI with glibc's mmap
 * threshold fixed at 32 KiB, which returns the memory V8 frees after compiling the engines' WASM
 * (docs/ARCHITECTURE.md). The gateway the launcher starts is node itself (exec), with the setting in
 * its environment; an operator's own malloc settings are kept; npm's bin symlink finds the CLI.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { echoService, LAUNCHER, startGateway } from '../helpers/harness.js';

const THRESHOLD = 'glibc.malloc.mmap_threshold=32768';

/**
 * The environment and executable of a running process, as the kernel holds them. glibc parses
 * GLIBC_TUNABLES in place, ending each tunable with a NUL where the ':' was: the entries after it
 * that name a tunable (`glibc.<namespace>.<name>=`) are joined back to it.
 */
function processOf(pid: number): { env: Map<string, string>; exe: string } {
  const env = new Map<string, string>();
  let last = '';
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    if (last === 'GLIBC_TUNABLES' && /^glibc\.\w+\.\w+=/.test(kv)) {
      env.set(last, `${env.get(last)}:${kv}`);
      continue;
    }
    const i = kv.indexOf('=');
    if (i > 0) env.set((last = kv.slice(0, i)), kv.slice(i + 1));
  }
  return { env, exe: readlinkSync(`/proc/${pid}/exe`) };
}

/** Starts a gateway through the launcher with `env` added, and returns what its process runs with. */
async function launched(env: Record<string, string>): Promise<{ env: Map<string, string>; exe: string }> {
  const gw = await startGateway({ services: { echo: echoService() } }, { env });
  try {
    return processOf(gw.proc.pid as number);
  } finally {
    assert.equal(await gw.stop(), 0);
  }
}

describe('launcher: bin/micro-mcp', () => {
  test('the gateway is node itself, with the mmap threshold fixed', async () => {
    const p = await launched({});
    assert.equal(p.exe, readlinkSync('/proc/self/exe'));
    assert.equal(p.env.get('GLIBC_TUNABLES'), THRESHOLD);
  });

  test("an operator's other tunables are kept, the threshold is added after them", async () => {
    const p = await launched({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' });
    assert.equal(p.env.get('GLIBC_TUNABLES'), `glibc.malloc.arena_max=2:${THRESHOLD}`);
  });

  test("an operator's own threshold wins, in either of glibc's spellings", async () => {
    const tunable = await launched({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' });
    assert.equal(tunable.env.get('GLIBC_TUNABLES'), 'glibc.malloc.mmap_threshold=65536');
    const legacy = await launched({ MALLOC_MMAP_THRESHOLD_: '65536' });
    assert.equal(legacy.env.get('GLIBC_TUNABLES'), undefined);
    assert.equal(legacy.env.get('MALLOC_MMAP_THRESHOLD_'), '65536');
  });

  test("through a symlink elsewhere (npm's .bin), it finds the CLI beside itself", () => {
    const link = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-bin-')), 'micro-mcp');
    symlinkSync(LAUNCHER, link);
    const r = spawnSync(link, ['--help'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage: micro-mcp <command> \[options\]/);
  });
});
