/**
 * What a principal sees: the list phase of the data path. `tools/list`, `prompts/list` and
 * `resources/list` show only the entries the principal could ever be allowed (arguments are unknown
 * at list time, so every call is decided again); pages are cut from the filtered list, and the cursor
 * is signed and bound to the principal like requestState. The same list-phase decision answers
 * step-up: a tools/call the list phase hides only for want of scope gets 403 insufficient_scope.
 */
import { ProtocolError } from '@modelcontextprotocol/server';
import type { ListPromptsResult, ListResourcesResult, ListResourceTemplatesResult, ListToolsResult } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Clock } from '../clock.js';
import { buildPolicyInput, failedDecision } from '../policy/input.js';
import type { Decision, Logger, Principal, ToolFacts } from '../types.js';
import type { Catalog } from '../upstream/catalog.js';
import type { CallContext, PolicyPort, ProbePort, StatePort } from './ports.js';

export interface ListViewDeps {
  catalog: Catalog;
  policy: PolicyPort;
  state: StatePort;
  /** Where a forged or foreign cursor is recorded. */
  probes: ProbePort;
  log: Logger;
  pageSize: number;
  clock: Clock;
}

/** List-phase decisions are reused this long (a policy reload changes the revision, and so the key). */
const CACHE_TTL_MS = 5000;
const CACHE_MAX = 50_000;

type ListMethod = 'tools/list' | 'prompts/list' | 'resources/list' | 'resources/templates/list';

export class ListView {
  private readonly cache = new Map<string, { decision: Decision; until: number }>();

  constructor(private readonly d: ListViewDeps) {}

  async tools(cc: CallContext, cursor: string | undefined): Promise<ListToolsResult> {
    const { page, nextCursor } = await this.page(cc, 'tools/list', this.visible(cc, 'tools/list', this.d.catalog.tools()), cursor);
    return { tools: page.map((t) => t.definition), ...(nextCursor ? { nextCursor } : {}) };
  }

  async prompts(cc: CallContext, cursor: string | undefined): Promise<ListPromptsResult> {
    const { page, nextCursor } = await this.page(cc, 'prompts/list', this.visible(cc, 'prompts/list', this.d.catalog.prompts()), cursor);
    return { prompts: page.map((p) => p.definition), ...(nextCursor ? { nextCursor } : {}) };
  }

  async resources(cc: CallContext, cursor: string | undefined): Promise<ListResourcesResult> {
    const { catalog } = this.d;
    const entries = catalog.resources().map((r) => ({ resource: r, facts: catalog.resourceFacts(catalog.resourceService(r.uri) ?? '', r.uri) }));
    const { page, nextCursor } = await this.page(cc, 'resources/list', this.visible(cc, 'resources/list', entries), cursor);
    return { resources: page.map((e) => e.resource), ...(nextCursor ? { nextCursor } : {}) };
  }

  async resourceTemplates(cc: CallContext, cursor: string | undefined): Promise<ListResourceTemplatesResult> {
    // Filtered like every other list (action list_resource_templates); every read of a concrete URI
    // is still decided on its own.
    const { page, nextCursor } = await this.page(
      cc,
      'resources/templates/list',
      this.visible(cc, 'resources/templates/list', this.d.catalog.templateEntries()),
      cursor,
    );
    return { resourceTemplates: page.map((e) => e.template), ...(nextCursor ? { nextCursor } : {}) };
  }

  /**
   * Step-up (MCP authorization spec): the scopes that would make a tools/call of `toolName` visible
   * to this principal, when the list phase hides it for want of scope; undefined otherwise (unknown
   * tool, visible tool, or hidden for another reason), so the call is decided and audited as usual.
   */
  stepUpScopes(principal: Principal, toolName: string, requestId: string): string[] | undefined {
    const tool = this.d.catalog.tool(toolName);
    if (!tool) return undefined;
    const d = this.decide(principal, 'tools/list', tool.facts, { request_id: requestId, session_id: null, client_ip: null });
    const up = d.allow ? undefined : d.obligations.step_up_scopes;
    return Array.isArray(up) && up.length > 0 && up.every((s): s is string => typeof s === 'string') ? up : undefined;
  }

  private visible<T extends { facts: ToolFacts }>(cc: CallContext, method: ListMethod, items: readonly T[]): T[] {
    const context = { request_id: cc.requestId, session_id: cc.sessionId, client_ip: cc.clientIp };
    return items.filter((item) => this.decide(cc.principal, method, item.facts, context).allow);
  }

  /**
   * The list-phase decision for one principal and entry. It depends only on the principal's claims,
   * the entry and the policy revision, so it is cached briefly: lists are asked for often and are the
   * same for every call of a session.
   */
  private decide(
    principal: Principal,
    method: ListMethod,
    facts: ToolFacts,
    context: { request_id: string; session_id: string | null; client_ip: string | null },
  ): Decision {
    const key = `${principalKey(principal)}\u0001${principal.scopes.join(' ')}\u0001${principal.groups.join(' ')}\u0001${principal.purpose ?? ''}\u0001${(principal.purposes ?? []).join(' ')}\u0001${method}\u0001${facts.name}\u0001${facts.definition_hash}\u0001${this.d.policy.revision}`;
    const now = this.d.clock.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.decision;
    let decision: Decision;
    try {
      decision = this.d.policy.decide(
        buildPolicyInput({
          method,
          principal,
          purpose: principal.purpose,
          tool: facts,
          context: { ...context, time: new Date(now).toISOString() },
        }),
      );
    } catch (e) {
      // Fail closed: an entry whose decision fails is hidden (and not cached, so it is tried again).
      this.d.log.error({ err: (e as Error).message, tool: facts.name }, 'policy error at list time: entry hidden');
      return failedDecision(this.d.policy.revision);
    }
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(key, { decision, until: now + CACHE_TTL_MS });
    return decision;
  }

  /** One page of a filtered list; anything but a cursor this gateway signed for this principal is -32602. */
  private async page<T>(cc: CallContext, method: string, items: readonly T[], cursor: string | undefined): Promise<{ page: T[]; nextCursor?: string }> {
    const who = principalKey(cc.principal);
    let offset = 0;
    if (cursor !== undefined) {
      let o: unknown;
      try {
        const payload = this.d.state.verify(who, cursor);
        o = typeof payload === 'object' && payload !== null && 'o' in payload ? payload.o : undefined;
      } catch {
        o = undefined;
      }
      if (typeof o !== 'number' || !Number.isInteger(o) || o < 0) {
        await this.d.probes.refused(cc, { method, code: 'ERR_CURSOR_INVALID', message: 'Invalid cursor' });
        throw new ProtocolError(-32602, 'Invalid cursor');
      }
      offset = o;
    }
    const size = this.d.pageSize;
    const page = items.slice(offset, offset + size);
    const next = offset + size;
    return next < items.length ? { page, nextCursor: this.d.state.sign(who, { k: 'cursor', o: next }) } : { page };
  }
}
