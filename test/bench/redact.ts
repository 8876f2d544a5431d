/**
 * Redaction cost (issue #14): what the result filter and the audit redactor cost per MB of ordinary
 * text, and what each adversarial string of test/corpora/redact-adversarial.json costs at 1 MiB.
 * The scanners are linear (src/audit/scan.ts); the regexes they replaced took 44 s on a 300 KB
 * argument. Prints Markdown and writes test/bench/REDACT.md. `make bench-redact` (part of `make bench`).
 *
 *   REDACT_ROUNDS=5   rounds per case (the median is reported)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRedactor, SecretFinder } from '../../src/audit/redact.js';
import type { RedactCategory } from '../../src/types.js';
import { adversarial, type AdversarialCase } from '../../src/audit/testdata/adversarial.js';
import { ROOT } from '../helpers/harness.js';

const ROUNDS = Number(process.env.REDACT_ROUNDS ?? 5);
const MIB = 1024 * 1024;
const ALL: RedactCategory[] = ['email', 'phone', 'card', 'secrets'];

/** Ordinary text: log lines and prose with a secret or an address now and then. */
function ordinary(size: number): string {
  const lines = [
    '2026-12-02T17:05:59.123Z INFO request id=4f1c path=/api/v1/items status=200 took=12ms user=alice',
    'The quick brown fox jumps over the lazy dog; see https://docs.example.com/guide?page=3 for more.',
    'Contact jane.doe@example.org or call +44 20 7946 0958 about order 1234567812345678.',
    'config: host=db.internal port=5432 password=s3cr3t-value timeout=30s',
    'Authorization: Bearer q8Zr2mVt6YwLp0sKx4Ne and then some more ordinary words follow here.',
  ];
  let s = '';
  for (let i = 0; s.length < size; i++) s += `${lines[i % lines.length]}\n`;
  return s.slice(0, size);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function time(fn: () => unknown): number {
  const xs: number[] = [];
  fn(); // warm-up
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    fn();
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

const r = createRedactor();
const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInNjb3BlIjoiZnM6cmVhZCJ9.Zm9vYmFyYmF6cXV4c2lnbmF0dXJlLXZhbHVl';
const rows: string[] = [];
const out = (l: string) => {
  rows.push(l);
  console.log(l);
};

out('# Redaction benchmark');
out('');
out(
  `Node ${process.version}, ${cpus().length} cores, load average ${loadavg()[0]?.toFixed(1)} at the start (a shared machine inflates every figure), ${ROUNDS} rounds per case, median. All four categories and the caller's token (a ${token.length}-character JWT).`,
);
out('');
out('| input | size | ms | MB/s |');
out('|---|---:|---:|---:|');
for (const [label, size] of [
  ['ordinary text', MIB],
  ['ordinary text', 8 * MIB],
] as const) {
  const s = ordinary(size);
  const ms = time(() => r.filter(s, ALL, new SecretFinder([token])));
  out(`| ${label}, filter (result) | ${size / MIB} MiB | ${ms.toFixed(1)} | ${(size / MIB / (ms / 1000)).toFixed(0)} |`);
  const ms2 = time(() => r.redactString(s));
  out(`| ${label}, redactString (audit) | ${size / MIB} MiB | ${ms2.toFixed(1)} | ${(size / MIB / (ms2 / 1000)).toFixed(0)} |`);
}
const msFinder = time(() => new SecretFinder([token]));
out(`| building the token finder (per call) | ${token.length} chars | ${msFinder.toFixed(3)} | |`);
out('');
out('## Adversarial strings, 1 MiB each (test/corpora/redact-adversarial.json)');
out('');
out('| case | why | ms |');
out('|---|---|---:|');
const { cases } = JSON.parse(readFileSync(path.join(ROOT, 'test', 'corpora', 'redact-adversarial.json'), 'utf8')) as { cases: AdversarialCase[] };
let worst = 0;
for (const c of cases) {
  const s = adversarial(c, MIB);
  const ms = time(() => r.filter(s, ALL, new SecretFinder([token])));
  worst = Math.max(worst, ms);
  out(`| ${c.id} | ${c.why} | ${ms.toFixed(1)} |`);
}
out('');
out(`Worst adversarial case: ${worst.toFixed(1)} ms per MiB.`);
writeFileSync(path.join(ROOT, 'test', 'bench', 'REDACT.md'), `${rows.join('\n')}\n`);
