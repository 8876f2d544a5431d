/**
 * Event records for what the gateway refuses or changes outside a call's decision: an
 * authentication failure, a step-up refusal, a request over an edge limit, a probe refused before
 * any decision (unknown tool, header/body mismatch, forged or foreign state, cursor or session), a
 * policy reload. Built here, like every audit record; callers hand over the facts they know.
 *
 * Probing is on the record, but a flood cannot fill the disk: per caller (principal, else client
 * address) and type, the first `burst` refusals of a window are written one by one; the rest are
 * counted and written as one `refusals_suppressed` record when the window ends (or at close).
 * A refusal is written before the refusing answer goes out; a write that fails is logged (the answer
 * stays a refusal either way).
 */
import type { Clock } from '../clock.js';
import type { GatewayError } from '../errors.js';
import type { Logger, Principal } from '../types.js';
import type { EventInput } from './records.js';

/** What is known about a refused request (the principal only when the token itself was valid). */
export interface RefusalFacts {
  requestId: string;
  clientIp: string | null;
  principal?: Principal;
  method?: string;
  /** The canonical <service>.<tool> when known, else the name as asked for. */
  tool?: string;
  /** The name the agent used, when it differs from the canonical `tool` (services.<name>.expose). */
  exposedName?: string;
  /** The service that owns `tool`, when the caller knows it (the record's `service`). */
  service?: string;
}

export interface RefusalOptions {
  /** Refusals of one type from one caller written one by one per window. Default 10. */
  burst?: number;
  /** The aggregation window. Default 60 s. */
  windowMs?: number;
  clock: Clock;
  /** Told of every limit refusal, written or suppressed (metrics count them by cause). */
  onLimitRefused?: (limit: string) => void;
}

interface Tally {
  written: number;
  suppressed: number;
  since: number;
  sample: EventInput;
}

export class Refusals {
  private readonly tallies = new Map<string, Tally>();
  private readonly burst: number;
  private readonly windowMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly audit: { event(rec: EventInput): Promise<unknown> },
    private readonly log: Logger,
    private readonly opts: RefusalOptions,
  ) {
    this.burst = opts.burst ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
  }

  /** A missing, invalid or expired token, or one that lacks the scope a call needs (step-up). */
  authFailure(e: GatewayError, f: RefusalFacts): Promise<void> {
    return this.refused(f, { type: 'auth_failure', ...this.about(f), error: { code: e.code, message: e.message } });
  }

  /** A request refused at the edge by a size, rate or connection limit, before any decision. */
  limitRefused(limit: string, f: RefusalFacts): Promise<void> {
    this.opts.onLimitRefused?.(limit);
    return this.refused(f, { type: 'limit_refused', ...this.about(f), details: { limit } }, limit);
  }

  /** A request refused before any decision: what it tried and why it was refused (a stable code). */
  probeRefused(f: RefusalFacts, why: { code: string; message: string }): Promise<void> {
    return this.refused(f, { type: 'probe_refused', ...this.about(f), error: why }, why.code);
  }

  /** A policy set swapped in by hot reload. */
  policyReloaded(info: { revision: string; previous: string }): Promise<void> {
    return this.write({ type: 'policy_reload', details: info });
  }

  /** A policy edit that did not compile or validate; the last good set keeps running. */
  policyReloadRejected(e: GatewayError): Promise<void> {
    // Each problem with its engine, file, line and reason (ERR_POLICY_COMPILE carries them).
    const problems = Array.isArray(e.data?.problems) ? e.data.problems : undefined;
    return this.write({ type: 'policy_reload', error: { code: e.code, message: e.message }, details: { ok: false, ...(problems ? { problems } : {}) } });
  }

  /** Writes what is still counted (shutdown). */
  async close(): Promise<void> {
    if (this.timer) this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush(Number.POSITIVE_INFINITY);
  }

  private about(f: RefusalFacts): Omit<EventInput, 'type'> {
    return {
      request_id: f.requestId,
      requested_by: f.clientIp,
      ...(f.principal ? { principal: { id: f.principal.id, type: f.principal.type, issuer: f.principal.issuer }, client: f.principal.client } : {}),
      ...(f.method ? { method: f.method } : {}),
      ...(f.tool ? { tool: f.tool } : {}),
      ...(f.exposedName ? { exposed_name: f.exposedName } : {}),
      ...(f.service ? { service: f.service } : {}),
    };
  }

  private refused(f: RefusalFacts, rec: EventInput, reason = ''): Promise<void> {
    const who = f.principal ? `p\u0000${f.principal.issuer}\u0000${f.principal.id}` : `ip\u0000${f.clientIp ?? 'unknown'}`;
    const key = `${rec.type}\u0000${reason}\u0000${who}`;
    const now = this.opts.clock.now();
    let t = this.tallies.get(key);
    if (t !== undefined && now - t.since >= this.windowMs) {
      void this.flushOne(key, t);
      t = undefined;
    }
    if (t === undefined) {
      t = { written: 0, suppressed: 0, since: now, sample: rec };
      this.tallies.set(key, t);
      this.scheduleFlush();
    }
    if (t.written < this.burst) {
      t.written++;
      return this.write(rec);
    }
    t.suppressed++;
    return Promise.resolve();
  }

  private scheduleFlush(): void {
    if (this.timer) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush(this.opts.clock.now()).then(() => {
        if (this.tallies.size > 0) this.scheduleFlush();
      });
    }, this.windowMs);
  }

  /** Ends every window older than `now` (all of them for +Infinity). */
  private async flush(now: number): Promise<void> {
    const ended = [...this.tallies].filter(([, t]) => now - t.since >= this.windowMs || now === Number.POSITIVE_INFINITY);
    await Promise.all(ended.map(([key, t]) => this.flushOne(key, t)));
  }

  private flushOne(key: string, t: Tally): Promise<void> {
    if (this.tallies.get(key) === t) this.tallies.delete(key);
    if (t.suppressed === 0) return Promise.resolve();
    const { request_id: _r, ...who } = t.sample;
    return this.write({
      ...who,
      type: 'refusals_suppressed',
      details: {
        refused_type: t.sample.type,
        suppressed: t.suppressed,
        written: t.written,
        since: new Date(t.since).toISOString(),
        window_s: Math.round(this.windowMs / 1000),
      },
    });
  }

  private async write(rec: EventInput): Promise<void> {
    try {
      await this.audit.event(rec);
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: rec.type, ...(rec.request_id ? { request_id: rec.request_id } : {}) }, 'audit event write failed');
    }
  }
}
