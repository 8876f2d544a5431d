import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { AUDIT_CONFIG_DEFAULTS as DEFAULTS } from '../../schemas/generated/config.js';
import { GatewayError } from '../errors.js';
import { canonicalize, digest, sha256 } from './canonical.js';
import { createRedactor, SecretFinder } from './redact.js';
import type { RedactOptions, Redactor } from './redact.js';
import { AUDIT_FORMAT_VERSION, GENESIS_HASH } from './records.js';
import type {
  AuditReceipt,
  AuditPrincipal,
  AuditRecord,
  DecisionInput,
  DecisionRecord,
  EventInput,
  EventRecord,
  OutcomeInput,
  OutcomeRecord,
  RecordFields,
} from './records.js';
import { FdSink, FileSink, GroupCommitWriter, auditUnavailable } from './sink.js';
import type { ChainHead, FsyncMode, SinkStats } from './sink.js';

/** Options of openAuditLog; what is left out takes the `audit:` config section's schema default. */
export interface AuditOptions {
  /** JSON-lines file; `null` writes no file (then `stdout` must be on). */
  file: string | null;
  /** Also (or only) write records to stdout, for a container log pipeline. */
  stdout?: boolean;
  /** `always`: fdatasync before a write resolves (group-committed). `batch`: every `fsyncIntervalMs`. `never`: leave it to the OS. Default `always`. */
  fsync?: FsyncMode;
  fsyncIntervalMs?: number;
  /**
   * With `fsync: always`, whether an outcome record is fdatasync-ed before its write resolves.
   * false: it is written before it resolves and synced by the next decision record's group commit
   * (or within OWED_SYNC_MS); decision records and events are always synced first. The gateway sets
   * it from `audit.outcome_before_answer` (only then does anyone wait for an outcome's durability).
   * Default true.
   */
  syncOutcomes?: boolean;
  /** Rotate the file before it would exceed this many bytes; 0 disables. Default 64 MiB. */
  rotateBytes?: number;
  /** Rotated files kept (`.1` ... `.N`); 0 keeps all. Default 10. */
  keepFiles?: number;
  /** Log the call's arguments (redacted). Default false: only `arguments_digest`. */
  logArguments?: boolean;
  /** Log tool results (redacted). Default false. */
  logResults?: boolean;
  /** A redactor built elsewhere, or options to build one. */
  redact?: RedactOptions | Redactor;
  /** `labels.id`: this gateway instance. Default a random UUID per process. */
  instanceId?: string;
  /** `labels.version`: the gateway version. */
  version?: string;
  /** Allowed calls awaiting an outcome that are tracked for `close()`; beyond this the oldest are dropped from tracking. Default 100000. */
  maxInflight?: number;
  /** How often a failed audit log tries to resume. Default 1000 ms. */
  recoverIntervalMs?: number;
  /** File descriptor of the stdout sink (tests); default 1. */
  stdoutFd?: number;
  /**
   * The configured service names: an event that names no `service` gets the one a canonical
   * `<service>.<tool>` in its `tool` names, only when it is one of these (never a guess from an
   * exposed name or alias). Default none.
   */
  services?: readonly string[];
  /** Monotonic milliseconds, for the write durations told to `onWritten` (tests). Default performance.now. */
  monotonicMs?: () => number;
}

/** The kind of record a write duration is told for (the metric's label). */
export type WrittenKind = 'decision' | 'outcome' | 'event';

export interface AuditStats extends SinkStats {
  inflight: number;
}

/** Reason messages kept redacted at most (audit-log reasonMessage). */
const REASON_MEMO = 1024;

