/**
 * Where audit lines go, and the group commit that makes `fsync: always` affordable.
 *
 * Why not pino's own destination (sonic-boom): the durability promise is per record ("this
 * decision is on disk before the call is forwarded"), and sonic-boom reports neither when a given
 * line reached the file nor fsync completion per line; with `sync: true` every record would pay
 * its own write + fsync. So pino formats the line (audit-log.ts) and this module owns the fd:
 * records that arrive while a write+fdatasync is in flight are batched into the next one, and
 * every waiter of a batch is resolved only after that batch's write (and fdatasync) returned.
 *
 * Measured on the 2-core dev VM (compiled, ~1 KB decision records, `decision()` awaited):
 * fsync always, 1 sequential writer: ~2,200 records/s (one fdatasync each); fsync always, 64
 * concurrent writers: ~20,000 records/s in 79 batches for 5,000 records (group commit);
 * fsync never, 64 writers: ~36,000 records/s. The audit-log test "group commit" re-measures it.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AuditConfig } from '../../schemas/generated/config.js';
import { createWhole } from '../create-whole.js';
import { GatewayError } from '../errors.js';
import { sha256 as hashOf } from './canonical.js';

/** `audit.fsync`: when a written record is also fdatasync-ed. */
export type FsyncMode = AuditConfig['fsync'];

export interface SinkStats {
  records: number;
  batches: number;
  fsyncs: number;
  rotations: number;
  bytes: number;
}

interface Sink {
  /** Write all lines (each ends with "\n"); `sync` asks for fdatasync before returning. */
  write(lines: string[], sync: boolean, stats: SinkStats): Promise<void>;
  sync(stats: SinkStats): Promise<void>;
  /**
   * After a failed write: make the sink writable again, with no partial line left behind. Throws
   * while the cause persists. Says whether the file had to be created anew (it had been removed).
   */
  reopen(): Promise<{ recreated: boolean }>;
  close(): Promise<void>;
}

/** The last complete record found in an existing log, to continue its chain. */
export interface ChainHead {
  seq: number;
  hash: string;
}

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would make the file larger than this; 0 disables rotation. */
  rotateBytes: number;
  /** Rotated files to keep (`audit.jsonl.1` newest ... `.N` oldest); 0 keeps all. */
  keepFiles: number;
  /** fdatasync the directory after a rotation (renames are metadata). */
  syncDir: boolean;
}

/** The last member of every line: the record's own hash. Anchored, so a flipped byte in it shows. */
export const HASH_TAIL = /,"hash":"(sha256:[0-9a-f]{64})"\}$/;

/** Wrap any I/O failure as the one error the gateway turns into a refusal (fail closed). */
export function auditUnavailable(cause: unknown, what: string): GatewayError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new GatewayError('ERR_AUDIT_UNAVAILABLE', `audit log unavailable: ${what}`, code ? { reason: code } : undefined, { cause });
}

/**
 * Synchronous: an append to a regular file copies into the page cache and returns (microseconds;
 * the durability wait is the fdatasync, which stays on the thread pool). The promise form cost a
 * thread-pool round trip and an extra turn of the event loop on every decision record's path
 * before forwarding (~5% of the gateway's busy CPU at one agent). pino's own sync destination
 * writes the same way.
 */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}

/** Size-rotated JSON-lines file. Continues the chain of whatever it finds at `path` or `path.1`. */
export class FileSink implements Sink {
  private constructor(
    private readonly opts: FileSinkOptions,
    private fh: fsp.FileHandle,
    private size: number,
  ) {}

