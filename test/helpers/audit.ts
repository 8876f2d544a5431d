/**
 * Helpers for the audit end-to-end tests: read the gateway's audit files (rotated set), run the
 * real `micro-mcp audit verify`, copy a set for tampering, and look for secrets in text.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI, DIST } from './harness.js';

export const SPY_SERVICE = path.join(DIST, 'test', 'helpers', 'audit-spy-service.js');

/** One parsed audit line, with where it sits. */
export interface Line {
  file: string;
  line: number;
  text: string;
  rec: Record<string, unknown> & { seq: number; kind: string; decision_id?: string };
}

/** The audit files of a directory, oldest first: audit.jsonl.N ... audit.jsonl.1, audit.jsonl. */
export function auditFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const rank = (n: string) => (n === 'audit.jsonl' ? 0 : Number(n.slice('audit.jsonl.'.length)));
  return readdirSync(dir)
    .filter((n) => /^audit\.jsonl(\.\d+)?$/.test(n))
    .sort((a, b) => rank(b) - rank(a))
    .map((n) => path.join(dir, n));
}

/** Every complete record in `dir`, in file order (an incomplete last line, a torn write, is skipped). */
export function readRecords(dir: string): Line[] {
  const out: Line[] = [];
  for (const file of auditFiles(dir)) {
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n');
    // The part after the last newline is either empty or a torn write.
    lines.pop();
    for (const [i, t] of lines.entries()) out.push({ file, line: i + 1, text: t, rec: JSON.parse(t) as Line['rec'] });
  }
  return out;
}

/** Raw bytes of every audit file in `dir`, for secret scans. */
export function auditText(dir: string): string {
  return auditFiles(dir)
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
}

/** Runs the real CLI: `micro-mcp audit verify ARGS...`. */
export function verifyCli(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'audit', 'verify', ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** `verifyCli` without blocking, so that several verifications can run side by side. */
export function verifyCliAsync(...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, 'audit', 'verify', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

/** A private copy of an audit directory to tamper with. */
export function copyDir(dir: string): string {
  const to = mkdtempSync(path.join(tmpdir(), 'micro-mcp-audit-tamper-'));
  cpSync(dir, to, { recursive: true });
  return to;
}

/** The texts that must never appear anywhere: the secret itself and, for JWTs, its signature. */
export function secretNeedles(secret: string): string[] {
  const parts = secret.split('.');
  const needles = [secret];
  if (parts.length === 3 && parts[2]!.length >= 16) needles.push(parts[2]!);
  return needles;
}