/** The audit trail of one gateway process. Every write resolves only once the record is durable per `fsync` (outcome records: see `syncOutcomes`). */
export interface AuditLog {
  /**
   * Record a policy decision (allow or deny). Await it BEFORE forwarding the call: a rejection
   * (`ERR_AUDIT_UNAVAILABLE`) means the record could not be written and the call must be refused.
   */
  decision(rec: DecisionInput): Promise<AuditReceipt & { decision_id: string }>;
  /** Record how an allowed call ended, linked by `decision_id`; context is filled from the decision. */
  outcome(rec: OutcomeInput): Promise<AuditReceipt>;
  /** Record an authentication failure, a limit refusal before any decision, or a reload. */
  event(rec: EventInput): Promise<AuditReceipt>;
  /** Wait until everything written so far is on disk (fdatasync unless `fsync: never`). */
  flush(): Promise<void>;
  /**
   * Graceful stop (SIGTERM): refuse new decisions, wait up to `drainMs` (the gateway passes
   * server.shutdown_grace_ms; default 10 s) for in-flight calls' outcomes, record the rest as
   * `cancelled`, flush, close. Idempotent.
   */
  close(opts?: { drainMs?: number }): Promise<void>;
  /** False once a write failed or the log was closed: readiness should report it. */
  readonly healthy: boolean;
  readonly stats: AuditStats;
  /** The redactor in use (also for the operational logger). */
  readonly redactor: Redactor;
  /**
   * Told of each record's write: from the moment it is chained (its formatting included) until its
   * write resolves (durable as `fsync` says) or fails. An outcome's wait for the turn after its answer
   * is not part of it. The gateway feeds micro_mcp_audit_write_duration_seconds from it.
   */
  onWritten: ((kind: WrittenKind, seconds: number) => void) | null;
}

interface Inflight {
  request_id: string | null;
  session_id: string | null;
  principal: AuditPrincipal;
  client: { id: string | null };
  method: string;
  tool: string;
  service: string;
  started: bigint;
  policy_ns: number;
}

const isRedactor = (r: RedactOptions | Redactor | undefined): r is Redactor => typeof (r as Redactor | undefined)?.redact === 'function';

const nsFromUs = (us: number): number => Math.round(us * 1000);

/**
 * Open (or continue) the audit trail. Continues the hash chain of an existing file, repairing a
 * torn last line from a crash (and recording that it did). Rejects with `ERR_AUDIT_UNAVAILABLE`
 * when the file cannot be opened or its last record does not verify, and `ERR_CONFIG_INVALID`
 * when there is no sink at all. The ranges of the options are the config schema's, checked once
 * by loadConfig.
 */
export async function openAuditLog(options: AuditOptions): Promise<AuditLog> {
  const fsync = options.fsync ?? DEFAULTS.fsync;
  // Not a config check (the schema refuses `file: null` without `stdout: true` at load): a log
  // without a sink would acknowledge records it never wrote, so no caller may open one.
  if (!options.file && !options.stdout) throw new GatewayError('ERR_CONFIG_INVALID', 'audit needs a file or stdout: true', { key: 'audit.file' });
  const rotateBytes = options.rotateBytes ?? DEFAULTS.rotate_bytes;
  const keepFiles = options.keepFiles ?? DEFAULTS.keep_files;
  const redactor = isRedactor(options.redact) ? options.redact : createRedactor(options.redact);

  const sinks = [];
  let head: ChainHead | null = null;
  let truncated = 0;
  if (options.file) {
    const opened = await FileSink.open({ path: options.file, rotateBytes, keepFiles, syncDir: fsync !== 'never' });
    sinks.push(opened.sink);
    head = opened.head;
    truncated = opened.truncated;
  }
  if (options.stdout) sinks.push(new FdSink(options.stdoutFd ?? 1));
  const writer = new GroupCommitWriter(sinks, fsync, options.fsyncIntervalMs ?? DEFAULTS.fsync_interval_ms);
  const log = new AuditLogImpl(writer, redactor, head, options);
  if (truncated > 0) {
    await log.event({ type: 'audit_recovered', details: { truncated_bytes: truncated, reason: 'incomplete last line after a crash was removed' } });
  }
  return log;
}

class AuditLogImpl implements AuditLog {
  private seq: number;
  private lastHash: string;
  /** The last record known to be on disk: the chain continues from here after a failed write. */
  private durable: ChainHead;
  /** Reason messages already redacted (reasonMessage). */
  private readonly reasonMemo = new Map<string, string>();
  private recovering: NodeJS.Timeout | null = null;
  /** open: everything accepted; draining: close() waits for outcomes, no new decisions; closed: nothing. */
  private state: 'open' | 'draining' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private readonly inflight = new Map<string, Inflight>();
  private drainWaiter: (() => void) | null = null;
  /** Outcome records nobody waits for before answering, each waiting for the turn after its answer (`afterAnswers`). */
  private afterAnswer: Array<() => void> = [];
  private readonly pino: Logger;
  private captured = '';
  private readonly monotonicMs: () => number;
  onWritten: ((kind: WrittenKind, seconds: number) => void) | null = null;
  private readonly labels: { app: 'micro-mcp'; id: string; version: string };
  private readonly services: ReadonlySet<string>;