  /**
   * Open (creating directories), repair a torn last line left by a crash, and return the chain
   * head to continue from. A torn line is a record whose write never completed, so its call was
   * never forwarded; it is cut off and reported (`truncated`) rather than left mid-chain, where it
   * would be indistinguishable from tampering.
   */
  static async open(opts: FileSinkOptions): Promise<{ sink: FileSink; head: ChainHead | null; truncated: number }> {
    try {
      await fsp.mkdir(path.dirname(opts.path), { recursive: true });
      await takeLock(lockPath(opts.path));
      let truncated = 0;
      let head: ChainHead | null = null;
      const cur = await statOrNull(opts.path);
      if (cur?.isFile() && cur.size > 0) {
        const tail = await readTail(opts.path, cur.size);
        truncated = tail.truncated;
        if (truncated > 0) await fsp.truncate(opts.path, cur.size - truncated);
        head = tail.head;
      }
      if (!head) {
        // A crash between the last two renames of a rotation leaves no current file: continue from `.1`.
        const prev = await statOrNull(`${opts.path}.1`);
        if (prev?.isFile() && prev.size > 0) head = (await readTail(`${opts.path}.1`, prev.size)).head;
      }
      const fh = await fsp.open(opts.path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
      const size = (await fh.stat()).size;
      return { sink: new FileSink(opts, fh, size), head, truncated };
    } catch (e) {
      if (e instanceof GatewayError) throw e;
      throw auditUnavailable(e, 'cannot open the audit file');
    }
  }

  async write(lines: string[], sync: boolean, stats: SinkStats): Promise<void> {
    const { rotateBytes } = this.opts;
    let chunk: string[] = [];
    let chunkBytes = 0;
    for (const line of lines) {
      const n = Buffer.byteLength(line);
      if (rotateBytes > 0 && this.size + chunkBytes > 0 && this.size + chunkBytes + n > rotateBytes) {
        this.writeChunk(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        await this.rotate(stats);
      }
      chunk.push(line);
      chunkBytes += n;
    }
    this.writeChunk(chunk, chunkBytes);
    stats.bytes += chunkBytes;
    // Writes to a file that was removed succeed and are lost: refuse them instead (one fstat per batch).
    // Synchronous: an fstat of an open fd reads the cached inode (microseconds), while the promise
    // form added a thread-pool round trip to every decision record's path before forwarding (3.8%
    // of the gateway's busy CPU in make bench's profile).
    if (fs.fstatSync(this.fh.fd).nlink === 0) throw removed();
    if (sync) await this.sync(stats);
  }

  private writeChunk(chunk: string[], bytes: number): void {
    if (chunk.length === 0) return;
    writeAll(this.fh.fd, Buffer.from(chunk.join(''), 'utf8'));
    this.size += bytes;
  }

  async reopen(): Promise<{ recreated: boolean }> {
    const before = await this.fh.stat().catch(() => null);
    await this.fh.close().catch(() => undefined);
    const p = this.opts.path;
    await fsp.mkdir(path.dirname(p), { recursive: true });
    this.fh = await fsp.open(p, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    const now = await this.fh.stat();
    const same = before !== null && before.nlink > 0 && before.ino === now.ino && before.dev === now.dev;
    if (same) {
      // Cut whatever a failed write left after the last complete line (ENOSPC mid-write).
      if (now.size > this.size) await this.fh.truncate(this.size);
    } else {
      this.size = now.size;
    }
    return { recreated: !same };
  }

  async sync(stats: SinkStats): Promise<void> {
    await this.fh.datasync();
    stats.fsyncs++;
  }

  /** `audit.jsonl` -> `.1` -> `.2` ...; the chain continues because the head lives in memory. */
  private async rotate(stats: SinkStats): Promise<void> {
    const p = this.opts.path;
    await this.fh.datasync(); // the closed file must be complete whatever the fsync mode
    await this.fh.close();
    let top = this.opts.keepFiles;
    if (top === 0) {
      top = 1;
      const base = path.basename(p);
      for (const name of await fsp.readdir(path.dirname(p))) {
        const m = name.startsWith(`${base}.`) ? /^\d+$/.exec(name.slice(base.length + 1)) : null;
        if (m) top = Math.max(top, Number(m[0]) + 1);
      }
    } else {
      await fsp.rm(`${p}.${top}`, { force: true });
    }
    for (let i = top - 1; i >= 1; i--) await renameIfExists(`${p}.${i}`, `${p}.${i + 1}`);
    await fsp.rename(p, `${p}.1`);
    this.fh = await fsp.open(p, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    this.size = 0;
    if (this.opts.syncDir) await syncDir(path.dirname(p));
    stats.rotations++;
  }

  async close(): Promise<void> {
    await this.fh.close();
    await fsp.rm(lockPath(this.opts.path), { force: true });
  }
}

/** `.audit.jsonl.lock` beside the file: hidden, so `audit.jsonl*` globs (and verify) never pick it up. */
const lockPath = (file: string): string => path.join(path.dirname(file), `.${path.basename(file)}.lock`);

/**
 * One writer per chain: two processes appending to the same file would interleave two chains, which
 * verify could only call tampering. The lock file names the owner's pid; a lock left by a process
 * that no longer exists (a kill -9) is taken over.
 *
 * The lock is created whole (createWhole), so it is never seen empty: an empty lock read mid-write
 * once looked stale and let two processes in. A stale lock is moved aside, not deleted: if what was
 * moved names a living process, it was a fresh lock taken in the meantime, and it is put back.
 */
async function takeLock(lock: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await createWhole(lock, `${process.pid}\n`, 0o600)) return;
    const owner = await lockOwner(lock);
    if (owner !== null) throw lockedBy(owner);
    const aside = `${lock}.${process.pid}.${randomUUID()}.stale`;
    try {
      await fsp.rename(lock, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      continue;
    }
    const moved = await lockOwner(aside);
    if (moved !== null) {
      await fsp.link(aside, lock).catch(() => undefined);
      await fsp.rm(aside, { force: true });
      throw lockedBy(moved);
    }
    await fsp.rm(aside, { force: true });
  }
  throw new GatewayError('ERR_AUDIT_UNAVAILABLE', 'audit log unavailable: cannot take the audit file lock', { reason: 'LOCKED' });
}

/** The living process (not this one) a lock file names, or null: absent, unreadable, or its owner is gone. */
async function lockOwner(file: string): Promise<number | null> {
  const owner = Number((await fsp.readFile(file, 'utf8').catch(() => '')).trim());
  return Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner) ? owner : null;
}

function lockedBy(owner: number): GatewayError {
  return new GatewayError('ERR_AUDIT_UNAVAILABLE', `audit log unavailable: the audit file is in use by process ${owner}`, { reason: 'LOCKED' });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A plain file descriptor (stdout by default): no rotation, no fsync, retries EAGAIN on pipes. */
export class FdSink implements Sink {
  constructor(private readonly fd: number) {}

  async write(lines: string[]): Promise<void> {
    const buf = Buffer.from(lines.join(''), 'utf8');
    let off = 0;
    while (off < buf.length) {
      try {
        off += await new Promise<number>((resolve, reject) =>
          fs.write(this.fd, buf, off, buf.length - off, null, (err, n) => (err ? reject(err) : resolve(n))),
        );
      } catch (e) {
        // stdout may be a non-blocking pipe whose reader is slow: wait, never drop the record.
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  }

  async sync(): Promise<void> {}
  async reopen(): Promise<{ recreated: boolean }> {
    return { recreated: false };
  }
  async close(): Promise<void> {}
}

/**
 * `fsync: always`: the longest a line appended as not durable (an outcome record nobody waits for)
 * stays written but unsynced when no durable line comes after it. Under load the next decision
 * record's fdatasync covers it at once.
 */
export const OWED_SYNC_MS = 100;

interface Entry {
  line: string;
  /** fdatasync-ed before `resolve` (with `fsync: always`); otherwise written, and synced soon after. */
  durable: boolean;
  resolve: () => void;
  reject: (e: GatewayError) => void;
}

/**
 * Serialises all sink I/O through one pump: a batch is every line queued since the previous batch
 * started. Order of lines in the file is the order of `append` calls, which is chain order.
 */
export class GroupCommitWriter {
  readonly stats: SinkStats = { records: 0, batches: 0, fsyncs: 0, rotations: 0, bytes: 0 };
  private pending: Entry[] = [];
  private running = false;
  private syncDue = false;
  /** `fsync: always`: lines written without their own fdatasync and not yet covered by one. */
  private syncOwed = false;
  private timer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<{ resolve: () => void; reject: (e: GatewayError) => void }> = [];
  private failure: GatewayError | null = null;
  /**
   * Told of every failure, also of one no pending record sees (a timed sync: `batch` mode, or the
   * owed sync of `always` mode), so the audit log can start its recovery at once.
   */
  onFailure: (e: GatewayError) => void = () => undefined;

  constructor(
    private readonly sinks: Sink[],
    private readonly fsync: FsyncMode,
    private readonly fsyncIntervalMs: number,
  ) {}

  get failed(): GatewayError | null {
    return this.failure;
  }

  /**
   * Resolves once the line is written to every sink and, with `fsync: always` and `durable`,
   * fdatasync-ed. A line that is not `durable` is synced by the next batch that syncs (one
   * fdatasync covers every line written before it) or at most OWED_SYNC_MS after its write.
   */
  append(line: string, durable = true): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line, durable, resolve, reject });
      this.kick();
    });
  }

