/**
 * The call phase of the data path (docs/ARCHITECTURE.md): resolve -> policy input -> decide ->
 * audit decision -> limits -> mint credential -> forward -> outcome. Era-neutral: the MCP face calls
 * it for `tools/call`, `prompts/get` and `resources/read` from either era with a CallContext.
 */
import { randomUUID } from 'node:crypto';
import { inputRequired, isInputRequiredResult, ProtocolError, specTypeSchemas } from '@modelcontextprotocol/server';
import type {
  CallToolRequest,
  CompleteRequest,
  CompleteResult,
  GetPromptRequest,
  InputRequiredResult,
  LoggingLevel,
  ReadResourceRequest,
  ServerContext,
  SubscribeRequest,
} from '@modelcontextprotocol/server';
import { CREDENTIAL_META_KEY, LABELS_META_KEY, PURPOSE_META_KEY } from '../../schemas/contracts/service-credential.js';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { GatewayError, isGatewayError, toProtocolError } from '../errors.js';
import { type CallLimiter, type ReplicaCalls, ReplicaUnreachable } from '../state/state.js';
import { buildPolicyInput, decisionReach, failedDecision, isWellFormedJson, type ResourceExtractor } from '../policy/input.js';
import type { Decision, Logger, PolicyInput, RedactCategory, ToolFacts } from '../types.js';
import type { Catalog } from '../upstream/catalog.js';
import { verdictOf } from '../upstream/resilience.js';
import type { Forwarded, ForwardMethod, ForwardParams, ForwardResult, InteractionRequest } from '../upstream/connection.js';
import type { InFlight } from './in-flight.js';
import { TurnBatch } from './turn-batch.js';
import { CONSENT_KEY, type ConsentGate, type ConsentResult, type ConsentState, isConsentState, summarize } from './consent.js';
import { ANSWER_TYPE, isValidAnswer, ParkedCalls, PendingCall, type Finish } from './input-requests.js';
import { atOrAbove } from './log-levels.js';
import { missingCapability, relayedCapabilities } from './capabilities.js';
import { SessionLabels, serviceLabels } from './labels.js';
import type { AuditPort, CallContext, CallObserver, CallWatch, CredentialPort, PolicyPort, ProbePort, ResultFilterPort, StatePort } from './ports.js';

export interface CallPipelineDeps {
  catalog: Catalog;
  policy: PolicyPort;
  audit: AuditPort;
  credentials: CredentialPort;
  state: StatePort;
  /** Applies the decision's `redact` obligation to results. */
  filter: ResultFilterPort;
  /** Asks for and keeps the user's consent where a decision obliges it. */
  consent: ConsentGate;
  /** Where refusals before any decision (unknown names, bad state) are recorded. */
  probes: ProbePort;
  log: Logger;
  /** Rate and concurrency limits, checked after an allow (a refusal is an outcome of that decision). */
  limiter: CallLimiter;
  inFlight: InFlight;
  clock: Clock;
  /** Resource-fact extractors by service, from each service's `resource` declaration (none: resource {}). */
  resources?: ReadonlyMap<string, ResourceExtractor>;
  /** How long a call that waits for an agent's input stays parked. Default 10 minutes. */
  inputTtlMs?: number;
  /** Hold each answer until its outcome record is written (audit.outcome_before_answer). Default false. */
  outcomeBeforeAnswer?: boolean;
  /** Metrics and traces (src/obs); none: nothing is watched. */
  observer?: CallObserver;
  /** This replica's name, written into parked calls' requestState so a retry at another replica finds it. */
  replicaId?: string;
  /** The other replicas: an agent's answer for a call parked at one of them is carried there. */
  peers?: ReplicaCalls;
}

/** What one round of a forwarded call needs from the agent's request: cancellation, where progress and log messages go. */
interface RoundContext {
  signal: AbortSignal;
  progress?: (p: { progress: number; total?: number; message?: string }) => Promise<void>;
  /** The agent's log threshold (none: the service's log messages are not relayed) and where they go. */
  level?: LoggingLevel;
  message?: (params: { level: LoggingLevel; data: unknown; logger?: string }) => Promise<void>;
}

/**
 * What the pipeline uses of the request it serves: a handler's ServerContext has it, and so does a
 * 2026-07-28 subscriptions/listen request, which the SDK serves without a handler.
 */
export interface RequestScope {
  mcpReq: Pick<ServerContext['mcpReq'], '_meta' | 'signal' | 'notify'>;
}

function roundContext(ctx: RequestScope, level: LoggingLevel | undefined): RoundContext {
  const progressToken = ctx.mcpReq._meta?.progressToken;
  return {
    signal: ctx.mcpReq.signal,
    ...(level !== undefined ? { level, message: (params) => ctx.mcpReq.notify({ method: 'notifications/message', params }) } : {}),
    ...(progressToken === undefined
      ? {}
      : {
          progress: (p: { progress: number; total?: number; message?: string }) =>
            ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, ...p } }),
        }),
  };
}

/** An agent's answer for a call parked at another replica, as that replica receives it. */
interface ResumeRequest {
  op: 'resume';
  id: string;
  principal: string;
  answer?: unknown;
}

/** What the replica holding a parked call sends back: the round's result, or its error. */
type ResumeReply =
  | { result: unknown }
  | { error: { protocol: { code: number; message: string; data?: unknown } } }
  | { error: { gateway: 'ERR_INPUT_STATE_INVALID'; message: string } };

function isResumeRequest(b: unknown): b is ResumeRequest {
  if (typeof b !== 'object' || b === null) return false;
  const r = b as Record<string, unknown>;
  return r.op === 'resume' && typeof r.id === 'string' && typeof r.principal === 'string';
}