  constructor(
    private readonly writer: GroupCommitWriter,
    readonly redactor: Redactor,
    head: ChainHead | null,
    private readonly opts: AuditOptions,
  ) {
    this.seq = head?.seq ?? 0;
    this.lastHash = head?.hash ?? GENESIS_HASH;
    this.durable = { seq: this.seq, hash: this.lastHash };
    this.labels = { app: 'micro-mcp', id: opts.instanceId ?? randomUUID(), version: opts.version ?? '0.0.0' };
    this.services = new Set(opts.services ?? []);
    // A failure no record waits on (a timed sync) must start the recovery too: otherwise the log
    // would refuse every later record without ever trying to resume.
    writer.onFailure = (e) => this.failed(e);
    this.monotonicMs = opts.monotonicMs ?? (() => performance.now());
    // A dedicated pino instance, separate from the operational logger: pino does the formatting,
    // the destination below only captures the line so that sink.ts can own the fd (see there).
    // The level formatter emits the format version as the first member (`_v` sorts before every
    // lowercase key, so the line stays in canonical key order); no time/pid/hostname bindings.
    this.pino = pino(
      {
        level: 'info',
        base: null,
        timestamp: false,
        formatters: { level: () => ({ _v: AUDIT_FORMAT_VERSION }) },
        serializers: {},
      },
      {
        write: (s: string) => {
          this.captured = s;
        },
      },
    );
  }

  get healthy(): boolean {
    return this.state === 'open' && this.writer.failed === null;
  }

  get stats(): AuditStats {
    return { ...this.writer.stats, inflight: this.inflight.size };
  }

  async decision(rec: DecisionInput): Promise<AuditReceipt & { decision_id: string }> {
    if (this.state !== 'open') throw new GatewayError('ERR_AUDIT_UNAVAILABLE', 'audit log is closed');
    const { input, decision } = rec;
    const decision_id = rec.decision_id ?? randomUUID();
    const principal: AuditPrincipal = {
      id: input.principal.id,
      type: input.principal.type,
      issuer: input.principal.issuer,
      groups: input.principal.groups,
      purposes: input.principal.purposes,
    };
    if (rec.token_id !== undefined) principal.token_id = rec.token_id;
    const masked: string[] = [];
    const r: RecordFields<DecisionRecord> = {
      kind: 'decision',
      decision_id,
      request_id: input.context.request_id,
      session_id: input.context.session_id,
      requested_by: input.context.client_ip,
      principal,
      client: input.client,
      method: input.method,
      tool: input.tool.name,
      ...(rec.exposed_name !== undefined ? { exposed_name: rec.exposed_name } : {}),
      service: input.tool.namespace,
      tool_definition_hash: input.tool.definition_hash,
      tool_annotations: input.tool.annotations,
      purpose: input.purpose,
      scopes: input.scopes,
      result: {
        allow: decision.allow,
        // Reason messages are policy-authored text and may quote argument values.
        reasons: decision.reasons.map((x) => ({ engine: x.engine, id: x.id, message: this.reasonMessage(x.message) })),
        obligations: Object.keys(decision.obligations).length > 0 ? this.redacted(decision.obligations, 'obligations', masked, '/result') : undefined,
        // Both engines on the record, allow and deny, with an engine error's cause as a stable code.
        engines: decision.engines?.map((v) => ({
          engine: v.engine,
          allow: v.allow,
          reasons: v.reasons.map((x) => ({ id: x.id, message: this.reasonMessage(x.message) })),
          ...(v.error !== undefined ? { error: v.error } : {}),
        })),
      },
      // The facts decided on (canonical path, host, port, named facts); a URL's query and fragment
      // often carry secrets and are left out.
      resource: Object.keys(input.resource).length > 0 ? this.redacted(recordedFacts(input.resource), 'resource', masked) : undefined,
      bundles: { policy: { revision: decision.policy_revision } },
      metrics: { timer_policy_eval_ns: nsFromUs(decision.eval_us) },
      arguments_digest: input.arguments !== undefined ? digest(input.arguments) : undefined,
      ...(rec.trace ? { trace: { trace_id: rec.trace.trace_id, span_id: rec.trace.span_id } } : {}),
    };
    if (this.opts.logArguments && (input.arguments !== undefined || Object.keys(input.resource).length > 0)) {
      r.input = {
        arguments:
          input.arguments === undefined
            ? undefined
            : this.redacted(
                input.arguments,
                'arguments',
                masked,
                '/input',
                undefined,
                rec.credential !== undefined ? new SecretFinder([rec.credential]) : undefined,
              ),
        resource: this.redacted(input.resource, 'resource', masked, '/input'),
      };
    }
    if (masked.length > 0) r.masked = masked;
    const tracked = decision.allow && input.phase === 'call';
    if (tracked) {
      // Tracked from before the write, so that a close() racing with this write still waits for
      // the call's outcome; untracked again if the write fails (the call will be refused).
      this.track(decision_id, {
        request_id: input.context.request_id,
        session_id: input.context.session_id,
        principal: { id: principal.id, type: principal.type, issuer: principal.issuer },
        client: input.client,
        method: input.method,
        tool: input.tool.name,
        service: input.tool.namespace,
        started: process.hrtime.bigint(),
        policy_ns: nsFromUs(decision.eval_us),
      });
    }
    let receipt: AuditReceipt;
    try {
      receipt = await this.append(r);
    } catch (e) {
      if (tracked) this.untrack(decision_id);
      throw e;
    }
    return { ...receipt, decision_id };
  }

