import assert from 'node:assert/strict';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GatewayError } from '../errors.js';
import { CompileCache, defaultCacheDir } from './compile-cache.js';
import { loadPolicies } from './policy-set.js';
import { repoRoot } from './rego/opa.js';
import { caseInput, POLICY_CASES } from './testing/cases.js';
import type { PolicyLogger } from './types.js';

const root = repoRoot() as string;

function recorder(): PolicyLogger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => undefined, error: () => undefined, warn: (_o, msg) => void warnings.push(msg) };
}

describe('policy compile cache', () => {
  let dir: string;
  let rego: string;
  let cedar: string;
  let cache: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'micro-mcp-cache-'));
    rego = join(dir, 'rego');
    cedar = join(dir, 'cedar');
    cache = join(dir, 'cache');
    cpSync(join(root, 'policies', 'rego'), rego, { recursive: true });
    cpSync(join(root, 'policies', 'cedar'), cedar, { recursive: true });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // A generous decision timeout: on a loaded machine a preempted evaluation past the default would
  // deny (fail closed) and make two loads of the same set look different.
  const load = (extra: Record<string, unknown> = {}, log?: PolicyLogger) =>
    loadPolicies(
      { rego: { dir: rego }, cedar: { dir: cedar }, watch: false, cache_dir: cache, decision_timeout_ms: 5000, ...extra },
      { baseDir: root, ...(log ? { log } : {}) },
    );
  const entries = () => readdirSync(cache).sort();
  const decisions = async (extra: Record<string, unknown> = {}) => {
    const p = await load(extra);
    try {
      return {
        revision: p.revision,
        out: POLICY_CASES.map((c) => p.decide(caseInput(c))).map((d) => [d.allow, d.reasons.map((r) => `${r.engine}:${r.id}:${r.message}`)]),
      };
    } finally {
      p.close();
    }
  };

  it('defaults to the XDG cache dir, else ~/.cache', () => {
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/micro-mcp/policy');
    assert.match(defaultCacheDir({}), /\/\.cache\/micro-mcp\/policy$/);
  });

  it('keeps one entry per engine after a compile, owner-only, and decides the same from it', async () => {
    const cold = await decisions();
    const names = entries();
    assert.equal(names.length, 2);
    assert.match(names[0]!, /^cedar-[0-9a-f]{64}$/);
    assert.match(names[1]!, /^rego-[0-9a-f]{64}$/);
    assert.equal(statSync(cache).mode & 0o777, 0o700);
    for (const n of names) assert.equal(statSync(join(cache, n)).mode & 0o777, 0o600);
    const warm = await decisions();
    assert.deepEqual(entries(), names);
    assert.deepEqual(warm, cold);
  });

  it('is read on a start: an entry for these sources is what the engine runs', async () => {
    // The trust the directory check protects: an entry is used as validated. Editing one (as only
    // its owner can) shows in the next decision.
    const name = entries().find((n) => n.startsWith('cedar-')) as string;
    const file = join(cache, name);
    const original = readFileSync(file, 'utf8');
    const entry = JSON.parse(original) as { messages: Record<string, string> };
    entry.messages.fs_read_scope = 'from the cache';
    writeFileSync(file, JSON.stringify(entry));
    try {
      const p = await load();
      try {
        const allowed = POLICY_CASES.map((c) => p.decide(caseInput(c))).flatMap((d) => d.reasons);
        assert.ok(allowed.some((r) => r.engine === 'cedar' && r.id === 'fs_read_scope' && r.message === 'from the cache'));
      } finally {
        p.close();
      }
    } finally {
      writeFileSync(file, original);
    }
  });

  it('compiles as if there were no entry when one is corrupt, and replaces it', async () => {
    const names = entries();
    const good = await decisions();
    for (const n of names) writeFileSync(join(cache, n), 'not an entry');
    const again = await decisions();
    assert.deepEqual(again, good);
    assert.deepEqual(entries(), names);
    for (const n of names) assert.notEqual(readFileSync(join(cache, n), 'utf8'), 'not an entry');
  });

  it('compiles again when a Rego entry reads well but its bundle does not load, and replaces it', async () => {
    const name = entries().find((n) => n.startsWith('rego-')) as string;
    const file = join(cache, name);
    const good = await decisions();
    const original = readFileSync(file);
    // The entry's first line (what the policy reads) is intact; the bundle after it is not.
    writeFileSync(file, Buffer.concat([original.subarray(0, original.indexOf(10) + 1), Buffer.from('not a bundle')]));
    assert.deepEqual(await decisions(), good);
    const replaced = readFileSync(file);
    assert.deepEqual(replaced.subarray(0, replaced.indexOf(10)), original.subarray(0, original.indexOf(10)));
    assert.equal(replaced.includes('not a bundle'), false);
  });

  it('sends Rego what the entry says the policy reads', async () => {
    // Like the Cedar entry above: an entry is trusted as compiled. One that says the policy reads
    // nothing of the input shows in the next decision (nothing is granted).
    const name = entries().find((n) => n.startsWith('rego-')) as string;
    const file = join(cache, name);
    const original = readFileSync(file);
    writeFileSync(file, Buffer.concat([Buffer.from('{"reads":[]}\n'), original.subarray(original.indexOf(10) + 1)]));
    try {
      const p = await load();
      try {
        const c = POLICY_CASES.find((x) => x.expect.allow);
        assert.ok(c);
        const rego = p.decide(caseInput(c)).engines?.find((v) => v.engine === 'rego');
        assert.deepEqual(
          rego?.reasons.map((r) => r.id),
          ['default_deny'],
        );
      } finally {
        p.close();
      }
    } finally {
      writeFileSync(file, original);
    }
  });

  it('compiles again when a source, a Rego test or the fact names change, and never keeps a broken set', async () => {
    const before = entries();
    writeFileSync(join(cedar, 'extra.cedar'), '@id("extra_forbid")\nforbid (principal, action, resource == MicroMcp::Tool::"nope.nothing");\n');
    writeFileSync(join(rego, 'extra_test.rego'), 'package micro_mcp.authz_test\n\ntest_extra if true\n');
    (await load()).close();
    const p = await loadPolicies({ rego: { dir: rego }, cedar: { dir: cedar }, watch: false, cache_dir: cache }, { baseDir: root, resourceFacts: ['repo'] });
    p.close();
    const grown = entries();
    // cedar: +1 (extra.cedar); rego: +1 (the test file) +1 (the fact name).
    assert.equal(grown.length, before.length + 3);
    writeFileSync(join(cedar, 'broken.cedar'), '@id("broken")\npermit (principal, action, resource) when { context.nope };\n');
    await assert.rejects(load(), (e: unknown) => e instanceof GatewayError && e.code === 'ERR_POLICY_COMPILE' && /broken\.cedar/.test(e.message));
    assert.deepEqual(entries(), grown);
    rmSync(join(cedar, 'broken.cedar'));
  });

  it('is not used from a directory others may write, and not at all when off', async () => {
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const log = recorder();
    const p = await load({ cache_dir: shared }, log);
    p.close();
    assert.deepEqual(readdirSync(shared), []);
    assert.deepEqual(log.warnings, ['policy compile cache not used; compiling every time']);
    assert.equal(CompileCache.open(shared), null);
    const off = join(dir, 'off');
    (await load({ cache: false, cache_dir: off })).close();
    assert.throws(() => statSync(off), { code: 'ENOENT' });
  });
});
