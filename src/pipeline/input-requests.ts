/**
 * Input requests raised by a service during a call (2025-era elicitation and sampling), carried to
 * the agent as 2026-era `input_required` rounds. The service's call stays open while the agent
 * answers; the agent's retry brings back a signed, principal-bound requestState naming the parked
 * call, and its answer (validated against the spec's result type) is handed to the service. Agents
 * on 2025 sessions get the same rounds through the SDK's legacy shim.
 */
import { randomUUID } from 'node:crypto';
import { specTypeSchemas } from '@modelcontextprotocol/server';
import { ProtocolError } from '@modelcontextprotocol/server';
import type { ClientCapabilities, CreateMessageResult, ElicitResult, ListRootsResult, LoggingMessageNotificationParams } from '@modelcontextprotocol/server';
import type { OutcomeInput } from '../audit/records.js';
import type { Clock } from '../clock.js';
import type { Obligations } from '../types.js';
import type { InteractionAnswer, InteractionRequest, InteractionSink } from '../upstream/connection.js';
import { missingCapability } from './capabilities.js';

/** Writes the outcome record of the decision a call was forwarded under. */
export type Finish = (o: Omit<OutcomeInput, 'decision_id'>) => Promise<void>;

interface Waiting {
  req: InteractionRequest;
  /** Validates the agent's raw answer against the request's result type and hands it to the service. */
  settle(raw: unknown): void;
  reject(e: Error): void;
}

export type RoundResult<T> = { kind: 'done'; value: T } | { kind: 'error'; error: unknown } | { kind: 'interaction'; key: string; req: InteractionRequest };

/** Validates an agent's answer: the SDK hands `inputResponses` over unvalidated (untrusted input). */
function parseAnswer<R extends InteractionRequest>(req: R, raw: unknown): InteractionAnswer<R> | undefined;
function parseAnswer(req: InteractionRequest, raw: unknown): ElicitResult | CreateMessageResult | ListRootsResult | undefined {
  return parseAnswerTo(req.method, raw);
}
function parseAnswerTo(method: InteractionRequest['method'], raw: unknown): ElicitResult | CreateMessageResult | ListRootsResult | undefined {
  const r =
    method === 'elicitation/create'
      ? specTypeSchemas.ElicitResult['~standard'].validate(raw)
      : method === 'roots/list'
        ? specTypeSchemas.ListRootsResult['~standard'].validate(raw)
        : specTypeSchemas.CreateMessageResult['~standard'].validate(raw);
  return 'value' in r && r.issues === undefined ? r.value : undefined;
}

/** The result type an input request's answer must be (named in errors). */
export const ANSWER_TYPE: Record<InteractionRequest['method'], string> = {
  'elicitation/create': 'ElicitResult',
  'sampling/createMessage': 'CreateMessageResult',
  'roots/list': 'ListRootsResult',
};

/** Whether `raw` is a valid answer to an input request of this method (an agent's answer is untrusted). */
export function isValidAnswer(method: InteractionRequest['method'], raw: unknown): boolean {
  return parseAnswerTo(method, raw) !== undefined;
}

/** One forwarded call (whose service answers with T) and the interactions it raised. */
export class PendingCall<T> implements InteractionSink {
  readonly id = randomUUID();
  private readonly queue: Waiting[] = [];
  private current: Waiting | undefined;
  private wake: (() => void) | undefined;
  private settled: RoundResult<T> | undefined;
  private seq = 0;
  /** The decision's obligations on the result (redact, max_bytes), applied when the call ends. */
  obligations: Obligations = {};
  /** The agent's token, to find it in the result (ResultFilterPort); never recorded. */
  credential: string | undefined;
  /** The 2025 session the call belongs to: its result's labels become facts of the session's later calls. */
  sessionId: string | null = null;
  /** Progress of the service goes to whichever agent request is the active round. */
  progress: ((p: { progress: number; total?: number; message?: string }) => void) | undefined;
  /** Log messages of the service attributed to this call go to the active round's agent request too. */
  log: ((p: LoggingMessageNotificationParams) => void) | undefined;
  /** What the calling agent declared: an input request it cannot take is refused to the service. */
  capabilities: ClientCapabilities = {};
  /** Whether the service's config forwards roots (else a roots/list is refused naming the config, not the agent). */
  forwardsRoots = false;