/** requestState payloads the pipeline signs for the agent to bring back (verified before a handler runs). */
export type PipelineState =
  | { k: 'svc'; tool: string; inner?: string; a?: Record<string, string> } // a 2026 service's input_required, wrapped (a: each input request's method by key)
  | { k: 'parked'; tool: string; id: string; r?: string } // a 2025 service's elicitation, waiting for the agent at replica r
  | ConsentState; // the gateway's own consent question, waiting for the agent's answer

/** One request on its way to a service. */
interface Forward<M extends ForwardMethod> {
  method: M;
  service: string;
  /** The name the agent used: the exposed tool or prompt name, or the resource URI (policy and records use `facts.name`). */
  label: string;
  facts: ToolFacts;
  args: Record<string, unknown>;
  params: ForwardParams<M>;
  /**
   * Set for interactive calls (tools and prompts): the service's 2025-era input requests are
   * attributed to this call, which parks here while the agent answers.
   */
  park?: (call: PendingCall<Forwarded<M>>) => void;
  /** This request answers the gateway's consent question: the question's state and the raw answer. */
  consent?: { state: ConsentState; answer: unknown };
}

const us = (ms: number) => Math.round(ms * 1000);

/** A watch that watches nothing (no observer configured). */
const UNWATCHED: CallWatch = {
  policy: () => () => undefined,
  audit: () => () => undefined,
  limitRefused: () => undefined,
  forwarding: () => ({}),
  ended: () => undefined,
};

/** The deciding rule ids of a decision, once each, sorted: the metrics' `rule` label. */
const ruleIds = (d: Decision) => [...new Set(d.reasons.map((x) => x.id))].sort().join(',');

export class CallPipeline {
  /** Only tools/call is interactive, so only its calls park. */
  readonly parked: ParkedCalls<Forwarded<'tools/call'>>;
  /** Prompts whose 2025 service asked the agent for input while it built the prompt, parked likewise. */
  readonly parkedPrompts: ParkedCalls<Forwarded<'prompts/get'>>;
  /** Data categories each 2025 session has received: facts of its later calls. */
  readonly labels = new SessionLabels();
  /** The decisions of one turn of the event loop, made together (turn-batch.ts). */
  private readonly decisions = new TurnBatch();

  constructor(private readonly d: CallPipelineDeps) {
    this.parked = new ParkedCalls(d.inputTtlMs ?? 10 * 60_000, d.clock);
    this.parkedPrompts = new ParkedCalls(d.inputTtlMs ?? 10 * 60_000, d.clock);
  }

  async callTool(cc: CallContext, params: CallToolRequest['params'], ctx: ServerContext): Promise<ForwardResult<'tools/call'>> {
    const state = await this.stateOf(cc, ctx, params.name);
    if (state && state.tool !== params.name)
      return this.refuse(cc, 'tools/call', 'ERR_INPUT_STATE_INVALID', 'requestState does not belong to this tool', params.name);
    if (state?.k === 'parked') return this.resumeParked(cc, state, ctx, 'tools/call', this.parked);

    const tool = this.d.catalog.tool(params.name);
    const held = tool ? undefined : this.d.catalog.quarantined(params.name);
    if (held) {
      // Its definition changed since it was pinned: refused, and recorded, until an operator approves it.
      const e = new GatewayError(
        'ERR_TOOL_DEFINITION_CHANGED',
        `denied: tool_definition_changed: the definition of ${params.name} changed since it was pinned; it is quarantined until an operator approves it`,
        { reason: 'tool_definition_changed', tool: params.name },
      );
      await this.d.probes.refused(cc, {
        method: 'tools/call',
        code: e.code,
        message: e.message,
        tool: params.name,
        canonical: held.canonical,
        service: held.service,
      });
      throw toProtocolError(e);
    }
    if (!tool) return this.refuse(cc, 'tools/call', 'ERR_TOOL_NOT_FOUND', `Unknown tool: ${params.name}`, params.name);
    const args = params.arguments ?? {};
    const forward: ForwardParams<'tools/call'> = { name: tool.local, arguments: args };
    const consent = state?.k === 'consent' ? { state, answer: ctx.mcpReq.inputResponses?.[CONSENT_KEY] } : undefined;
    if (state?.k === 'svc') {
      // The agent's retry of a 2026 service's input_required: decided again, then routed to the same service.
      await this.checkAnswers(cc, 'tools/call', params.name, state, ctx);
      if (state.inner !== undefined) forward.requestState = state.inner;
      if (ctx.mcpReq.inputResponses) forward.inputResponses = ctx.mcpReq.inputResponses;
    }
    return this.decideAndForward(cc, ctx, {
      method: 'tools/call',
      service: tool.service,
      label: tool.name,
      facts: tool.facts,
      args,
      params: forward,
      park: (call) => this.parked.park(call),
      ...(consent ? { consent } : {}),
    });
  }

  async getPrompt(cc: CallContext, params: GetPromptRequest['params'], ctx: ServerContext): Promise<ForwardResult<'prompts/get'>> {
    const p = this.d.catalog.prompt(params.name);
    if (!p) return this.refuse(cc, 'prompts/get', 'ERR_PROMPT_NOT_FOUND', `Unknown prompt: ${params.name}`, params.name);
    const state = await this.stateOf(cc, ctx, params.name, 'prompts/get');
    if (state && (state.k === 'consent' || state.tool !== params.name))
      return this.refuse(cc, 'prompts/get', 'ERR_INPUT_STATE_INVALID', 'requestState does not belong to this prompt', params.name);
    // The agent's answer to a 2025 service's question asked while it built this prompt.
    if (state?.k === 'parked') return this.resumeParked(cc, state, ctx, 'prompts/get', this.parkedPrompts);
    const args = params.arguments ?? {};
    const forward: ForwardParams<'prompts/get'> = { name: p.local, arguments: args };
    if (state?.k === 'svc') {
      // The agent's retry of a 2026 service's input_required for this prompt: decided again, then routed back.
      await this.checkAnswers(cc, 'prompts/get', params.name, state, ctx);
      if (state.inner !== undefined) forward.requestState = state.inner;
      if (ctx.mcpReq.inputResponses) forward.inputResponses = ctx.mcpReq.inputResponses;
    }
    return this.decideAndForward(cc, ctx, {
      method: 'prompts/get',
      service: p.service,
      label: p.name,
      facts: p.facts,
      args,
      params: forward,
      park: (call) => this.parkedPrompts.park(call),
    });
  }