  /** Resolves when everything queued so far is written and (unless `fsync: never`) synced. */
  flush(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.fsync !== 'never') this.syncDue = true;
    if (!this.running && this.pending.length === 0 && !this.syncDue) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.idleWaiters.push({ resolve, reject });
      this.kick();
    });
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let err: unknown = null;
    try {
      await this.flush();
    } catch (e) {
      err = e;
    }
    for (const s of this.sinks) await s.close().catch(() => {});
    if (err) throw err;
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // A microtask, not an immediate write: records appended in the same tick share the first batch.
    queueMicrotask(() => void this.pump());
  }

  private async pump(): Promise<void> {
    while (this.pending.length > 0 || this.syncDue) {
      const batch = this.pending;
      this.pending = [];
      try {
        if (batch.length > 0) {
          const lines = batch.map((e) => e.line);
          const sync = this.fsync === 'always' && (this.syncDue || batch.some((e) => e.durable));
          for (const s of this.sinks) await s.write(lines, sync, this.stats);
          this.stats.records += batch.length;
          this.stats.batches++;
          if (sync) {
            this.syncDue = false;
            this.syncOwed = false;
          } else if (this.fsync === 'always') this.syncOwed = true;
        }
        if (this.syncDue) {
          this.syncDue = false;
          this.syncOwed = false;
          for (const s of this.sinks) await s.sync(this.stats);
        }
      } catch (e) {
        this.fail(e, batch);
        return;
      }
      for (const e of batch) e.resolve();
      const owed = this.fsync === 'always' && this.syncOwed;
      if (((batch.length > 0 && this.fsync === 'batch') || owed) && !this.timer) {
        this.timer = setTimeout(
          () => {
            this.timer = null;
            // Always mode: nothing to do when a batch that synced came first.
            if (this.fsync === 'always' && !this.syncOwed) return;
            this.syncDue = true;
            this.kick();
          },
          owed ? OWED_SYNC_MS : this.fsyncIntervalMs,
        );
        this.timer.unref();
      }
    }
    this.running = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /**
   * After a failure, once its cause is gone: reopens the sinks (a removed file is created anew, a
   * partial line is cut) and accepts writes again. Throws, staying failed, while the cause persists.
   */
  async recover(): Promise<{ recreated: boolean }> {
    if (this.failure === null) return { recreated: false };
    let recreated = false;
    for (const s of this.sinks) recreated = (await s.reopen()).recreated || recreated;
    this.failure = null;
    return { recreated };
  }

  /**
   * An I/O error stops the writer: every record queued is refused (its call is refused), and
   * nothing is accepted until `recover()` has made the sinks whole again.
   */
  private fail(cause: unknown, batch: Entry[]): void {
    this.failure = auditUnavailable(cause, 'write failed');
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const all = [...batch, ...this.pending];
    this.pending = [];
    for (const e of all) e.reject(this.failure);
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w.reject(this.failure);
    this.running = false;
    this.onFailure(this.failure);
  }
}

