/**
 * The data path of one request (ARCHITECTURE.md): resolve -> input -> decide -> audit -> forward ->
 * outcome. Era-neutral: the MCP face (server.ts) calls these with a CallContext for either era.
 */
import { randomUUID } from 'node:crypto';
import { inputRequired, ProtocolError } from '@modelcontextprotocol/server';
import type { ServerContext } from '@modelcontextprotocol/server';
import { GatewayError, isGatewayError, toJsonRpcError } from '../errors.js';
import type { Catalog, CatalogTool } from '../catalog/catalog.js';
import { buildPolicyInput } from '../policy/input.js';
import { principalKey } from '../auth/state.js';
import { canonicalJson, sha256 } from '../canonical.js';
import type { Decision, Logger, PolicyInput, Principal, ToolFacts } from '../types.js';
import { ParkedCalls, PendingCall } from './interactions.js';
import type { Limiter } from '../limits/limiter.js';
import {
  CREDENTIAL_META_KEY,
  PURPOSE_META_KEY,
  type AuditPort,
  type CredentialPort,
  type OutcomeAudit,
  type PolicyPort,
  type StatePort,
} from './ports.js';

export interface CallContext {
  principal: Principal;
  era: 'legacy' | 'modern';
  sessionId: string | null;
  requestId: string;
  clientIp: string | null;
}

export interface GatewayDeps {
  catalog: Catalog;
  policy: PolicyPort;
  audit: AuditPort;
  credentials: CredentialPort;
  state: StatePort;
  log: Logger;
  pageSize: number;
  /** Rate and concurrency limits, checked after an allow (a refusal is an outcome of that decision). */
  limiter: Limiter;
  /** How long a call that waits for an agent's input stays parked. */
  inputTtlMs?: number;
}

/** requestState payloads the gateway signs for the agent to bring back. */
type GatewayState =
  | { k: 'svc'; tool: string; inner?: string } // a 2026 service's input_required, wrapped
  | { k: 'parked'; tool: string; id: string }; // a 2025 service's elicitation, waiting for the agent

type Result = Record<string, unknown>;
type Finish = (o: Omit<OutcomeAudit, 'decision_id'>) => Promise<void>;
type Ctx = ServerContext;

const now = () => performance.now();
/** List-phase decisions are reused this long (a policy reload changes the revision, and so the key). */
const LIST_CACHE_TTL_MS = 5000;
const LIST_CACHE_MAX = 50_000;

export class Gateway {
  readonly parked: ParkedCalls;
  private inflight = 0;
  private drainWaiters: Array<() => void> = [];
  private readonly finishers = new WeakMap<PendingCall, Finish>();
  private readonly listCache = new Map<string, { decision: Decision; until: number }>();

  constructor(private readonly d: GatewayDeps) {
    this.parked = new ParkedCalls(d.inputTtlMs ?? 10 * 60_000, (call) => {
      void this.finishers.get(call)?.({ outcome: 'cancelled', error: { code: 'ERR_INPUT_STATE_INVALID', message: 'the agent did not answer the input request in time' } });
    });
  }

  /** Calls being forwarded right now (SIGTERM waits for them). */
  get inFlight(): number {
    return this.inflight;
  }

  /** Resolves when no call is in flight, or after `ms`. */
  async drain(ms: number): Promise<void> {
    if (this.inflight === 0) return;
    await Promise.race([new Promise<void>((r) => this.drainWaiters.push(r)), new Promise((r) => setTimeout(r, ms).unref())]);
  }

  // ---- tools ------------------------------------------------------------------------------------

  async listTools(cc: CallContext, params: { cursor?: string } | undefined): Promise<Result> {
    return this.listVisible(cc, 'tools/list', 'tools', this.d.catalog.tools(), toolFacts, (t) => t.definition, params?.cursor);
  }