  async outcome(rec: OutcomeInput): Promise<AuditReceipt> {
    const ctx = this.inflight.get(rec.decision_id);
    const masked: string[] = [];
    const total_ns = rec.total_us !== undefined ? nsFromUs(rec.total_us) : ctx ? Number(process.hrtime.bigint() - ctx.started) : undefined;
    const r: RecordFields<OutcomeRecord> = {
      kind: 'outcome',
      decision_id: rec.decision_id,
      outcome: rec.outcome,
      request_id: ctx?.request_id,
      session_id: ctx?.session_id,
      principal: ctx?.principal,
      client: ctx?.client,
      method: ctx?.method,
      tool: ctx?.tool,
      service: ctx?.service,
      error: rec.error ? { code: rec.error.code, message: this.redactor.redactString(rec.error.message) } : undefined,
      metrics: {
        timer_policy_eval_ns: ctx?.policy_ns,
        timer_service_ns: rec.service_us !== undefined ? nsFromUs(rec.service_us) : undefined,
        timer_total_ns: total_ns,
      },
      response_bytes: rec.response_bytes,
      consent: rec.consent,
      data_labels: rec.data_labels !== undefined && rec.data_labels.length > 0 ? rec.data_labels : undefined,
      redacted: rec.redacted !== undefined && Object.keys(rec.redacted).length > 0 ? rec.redacted : undefined,
      output:
        this.opts.logResults && rec.result !== undefined
          ? this.redacted(rec.result, 'result', masked, '', '/output', rec.credential !== undefined ? new SecretFinder([rec.credential]) : undefined)
          : undefined,
    };
    if (masked.length > 0) r.masked = masked;
    const durable = this.opts.syncOutcomes !== false;
    try {
      // Nobody waits for this record before answering: it is formatted and written on the next
      // turn of the event loop, once the answer (sent in this turn's microtasks) is out. Its fields
      // are read now; a record that holds the result itself (`output`) is written now, before the
      // SDK has the result. close() writes the waiting ones first.
      if (!durable && r.output === undefined && this.state === 'open') await this.afterAnswers();
      return await this.append(r, durable);
    } finally {
      this.untrack(rec.decision_id);
    }
  }

  /** Resolves on the next turn of the event loop (one setImmediate for every record of a turn), or at close(). */
  private afterAnswers(): Promise<void> {
    return new Promise((resolve) => {
      if (this.afterAnswer.push(resolve) === 1) setImmediate(() => this.releaseAfterAnswer());
    });
  }

