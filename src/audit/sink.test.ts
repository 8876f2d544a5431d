import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../errors.js';
import { FileSink } from './sink.js';
import { tmpDir } from './testdata/fixtures.js';

const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const CHILD = fileURLToPath(new URL(`./testdata/lock-child${ext}`, import.meta.url));
const execArgv = process.execArgv.filter((a) => !a.startsWith('--test'));
const open = (file: string): Promise<{ sink: FileSink }> => FileSink.open({ path: file, rotateBytes: 0, keepFiles: 0, syncDir: false });
const lockedBy = (pid: number) => (e: unknown) =>
  e instanceof GatewayError && e.code === 'ERR_AUDIT_UNAVAILABLE' && e.message === `audit log unavailable: the audit file is in use by process ${pid}`;

interface LockChild {
  proc: ChildProcessWithoutNullStreams;
  ask(line: string): Promise<string>;
}

function startLockChild(t: { after(fn: () => void): void }): LockChild {
  const proc = spawn(process.execPath, [...execArgv, CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => void proc.kill('SIGKILL'));
  const replies = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await replies.next();
    if (r.done) throw new Error('the lock child exited');
    return r.value;
  };
  const ready = next();
  return {
    proc,
    async ask(line) {
      assert.equal(await ready, 'ready');
      proc.stdin.write(`${line}\n`);
      return next();
    },
  };
}

test('processes opening one audit file at once: exactly one gets it, the others are refused naming it', async (t) => {
  const dir = tmpDir(t);
  const children = Array.from({ length: 4 }, () => startLockChild(t));
  // 60 rounds: with the lock written in place (create, then write), about one round in ten let two in.
  for (let round = 0; round < 60; round++) {
    const file = path.join(dir, `r${round}`, 'audit.jsonl');
    mkdirSync(path.dirname(file));
    const answers = await Promise.all(children.map((c) => c.ask(`open ${file}`)));
    const winners = children.filter((_, i) => answers[i] === 'ok');
    assert.equal(winners.length, 1, `round ${round}: ${answers.join(' | ')}`);
    const refusal = `audit log unavailable: the audit file is in use by process ${winners[0]!.proc.pid}`;
    assert.deepEqual(
      answers.filter((a) => a !== 'ok'),
      Array(3).fill(refusal),
      `round ${round}`,
    );
    assert.deepEqual(await Promise.all(children.map((c) => c.ask('close'))), Array(4).fill('closed'));
    assert.deepEqual(readdirSync(path.dirname(file)), ['audit.jsonl'], `round ${round}: no lock or temporary file is left`);
  }
});

test('a lock naming a process that is gone is taken over; one naming a living process refuses', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const lock = path.join(dir, '.audit.jsonl.lock');
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => gone.once('exit', r));
  writeFileSync(lock, `${gone.pid}\n`);
  const { sink } = await open(file);
  await sink.close();
  assert.deepEqual(readdirSync(dir), ['audit.jsonl']);

  writeFileSync(lock, `${process.ppid}\n`);
  await assert.rejects(open(file), lockedBy(process.ppid));
  assert.deepEqual(readdirSync(dir).sort(), ['.audit.jsonl.lock', 'audit.jsonl'], 'the living owner keeps its lock');
});
