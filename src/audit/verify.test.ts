import assert from 'node:assert/strict';
import { readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync, appendFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { openAuditLog } from './audit-log.js';
import { canonicalJson, sha256 } from './canonical.js';
import { auditVerify, verifyAuditFiles } from './verify.js';
import { tmpDir } from './testdata/fixtures.js';

/** A chain of `n` small event records rotated into several files; returns the files, newest last. */
async function chain(dir: string, n: number, rotateBytes = 900): Promise<string[]> {
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never', rotateBytes, keepFiles: 0, instanceId: 'i1', version: 't' });
  for (let i = 0; i < n; i++) await log.event({ type: 'policy_reload', details: { i } });
  await log.close();
  return filesOf(dir);
}

function filesOf(dir: string): string[] {
  const names = readdirSync(dir).filter((f) => f.startsWith('audit.jsonl'));
  const idx = (f: string): number => (f === 'audit.jsonl' ? 0 : Number(f.split('.').pop()));
  return names.sort((a, b) => idx(b) - idx(a)).map((f) => path.join(dir, f));
}

const lines = (f: string): string[] =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
const writeLines = (f: string, ls: string[]): void => writeFileSync(f, ls.map((l) => `${l}\n`).join(''));

function capture(): { write(s: string): void; text: () => string } {
  let buf = '';
  return { write: (s: string) => void (buf += s), text: () => buf };
}

test('a rotated chain verifies, in any file order, from genesis', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 12);
  assert.ok(files.length >= 3, `rotation produced ${files.length} files`);
  const r = await verifyAuditFiles([...files].reverse());
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.equal(r.records, 12);
  assert.equal(r.files, files.length);
  assert.equal(r.first_seq, 1);
  assert.equal(r.last_seq, 12);
  assert.equal(r.genesis, true);
  // a directory and duplicates name the same set
  const r2 = await verifyAuditFiles([dir, files[0]!]);
  assert.equal(r2.records, 12);
  assert.equal(r2.files, files.length);
  const out = capture();
  assert.equal(await auditVerify(files, out), 0);
  assert.match(out.text(), new RegExp(`^verified 12 records in ${files.length} files`));
});

test('every record hash equals sha256 of its canonical JSON without hash', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never' });
  const weird = { 'z\u2028': 'line\u2029sep', lone: 'a\ud800b', q: 'q"\\\u0001', nested: { b: [3, { y: 1, x: 2 }], a: null }, ['__proto__']: 'p', é: 'ü' };
  await log.event({ type: 'policy_reload', details: JSON.parse(JSON.stringify(weird)) as Record<string, unknown> });
  await log.event({ type: 'policy_reload', details: { long: `${'x'.repeat(300)}"` } });
  await log.close();
  for (const l of lines(file)) {
    const rec = JSON.parse(l) as Record<string, unknown>;
    const { hash, ...rest } = rec;
    assert.equal(`${l.slice(0, l.lastIndexOf(',"hash"'))}}`, canonicalJson(rest), 'the line is canonical JSON');
    assert.equal(hash, sha256(canonicalJson(rest)));
  }
  assert.equal((await verifyAuditFiles([file])).ok, true);
});

test('flipping any single byte of any file is detected', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 5, 700);
  assert.ok(files.length >= 2, 'rotated');
  const originals = files.map((f) => readFileSync(f));
  let checked = 0;
  for (let fi = 0; fi < files.length; fi++) {
    const orig = originals[fi]!;
    for (let i = 0; i < orig.length; i++) {
      const copy = Buffer.from(orig);
      copy[i] = copy[i]! ^ 0x01;
      writeFileSync(files[fi]!, copy);
      const r = await verifyAuditFiles(files);
      assert.equal(r.ok, false, `flip of byte ${i} in ${path.basename(files[fi]!)} went undetected`);
      checked++;
    }
    writeFileSync(files[fi]!, orig);
  }
  assert.ok(checked > 1000, `flipped ${checked} bytes`);
  assert.equal((await verifyAuditFiles(files)).ok, true);
});

test('a flipped byte names the altered record, exit 1', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 9);
  const target = files[1]!; // a middle file
  const ls = lines(target);
  const rec = JSON.parse(ls[1]!) as { seq: number };
  ls[1] = ls[1]!.replace('"i":', '"j":');
  writeLines(target, ls);
  const out = capture();
  assert.equal(await auditVerify(files, out), 1);
  assert.match(out.text(), new RegExp(`FAILED at ${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2 \\(seq ${rec.seq}\\): content does not match its hash`));
});

test('dropping any one record is detected at the record after it', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 8);
  const all = files.flatMap((f) => lines(f).map((l, i) => ({ f, i, seq: (JSON.parse(l) as { seq: number }).seq })));
  for (const victim of all) {
    const before = readFileSync(victim.f);
    const ls = lines(victim.f);
    ls.splice(victim.i, 1);
    writeLines(victim.f, ls);
    const r = await verifyAuditFiles(files);
    if (victim.seq === 1) {
      // Removal at the very start is invisible without an expected genesis...
      assert.equal(r.ok, true);
      assert.equal(r.genesis, false);
      const g = await verifyAuditFiles(files, { requireGenesis: true });
      assert.equal(g.ok, false);
      assert.match(g.error!.problem, /genesis/);
    } else if (victim.seq === all.length) {
      // ...and so is removal at the very end: the printed head hash is the anchor for that.
      assert.equal(r.ok, true);
      assert.equal(r.last_seq, all.length - 1);
    } else {
      assert.equal(r.ok, false, `drop of seq ${victim.seq}`);
      assert.equal(r.error!.seq, victim.seq + 1);
      assert.match(r.error!.problem, /1 record\(s\) missing/);
    }
    writeFileSync(victim.f, before);
  }
});