  async readResource(cc: CallContext, params: ReadResourceRequest['params'], ctx: ServerContext): Promise<ForwardResult<'resources/read'>> {
    const { uri } = params;
    const service = this.d.catalog.resourceService(uri);
    if (!service) return this.refuse(cc, 'resources/read', 'ERR_RESOURCE_NOT_FOUND', `Resource not found: ${uri}`, uri, { uri });
    return this.decideAndForward(cc, ctx, {
      method: 'resources/read',
      service,
      label: uri,
      facts: this.d.catalog.resourceFacts(service, uri),
      args: { uri },
      params: { uri },
    });
  }

  /**
   * completion/complete, routed to the service that owns the prompt or the resource template and
   * decided by policy (action `complete`; the `tool` facts name the prompt or the template; the
   * arguments are the ones given so far with the one being completed).
   */
  async complete(cc: CallContext, params: CompleteRequest['params'], ctx: ServerContext): Promise<CompleteResult> {
    const r = await this.completeRound(cc, params, ctx);
    // Completion has no input rounds in the protocol: a service that asks for input answered wrongly.
    if (isInputRequiredResult(r))
      throw toProtocolError(new GatewayError('ERR_SERVICE_ERROR', 'the service answered completion/complete with an input request'));
    return r;
  }

  private async completeRound(cc: CallContext, params: CompleteRequest['params'], ctx: ServerContext): Promise<ForwardResult<'completion/complete'>> {
    const { ref, argument } = params;
    const args = { ...(params.context?.arguments ?? {}), [argument.name]: argument.value };
    const context = params.context ? { context: params.context } : {};
    if (ref.type === 'ref/prompt') {
      const p = this.d.catalog.prompt(ref.name);
      if (!p) return this.refuse(cc, 'completion/complete', 'ERR_PROMPT_NOT_FOUND', `Unknown prompt: ${ref.name}`, ref.name);
      return this.decideAndForward(cc, ctx, {
        method: 'completion/complete',
        service: p.service,
        label: p.name,
        facts: p.facts,
        args,
        params: { ref: { type: 'ref/prompt', name: p.local }, argument, ...context },
      });
    }
    const service = this.d.catalog.templateService(ref.uri) ?? this.d.catalog.resourceService(ref.uri);
    if (!service) return this.refuse(cc, 'completion/complete', 'ERR_RESOURCE_NOT_FOUND', `Resource not found: ${ref.uri}`, ref.uri, { uri: ref.uri });
    return this.decideAndForward(cc, ctx, {
      method: 'completion/complete',
      service,
      label: ref.uri,
      facts: this.d.catalog.resourceFacts(service, ref.uri),
      args,
      params: { ref, argument, ...context },
    });
  }

  /**
   * resources/subscribe, decided by policy (action `subscribe_resource`, facts as for reading the URI)
   * and forwarded to the owning service (subscribing twice is harmless). Returns the owning service.
   */
  async subscribe(cc: CallContext, params: SubscribeRequest['params'], ctx: RequestScope): Promise<string> {
    const { uri } = params;
    const service = this.d.catalog.resourceService(uri);
    if (!service) return this.refuse(cc, 'resources/subscribe', 'ERR_RESOURCE_NOT_FOUND', `Resource not found: ${uri}`, uri, { uri });
    await this.decideAndForward(cc, ctx, {
      method: 'resources/subscribe',
      service,
      label: uri,
      facts: this.d.catalog.resourceFacts(service, uri),
      args: { uri },
      params: { uri },
    });
    return service;
  }

  /**
   * Whether the principal may read `uri` of `service` now (a notification about it is delivered only
   * then): the read decided again, like the list phase, without a record (nothing is forwarded).
   */
  mayRead(cc: CallContext, service: string, uri: string): boolean {
    const input = buildPolicyInput({
      method: 'resources/read',
      principal: cc.principal,
      purpose: null,
      tool: this.d.catalog.resourceFacts(service, uri),
      arguments: { uri },
      resource: this.d.resources?.get(service),
      context: { time: new Date(this.d.clock.now()).toISOString(), request_id: cc.requestId, session_id: cc.sessionId, client_ip: cc.clientIp },
    });
    return this.decide(input, randomUUID()).allow;
  }

