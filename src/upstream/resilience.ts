/**
 * Service resilience: a circuit breaker and a concurrency cap per service (ServiceGuard), and the
 * restart backoff with jitter. Time and randomness are injected (Clock, random), so the state
 * machines are tested by driving time, not by waiting for it.
 *
 * Breaker: closed -> open after `failures` consecutive failures (a timeout, an unreachable or
 * crashed service, an internal error the service reports); open refuses every call at once for
 * `cooldown_ms`; then half-open lets exactly one probe call through (the others are refused as if
 * open): its success closes the breaker, its failure opens it for another cool-down. A tool error,
 * a denied or cancelled call says nothing about the service's health and counts neither way.
 *
 * Concurrency cap: at most `max_concurrent` calls in flight to the service; one more is refused at
 * once (ERR_SERVICE_BUSY) rather than queued, so a slow service cannot hold agents' requests (and
 * their memory) in the gateway; the agent retries.
 */
import { ProtocolError } from '@modelcontextprotocol/client';
import type { Clock } from '../clock.js';
import { GatewayError, isGatewayError } from '../errors.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface GuardOptions {
  /** Calls in flight to the service at once; 0 = no cap. */
  maxConcurrent: number;
  /** Consecutive failures that open the breaker; 0 = no breaker. */
  failures: number;
  /** How long an open breaker refuses before it lets one probe through. */
  cooldownMs: number;
}

/** How a forwarded call ended, for the breaker. */
export type Verdict = 'success' | 'failure' | 'neutral';

/** A call admitted by the guard; `done` once, with how it ended. */
export interface GuardPass {
  readonly probe: boolean;
  done(v: Verdict): void;
}

/** The guard's answer: a pass, or the refusal to give the agent (ERR_SERVICE_BUSY, ERR_SERVICE_CIRCUIT_OPEN). */
export type Admission = { pass: GuardPass } | { refused: GatewayError; cause: 'service_busy' | 'circuit_open' };

export class ServiceGuard {
  private st: BreakerState = 'closed';
  private consecutive = 0;
  private openedAt = 0;
  private probing = false;
  private inFlight = 0;

  constructor(
    readonly service: string,
    private readonly opts: GuardOptions,
    private readonly clock: Clock,
    /** Told of every breaker transition (logged by the connection). */
    private readonly onChange: (state: BreakerState, failures: number) => void = () => undefined,
  ) {}

  /** The breaker's state now (an open breaker whose cool-down has passed reads as half-open). */
  get state(): BreakerState {
    if (this.st === 'open' && this.clock.now() - this.openedAt >= this.opts.cooldownMs) this.transition('half_open');
    return this.st;
  }

  /** Calls in flight through this guard. */
  get active(): number {
    return this.inFlight;
  }

  /** Admits one call or refuses it at once. */
  admit(): Admission {
    const state = this.opts.failures > 0 ? this.state : 'closed';
    if (state === 'open' || (state === 'half_open' && this.probing)) {
      const retryAfterS = Math.max(1, Math.ceil((this.openedAt + this.opts.cooldownMs - this.clock.now()) / 1000));
      return {
        cause: 'circuit_open',
        refused: new GatewayError(
          'ERR_SERVICE_CIRCUIT_OPEN',
          `service "${this.service}" is failing; calls are refused for now (circuit breaker open), retry later`,
          { service: this.service, ...(state === 'open' ? { retry_after_s: retryAfterS } : {}) },
        ),
      };
    }
    if (this.opts.maxConcurrent > 0 && this.inFlight >= this.opts.maxConcurrent) {
      return {
        cause: 'service_busy',
        refused: new GatewayError('ERR_SERVICE_BUSY', `service "${this.service}" has ${this.opts.maxConcurrent} calls in flight; retry shortly`, {
          service: this.service,
          max_concurrent: this.opts.maxConcurrent,
        }),
      };
    }
    const probe = state === 'half_open';
    if (probe) this.probing = true;
    this.inFlight++;
    let ended = false;
    return {
      pass: {
        probe,
        done: (v) => {
          if (ended) return;
          ended = true;
          this.inFlight--;
          this.ended(v, probe);
        },
      },
    };
  }

  private ended(v: Verdict, probe: boolean): void {
    if (probe) this.probing = false;
    if (this.opts.failures === 0 || v === 'neutral') return;
    if (v === 'success') {
      this.consecutive = 0;
      if (this.st !== 'closed') this.transition('closed');
      return;
    }
    this.consecutive++;
    // A failed probe opens it again; so does the n-th failure in a row (calls admitted before it
    // opened may still end while it is open: they do not extend the cool-down).
    if (probe || (this.st === 'closed' && this.consecutive >= this.opts.failures)) {
      this.openedAt = this.clock.now();
      this.transition('open');
    }
  }

  private transition(to: BreakerState): void {
    if (this.st === to) return;
    this.st = to;
    this.onChange(to, this.consecutive);
  }
}

/**
 * What a forwarded call's end says about the service's health: a timeout, an unreachable or
 * crashed service or an internal error is a failure; a cancellation, a denial, a tool error, a
 * too-large answer or a protocol error about the request itself says nothing (neutral).
 */
export function verdictOf(e: unknown): Verdict {
  if (isGatewayError(e)) {
    if (e.data?.cancelled === true) return 'neutral';
    return e.code === 'ERR_SERVICE_TIMEOUT' || e.code === 'ERR_SERVICE_UNAVAILABLE' ? 'failure' : 'neutral';
  }
  if (e instanceof ProtocolError) return e.code === -32603 ? 'failure' : 'neutral';
  return 'failure';
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/**
 * Exponential backoff with jitter for restarts and reconnects: the n-th wait is drawn uniformly from
 * [d/2, d] with d = min(max, initial x 2^n) ("equal jitter"): never less than half the schedule,
 * and replicas that lost a service together do not retry in lockstep.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly opts: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const d = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(d / 2 + (d / 2) * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}
