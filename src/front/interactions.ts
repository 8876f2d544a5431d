/**
 * Server-to-client requests (2025-era elicitation and sampling) from a service, carried to the agent as
 * 2026-era `input_required` rounds. The service's call stays open while the agent answers; the agent's
 * retry brings back a signed, principal-bound requestState naming the parked call, and its answer is
 * handed to the service. Agents on 2025 sessions get the same rounds through the SDK's legacy shim.
 */
import { randomUUID } from 'node:crypto';
import type { InteractionRequest, InteractionSink } from '../catalog/service.js';

interface Waiting {
  req: InteractionRequest;
  resolve: (r: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export type RoundResult =
  | { kind: 'done'; value: Record<string, unknown> }
  | { kind: 'error'; error: unknown }
  | { kind: 'interaction'; key: string; req: InteractionRequest };

/** One forwarded call and the interactions it raised. */
export class PendingCall implements InteractionSink {
  readonly id = randomUUID();
  private readonly queue: Waiting[] = [];
  private current: Waiting | undefined;
  private notify: (() => void) | undefined;
  private settled: RoundResult | undefined;
  private seq = 0;
  /** Progress of the service goes to whichever agent request is the active round. */
  progress: ((p: { progress: number; total?: number; message?: string }) => void) | undefined;

  constructor(
    readonly principalId: string,
    readonly tool: string,
    readonly controller: AbortController,
  ) {}

  /** Attaches the forwarded request's promise; called once. */
  track(p: Promise<Record<string, unknown>>): void {
    p.then(
      (value) => this.settle({ kind: 'done', value }),
      (error: unknown) => this.settle({ kind: 'error', error }),
    );
  }

  interact(req: InteractionRequest): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      this.notify?.();
    });
  }

  /** Waits for the call to finish or to need input from the agent, whichever comes first. */
  async next(): Promise<RoundResult> {
    for (;;) {
      if (this.settled) return this.settled;
      const w = this.queue.shift();
      if (w) {
        this.current = w;
        return { kind: 'interaction', key: `gw${++this.seq}`, req: w.req };
      }
      await new Promise<void>((r) => (this.notify = r));
      this.notify = undefined;
    }
  }

  /** The agent's answer to the current interaction. */
  answer(response: Record<string, unknown> | undefined): void {
    const w = this.current;
    this.current = undefined;
    if (!w) return;
    if (response === undefined) w.reject(new Error('the agent did not answer the input request'));
    else w.resolve(response);
  }

  /** Abandons the call: the service's pending request is refused and the forwarded call aborted. */
  abandon(reason: string): void {
    this.current?.reject(new Error(reason));
    for (const w of this.queue.splice(0)) w.reject(new Error(reason));
    this.controller.abort();
  }

  private settle(r: RoundResult): void {
    if (this.settled) return;
    this.settled = r;
    this.notify?.();
  }
}

/** Parked calls waiting for an agent's retry, with a time limit. */
export class ParkedCalls {
  private readonly parked = new Map<string, { call: PendingCall; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs: number,
    private readonly onExpired: (call: PendingCall) => void = () => undefined,
  ) {}

  park(call: PendingCall): void {
    const timer = setTimeout(() => {
      this.parked.delete(call.id);
      call.abandon('input request expired');
      this.onExpired(call);
    }, this.ttlMs);
    timer.unref();
    this.parked.set(call.id, { call, timer });
  }

  /** Takes a parked call out (it is active again until it parks anew). */
  take(id: string, principalId: string): PendingCall | undefined {
    const p = this.parked.get(id);
    if (!p || p.call.principalId !== principalId) return undefined;
    clearTimeout(p.timer);
    this.parked.delete(id);
    return p.call;
  }

  get size(): number {
    return this.parked.size;
  }

  clear(): void {
    for (const { call, timer } of this.parked.values()) {
      clearTimeout(timer);
      call.abandon('gateway shutting down');
    }
    this.parked.clear();
  }
}