  private releaseAfterAnswer(): void {
    const waiting = this.afterAnswer;
    this.afterAnswer = [];
    for (const go of waiting) go();
  }

  /**
   * A reason's message, redacted. Messages are policy-authored text, the same few on every decision,
   * and the redactor is fixed for the log's life: each is scanned once (the scan was ~1% of the
   * gateway's busy CPU). A policy that writes argument values into its messages makes them vary;
   * the memo is then emptied every REASON_MEMO entries rather than grow.
   */
  private reasonMessage(message: string): string {
    let out = this.reasonMemo.get(message);
    if (out === undefined) {
      if (this.reasonMemo.size >= REASON_MEMO) this.reasonMemo.clear();
      out = this.redactor.redactString(message);
      this.reasonMemo.set(message, out);
    }
    return out;
  }

  /** The service a canonical `<service>.<tool>` names, when it is a configured one; else none. */
  private serviceOf(tool: string | undefined): string | undefined {
    const dot = tool?.indexOf('.') ?? -1;
    if (tool === undefined || dot <= 0) return undefined;
    const service = tool.slice(0, dot);
    return this.services.has(service) ? service : undefined;
  }

  async event(rec: EventInput): Promise<AuditReceipt> {
    const masked: string[] = [];
    const r: RecordFields<EventRecord> = {
      kind: 'event',
      type: rec.type,
      decision_id: rec.decision_id,
      request_id: rec.request_id,
      session_id: rec.session_id,
      requested_by: rec.requested_by,
      principal: rec.principal ? { id: rec.principal.id, type: rec.principal.type, issuer: rec.principal.issuer } : rec.principal,
      client: rec.client,
      method: rec.method,
      tool: rec.tool,
      ...(rec.exposed_name !== undefined ? { exposed_name: rec.exposed_name } : {}),
      service: rec.service ?? this.serviceOf(rec.tool),
      error: rec.error ? { code: rec.error.code, message: this.redactor.redactString(rec.error.message) } : undefined,
      details: rec.details ? this.redacted(rec.details, 'details', masked) : undefined,
    };
    if (masked.length > 0) r.masked = masked;
    return this.append(r);
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(opts: { drainMs?: number } = {}): Promise<void> {
    if (!this.closing) this.closing = this.doClose(opts.drainMs ?? 10_000);
    return this.closing;
  }

  private async doClose(drainMs: number): Promise<void> {
    this.state = 'draining'; // no new decisions; outcomes of running calls are still written
    this.releaseAfterAnswer();
    if (this.recovering !== null) clearTimeout(this.recovering);
    this.recovering = null;
    if (this.inflight.size > 0 && this.writer.failed === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, drainMs);
        this.drainWaiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.drainWaiter = null;
      // Calls still running after the drain deadline are cut off by the shutdown: say so, so that
      // no allowed decision is left without an outcome.
      const left = [...this.inflight.keys()];
      await Promise.allSettled(
        left.map((id) =>
          this.outcome({
            decision_id: id,
            outcome: 'cancelled',
            error: { code: 'ERR_SERVICE_UNAVAILABLE', message: 'gateway shut down before the call completed' },
          }),
        ),
      );
    }
    this.state = 'closed';
    await this.writer.close();
  }

  private untrack(id: string): void {
    if (this.inflight.delete(id) && this.inflight.size === 0) this.drainWaiter?.();
  }

  private track(id: string, ctx: Inflight): void {
    const max = this.opts.maxInflight ?? 100_000;
    if (this.inflight.size >= max) {
      // Bounded: a gateway that never reports outcomes must not grow without limit. Oldest first.
      const oldest = this.inflight.keys().next().value;
      if (oldest !== undefined) this.inflight.delete(oldest);
    }
    this.inflight.set(id, ctx);
  }

  /**
   * Redact `value` with config paths rooted at `root`; record the censored members as JSON
   * Pointers into the written record (`prefix` + pointer, or `replaceRoot` for the root itself).
   * Redaction replaces values inside a container, never the container, so the type holds.
   */
  private redacted<T>(value: T, root: string, masked: string[], prefix = '', replaceRoot?: string, secrets?: SecretFinder): T {
    const r = this.redactor.redact(value, root, secrets);
    for (const p of r.masked) masked.push(replaceRoot !== undefined ? replaceRoot + p.slice(root.length + 1) : prefix + p);
    return r.value as T;
  }