  private async decideAndForward<M extends ForwardMethod>(cc: CallContext, ctx: RequestScope, r: Forward<M>): Promise<ForwardResult<M>> {
    const { clock } = this.d;
    const t0 = performance.now();
    const agentMeta = ctx.mcpReq._meta ?? {};
    if (!isWellFormedJson([r.label, r.args, agentMeta])) {
      // The HTTP edge refuses these already; stdio has no such edge.
      throw new ProtocolError(-32602, 'Invalid params: names, arguments and _meta values must be well-formed Unicode (no lone surrogates)');
    }
    const declared = agentMeta[PURPOSE_META_KEY];
    const decisionId = randomUUID();
    const watch =
      this.d.observer?.begin(cc, {
        ...{ method: r.method, service: r.service, tool: r.method === 'resources/read' ? 'resources/read' : r.label },
        ...{ decisionId, meta: agentMeta },
      }) ?? UNWATCHED;
    const input = buildPolicyInput({
      method: r.method,
      principal: cc.principal,
      purpose: typeof declared === 'string' && declared.length > 0 ? declared.slice(0, 200) : null,
      tool: r.facts,
      arguments: r.args,
      resource: this.d.resources?.get(r.service),
      context: {
        time: new Date(clock.now()).toISOString(),
        request_id: cc.requestId,
        session_id: cc.sessionId,
        client_ip: cc.clientIp,
        data_labels: this.labels.get(cc.sessionId),
      },
    });
    // Made with the other decisions asked for in this turn of the event loop (turn-batch.ts).
    const decision = await this.decisions.run(() => {
      const decided = watch.policy();
      const d = this.decide(input, decisionId);
      decided(d);
      return d;
    });
    const rules = ruleIds(decision);
    const tokenId = cc.principal.token_id;
    // The record keeps the canonical name the policy saw and, when it differs, the name the agent used.
    const exposed = r.method !== 'resources/read' && r.label !== r.facts.name ? { exposed_name: r.label } : {};
    const audited = watch.audit();
    const recorded = this.d.audit.decision({
      input,
      decision,
      decision_id: decisionId,
      ...exposed,
      ...(tokenId ? { token_id: tokenId } : {}),
      ...(watch.trace ? { trace: watch.trace } : {}),
      ...(cc.credential !== undefined ? { credential: cc.credential } : {}),
    });
    // The service credential of a call that will be forwarded without a question is signed while the
    // decision record is written and synced: CPU work that overlaps the disk's, off the call's latency.
    // It leaves this process only after the record is durable, and never if the record fails.
    const minting = decision.allow && decision.obligations.consent !== true ? this.mintFor(cc, r, input, decision, decisionId) : undefined;
    minting?.catch(() => undefined); // awaited below unless the call ends first
    try {
      await recorded;
      audited();
    } catch (e) {
      audited('ERR_AUDIT_UNAVAILABLE');
      watch.ended('audit_unavailable', rules);
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'audit write failed: call refused');
      throw toProtocolError(new GatewayError('ERR_AUDIT_UNAVAILABLE', 'the audit log is unavailable; call refused', { decision_id: decisionId }));
    }
    if (!decision.allow) {
      // The decision record is the whole story of a denied call: nothing was forwarded.
      watch.ended('denied', rules);
      const ids = [...new Set(decision.reasons.map((x) => x.id))].join(', ') || 'no rule allowed it';
      throw toProtocolError(
        new GatewayError('ERR_POLICY_DENIED', `denied by policy: ${ids}`, {
          decision_id: decisionId,
          reasons: decision.reasons,
          policy_revision: decision.policy_revision,
        }),
      );
    }
    const ended: Finish = (o) => {
      watch.ended(o.outcome, rules, o.service_us, o.total_us);
      return this.outcome(decisionId, o);
    };
    let outcome: Finish = ended;
    const ob = decision.obligations;
    if (ob.consent === true) {
      // Forwarded only with the user's approval of this exact call; every other answer is a denial.
      const v = await this.consent(cc, r, input.purpose, decision.policy_revision, decisionId, outcome);
      if ('ask' in v) return v.ask as ForwardResult<M>;
      const given = v.given;
      outcome = (o) => ended({ consent: given, ...o });
    }

