/**
 * `micro-mcp audit verify FILE...`: prove a set of audit files is one unbroken hash chain.
 *
 * What it proves: every complete record is byte-for-byte what the gateway wrote (its `hash` covers
 * the line), records follow each other with `seq` + 1 and `prev_hash` = the previous `hash`, across
 * rotated files in seq order, whatever order the files are given in. So any altered, removed,
 * reordered or inserted record in the range is found, and the first bad one is named.
 *
 * What it cannot prove alone: that records were not cut off at the END (the newest records or
 * files removed), nor at the START unless `requireGenesis` is set (the first record must then be
 * seq 1 with the genesis prev_hash; rotated-out files make that fail legitimately). Anchor the
 * head (`head seq/hash` printed below) somewhere the gateway host cannot rewrite (the log
 * pipeline) to cover the end. A hash chain without a secret also cannot stop someone who rewrites
 * the whole file and recomputes every hash; the shipped copy is the witness for that.
 * An incomplete last line in the newest file (a write cut off by kill -9 / power loss) is
 * reported as `truncated_tail`, not as tampering: no complete record was changed by it.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { sha256 } from './canonical.js';
import { GENESIS_HASH } from './records.js';
import { HASH_TAIL } from './sink.js';

export interface VerifyOptions {
  /** The first record must be the chain's genesis (seq 1, prev_hash all zeros). */
  requireGenesis?: boolean;
}

export interface VerifyProblem {
  file: string;
  /** 1-based line number in `file`. */
  line: number;
  seq: number | null;
  problem: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Complete records checked (up to the first problem). */
  records: number;
  files: number;
  first_seq: number | null;
  last_seq: number | null;
  /** `hash` of the last good record: anchor it elsewhere to detect removal at the end. */
  head_hash: string | null;
  /** The chain starts at genesis (nothing removed at the start). */
  genesis: boolean;
  /** An incomplete last line in the newest file: a torn write, not a tampered record. */
  truncated_tail?: { file: string; line: number; bytes: number };
  error?: VerifyProblem;
}

interface Line {
  file: string;
  line: number;
  text: string;
}

interface ParsedFile {
  file: string;
  lines: Line[];
  /** Bytes after the last newline. */
  tail: { line: number; bytes: number } | null;
  /** Line number of an unterminated last line that is not a torn write. */
  altered: number | null;
  firstSeq: number | null;
}

const seqOf = (text: string): number | null => {
  try {
    const seq = (JSON.parse(text) as { seq?: unknown } | null)?.seq;
    return typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : null;
  } catch {
    return null;
  }
};

/** Expand directories to the audit files inside them (`*.jsonl`, `*.jsonl.N`) and drop duplicates. */
async function expand(paths: readonly string[]): Promise<string[]> {
  const out = new Map<string, string>();
  for (const p of paths) {
    const st = await fsp.stat(p);
    if (st.isDirectory()) {
      for (const name of (await fsp.readdir(p)).sort()) {
        if (/\.jsonl(\.\d+)?$/.test(name)) {
          const f = path.join(p, name);
          out.set(await fsp.realpath(f), f);
        }
      }
    } else {
      out.set(await fsp.realpath(p), p);
    }
  }
  return [...out.values()];
}

async function readFile(file: string): Promise<ParsedFile> {
  const buf = await fsp.readFile(file);
  const lines: Line[] = [];
  let start = 0;
  let n = 0;
  for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
    n++;
    lines.push({ file, line: n, text: buf.subarray(start, nl).toString('utf8') });
    start = nl + 1;
  }
  let tail: ParsedFile['tail'] = null;
  let altered: number | null = null;
  if (start < buf.length) {
    const text = buf.subarray(start).toString('utf8');
    if (HASH_TAIL.test(text)) {
      // Complete but unterminated (torn exactly before its newline): it is a record; check it as one.
      lines.push({ file, line: n + 1, text });
    } else if (/,"hash":"sha256:[0-9a-f]{64}"\}/.test(text)) {
      // A torn write is a prefix of a line, so nothing can follow its hash member: this was altered.
      altered = n + 1;
    } else {
      tail = { line: n + 1, bytes: buf.length - start };
    }
  }
  return { file, lines, tail, altered, firstSeq: placeFile(lines) };
}

/**
 * The seq a file starts at, taken from its first record that matches its own hash (minus its
 * index), so that a tampered first line cannot move the file elsewhere in the chain and make the
 * walk blame an innocent record instead of it.
 */
function placeFile(lines: readonly Line[]): number | null {
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.text;
    const m = HASH_TAIL.exec(text);
    if (m && sha256(`${text.slice(0, m.index)}}`) === m[1]) {
      const seq = seqOf(text);
      if (seq !== null) return seq - i;
    }
  }
  return null;
}

/**
 * Verify the chain over `paths` (files or directories, any order). Never throws for bad content;
 * an unreadable path is reported as the problem.
 */
