import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openAuditLog } from './audit-log.js';
import { verifyAuditFiles } from './verify.js';
import { ALL_SECRETS, decisionOf, policyInput, tmpDir } from './testdata/fixtures.js';

const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const CHILD = fileURLToPath(new URL(`./testdata/load-child${ext}`, import.meta.url));
const execArgv = process.execArgv.filter((a) => !a.startsWith('--test'));

interface Child {
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill: (s: NodeJS.Signals) => void;
}

function startChild(t: { after(fn: () => void): void }, cfg: Record<string, unknown>): Child {
  const cp = spawn(process.execPath, [...execArgv, CHILD], { env: { ...process.env, AUDIT_CHILD: JSON.stringify(cfg) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  cp.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cp.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => cp.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (cp.exitCode === null && cp.signalCode === null) cp.kill('SIGKILL');
  });
  return { out: () => out, err: () => err, exited, kill: (s) => void cp.kill(s) };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const auditFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.startsWith('audit.jsonl'))
    .map((f) => path.join(dir, f));
const forwardedIds = (dir: string): string[] => {
  const text = readFileSync(path.join(dir, 'forwarded.txt'), 'utf8');
  return text
    .split('\n')
    .slice(0, text.endsWith('\n') ? -1 : -2)
    .filter(Boolean);
};
function records(files: string[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    for (const l of text.split('\n')) if (l.endsWith('}')) out.push(JSON.parse(l) as Record<string, unknown>);
  }
  return out;
}
function assertNoSecrets(where: string, text: string): void {
  for (const s of ALL_SECRETS) assert.equal(text.includes(s), false, `a secret reached ${where}`);
}

for (const fsync of ['always', 'never'] as const) {
  test(`kill -9 under load (fsync ${fsync}): complete records verify, no forwarded call lacks its decision`, { timeout: 20_000 }, async (t) => {
    const dir = tmpDir(t);
    const child = startChild(t, { dir, mode: 'load', fsync, rotateBytes: 64 * 1024, workers: 16 });
    await until(() => child.out().includes('READY') && existsSync(path.join(dir, 'audit.jsonl.1')), 15_000, 'load and a rotation');
    child.kill('SIGKILL');
    const { signal } = await child.exited;
    assert.equal(signal, 'SIGKILL');

    const files = auditFiles(dir);
    const v = await verifyAuditFiles(files);
    assert.equal(v.ok, true, JSON.stringify(v.error));
    assert.ok(v.files >= 2, 'the chain spans rotated files');
    const decided = new Set(
      records(files)
        .filter((r) => r.kind === 'decision')
        .map((r) => r.decision_id as string),
    );
    const fwd = forwardedIds(dir);
    assert.ok(fwd.length >= 200, `forwarded ${fwd.length}`);
    const missing = fwd.filter((id) => !decided.has(id));
    assert.deepEqual(missing, [], 'every forwarded call has its decision record');

    // Restart: the chain continues (a torn tail, if any, is repaired and recorded).
    const log = await openAuditLog({ file: path.join(dir, 'audit.jsonl'), fsync: 'always', rotateBytes: 64 * 1024, keepFiles: 0 });
    await log.decision({ input: policyInput(), decision: decisionOf(false) });
    await log.close();
    const v2 = await verifyAuditFiles(auditFiles(dir), { requireGenesis: true });
    assert.equal(v2.ok, true, JSON.stringify(v2.error));
    assert.equal(v2.records, v.records + 1 + (v.truncated_tail ? 1 : 0));
    assert.equal(v2.truncated_tail, undefined);

    for (const f of readdirSync(dir)) assertNoSecrets(f, readFileSync(path.join(dir, f), 'utf8'));
    assertNoSecrets('child output', child.out() + child.err());
  });
}

test('SIGTERM drains in-flight calls and flushes: every allowed decision has an outcome', { timeout: 20_000 }, async (t) => {
  const dir = tmpDir(t);
  const child = startChild(t, { dir, mode: 'load', fsync: 'batch', rotateBytes: 0, workers: 8 });
  await until(() => child.out().includes('READY'), 15_000, 'load');
  child.kill('SIGTERM');
  const { code } = await child.exited;
  assert.equal(code, 0, child.err());
  assert.match(child.out(), /CLOSED \d+/);
  const files = auditFiles(dir);
  const v = await verifyAuditFiles(files, { requireGenesis: true });
  assert.equal(v.ok, true, JSON.stringify(v.error));
  assert.equal(v.truncated_tail, undefined);
  const recs = records(files);
  const allowed = recs.filter((r) => r.kind === 'decision' && (r.result as { allow: boolean }).allow).map((r) => r.decision_id);
  const outcomes = new Set(recs.filter((r) => r.kind === 'outcome').map((r) => r.decision_id));
  assert.deepEqual(
    allowed.filter((id) => !outcomes.has(id)),
    [],
  );
  assert.equal(forwardedIds(dir).length, allowed.length);
  assertNoSecrets('SIGTERM run', child.out() + child.err() + files.map((f) => readFileSync(f, 'utf8')).join(''));
});

test('stdout sink: records on stdout form a verifiable chain, nothing else is written there', { timeout: 20_000 }, async (t) => {
  const dir = tmpDir(t);
  const child = startChild(t, { dir, mode: 'stdout', fsync: 'never' });
  const { code } = await child.exited;
  assert.equal(code, 0, child.err());
  const file = path.join(dir, 'stdout.jsonl');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, child.out());
  const v = await verifyAuditFiles([file], { requireGenesis: true });
  assert.equal(v.ok, true, JSON.stringify(v.error));
  assert.equal(v.records, 20 + 15);
  assertNoSecrets('stdout', child.out() + child.err());
});