function removed(): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error('the audit file was removed while open');
  e.code = 'EREMOVED';
  return e;
}

async function statOrNull(p: string): Promise<fs.Stats | null> {
  try {
    return await fsp.stat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await fsp.rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Read backwards from the end of a file to find (a) bytes after the last newline (a torn write)
 * and (b) the last complete line, whose own hash must verify before we chain onto it.
 */
async function readTail(file: string, size: number): Promise<{ head: ChainHead | null; truncated: number }> {
  const fh = await fsp.open(file, 'r');
  try {
    let chunkSize = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunkSize);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      const lastNl = buf.lastIndexOf(0x0a);
      if (lastNl < 0 && start > 0) {
        chunkSize *= 4;
        continue;
      }
      const truncated = buf.length - (lastNl + 1);
      if (lastNl < 0) return { head: null, truncated }; // no complete line at all
      const prevNl = buf.lastIndexOf(0x0a, lastNl - 1);
      if (prevNl < 0 && start > 0) {
        chunkSize *= 4;
        continue;
      }
      const line = buf.subarray(prevNl + 1, lastNl).toString('utf8');
      return { head: parseHead(line, file), truncated };
    }
  } finally {
    await fh.close();
  }
}

function parseHead(line: string, file: string): ChainHead {
  const m = HASH_TAIL.exec(line);
  let seq: unknown;
  try {
    seq = (JSON.parse(line) as { seq?: unknown }).seq;
  } catch {
    seq = undefined;
  }
  if (!m || typeof seq !== 'number' || !Number.isSafeInteger(seq)) {
    throw new GatewayError(
      'ERR_AUDIT_UNAVAILABLE',
      `audit log ${path.basename(file)} ends with a record that is not an audit record; run "micro-mcp audit verify"`,
    );
  }
  const body = `${line.slice(0, m.index)}}`;
  if (hashOf(body) !== m[1]) {
    throw new GatewayError(
      'ERR_AUDIT_UNAVAILABLE',
      `the last record of audit log ${path.basename(file)} does not match its hash; run "micro-mcp audit verify"`,
    );
  }
  return { seq, hash: m[1]! };
}