export async function verifyAuditFiles(paths: readonly string[], opts: VerifyOptions = {}): Promise<VerifyResult> {
  const result: VerifyResult = { ok: false, records: 0, files: 0, first_seq: null, last_seq: null, head_hash: null, genesis: false };
  let files: ParsedFile[];
  try {
    files = await Promise.all((await expand(paths)).map(readFile));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    result.error = { file: err.path ?? '', line: 0, seq: null, problem: `cannot read (${err.code ?? 'error'})` };
    return result;
  }
  result.files = files.length;
  if (files.length === 0) {
    result.error = { file: '', line: 0, seq: null, problem: 'no audit files given' };
    return result;
  }
  // Empty files (a fresh file right after rotation) carry nothing; a file without a single intact
  // record cannot be placed in the chain and is the problem itself.
  const unplaceable = files.find((f) => f.lines.length > 0 && f.firstSeq === null);
  if (unplaceable) {
    result.error = { file: unplaceable.file, line: 1, seq: null, problem: 'no record in this file matches its hash, so it cannot be placed in the chain' };
    return result;
  }
  const alteredFile = files.find((f) => f.altered !== null);
  if (alteredFile) {
    result.error = {
      file: alteredFile.file,
      line: alteredFile.altered!,
      seq: null,
      problem: 'last line is a complete record followed by other bytes (altered line ending)',
    };
    return result;
  }
  const ordered = files.filter((f) => f.lines.length > 0).sort((a, b) => a.firstSeq! - b.firstSeq!);
  const newest = ordered.at(-1);
  for (const f of files) {
    if (f.tail && f !== newest && !(f.lines.length === 0 && ordered.length === 0)) {
      result.error = { file: f.file, line: f.tail.line, seq: null, problem: `incomplete line (${f.tail.bytes} bytes) in a file that is not the newest` };
      return result;
    }
  }
  const tailFile = files.find((f) => f.tail);
  if (tailFile?.tail) result.truncated_tail = { file: tailFile.file, line: tailFile.tail.line, bytes: tailFile.tail.bytes };

  let prevHash: string | null = null;
  let prevSeq: number | null = null;
  for (const f of ordered) {
    for (const l of f.lines) {
      const problem = checkLine(l.text, prevSeq, prevHash, opts);
      if (typeof problem === 'object' && 'problem' in problem) {
        result.error = { file: l.file, line: l.line, seq: problem.seq, problem: problem.problem };
        return result;
      }
      if (prevSeq === null) {
        result.first_seq = problem.seq;
        result.genesis = problem.prev === GENESIS_HASH && problem.seq === 1;
      }
      prevSeq = problem.seq;
      prevHash = problem.hash;
      result.records++;
      result.last_seq = prevSeq;
      result.head_hash = prevHash;
    }
  }
  if (result.records === 0) {
    result.error = { file: files[0]!.file, line: 1, seq: null, problem: 'no complete audit records' };
    return result;
  }
  result.ok = true;
  return result;
}

function checkLine(
  text: string,
  prevSeq: number | null,
  prevHash: string | null,
  opts: VerifyOptions,
): { seq: number; hash: string; prev: string } | { seq: number | null; problem: string } {
  const m = HASH_TAIL.exec(text);
  let rec: { seq?: unknown; prev_hash?: unknown; hash?: unknown } | null = null;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) rec = v;
  } catch {
    rec = null;
  }
  const seq = rec && typeof rec.seq === 'number' && Number.isSafeInteger(rec.seq) ? rec.seq : null;
  if (!rec) return { seq: seqOf(text), problem: 'not valid JSON (altered or corrupted record)' };
  if (!m || rec.hash !== m[1]) return { seq, problem: 'no hash as the last member (altered record)' };
  if (seq === null || typeof rec.prev_hash !== 'string') return { seq, problem: 'missing seq or prev_hash (altered record)' };
  if (sha256(`${text.slice(0, m.index)}}`) !== m[1]) return { seq, problem: 'content does not match its hash (altered record)' };
  if (prevSeq === null) {
    if (opts.requireGenesis && (seq !== 1 || rec.prev_hash !== GENESIS_HASH)) {
      return { seq, problem: `chain does not start at genesis (first seq ${seq}): records removed at the start` };
    }
  } else {
    if (seq <= prevSeq) return { seq, problem: `seq ${seq} after seq ${prevSeq}: records reordered, duplicated or inserted` };
    if (seq !== prevSeq + 1) return { seq, problem: `seq ${seq} after seq ${prevSeq}: ${seq - prevSeq - 1} record(s) missing` };
    if (rec.prev_hash !== prevHash) return { seq, problem: `prev_hash does not match the hash of seq ${prevSeq}: record inserted or replaced` };
  }
  return { seq, hash: m[1]!, prev: rec.prev_hash };
}

/**
 * The CLI body of `micro-mcp audit verify [--genesis] FILE|DIR...` (`args` may hold `--genesis`). Prints
 * `verified N records in K files` (exit 0) or the first bad record (exit 1); 2 for usage errors.
 */
export async function auditVerify(args: readonly string[], out: { write(s: string): unknown }, opts: VerifyOptions = {}): Promise<number> {
  // The CLI hands its whole argument list over; `--genesis` is the one flag (documented in README.md).
  const paths = args.filter((a) => a !== '--genesis');
  if (paths.length !== args.length) opts = { ...opts, requireGenesis: true };
  if (paths.length === 0) {
    out.write('usage: micro-mcp audit verify [--genesis] FILE|DIR...\n');
    return 2;
  }
  const r = await verifyAuditFiles(paths, opts);
  if (!r.ok && r.error) {
    const e = r.error;
    const where = e.line > 0 ? `${e.file}:${e.line}` : e.file;
    out.write(`audit verify FAILED at ${where}${e.seq !== null ? ` (seq ${e.seq})` : ''}: ${e.problem}\n`);
    out.write(`checked ${r.records} good records in ${r.files} files before it\n`);
    return 1;
  }
  out.write(`verified ${r.records} records in ${r.files} files (seq ${r.first_seq}..${r.last_seq}${r.genesis ? ', from genesis' : ''})\n`);
  out.write(`head seq ${r.last_seq} hash ${r.head_hash}\n`);
  if (r.truncated_tail) {
    const t = r.truncated_tail;
    out.write(`note: ${t.file}:${t.line} is an incomplete last line (${t.bytes} bytes), a write cut off by a crash; it is not part of the chain\n`);
  }
  return 0;
}