  async callTool(cc: CallContext, params: Record<string, unknown>, ctx: Ctx): Promise<Result> {
    const name = String(params.name ?? '');
    const state = this.stateOf(ctx);
    if (state && state.tool !== name) throw new ProtocolError(-32602, 'requestState does not belong to this tool');
    if (state?.k === 'parked') return this.resumeParked(cc, state.id, ctx);

    const tool = this.d.catalog.tool(name);
    if (!tool) throw new ProtocolError(-32602, `Unknown tool: ${name}`);
    const args = (params.arguments ?? {}) as Record<string, unknown>;
    const fwd: Record<string, unknown> = { name: tool.local, arguments: args };
    if (state?.k === 'svc') {
      // The agent's retry of a 2026 service's input_required: decided again, then routed to the same service.
      if (state.inner !== undefined) fwd.requestState = state.inner;
      if (ctx.mcpReq.inputResponses) fwd.inputResponses = ctx.mcpReq.inputResponses;
    }
    return this.decideAndForward(cc, ctx, {
      method: 'tools/call',
      service: tool.service,
      label: tool.name,
      facts: toolFacts(tool),
      args,
      forwardMethod: 'tools/call',
      forwardParams: fwd,
      interactive: true,
    });
  }

  // ---- prompts ----------------------------------------------------------------------------------

  async listPrompts(cc: CallContext, params: { cursor?: string } | undefined): Promise<Result> {
    return this.listVisible(cc, 'prompts/list', 'prompts', this.d.catalog.prompts(), promptFacts, (p) => p.definition, params?.cursor);
  }

  async getPrompt(cc: CallContext, params: Record<string, unknown>, ctx: Ctx): Promise<Result> {
    const name = String(params.name ?? '');
    const p = this.d.catalog.prompt(name);
    if (!p) throw new ProtocolError(-32602, `Unknown prompt: ${name}`);
    const args = (params.arguments ?? {}) as Record<string, unknown>;
    return this.decideAndForward(cc, ctx, {
      method: 'prompts/get',
      service: p.service,
      label: p.name,
      facts: promptFacts(p),
      args,
      forwardMethod: 'prompts/get',
      forwardParams: { name: p.local, arguments: args },
      interactive: false,
    });
  }

  // ---- resources --------------------------------------------------------------------------------

  async listResources(cc: CallContext, params: { cursor?: string } | undefined): Promise<Result> {
    const facts = (r: { uri: string }) => resourceFacts(this.d.catalog.resourceService(r.uri)!, r.uri);
    return this.listVisible(cc, 'resources/list', 'resources', this.d.catalog.resources(), facts, (r) => r, params?.cursor);
  }

  async listResourceTemplates(cc: CallContext, params: { cursor?: string } | undefined): Promise<Result> {
    // Templates describe URI shapes, not data; every read of a concrete URI is decided on its own.
    const { page, nextCursor } = this.paginate(cc, [...this.d.catalog.templates()], params?.cursor);
    return { resourceTemplates: page, ...(nextCursor ? { nextCursor } : {}) };
  }

  async readResource(cc: CallContext, params: Record<string, unknown>, ctx: Ctx): Promise<Result> {
    const uri = String(params.uri ?? '');
    const service = this.d.catalog.resourceService(uri);
    if (!service) throw new ProtocolError(-32602, `Resource not found: ${uri}`, { uri });
    return this.decideAndForward(cc, ctx, {
      method: 'resources/read',
      service,
      label: uri,
      facts: resourceFacts(service, uri),
      args: { uri },
      forwardMethod: 'resources/read',
      forwardParams: { uri },
      interactive: false,
    });
  }

  // ---- the shared path ---------------------------------------------------------------------------

  /** One page of the entries this principal could ever be allowed (the list phase of the data path). */
  private async listVisible<T>(
    cc: CallContext,
    method: string,
    key: 'tools' | 'prompts' | 'resources',
    items: readonly T[],
    facts: (item: T) => ToolFacts,
    show: (item: T) => unknown,
    cursor: string | undefined,
  ): Promise<Result> {
    const context = this.context(cc);
    const visible: T[] = [];
    for (const item of items) {
      if ((await this.listDecision(cc.principal, method, facts(item), context)).allow) visible.push(item);
    }
    const { page, nextCursor } = this.paginate(cc, visible, cursor);
    return { [key]: page.map(show), ...(nextCursor ? { nextCursor } : {}) };
  }