    // A slot held by a call lapses after the call's own timeout (plus a margin): a replica that dies
    // with calls in flight does not hold their places in the shared state for ever.
    const slotTtlMs = (this.d.catalog.service(r.service)?.callTimeoutMs ?? 60_000) + 30_000;
    const admitted = await this.d.limiter.admit(principalKey(cc.principal), r.service, r.facts.local_name, slotTtlMs);
    if ('refused' in admitted) {
      const why = admitted.refused;
      watch.limitRefused(why.limit);
      const e =
        why.limit === 'state_unavailable'
          ? new GatewayError('ERR_STATE_UNAVAILABLE', 'the shared state holding the call limits is unreachable; call refused', {
              decision_id: decisionId,
              limit: why.limit,
            })
          : new GatewayError(
              'ERR_RATE_LIMITED',
              why.limit === 'rate'
                ? `rate limit reached for this tool; retry in ${why.retryAfterS} s`
                : why.limit === 'concurrency'
                  ? 'too many calls in flight for this principal'
                  : 'too many calls in flight at the gateway; retry shortly',
              { decision_id: decisionId, limit: why.limit, ...(why.limit === 'rate' ? { retry_after_s: why.retryAfterS } : {}) },
            );
      await outcome({ outcome: 'refused', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    // What of the agent the service may see: its roots only where the service's config forwards them.
    const forwardsRoots = this.d.catalog.service(r.service)?.forwardsRoots === true;
    const capabilities = relayedCapabilities(cc.capabilities, { roots: forwardsRoots });
    // The shared connection (or one of its overflow connections while it waits for an agent,
    // upstream/overflow), or this principal's (session's) own under `isolation` (upstream/pool).
    let held: Awaited<ReturnType<Catalog['connectionFor']>>;
    try {
      held = await this.d.catalog.connectionFor(
        r.service,
        { principal: principalKey(cc.principal), session: cc.sessionId, capabilities },
        // Only tool calls and prompts can take a service's question (they alone are InteractionSinks), so only they are
        // learned as asking (a prompt under a name no tool can have: names hold no spaces).
        { method: r.method, name: r.method === 'tools/call' ? r.facts.name : r.method === 'prompts/get' ? `prompt ${r.facts.name}` : undefined },
      );
    } catch (e) {
      admitted.release();
      const ge = isGatewayError(e) ? e : new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${r.service}" is unavailable`);
      await outcome({ outcome: 'service_error', error: { code: ge.code, message: ge.message } });
      throw toProtocolError(ge);
    }
    const { conn } = held;
    // The service's circuit breaker and concurrency cap (upstream/resilience): refused at once, audited as the outcome.
    const guarded = conn.guard.admit();
    if ('refused' in guarded) {
      admitted.release();
      held.release();
      watch.limitRefused(guarded.cause);
      const e = new GatewayError(guarded.refused.code, guarded.refused.message, { ...guarded.refused.data, decision_id: decisionId });
      await outcome({ outcome: 'refused', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    const pass = guarded.pass;
    let credential: string;
    try {
      credential = await (minting ?? this.mintFor(cc, r, input, decision, decisionId));
    } catch (e) {
      admitted.release();
      pass.done('neutral');
      held.release();
      this.d.log.error({ err: (e as Error).message, service: r.service }, 'minting the service credential failed');
      const ge = new GatewayError('ERR_INTERNAL', 'could not mint the service credential');
      await outcome({ outcome: 'refused', error: { code: ge.code, message: ge.message } });
      throw toProtocolError(ge);
    }
    // Only the agent's `_meta` keys this service is configured to see travel on; the agent's progress
    // token stays here (the connection assigns its own for the service).
    const meta: Record<string, unknown> = {};
    for (const k of conn.forwardMeta) if (k !== 'progressToken' && agentMeta[k] !== undefined) meta[k] = agentMeta[k];

    const tSend = performance.now();
    const finish: Finish = (o) => outcome({ service_us: us(performance.now() - tSend), total_us: us(performance.now() - t0), ...o });
    const call = new PendingCall<Forwarded<M>>(principalKey(cc.principal), r.label, new AbortController(), finish);
    call.capabilities = capabilities;
    call.forwardsRoots = forwardsRoots;
    call.obligations = ob;
    call.credential = cc.credential;
    call.sessionId = cc.sessionId;
    const left = this.d.inFlight.enter();
    call.track(
      conn
        .forward(r.method, r.params, {
          meta: { ...meta, ...watch.forwarding(), [CREDENTIAL_META_KEY]: credential },
          signal: call.controller.signal,
          onprogress: (p) => call.progress?.(p),
          ...(cc.logLevel ? { log: { level: cc.logLevel, relay: (p) => call.log?.(p) } } : {}),
          capabilities,
          ...(r.park ? { sink: call } : {}),
        })
        .then(
          (v) => {
            pass.done('success');
            return v;
          },
          (e: unknown) => {
            pass.done(verdictOf(e));
            throw e;
          },
        )
        .finally(() => {
          admitted.release();
          held.release();
          left();
        }),
    );
    return this.round(call, roundContext(ctx, cc.logLevel), r.park);
  }

  /** The per-call credential for the service: its tool, this principal, the purpose and what the decision narrowed. */
  private mintFor<M extends ForwardMethod>(cc: CallContext, r: Forward<M>, input: PolicyInput, decision: Decision, decisionId: string): Promise<string> {
    return this.d.credentials.mint({
      service: r.service,
      principal: cc.principal,
      tool: r.facts.local_name,
      purpose: input.purpose,
      decisionId,
      // What the decision narrowed: the authorised purpose's hosts, the permitted roots.
      reach: decisionReach(decision, input),
    });
  }

  /**
   * The consent obligation of an allowed call: a live grant for this exact call, the user's answer
   * to our question (then a grant), or the question itself (an input_required round). Denials,
   * questions and answers are all in the outcome record; arguments never are.
   */
  private async consent<M extends ForwardMethod>(
    cc: CallContext,
    r: Forward<M>,
    purpose: string | null,
    revision: string,
    decisionId: string,
    outcome: Finish,
  ): Promise<{ ask: InputRequiredResult } | { given: { result: ConsentResult; expires_at: string } }> {
    const refuse = async (e: GatewayError, result: ConsentResult): Promise<never> => {
      const ge = new GatewayError(e.code, e.message, { ...e.data, consent: result, decision_id: decisionId });
      await this.written(outcome({ outcome: 'refused', consent: { result }, error: { code: ge.code, message: ge.message } }));
      throw toProtocolError(ge);
    };
    if (r.method !== 'tools/call')
      return refuse(new GatewayError('ERR_CONSENT_REQUIRED', 'consent can be asked only for tool calls; this request needs it'), 'unavailable');
    let v: Awaited<ReturnType<ConsentGate['check']>>;
    try {
      v = await this.d.consent.check({
        principal: principalKey(cc.principal),
        tool: r.label,
        args: r.args,
        revision,
        purpose,
        // What the user reads: the arguments with every secret and PII category removed.
        summary: summarize(this.d.filter.filter(r.args, ['email', 'phone', 'card', 'secrets'], cc.credential).value),
        canAsk: cc.canElicit === true,
        ...(r.consent ?? {}),
      });
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'the consent grant store failed');
      return refuse(new GatewayError('ERR_STATE_UNAVAILABLE', 'the shared state holding consent grants is unreachable; call refused'), 'unavailable');
    }
    if (v.kind === 'denied') return refuse(v.error, v.result);
    if (v.kind === 'ask') {
      await this.written(outcome({ outcome: 'input_required', consent: { result: 'asked' } }));
      return { ask: v.request(this.d.state.sign(principalKey(cc.principal), { ...v.state })) };
    }
    return { given: { result: v.result, expires_at: new Date(v.expiresAt).toISOString() } };
  }

  /** Decides one call; an engine that throws denies (fail closed). */
  private decide(input: Parameters<PolicyPort['decide']>[0], decisionId: string): Decision {
    try {
      return this.d.policy.decide(input);
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'policy evaluation failed');
      return failedDecision(this.d.policy.revision);
    }
  }

  /**
   * Runs one round of a forwarded call for the agent request `ctx`: result, error, or an input request.
   * Outcome records are written without holding the answer back unless outcomeBeforeAnswer: only the
   * decision record must be durable before forwarding (measured: awaiting the outcome's fsync too cost
   * ~40% of throughput at one client); a SIGTERM drain still waits for them, a SIGKILL may lose the
   * outcomes of the last calls answered.
   */
  private async round<T extends object>(
    call: PendingCall<{ result: T | InputRequiredResult; bytes: number }>,
    rc: RoundContext,
    park: ((call: PendingCall<{ result: T | InputRequiredResult; bytes: number }>) => void) | undefined,
  ): Promise<T | InputRequiredResult> {
    // Notifications are chained and awaited before the result, so the last progress is not
    // overtaken by the response (after which the transport would drop it).
    let relayed: Promise<void> = Promise.resolve();
    const progress = rc.progress;
    call.progress =
      progress === undefined
        ? undefined
        : (p) => {
            relayed = relayed.then(() => progress(p)).catch(() => undefined);
          };
    // The service's log messages of this call, at or above this agent's threshold, in the same chain.
    const { level, message } = rc;
    call.log =
      level === undefined || message === undefined
        ? undefined
        : (p) => {
            if (!atOrAbove(p.level, level)) return;
            const params = { level: p.level, data: p.data, ...(typeof p.logger === 'string' ? { logger: p.logger } : {}) };
            relayed = relayed.then(() => message(params)).catch(() => undefined);
          };
    const onAbort = () => call.abandon('cancelled by the agent');
    rc.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await call.next();
      await relayed;
      if (r.kind === 'interaction') {
        // Only interactive calls register as the service's sink, so only they can see an interaction.
        if (!park) throw toProtocolError(new GatewayError('ERR_INTERNAL', 'an input request reached a call that cannot ask the agent'));
        call.progress = undefined;
        call.log = undefined;
        park(call);
        // The service's call goes on across rounds under this one decision: its outcome is written when it ends.
        const requestState = this.d.state.sign(call.principalId, {
          ...{ k: 'parked', tool: call.tool, id: call.id },
          ...(this.d.replicaId !== undefined ? { r: this.d.replicaId } : {}),
        });
        return inputRequired({ inputRequests: { [r.key]: r.req }, requestState });
      }
      if (r.kind === 'error') {
        const e = r.error;
        const cancelled = rc.signal.aborted || (isGatewayError(e) && e.data?.cancelled === true);
        await this.written(
          call.finish({
            outcome: cancelled ? 'cancelled' : isGatewayError(e) && e.code === 'ERR_SERVICE_TIMEOUT' ? 'timeout' : 'service_error',
            error: isGatewayError(e)
              ? { code: e.code, message: e.message }
              : { code: e instanceof ProtocolError ? `JSONRPC_${e.code}` : 'ERR_SERVICE_ERROR', message: 'the service answered with an error' },
          }),
        );
        if (isGatewayError(e)) throw toProtocolError(e);
        const categories = call.obligations.redact ?? [];
        if (e instanceof ProtocolError && categories.length > 0) {
          // A service's error text is the service's output too: filtered like its result.
          const f = this.d.filter.filter({ message: e.message, data: e.data }, categories, call.credential).value as { message: string; data?: unknown };
          throw new ProtocolError(e.code, f.message, f.data);
        }
        throw e;
      }
      const { result: value, bytes } = r.value;
      if (isInputRequiredResult(value)) {
        const missing = Object.values(value.inputRequests ?? {})
          .map((req) => missingCapability(call.capabilities, req))
          .find((m) => m !== undefined);
        if (missing !== undefined) {
          // The service asked for what the agent never declared (its envelope said so): never relayed.
          const e = new GatewayError(
            'ERR_INPUT_REQUEST_REFUSED',
            missing === 'roots' && !call.forwardsRoots
              ? "the service asked for the agent's roots, which are not forwarded to it (its config says roots: never)"
              : `the service asked for input the calling agent did not declare: ${missing}`,
          );
          await this.written(call.finish({ outcome: 'service_error', error: { code: e.code, message: e.message } }));
          throw toProtocolError(e);
        }
        // A 2026 service asks the agent for input: wrap its state so the retry comes back to it, bound to this principal.
        const inner = value.requestState;
        // Each request's method travels in the state, so the retry's answers are checked against their types.
        const a = Object.fromEntries(Object.entries(value.inputRequests ?? {}).map(([k, req]) => [k, req.method]));
        const requestState = this.d.state.sign(call.principalId, { k: 'svc', tool: call.tool, ...(inner !== undefined ? { inner } : {}), a });
        await this.written(call.finish({ outcome: 'input_required' }));
        return inputRequired({ inputRequests: value.inputRequests ?? {}, requestState });
      }
      const ob = call.obligations;
      if (ob.max_bytes !== undefined && bytes > ob.max_bytes) {
        const e = new GatewayError('ERR_RESULT_TOO_LARGE', `the result is larger than this call's policy allows (${ob.max_bytes} bytes)`, {
          max_bytes: ob.max_bytes,
        });
        await this.written(call.finish({ outcome: 'refused', response_bytes: bytes, error: { code: e.code, message: e.message } }));
        throw toProtocolError(e);
      }
      let shown = value;
      let redacted: Partial<Record<RedactCategory, number>> | undefined;
      if (ob.redact !== undefined && ob.redact.length > 0) {
        // Filtered before the agent sees it; the audit gets the counts per category, never the values.
        const f = this.d.filter.filter(value, ob.redact, call.credential);
        shown = f.value as T;
        redacted = f.counts;
      }
      const kind = 'isError' in value && value.isError === true ? 'tool_error' : 'ok';
      // Data categories: the policy's and the service's; the session's later calls decide with them.
      const labels = [...new Set([...(ob.labels ?? []), ...serviceLabels(value, LABELS_META_KEY)])].sort();
      this.labels.add(call.sessionId, labels);
      await this.written(
        call.finish({
          outcome: kind,
          response_bytes: bytes,
          result: shown,
          ...(redacted ? { redacted } : {}),
          ...(call.credential !== undefined ? { credential: call.credential } : {}),
          ...(labels.length > 0 ? { data_labels: labels } : {}),
        }),
      );
      return shown;
    } finally {
      rc.signal.removeEventListener('abort', onAbort);
    }
  }

  private async resumeParked<M extends 'tools/call' | 'prompts/get'>(
    cc: CallContext,
    state: { id: string; r?: string },
    ctx: ServerContext,
    method: M,
    parked: ParkedCalls<Forwarded<M>>,
  ): Promise<ForwardResult<M>> {
    const answer = Object.values(ctx.mcpReq.inputResponses ?? {})[0];
    if (state.r !== undefined && state.r !== this.d.replicaId) return this.resumeElsewhere(cc, method, state.r, state.id, answer);
    const call = parked.take(state.id, principalKey(cc.principal));
    if (!call) return this.stateRefused(cc, 'the input request has expired or belongs to another caller', method);
    const invalid = await this.invalidAnswer(call, answer);
    if (invalid) throw toProtocolError(invalid);
    call.answer(answer);
    return this.round(call, roundContext(ctx, cc.logLevel), (c) => parked.park(c));
  }

  /**
   * An answer to a parked call's input request that is not one: the service's request is refused and
   * its call ended (the outcome recorded); the error tells the agent why. Undefined for a valid answer.
   */
  private async invalidAnswer(call: PendingCall<Forwarded<'tools/call' | 'prompts/get'>>, answer: unknown): Promise<GatewayError | undefined> {
    const asking = call.asking;
    if (answer === undefined || asking === undefined || isValidAnswer(asking, answer)) return undefined;
    call.abandon('the agent did not give a valid answer to the input request');
    const e = new GatewayError(
      'ERR_INPUT_ANSWER_INVALID',
      `the answer to the input request (${asking}) is not a valid ${ANSWER_TYPE[asking]}; the call was ended`,
    );
    // An error path: the record is made durable before the agent is answered.
    await call.finish({ outcome: 'refused', error: { code: e.code, message: e.message } });
    return e;
  }

  /**
   * A 2025 session's agent could not answer the input request of the round `requestState` names: the
   * SDK's shim found its answer malformed (`malformed`) or got an error, ended the agent's request with
   * a tool error, and will not retry. A malformed answer is recorded (refused, ERR_INPUT_ANSWER_INVALID);
   * a call parked for the round is ended now, its service's request refused and its outcome recorded,
   * rather than holding the service until the input request expires.
   */
  async answerFailed(cc: CallContext, requestState: string, method: InteractionRequest['method'], malformed: boolean): Promise<void> {
    const message = malformed
      ? `the answer to the input request (${method}) is not a valid ${ANSWER_TYPE[method]}; the call was ended`
      : `the agent did not answer the input request (${method}); the call was ended`;
    if (malformed) await this.d.probes.refused(cc, { method: 'tools/call', code: 'ERR_INPUT_ANSWER_INVALID', message });
    let s: unknown;
    try {
      s = this.d.state.verify(principalKey(cc.principal), requestState);
    } catch {
      return;
    }
    if (!isPipelineState(s) || s.k !== 'parked' || (s.r !== undefined && s.r !== this.d.replicaId)) return;
    const call = this.parked.take(s.id, principalKey(cc.principal)) ?? this.parkedPrompts.take(s.id, principalKey(cc.principal));
    if (!call) return;
    call.abandon(message);
    // An error path: the record is made durable before the agent's request ends.
    await call.finish({ outcome: 'refused', error: { code: malformed ? 'ERR_INPUT_ANSWER_INVALID' : 'ERR_INPUT_REQUEST_REFUSED', message } });
  }

  /**
   * The answers of an agent's retry to a 2026 service's input requests, each checked against its
   * request's result type before anything is decided or forwarded: one that is not is refused (-32602)
   * and recorded, and never reaches the service.
   */
  private async checkAnswers(
    cc: CallContext,
    method: 'tools/call' | 'prompts/get',
    name: string,
    state: { a?: Record<string, string> },
    ctx: ServerContext,
  ): Promise<void> {
    const responses = ctx.mcpReq.inputResponses ?? {};
    for (const [key, asked] of Object.entries(state.a ?? {})) {
      if (!isInteractionMethod(asked) || !(key in responses) || isValidAnswer(asked, responses[key])) continue;
      await this.refuse(cc, method, 'ERR_INPUT_ANSWER_INVALID', `the answer to the input request (${asked}) is not a valid ${ANSWER_TYPE[asked]}`, name);
    }
  }

  /**
   * The agent's retry reached this replica, but its call is parked at replica `owner`: the answer is
   * carried there, which runs the round and sends back its result or error (the outcome is recorded
   * there, with the decision). Progress of a round run elsewhere is not relayed, nor is a cancellation.
   */
  private async resumeElsewhere<M extends 'tools/call' | 'prompts/get'>(
    cc: CallContext,
    method: M,
    owner: string,
    id: string,
    answer: unknown,
  ): Promise<ForwardResult<M>> {
    const peers = this.d.peers;
    if (!peers) return this.stateRefused(cc, 'the input request belongs to another gateway replica', method);
    let reply: unknown;
    try {
      const req: ResumeRequest = { op: 'resume', id, principal: principalKey(cc.principal), ...(answer !== undefined ? { answer } : {}) };
      reply = await peers.request(owner, req, this.d.inputTtlMs ?? 10 * 60_000);
    } catch (e) {
      const why =
        e instanceof ReplicaUnreachable && e.why === 'gone'
          ? 'the gateway replica holding this call is gone; call the tool again'
          : 'the gateway replica holding this call did not answer';
      this.d.log.warn({ replica: owner, err: (e as Error).message }, 'resuming a call parked at another replica failed');
      return this.stateRefused(cc, why, method);
    }
    const r = reply as Partial<{
      result: unknown;
      error: { protocol?: { code: number; message: string; data?: unknown }; gateway?: string; message?: string };
    }>;
    if (r.error?.protocol) throw new ProtocolError(r.error.protocol.code, r.error.protocol.message, r.error.protocol.data);
    if (r.error?.gateway === 'ERR_INPUT_STATE_INVALID') return this.stateRefused(cc, String(r.error.message), method);
    if (isInputRequiredResult(r.result)) return r.result;
    const checked = (method === 'tools/call' ? specTypeSchemas.CallToolResult : specTypeSchemas.GetPromptResult)['~standard'].validate(r.result);
    if ('value' in checked && checked.issues === undefined) return checked.value as ForwardResult<M>;
    return this.stateRefused(
      cc,
      `the gateway replica holding this call sent an answer that is not a ${method === 'tools/call' ? 'tool' : 'prompt'} result`,
      method,
    );
  }

  /** Serves another replica's agent retry for a call parked here (ReplicaCalls handler). */
  async resumeForPeer(body: unknown): Promise<ResumeReply> {
    if (!isResumeRequest(body)) throw new Error('not a resume request');
    const tool = this.parked.take(body.id, body.principal);
    const prompt = tool ? undefined : this.parkedPrompts.take(body.id, body.principal);
    const call = tool ?? prompt;
    if (!call) return { error: { gateway: 'ERR_INPUT_STATE_INVALID', message: 'the input request has expired or belongs to another caller' } };
    const invalid = await this.invalidAnswer(call, body.answer);
    if (invalid) {
      const j = toProtocolError(invalid);
      return { error: { protocol: { code: j.code, message: j.message, data: j.data } } };
    }
    call.answer(body.answer);
    try {
      // The agent's request is at the other replica: nothing to relay progress to, no cancellation from here.
      const rc = { signal: new AbortController().signal };
      return { result: tool ? await this.round(tool, rc, (c) => this.parked.park(c)) : await this.round(prompt!, rc, (c) => this.parkedPrompts.park(c)) };
    } catch (e) {
      if (e instanceof ProtocolError) return { error: { protocol: { code: e.code, message: e.message, ...(e.data !== undefined ? { data: e.data } : {}) } } };
      throw e;
    }
  }

  /** A retry whose requestState names a call that cannot be resumed: recorded, then -32602-style refusal. */
  private async stateRefused(cc: CallContext, message: string, method: 'tools/call' | 'prompts/get' = 'tools/call'): Promise<never> {
    const e = new GatewayError('ERR_INPUT_STATE_INVALID', message);
    await this.d.probes.refused(cc, { method, code: e.code, message: e.message });
    throw toProtocolError(e);
  }

  private async stateOf(
    cc: CallContext,
    ctx: ServerContext,
    tool: string,
    method: 'tools/call' | 'prompts/get' = 'tools/call',
  ): Promise<PipelineState | undefined> {
    // Verified (signature, principal, expiry) by the server's requestState hook before the handler runs.
    const s: unknown = ctx.mcpReq.requestState();
    if (s === undefined) return undefined;
    if (isPipelineState(s)) return s;
    return this.refuse(cc, method, 'ERR_INPUT_STATE_INVALID', 'Invalid or expired requestState', tool);
  }

  /** Records a request refused before any decision, then refuses it with -32602 (the message is the agent's). */
  private async refuse(cc: CallContext, method: string, code: string, message: string, tool: string, data?: Record<string, unknown>): Promise<never> {
    await this.d.probes.refused(cc, { method, code, message, tool, ...this.owner(method, tool) });
    throw new ProtocolError(-32602, message, data);
  }

  /** The canonical name and service of a tool or prompt the agent named, when it names one (for the record). */
  private owner(method: string, name: string): { canonical?: string; service?: string } {
    const entry = method === 'tools/call' ? this.d.catalog.tool(name) : method === 'prompts/get' ? this.d.catalog.prompt(name) : undefined;
    return entry ? { canonical: entry.canonical, service: entry.service } : {};
  }

  /** An outcome record being written: awaited before the answer only with outcomeBeforeAnswer. */
  private async written(outcome: Promise<void>): Promise<void> {
    if (this.d.outcomeBeforeAnswer) await outcome;
  }

  private async outcome(decisionId: string, o: Parameters<Finish>[0]): Promise<void> {
    try {
      await this.d.audit.outcome({ decision_id: decisionId, ...o });
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'audit outcome write failed');
    }
  }
}

function isPipelineState(s: unknown): s is PipelineState {
  if (typeof s !== 'object' || s === null || !('k' in s) || !('tool' in s) || typeof s.tool !== 'string') return false;
  if (s.k === 'parked') return 'id' in s && typeof s.id === 'string' && (!('r' in s) || typeof s.r === 'string');
  if (s.k === 'consent') return isConsentState(s);
  return s.k === 'svc' && (!('inner' in s) || typeof s.inner === 'string') && (!('a' in s) || isStringRecord(s.a));
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function isInteractionMethod(m: string): m is keyof typeof ANSWER_TYPE {
  return Object.hasOwn(ANSWER_TYPE, m);
}
