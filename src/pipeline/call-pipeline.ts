/**
 * The call phase of the data path (docs/ARCHITECTURE.md): resolve -> policy input -> decide ->
 * audit decision -> limits -> mint credential -> forward -> outcome. Era-neutral: the MCP face calls
 * it for `tools/call`, `prompts/get` and `resources/read` from either era with a CallContext.
 */
import { randomUUID } from 'node:crypto';
import { inputRequired, isInputRequiredResult, ProtocolError } from '@modelcontextprotocol/server';
import type { CallToolRequest, GetPromptRequest, InputRequiredResult, ReadResourceRequest, ServerContext } from '@modelcontextprotocol/server';
import { CREDENTIAL_META_KEY, LABELS_META_KEY, PURPOSE_META_KEY } from '../../schemas/contracts/service-credential.js';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { GatewayError, isGatewayError, toProtocolError } from '../errors.js';
import type { CallLimiter } from '../state/state.js';
import { buildPolicyInput, decisionReach, isWellFormedJson, type ResourceExtractor } from '../policy/input.js';
import type { Decision, Logger, RedactCategory, ToolFacts } from '../types.js';
import type { Catalog } from '../upstream/catalog.js';
import type { Forwarded, ForwardMethod, ForwardParams, ForwardResult } from '../upstream/connection.js';
import type { InFlight } from './in-flight.js';
import { CONSENT_KEY, type ConsentGate, type ConsentResult, type ConsentState, isConsentState, summarize } from './consent.js';
import { ParkedCalls, PendingCall, type Finish } from './input-requests.js';
import { SessionLabels, serviceLabels } from './labels.js';
import type { AuditPort, CallContext, CredentialPort, PolicyPort, ProbePort, ResultFilterPort, StatePort } from './ports.js';

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
}

/** requestState payloads the pipeline signs for the agent to bring back (verified before a handler runs). */
export type PipelineState =
  | { k: 'svc'; tool: string; inner?: string } // a 2026 service's input_required, wrapped
  | { k: 'parked'; tool: string; id: string } // a 2025 service's elicitation, waiting for the agent
  | ConsentState; // the gateway's own consent question, waiting for the agent's answer

/** One request on its way to a service. */
interface Forward<M extends ForwardMethod> {
  method: M;
  service: string;
  /** What the records name: the namespaced tool or prompt, or the resource URI. */
  label: string;
  facts: ToolFacts;
  args: Record<string, unknown>;
  params: ForwardParams<M>;
  /**
   * Set for interactive calls (tools only): the service's 2025-era input requests are attributed to
   * this call, which parks here while the agent answers.
   */
  park?: (call: PendingCall<Forwarded<M>>) => void;
  /** This request answers the gateway's consent question: the question's state and the raw answer. */
  consent?: { state: ConsentState; answer: unknown };
}

const us = (ms: number) => Math.round(ms * 1000);

export class CallPipeline {
  /** Only tools/call is interactive, so only its calls park. */
  readonly parked: ParkedCalls<Forwarded<'tools/call'>>;
  /** Data categories each 2025 session has received: facts of its later calls. */
  readonly labels = new SessionLabels();

  constructor(private readonly d: CallPipelineDeps) {
    this.parked = new ParkedCalls(d.inputTtlMs ?? 10 * 60_000, d.clock);
  }