  /**
   * The list-phase decision for one principal and tool. It depends only on the principal's claims, the
   * tool and the policy revision, so it is cached briefly (lists are asked for often and are the same
   * for every call of a session).
   */
  private async listDecision(principal: Principal, method: string, facts: ToolFacts, context: PolicyInput['context']): Promise<Decision> {
    const key = `${principalKey(principal)}\u0001${principal.scopes.join(' ')}\u0001${principal.groups.join(' ')}\u0001${principal.purpose ?? ''}\u0001${method}\u0001${facts.name}\u0001${facts.definition_hash}\u0001${this.d.policy.revision}`;
    const now = Date.now();
    const hit = this.listCache.get(key);
    if (hit && hit.until > now) return hit.decision;
    let decision: Decision;
    try {
      decision = await this.d.policy.decide(buildPolicyInput({ phase: 'list', method, principal, purpose: principal.purpose, tool: facts, context }));
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, tool: facts.name }, 'policy error at list time: tool hidden');
      return { allow: false, reasons: [{ engine: 'gateway', id: 'engine_error', message: 'policy evaluation failed' }], obligations: {}, policy_revision: this.d.policy.revision, eval_us: 0 };
    }
    if (this.listCache.size >= LIST_CACHE_MAX) this.listCache.clear();
    this.listCache.set(key, { decision, until: now + LIST_CACHE_TTL_MS });
    return decision;
  }

  /**
   * Step-up (MCP authorization spec): when a tools/call is refused only for want of scope, the edge
   * answers HTTP 403 with error="insufficient_scope" and the scopes that would lift it, so the client
   * can ask its authorization server for them. Returns those scopes, or undefined to let the call run
   * (and be decided in full, and audited, as usual).
   */
  async stepUpScopes(principal: Principal, body: unknown, requestId: string): Promise<string[] | undefined> {
    if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
    const msg = body as { method?: unknown; params?: { name?: unknown } };
    if (msg.method !== 'tools/call' || typeof msg.params?.name !== 'string') return undefined;
    const tool = this.d.catalog.tool(msg.params.name);
    if (!tool) return undefined;
    const context = { time: new Date().toISOString(), request_id: requestId, session_id: null, client_ip: null };
    const d = await this.listDecision(principal, 'tools/list', toolFacts(tool), context);
    const up = d.allow ? undefined : d.obligations['step_up_scopes'];
    return Array.isArray(up) && up.length > 0 ? (up as string[]) : undefined;
  }

  private async decideAndForward(
    cc: CallContext,
    ctx: Ctx,
    r: {
      method: string;
      service: string;
      label: string;
      facts: ToolFacts;
      args: Record<string, unknown>;
      forwardMethod: string;
      forwardParams: Record<string, unknown>;
      interactive: boolean;
    },
  ): Promise<Result> {
    const t0 = now();
    const agentMeta = (ctx.mcpReq._meta ?? {}) as Record<string, unknown>;
    const declared = agentMeta[PURPOSE_META_KEY];
    const declaredPurpose = typeof declared === 'string' && declared.length > 0 ? declared.slice(0, 200) : null;
    const decisionId = randomUUID();
    const input = buildPolicyInput({
      phase: 'call',
      method: r.method,
      principal: cc.principal,
      purpose: declaredPurpose,
      tool: r.facts,
      arguments: r.args,
      context: this.context(cc),
    });
    // A purpose bound into the token wins over a declared one.
    const purpose = input.purpose;
    let decision: Decision;
    try {
      decision = await this.d.policy.decide(input);
    } catch (e) {
      // Fail closed: an engine that throws denies.
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'policy evaluation failed');
      decision = {
        allow: false,
        reasons: [{ engine: 'gateway', id: 'engine_error', message: 'policy evaluation failed' }],
        obligations: {},
        policy_revision: this.d.policy.revision,
        eval_us: 0,
      };
    }
    const tokenId = cc.principal.token_id;
    try {
      await this.d.audit.decision({ input, decision, decision_id: decisionId, ...(tokenId ? { token_id: tokenId } : {}) });
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: decisionId }, 'audit write failed: call refused');
      throw toProtocolError(new GatewayError('ERR_AUDIT_UNAVAILABLE', 'the audit log is unavailable; call refused', { decision_id: decisionId }));
    }
    if (!decision.allow) {
      // The decision record is the whole story of a denied call: nothing was forwarded.
      throw toProtocolError(
        new GatewayError('ERR_POLICY_DENIED', `denied by policy: ${[...new Set(decision.reasons.map((x) => x.id))].join(', ') || 'no rule allowed it'}`, {
          decision_id: decisionId,
          reasons: decision.reasons,
          policy_revision: decision.policy_revision,
        }),
      );
    }

    const admitted = this.d.limiter.admit(principalKey(cc.principal), r.service, r.facts.local_name);
    if ('refused' in admitted) {
      const why = admitted.refused;
      const e = new GatewayError(
        'ERR_RATE_LIMITED',
        why.limit === 'rate' ? `rate limit reached for this tool; retry in ${why.retryAfterS} s` : 'too many calls in flight for this principal',
        { decision_id: decisionId, limit: why.limit, ...(why.limit === 'rate' ? { retry_after_s: why.retryAfterS } : {}) },
      );
      void this.outcome({ decision_id: decisionId, outcome: 'refused', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    const conn = this.d.catalog.service(r.service);
    if (!conn) {
      admitted.release();
      const e = new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${r.service}" is not configured`);
      void this.outcome({ decision_id: decisionId, outcome: 'service_error', error: { code: e.code, message: e.message } });
      throw toProtocolError(e);
    }
    let credential: string;
    try {
      credential = await this.d.credentials.mint({ service: r.service, principal: cc.principal, tool: r.facts.local_name, purpose, decisionId });
    } catch (e) {
      admitted.release();
      this.d.log.error({ err: (e as Error).message, service: r.service }, 'minting the service credential failed');
      const ge = new GatewayError('ERR_INTERNAL', 'could not mint the service credential');
      void this.outcome({ decision_id: decisionId, outcome: 'refused', error: { code: ge.code, message: ge.message } });
      throw toProtocolError(ge);
    }
    const meta: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(agentMeta)) if (k !== 'progressToken') meta[k] = v;
    meta[CREDENTIAL_META_KEY] = credential;
    const params = { ...r.forwardParams, _meta: meta };

    const call = new PendingCall(principalKey(cc.principal), r.label, new AbortController());
    const tSend = now();
    this.inflight++;
    call.track(
      conn
        .forward(r.forwardMethod, params, {
          signal: call.controller.signal,
          onprogress: (p) => call.progress?.(p),
          ...(r.interactive ? { sink: call } : {}),
        })
        .finally(() => {
          admitted.release();
          this.callDone();
        }),
    );
    const finish: Finish = async (o) =>
      this.outcome({ decision_id: decisionId, service_us: us(now() - tSend), total_us: us(now() - t0), ...o });
    return this.round(call, ctx, finish);
  }

  /**
   * Runs one round of a forwarded call for the agent request `ctx`: result, error, or an input request.
   * Outcome records are written without holding the answer back: only the decision record must be
   * durable before forwarding (measured: awaiting the outcome's fsync too cost ~40% of throughput at
   * one client); a SIGTERM drain still waits for them.
   */
  private async round(
    call: PendingCall,
    ctx: Ctx,
    finish: Finish,
  ): Promise<Result> {
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
        call.progress = undefined;
        this.parked.park(call);
        this.finishers.set(call, finish);
        // The service's call goes on across rounds under this one decision: its outcome is written when it ends.
        const requestState = this.d.state.sign(call.principalId, { k: 'parked', tool: call.tool, id: call.id });
        return inputRequired({ inputRequests: { [r.key]: r.req as never }, requestState }) as unknown as Result;
      }
      if (r.kind === 'error') {
        const e = r.error;
        const cancelled = ctx.mcpReq.signal.aborted || (isGatewayError(e) && e.data?.cancelled === true);
        void finish({
          outcome: cancelled ? 'cancelled' : isGatewayError(e) && e.code === 'ERR_SERVICE_TIMEOUT' ? 'timeout' : 'service_error',
          error: isGatewayError(e)
            ? { code: e.code, message: e.message }
            : { code: e instanceof ProtocolError ? `JSONRPC_${e.code}` : 'ERR_SERVICE_ERROR', message: 'the service answered with an error' },
        });
        throw isGatewayError(e) ? toProtocolError(e) : e;
      }
      const value = r.value;
      if (value.resultType === 'input_required') {
        // A 2026 service asks the agent for input: wrap its state so the retry comes back to it, bound to this principal.
        const inner = typeof value.requestState === 'string' ? value.requestState : undefined;
        const requestState = this.d.state.sign(call.principalId, { k: 'svc', tool: call.tool, ...(inner !== undefined ? { inner } : {}) });
        void finish({ outcome: 'input_required' });
        return inputRequired({ inputRequests: (value.inputRequests ?? {}) as never, requestState }) as unknown as Result;
      }
      void finish({ outcome: value.isError === true ? 'tool_error' : 'ok', response_bytes: approxSize(value), result: value });
      return value;
    } finally {
      ctx.mcpReq.signal.removeEventListener('abort', onAbort);
    }
  }

  private async resumeParked(cc: CallContext, id: string, ctx: Ctx): Promise<Result> {
    const call = this.parked.take(id, principalKey(cc.principal));
    if (!call) throw toProtocolError(new GatewayError('ERR_INPUT_STATE_INVALID', 'the input request has expired or belongs to another caller'));
    const responses = ctx.mcpReq.inputResponses ?? {};
    const answer = Object.values(responses)[0] as Record<string, unknown> | undefined;
    call.answer(answer);
    return this.round(call, ctx, this.finishers.get(call)!);
  }

  private stateOf(ctx: Ctx): GatewayState | undefined {
    // Verified (signature, principal, expiry) by the server's requestState hook before the handler runs.
    const s = ctx.mcpReq.requestState<GatewayState>();
    if (s === undefined) return undefined;
    if (typeof s !== 'object' || s === null || (s.k !== 'svc' && s.k !== 'parked')) throw new ProtocolError(-32602, 'Invalid or expired requestState');
    return s;
  }

  /**
   * Pages of a filtered, sorted list. The cursor is something the gateway hands the agent to bring
   * back, so it is signed and bound to the principal like requestState; anything else is -32602.
   */
  private paginate<T>(cc: CallContext, items: readonly T[], cursor: string | undefined): { page: T[]; nextCursor?: string } {
    const who = principalKey(cc.principal);
    let offset = 0;
    if (cursor !== undefined) {
      let o: unknown;
      try {
        o = (this.d.state.verify(who, cursor) as { o?: unknown }).o;
      } catch {
        o = undefined;
      }
      if (typeof o !== 'number' || !Number.isInteger(o) || o < 0) throw new ProtocolError(-32602, 'Invalid cursor');
      offset = o;
    }
    const size = this.d.pageSize;
    const page = items.slice(offset, offset + size);
    const next = offset + size;
    return next < items.length ? { page, nextCursor: this.d.state.sign(who, { k: 'cursor', o: next }) } : { page };
  }

  private context(cc: CallContext) {
    return { time: new Date().toISOString(), request_id: cc.requestId, session_id: cc.sessionId, client_ip: cc.clientIp };
  }

  private async outcome(o: OutcomeAudit): Promise<void> {
    try {
      await this.d.audit.outcome(o);
    } catch (e) {
      this.d.log.error({ err: (e as Error).message, decision_id: o.decision_id }, 'audit outcome write failed');
    }
  }

  private callDone(): void {
    this.inflight--;
    if (this.inflight === 0) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of ws) w();
    }
  }
}

export function toolFacts(t: CatalogTool): ToolFacts {
  return { name: t.name, namespace: t.service, local_name: t.local, annotations: t.annotations, definition_hash: t.hash };
}

function promptFacts(p: { name: string; service: string; local: string; definition: unknown }): ToolFacts {
  return { name: p.name, namespace: p.service, local_name: p.local, annotations: {}, definition_hash: sha256(canonicalJson(p.definition)) };
}

function resourceFacts(service: string, uri: string): ToolFacts {
  return { name: uri, namespace: service, local_name: uri, annotations: {}, definition_hash: sha256(uri) };
}

/** GatewayError -> the SDK's ProtocolError (the one place a gateway error becomes JSON-RPC). */
export function toProtocolError(e: GatewayError): ProtocolError {
  const j = toJsonRpcError(e);
  return new ProtocolError(j.code, j.message, j.data);
}

const us = (ms: number) => Math.round(ms * 1000);

function approxSize(v: unknown): number {
  try {
    return JSON.stringify(v).length;
  } catch {
    return 0;
  }
}

