/**
 * The call phase of the data path (docs/ARCHITECTURE.md): resolve -> policy input -> decide ->
 * audit decision -> limits -> mint credential -> forward -> outcome. Era-neutral: the MCP face calls
 * it for `tools/call`, `prompts/get` and `resources/read` from either era with a CallContext.
 */
import { randomUUID } from 'node:crypto';
import { inputRequired, isInputRequiredResult, ProtocolError } from '@modelcontextprotocol/server';
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
import { CREDENTIAL_META_KEY, PURPOSE_META_KEY } from '../../schemas/contracts/service-credential.js';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { GatewayError, isGatewayError, toProtocolError } from '../errors.js';
import type { CallLimiter } from '../state/state.js';
import { buildPolicyInput, decisionReach, isWellFormedJson, type ResourceExtractor } from '../policy/input.js';
import type { Decision, Logger, ToolFacts } from '../types.js';
import type { Catalog } from '../upstream/catalog.js';
import type { Forwarded, ForwardMethod, ForwardParams, ForwardResult } from '../upstream/connection.js';
import type { InFlight } from './in-flight.js';
import { ParkedCalls, PendingCall, type Finish } from './input-requests.js';
import { atOrAbove } from './log-levels.js';
import { missingCapability, relayedCapabilities } from './capabilities.js';
import type { AuditPort, CallContext, CredentialPort, PolicyPort, ProbePort, StatePort } from './ports.js';

export interface CallPipelineDeps {
  catalog: Catalog;
  policy: PolicyPort;
  audit: AuditPort;
  credentials: CredentialPort;
  state: StatePort;
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
  | { k: 'parked'; tool: string; id: string }; // a 2025 service's elicitation, waiting for the agent

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
}

const us = (ms: number) => Math.round(ms * 1000);

export class CallPipeline {
  /** Only tools/call is interactive, so only its calls park. */
  readonly parked: ParkedCalls<Forwarded<'tools/call'>>;

  constructor(private readonly d: CallPipelineDeps) {
    this.parked = new ParkedCalls(d.inputTtlMs ?? 10 * 60_000, d.clock);
  }