  async callTool(cc: CallContext, params: CallToolRequest['params'], ctx: ServerContext): Promise<ForwardResult<'tools/call'>> {
    const state = await this.stateOf(cc, ctx, params.name);
    if (state && state.tool !== params.name)
      return this.refuse(cc, 'tools/call', 'ERR_INPUT_STATE_INVALID', 'requestState does not belong to this tool', params.name);
    if (state?.k === 'parked') return this.resumeParked(cc, state.id, ctx);

    const tool = this.d.catalog.tool(params.name);
    if (!tool && this.d.catalog.quarantined(params.name)) {
      // Its definition changed since it was pinned: refused, and recorded, until an operator approves it.
      const e = new GatewayError(
        'ERR_TOOL_DEFINITION_CHANGED',
        `denied: tool_definition_changed: the definition of ${params.name} changed since it was pinned; it is quarantined until an operator approves it`,
        { reason: 'tool_definition_changed', tool: params.name },
      );
      await this.d.probes.refused(cc, { method: 'tools/call', code: e.code, message: e.message, tool: params.name });
      throw toProtocolError(e);
    }
    if (!tool) return this.refuse(cc, 'tools/call', 'ERR_TOOL_NOT_FOUND', `Unknown tool: ${params.name}`, params.name);
    const args = params.arguments ?? {};
    const forward: ForwardParams<'tools/call'> = { name: tool.local, arguments: args };
    const consent = state?.k === 'consent' ? { state, answer: ctx.mcpReq.inputResponses?.[CONSENT_KEY] } : undefined;
    if (state?.k === 'svc') {
      // The agent's retry of a 2026 service's input_required: decided again, then routed to the same service.
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
    const args = params.arguments ?? {};
    return this.decideAndForward(cc, ctx, {
      method: 'prompts/get',
      service: p.service,
      label: p.name,
      facts: p.facts,
      args,
      params: { name: p.local, arguments: args },
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

  private async decideAndForward<M extends ForwardMethod>(cc: CallContext, ctx: ServerContext, r: Forward<M>): Promise<ForwardResult<M>> {
    const { clock } = this.d;
    const t0 = performance.now();
    const agentMeta = ctx.mcpReq._meta ?? {};
    if (!isWellFormedJson([r.label, r.args, agentMeta])) {
      // The HTTP edge refuses these already; stdio has no such edge.
      throw new ProtocolError(-32602, 'Invalid params: names, arguments and _meta values must be well-formed Unicode (no lone surrogates)');
    }
    const declared = agentMeta[PURPOSE_META_KEY];
    const decisionId = randomUUID();
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
    const decision = this.decide(input, decisionId);
    const tokenId = cc.principal.token_id;
    try {
      await this.d.audit.decision({
        input,
        decision,
        decision_id: decisionId,
        ...(tokenId ? { token_id: tokenId } : {}),
        ...(cc.credential !== undefined ? { credential: cc.credential } : {}),
      });
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'audit write failed: call refused');
      throw toProtocolError(new GatewayError('ERR_AUDIT_UNAVAILABLE', 'the audit log is unavailable; call refused', { decision_id: decisionId }));
    }
    if (!decision.allow) {
      // The decision record is the whole story of a denied call: nothing was forwarded.
      const ids = [...new Set(decision.reasons.map((x) => x.id))].join(', ') || 'no rule allowed it';
      throw toProtocolError(
        new GatewayError('ERR_POLICY_DENIED', `denied by policy: ${ids}`, {
          decision_id: decisionId,
          reasons: decision.reasons,
          policy_revision: decision.policy_revision,
        }),
      );
    }
    let outcome: Finish = (o) => this.outcome(decisionId, o);
    const ob = decision.obligations;
    if (ob.consent === true) {
      // Forwarded only with the user's approval of this exact call; every other answer is a denial.
      const v = await this.consent(cc, r, input.purpose, decision.policy_revision, decisionId, outcome);
      if ('ask' in v) return v.ask as ForwardResult<M>;
      const given = v.given;
      outcome = (o) => this.outcome(decisionId, { consent: given, ...o });
    }

    // A slot held by a call lapses after the call's own timeout (plus a margin): a replica that dies
    // with calls in flight does not hold their places in the shared state for ever.
    const slotTtlMs = (this.d.catalog.service(r.service)?.callTimeoutMs ?? 60_000) + 30_000;
    const admitted = await this.d.limiter.admit(principalKey(cc.principal), r.service, r.facts.local_name, slotTtlMs);
    if ('refused' in admitted) {
      const why = admitted.refused;
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
      void outcome({ outcome: 'refused', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    const conn = this.d.catalog.service(r.service);
    if (!conn) {
      admitted.release();
      const e = new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${r.service}" is not configured`);
      void outcome({ outcome: 'service_error', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    let credential: string;
    try {
      credential = await this.d.credentials.mint({
        service: r.service,
        principal: cc.principal,
        tool: r.facts.local_name,
        purpose: input.purpose,
        decisionId,
        // What the decision narrowed: the authorised purpose's hosts, the permitted roots.
        reach: decisionReach(decision, input),
      });
    } catch (e) {
      admitted.release();
      this.d.log.error({ err: (e as Error).message, service: r.service }, 'minting the service credential failed');
      const ge = new GatewayError('ERR_INTERNAL', 'could not mint the service credential');
      void outcome({ outcome: 'refused', error: { code: ge.code, message: ge.message } });
      throw toProtocolError(ge);
    }
    // Only the agent's `_meta` keys this service is configured to see travel on; the agent's progress
    // token stays here (the connection assigns its own for the service).
    const meta: Record<string, unknown> = {};
    for (const k of conn.forwardMeta) if (k !== 'progressToken' && agentMeta[k] !== undefined) meta[k] = agentMeta[k];

    const tSend = performance.now();
    const finish: Finish = (o) => outcome({ service_us: us(performance.now() - tSend), total_us: us(performance.now() - t0), ...o });
    const call = new PendingCall<Forwarded<M>>(principalKey(cc.principal), r.label, new AbortController(), finish);
    call.obligations = ob;
    call.credential = cc.credential;
    call.sessionId = cc.sessionId;
    const left = this.d.inFlight.enter();
    call.track(
      conn
        .forward(r.method, r.params, {
          meta: { ...meta, [CREDENTIAL_META_KEY]: credential },
          signal: call.controller.signal,
          onprogress: (p) => call.progress?.(p),
          ...(r.park ? { sink: call } : {}),
        })
        .finally(() => {
          admitted.release();
          left();
        }),
    );
    return this.round(call, ctx, r.park);
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
      return {
        allow: false,
        reasons: [{ engine: 'gateway', id: 'engine_error', message: 'policy evaluation failed' }],
        engines: [
          {
            engine: 'gateway',
            allow: false,
            reasons: [{ engine: 'gateway', id: 'engine_error', message: 'policy evaluation failed' }],
            error: 'ERR_POLICY_UNAVAILABLE',
          },
        ],
        obligations: {},
        policy_revision: this.d.policy.revision,
        eval_us: 0,
      };
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
    ctx: ServerContext,
    park: ((call: PendingCall<{ result: T | InputRequiredResult; bytes: number }>) => void) | undefined,
  ): Promise<T | InputRequiredResult> {
    const progressToken = ctx.mcpReq._meta?.progressToken;
    // Notifications are chained and awaited before the result, so the last progress is not
    // overtaken by the response (after which the transport would drop it).
    let relayed: Promise<void> = Promise.resolve();
    call.progress =
      progressToken === undefined
        ? undefined
        : (p) => {
            relayed = relayed.then(() => ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, ...p } })).catch(() => undefined);
          };
    const onAbort = () => call.abandon('cancelled by the agent');
    ctx.mcpReq.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await call.next();
      await relayed;
      if (r.kind === 'interaction') {
        // Only interactive calls register as the service's sink, so only they can see an interaction.
        if (!park) throw toProtocolError(new GatewayError('ERR_INTERNAL', 'an input request reached a call that cannot ask the agent'));
        call.progress = undefined;
        park(call);
        // The service's call goes on across rounds under this one decision: its outcome is written when it ends.
        const requestState = this.d.state.sign(call.principalId, { k: 'parked', tool: call.tool, id: call.id });
        return inputRequired({ inputRequests: { [r.key]: r.req }, requestState });
      }
      if (r.kind === 'error') {
        const e = r.error;
        const cancelled = ctx.mcpReq.signal.aborted || (isGatewayError(e) && e.data?.cancelled === true);
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
        // A 2026 service asks the agent for input: wrap its state so the retry comes back to it, bound to this principal.
        const inner = value.requestState;
        const requestState = this.d.state.sign(call.principalId, { k: 'svc', tool: call.tool, ...(inner !== undefined ? { inner } : {}) });
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
      ctx.mcpReq.signal.removeEventListener('abort', onAbort);
    }
  }

  private async resumeParked(cc: CallContext, id: string, ctx: ServerContext): Promise<ForwardResult<'tools/call'>> {
    const call = this.parked.take(id, principalKey(cc.principal));
    if (!call) {
      const e = new GatewayError('ERR_INPUT_STATE_INVALID', 'the input request has expired or belongs to another caller');
      await this.d.probes.refused(cc, { method: 'tools/call', code: e.code, message: e.message });
      throw toProtocolError(e);
    }
    const responses = ctx.mcpReq.inputResponses ?? {};
    call.answer(Object.values(responses)[0]);
    return this.round(call, ctx, (c) => this.parked.park(c));
  }

  private async stateOf(cc: CallContext, ctx: ServerContext, tool: string): Promise<PipelineState | undefined> {
    // Verified (signature, principal, expiry) by the server's requestState hook before the handler runs.
    const s: unknown = ctx.mcpReq.requestState();
    if (s === undefined) return undefined;
    if (isPipelineState(s)) return s;
    return this.refuse(cc, 'tools/call', 'ERR_INPUT_STATE_INVALID', 'Invalid or expired requestState', tool);
  }

  /** Records a request refused before any decision, then refuses it with -32602 (the message is the agent's). */
  private async refuse(cc: CallContext, method: string, code: string, message: string, tool: string, data?: Record<string, unknown>): Promise<never> {
    await this.d.probes.refused(cc, { method, code, message, tool });
    throw new ProtocolError(-32602, message, data);
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
  if (s.k === 'parked') return 'id' in s && typeof s.id === 'string';
  if (s.k === 'consent') return isConsentState(s);
  return s.k === 'svc' && (!('inner' in s) || typeof s.inner === 'string');
}