test('swapping, inserting and re-hashed forgeries are detected; the first bad record is named', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 9);
  const f = files[1]!; // a full rotated file in the middle of the chain
  const orig = lines(f);
  assert.ok(orig.length >= 2, 'the file has at least two records');

  const swapped = [...orig];
  [swapped[0], swapped[1]] = [swapped[1]!, swapped[0]!];
  writeLines(f, swapped);
  let r = await verifyAuditFiles(files);
  assert.equal(r.ok, false);
  assert.equal(r.error!.file, f);
  assert.equal(r.error!.line, 1);

  // A forged record with a correct own hash, inserted in the middle.
  const base = JSON.parse(orig[0]!) as Record<string, unknown>;
  const { hash: _h, ...rest } = base;
  void _h;
  const forged = { ...rest, details: { i: 'forged' } };
  const forgedLine = `${canonicalJson(forged).slice(0, -1)},"hash":"${sha256(canonicalJson(forged))}"}`;
  writeLines(f, [orig[0]!, forgedLine, ...orig.slice(1)]);
  r = await verifyAuditFiles(files);
  assert.equal(r.ok, false);
  assert.equal(r.error!.line, 2);
  assert.match(r.error!.problem, /reordered, duplicated or inserted/);

  // Replacing a record by a re-hashed forgery breaks the link to the next one.
  writeLines(f, [forgedLine, ...orig.slice(1)]);
  r = await verifyAuditFiles(files);
  assert.equal(r.ok, false);
  assert.equal(r.error!.line, 2);
  assert.match(r.error!.problem, /prev_hash/);
  writeLines(f, orig);
  assert.equal((await verifyAuditFiles(files)).ok, true);
});

test('renamed rotated files still verify; a removed or moved middle piece does not', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 12);
  assert.ok(files.length >= 3, 'rotated');
  // swap the names of two rotated files: order comes from seq, not names
  const [a, b] = [files[0]!, files[1]!];
  renameSync(a, `${a}.tmp`);
  renameSync(b, a);
  renameSync(`${a}.tmp`, b);
  assert.equal((await verifyAuditFiles(files)).ok, true);
  renameSync(a, `${a}.tmp`);
  renameSync(b, a);
  renameSync(`${a}.tmp`, b);

  // move the first record of the newest file to the end of the previous file: still one chain, so fine;
  // move it to the end of an older file: chain broken.
  const newest = files.at(-1)!;
  const oldest = files[0]!;
  const moved = lines(newest)[0]!;
  const keepNewest = lines(newest);
  writeLines(newest, keepNewest.slice(1));
  appendFileSync(oldest, `${moved}\n`);
  let r = await verifyAuditFiles(files);
  assert.equal(r.ok, false);
  assert.equal(r.error!.file, oldest);
  writeLines(newest, keepNewest);
  writeLines(oldest, lines(oldest).slice(0, -1));
  assert.equal((await verifyAuditFiles(files)).ok, true);

  // remove a middle file
  const middle = files[1]!;
  const saved = readFileSync(middle);
  unlinkSync(middle);
  r = await verifyAuditFiles(files.filter((x) => x !== middle));
  assert.equal(r.ok, false);
  assert.match(r.error!.problem, /record\(s\) missing/);
  writeFileSync(middle, saved);
  // and a path that does not exist is a failure, not a crash
  const out = capture();
  assert.equal(await auditVerify([path.join(dir, 'nope.jsonl')], out), 1);
  assert.match(out.text(), /cannot read \(ENOENT\)/);
  assert.equal(await auditVerify([], capture()), 2);
});

test('an incomplete last line is a torn write, not tampering; elsewhere it is an error', async (t) => {
  const dir = tmpDir(t);
  const files = await chain(dir, 7);
  const newest = files.at(-1)!;
  const next = lines(newest)[0]!;
  appendFileSync(newest, next.slice(0, 40)); // a prefix of a record, no newline
  const out = capture();
  assert.equal(await auditVerify(files, out), 0);
  assert.match(out.text(), /verified 7 records/);
  assert.match(out.text(), /incomplete last line \(40 bytes\)/);

  // A complete line whose newline was altered is not a torn write.
  const full = readFileSync(newest, 'utf8').slice(0, -40);
  writeFileSync(newest, `${full.slice(0, -1)}x`);
  assert.equal((await verifyAuditFiles(files)).ok, false);
  writeFileSync(newest, full);

  const older = files[0]!;
  appendFileSync(older, '{"_v":1,"ki');
  const r = await verifyAuditFiles(files);
  assert.equal(r.ok, false);
  assert.equal(r.error!.file, older);
  assert.match(r.error!.problem, /not the newest/);
});