  constructor(
    readonly principalId: string,
    readonly tool: string,
    readonly controller: AbortController,
    /** The call's outcome record; written once, when the service's call ends (across rounds). */
    readonly finish: Finish,
  ) {}

  /** Attaches the forwarded request's promise; called once. */
  track(p: Promise<T>): void {
    p.then(
      (value) => this.settle({ kind: 'done', value }),
      (error: unknown) => this.settle({ kind: 'error', error }),
    );
  }

  interact<R extends InteractionRequest>(req: R): Promise<InteractionAnswer<R>> {
    const missing = missingCapability(this.capabilities, req);
    // The service asked for something the agent never declared: it must not reach the agent (MCP: a
    // server may only send requests for capabilities the client declared).
    if (missing !== undefined)
      return Promise.reject(new ProtocolError(-32601, `${req.method} refused by the gateway: the calling agent did not declare ${missing}`));
    return new Promise((resolve, reject) => {
      this.queue.push({
        req,
        settle: (raw) => {
          const answer = parseAnswer(req, raw);
          if (answer === undefined) reject(new Error('the agent did not give a valid answer to the input request'));
          else resolve(answer);
        },
        reject,
      });
      this.wake?.();
    });
  }

  /** Waits for the call to finish or to need input from the agent, whichever comes first. */
  async next(): Promise<RoundResult<T>> {
    for (;;) {
      if (this.settled) return this.settled;
      const w = this.queue.shift();
      if (w) {
        this.current = w;
        return { kind: 'interaction', key: `gw${++this.seq}`, req: w.req };
      }
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }

  /** The method of the input request the agent is being asked now, if any. */
  get asking(): InteractionRequest['method'] | undefined {
    return this.current?.req.method;
  }

  /** The agent's answer to the current interaction (raw: validated here). */
  answer(raw: unknown): void {
    const w = this.current;
    this.current = undefined;
    if (!w) return;
    if (raw === undefined) w.reject(new Error('the agent did not answer the input request'));
    else w.settle(raw);
  }

  /** Abandons the call: the service's pending request is refused and the forwarded call aborted. */
  abandon(reason: string): void {
    this.current?.reject(new Error(reason));
    for (const w of this.queue.splice(0)) w.reject(new Error(reason));
    this.controller.abort();
  }

  private settle(r: RoundResult<T>): void {
    if (this.settled) return;
    this.settled = r;
    this.wake?.();
  }
}

/** Parked calls waiting for an agent's retry, each with a time limit. */
export class ParkedCalls<T> {
  private readonly parked = new Map<string, { call: PendingCall<T>; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs: number,
    private readonly clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>,
  ) {}

  park(call: PendingCall<T>): void {
    const timer = this.clock.setTimeout(() => {
      this.parked.delete(call.id);
      call.abandon('input request expired');
      void call.finish({ outcome: 'cancelled', error: { code: 'ERR_INPUT_STATE_INVALID', message: 'the agent did not answer the input request in time' } });
    }, this.ttlMs);
    this.parked.set(call.id, { call, timer });
  }

  /** Takes a parked call out (it is active again until it parks anew); undefined for another principal's. */
  take(id: string, principalId: string): PendingCall<T> | undefined {
    const p = this.parked.get(id);
    if (!p || p.call.principalId !== principalId) return undefined;
    this.clock.clearTimeout(p.timer);
    this.parked.delete(id);
    return p.call;
  }

  get size(): number {
    return this.parked.size;
  }

  /** Abandons every parked call (shutdown). */
  clear(): void {
    for (const { call, timer } of this.parked.values()) {
      this.clock.clearTimeout(timer);
      call.abandon('gateway shutting down');
    }
    this.parked.clear();
  }
}