  async callTool(cc: CallContext, params: CallToolRequest['params'], ctx: ServerContext): Promise<ForwardResult<'tools/call'>> {
    const state = await this.stateOf(cc, ctx, params.name);
    if (state && state.tool !== params.name)
      return this.refuse(cc, 'tools/call', 'ERR_INPUT_STATE_INVALID', 'requestState does not belong to this tool', params.name);
    if (state?.k === 'parked') return this.resumeParked(cc, state.id, ctx);

    const tool = this.d.catalog.tool(params.name);
    if (!tool) return this.refuse(cc, 'tools/call', 'ERR_TOOL_NOT_FOUND', `Unknown tool: ${params.name}`, params.name);
    const args = params.arguments ?? {};
    const forward: ForwardParams<'tools/call'> = { name: tool.local, arguments: args };
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
    });
  }

  async getPrompt(cc: CallContext, params: GetPromptRequest['params'], ctx: ServerContext): Promise<ForwardResult<'prompts/get'>> {
    const p = this.d.catalog.prompt(params.name);
    if (!p) return this.refuse(cc, 'prompts/get', 'ERR_PROMPT_NOT_FOUND', `Unknown prompt: ${params.name}`, params.name);
    const state = await this.stateOf(cc, ctx, params.name, 'prompts/get');
    if (state && (state.k !== 'svc' || state.tool !== params.name))
      return this.refuse(cc, 'prompts/get', 'ERR_INPUT_STATE_INVALID', 'requestState does not belong to this prompt', params.name);
    const args = params.arguments ?? {};
    const forward: ForwardParams<'prompts/get'> = { name: p.local, arguments: args };
    if (state) {
      // The agent's retry of a 2026 service's input_required for this prompt: decided again, then routed back.
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
  async subscribe(cc: CallContext, params: SubscribeRequest['params'], ctx: ServerContext): Promise<string> {
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
      context: { time: new Date(clock.now()).toISOString(), request_id: cc.requestId, session_id: cc.sessionId, client_ip: cc.clientIp },
    });
    const decision = this.decide(input, decisionId);
    const tokenId = cc.principal.token_id;
    try {
      await this.d.audit.decision({ input, decision, decision_id: decisionId, ...(tokenId ? { token_id: tokenId } : {}) });
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
    const outcome: Finish = (o) => this.outcome(decisionId, o);

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
    // The shared connection, or this principal's (session's) own under `isolation` (upstream/pool).
    let held: Awaited<ReturnType<Catalog['connectionFor']>>;
    try {
      held = await this.d.catalog.connectionFor(r.service, {
        principal: principalKey(cc.principal),
        session: cc.sessionId,
        capabilities: relayedCapabilities(cc.capabilities),
      });
    } catch (e) {
      admitted.release();
      const ge = isGatewayError(e) ? e : new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${r.service}" is unavailable`);
      void outcome({ outcome: 'service_error', error: { code: ge.code, message: ge.message } });
      throw toProtocolError(ge);
    }
    const { conn } = held;
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
      held.release();
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
    const capabilities = relayedCapabilities(cc.capabilities);
    call.capabilities = capabilities;
    const left = this.d.inFlight.enter();
    call.track(
      conn
        .forward(r.method, r.params, {
          meta: { ...meta, [CREDENTIAL_META_KEY]: credential },
          signal: call.controller.signal,
          onprogress: (p) => call.progress?.(p),
          ...(cc.logLevel ? { log: { level: cc.logLevel, relay: (p) => call.log?.(p) } } : {}),
          capabilities,
          ...(r.park ? { sink: call } : {}),
        })
        .finally(() => {
          admitted.release();
          held.release();
          left();
        }),
    );
    return this.round(call, ctx, cc.logLevel, r.park);
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
    level: LoggingLevel | undefined,
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
    // The service's log messages of this call, at or above this agent's threshold, in the same chain.
    call.log =
      level === undefined
        ? undefined
        : (p) => {
            if (!atOrAbove(p.level, level)) return;
            const params = { level: p.level, data: p.data, ...(typeof p.logger === 'string' ? { logger: p.logger } : {}) };
            relayed = relayed.then(() => ctx.mcpReq.notify({ method: 'notifications/message', params })).catch(() => undefined);
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
        call.log = undefined;
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
        throw isGatewayError(e) ? toProtocolError(e) : e;
      }
      const { result: value, bytes } = r.value;
      if (isInputRequiredResult(value)) {
        const missing = Object.values(value.inputRequests ?? {})
          .map((req) => missingCapability(call.capabilities, req))
          .find((m) => m !== undefined);
        if (missing !== undefined) {
          // The service asked for what the agent never declared (its envelope said so): never relayed.
          const e = new GatewayError('ERR_INPUT_REQUEST_REFUSED', `the service asked for input the calling agent did not declare: ${missing}`);
          await this.written(call.finish({ outcome: 'service_error', error: { code: e.code, message: e.message } }));
          throw toProtocolError(e);
        }
        // A 2026 service asks the agent for input: wrap its state so the retry comes back to it, bound to this principal.
        const inner = value.requestState;
        const requestState = this.d.state.sign(call.principalId, { k: 'svc', tool: call.tool, ...(inner !== undefined ? { inner } : {}) });
        await this.written(call.finish({ outcome: 'input_required' }));
        return inputRequired({ inputRequests: value.inputRequests ?? {}, requestState });
      }
      await this.written(call.finish({ outcome: 'isError' in value && value.isError === true ? 'tool_error' : 'ok', response_bytes: bytes, result: value }));
      return value;
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
    return this.round(call, ctx, cc.logLevel, (c) => this.parked.park(c));
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
  return s.k === 'svc' && (!('inner' in s) || typeof s.inner === 'string');
}