  /**
   * Chain, format and queue one record. Everything up to `writer.append` is synchronous, so the
   * order of seq numbers is the order of lines in the file.
   */
  private append(fields: RecordFields, durable = true): Promise<AuditReceipt> {
    if (this.writer.failed) return Promise.reject(this.writer.failed);
    if (this.state === 'closed') return Promise.reject(new GatewayError('ERR_AUDIT_UNAVAILABLE', 'audit log is closed'));
    const t0 = this.monotonicMs();
    const kind: WrittenKind = fields.kind === 'decision' || fields.kind === 'outcome' ? fields.kind : 'event';
    const seq = this.seq + 1;
    // `_v` comes from pino's level formatter and `hash` from below, both at their fixed places. The
    // chain members are set on the caller's fresh object rather than a copy: the copy was the largest
    // item of append in the gateway's profile (~5 µs per record).
    const chained: RecordFields & Partial<Pick<AuditRecord, 'seq' | 'prev_hash' | 'timestamp' | 'labels'>> = fields;
    chained.seq = seq;
    chained.prev_hash = this.lastHash;
    chained.timestamp = new Date().toISOString();
    chained.labels = this.labels;
    let body: string;
    try {
      this.captured = '';
      this.pino.info(canonicalize(chained) as Record<string, unknown>);
      body = this.captured.endsWith('}\n') ? this.captured.slice(0, -1) : '';
      if (body === '') throw new Error('pino produced no line');
    } catch (e) {
      return Promise.reject(auditUnavailable(e, 'cannot format the record'));
    }
    // The hash covers the exact bytes written minus the hash member; since the line is canonical
    // JSON, that equals sha256 of the canonical JSON of the parsed record without `hash`.
    const hash = sha256(body);
    const line = `${body.slice(0, -1)},"hash":"${hash}"}\n`;
    this.seq = seq;
    this.lastHash = hash;
    return this.writer.append(line, durable).then(
      () => {
        if (seq > this.durable.seq) this.durable = { seq, hash };
        this.onWritten?.(kind, (this.monotonicMs() - t0) / 1000);
        return { seq, hash };
      },
      (e: unknown) => {
        this.onWritten?.(kind, (this.monotonicMs() - t0) / 1000);
        this.failed(e);
        throw e;
      },
    );
  }

  /**
   * A write failed (disk full, file removed, I/O error): every record queued with it was refused,
   * so the chain in memory goes back to the last record on disk, and a retry every
   * `recoverIntervalMs` reopens the file and writes an `audit_resumed` record. Until one succeeds,
   * `healthy` is false (readiness says so) and every decision is refused.
   */
  private failed(e: unknown): void {
    if (this.recovering !== null || this.state === 'closed') return;
    this.seq = this.durable.seq;
    this.lastHash = this.durable.hash;
    const since = Date.now();
    const reason = (e as { data?: { reason?: unknown } }).data?.reason;
    const retry = () => {
      this.recovering = setTimeout(() => void attempt(), this.opts.recoverIntervalMs ?? 1000);
      this.recovering.unref();
    };
    const attempt = async () => {
      this.recovering = null;
      if (this.state === 'closed') return;
      try {
        const { recreated } = await this.writer.recover();
        await this.event({
          type: 'audit_resumed',
          details: { down_ms: Date.now() - since, ...(typeof reason === 'string' ? { reason } : {}), file_recreated: recreated },
        });
      } catch {
        // Still failing. A failed write has already scheduled the next attempt; a failed reopen has not.
        if (this.recovering === null) retry();
      }
    };
    retry();
  }
}

/** Resource facts as the decision record keeps them: a url without its query and fragment. */
function recordedFacts(resource: Record<string, unknown>): Record<string, unknown> {
  if (typeof resource.url !== 'string') return resource;
  let url = resource.url;
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    url = u.href;
  } catch {
    url = url.split(/[?#]/)[0] ?? '';
  }
  return { ...resource, url };
}
