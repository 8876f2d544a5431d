/**
 * The namespaced catalog: tools and prompts of service `fs` appear as `fs.<name>` (or under the prefix and
 * aliases of `services.fs.expose`; policies always see the canonical `fs.<name>`); resources keep their
 * URIs and are routed to the service that listed them (or whose template matches). Rebuilt only when a
 * service's lists change, and shared by every session: sessions never copy it. Two services never share
 * an exposed name: a clash is a start-up error (`clashes()`), and one that appears later (a service that
 * connects late, a list change) leaves the name with the service that had it and withholds the newcomer
 * (event `clash`, audited by the composition root).
 */
import { EventEmitter } from 'node:events';
import { UriTemplate } from '@modelcontextprotocol/client';
import type { ClientCapabilities, Prompt, Resource, ResourceTemplateType as ResourceTemplate, Tool } from '@modelcontextprotocol/client';
import type { Config } from '../config/types.js';
import type { Logger, ToolFacts } from '../types.js';
import { canonicalJson, sha256 } from '../canonical.js';
import { type ForwardMethod, ServiceConnection, type ServiceEnvironment } from './connection.js';
import { GatewayError } from '../errors.js';
import { type Clock, systemClock } from '../clock.js';
import { ConnectionPool } from './pool.js';
import { OverflowRouter } from './overflow.js';
import type { ToolPins } from './pins.js';

/** A tool whose listed definition differs from its pin: hidden, and its calls refused, until approved. */
export interface QuarantinedTool {
  service: string;
  /** "<service>.<tool>". */
  canonical: string;
  /** The pinned (approved) definition's hash. */
  pinned: string;
  /** The hash of what the service lists now. */
  listed: string;
  /** The name agents would call it by (services.<name>.expose), when that differs from the canonical one. */
  exposed?: string;
}

/**
 * One entry agents can ask for (a tool or a prompt) under its namespaced name, with the facts
 * policy decides on, computed once per catalog rebuild rather than per decision.
 */
interface CatalogEntry<D> {
  /** The name agents see and call: "fs.read", or as `expose` says ("read", "files.read", "read_file"). */
  name: string;
  /** The canonical name policies decide on: "<service>.<name at the service>" (also `facts.name`). */
  canonical: string;
  service: string;
  local: string;
  /** The definition agents see (exposed name). */
  definition: D;
  /** The `tool` facts of the policy input; `definition_hash` is sha256 over the service's own definition. */
  facts: ToolFacts;
}

export type CatalogTool = CatalogEntry<Tool>;
export type CatalogPrompt = CatalogEntry<Prompt>;

export type ChangeKind = 'tools' | 'prompts' | 'resources';

/** Two services that would expose the same tool, prompt, resource URI or resource template. */
export interface NameClash {
  kind: 'tool' | 'prompt' | 'resource' | 'resource template';
  /** The exposed name or the URI (template). */
  name: string;
  /** Who keeps it: the entry that had it, else the service first in the config. */
  holder: { service: string; canonical: string };
  /** Who is withheld. */
  other: { service: string; canonical: string };
}

/** The start-up error for a clash: both services, both canonical names, and what resolves it. */
export function clashMessage(c: NameClash): string {
  if (c.kind === 'resource' || c.kind === 'resource template')
    return `${c.kind} "${c.name}" is listed by both service "${c.holder.service}" and service "${c.other.service}"; a URI cannot be renamed, so one of the services must stop listing it`;
  const both = `service "${c.holder.service}" (${c.holder.canonical}) and service "${c.other.service}" (${c.other.canonical})`;
  const fix = c.kind === 'tool' ? 'expose.prefix or expose.aliases' : 'expose.prefix or expose.prompt_aliases';
  return `${c.kind} name "${c.name}" is exposed by both ${both}; set services.<name>.${fix} to tell them apart`;
}

/** The exposed name of one tool or prompt of a service, per its `expose` config. */
function exposedName(service: string, expose: ExposeConfig | undefined, aliases: Record<string, string> | undefined, local: string): string {
  const alias = aliases?.[local];
  if (alias !== undefined) return alias;
  const prefix = expose?.prefix ?? service;
  return prefix === '' ? local : `${prefix}.${local}`;
}

type ExposeConfig = NonNullable<Config['services'][string]['expose']>;

/** Keeps one claimant per name: the one that held it before (no flapping for agents), else the first in config order. */
class Claims<T extends { service: string; canonical: string }> {
  readonly kept = new Map<string, T>();
  constructor(
    private readonly kind: NameClash['kind'],
    private readonly before: (name: string) => { service: string; canonical: string } | undefined,
    private readonly clashes: NameClash[],
  ) {}

  claim(name: string, entry: T): void {
    const held = this.kept.get(name);
    if (!held) {
      this.kept.set(name, entry);
      return;
    }
    const prev = this.before(name);
    const incumbent = prev !== undefined && prev.service === entry.service && prev.canonical === entry.canonical;
    const [keep, drop] = incumbent ? [entry, held] : [held, entry];
    this.kept.set(name, keep);
    this.clashes.push({
      kind: this.kind,
      name,
      holder: { service: keep.service, canonical: keep.canonical },
      other: { service: drop.service, canonical: drop.canonical },
    });
  }
}

export class Catalog extends EventEmitter {
  readonly services = new Map<string, ServiceConnection>();
  /** Isolated connections of the services configured with `isolation: principal | session`. */
  readonly pools = new Map<string, { isolation: 'principal' | 'session'; pool: ConnectionPool<ServiceConnection> }>();
  /** Overflow connections of shared services (`services.<name>.overflow`; used while the service is 2025-era). */
  readonly overflows = new Map<string, OverflowRouter<ServiceConnection>>();
  private toolList: CatalogTool[] = [];
  private toolIndex = new Map<string, CatalogTool>();
  private promptList: CatalogPrompt[] = [];
  private promptIndex = new Map<string, CatalogPrompt>();
  private resourceList: Resource[] = [];
  private resourceOwner = new Map<string, string>();
  private templateList: Array<{ service: string; template: ResourceTemplate; matcher: UriTemplate }> = [];
  private quarantine = new Map<string, QuarantinedTool>();
  /** Bumped on every rebuild. */
  version = 0;
  private readonly signatures: Record<ChangeKind, string | undefined> = { tools: undefined, prompts: undefined, resources: undefined };
  private clashList: NameClash[] = [];
  /** Until start() returns, the config order decides who holds a name; afterwards the holder keeps it. */
  private started = false;
  /** Clashes already reported (`clash` event), so a rebuild does not report them again. */
  private readonly reported = new Set<string>();
  private readonly expose = new Map<string, ExposeConfig | undefined>();

  constructor(
    config: Config,
    private readonly log: Logger,
    environmentFor: (service: string) => ServiceEnvironment = () => ({}),
    clock: Clock = systemClock,
    /** Pinned tool definitions; without them every listed definition is served as listed. */
    private readonly pins?: ToolPins,
  ) {
    super();
    // An operator's approval (the CLI rewrote the pin file) may release a quarantined tool.
    pins?.watch(() => this.rebuild('tools'));
    for (const [name, cfg] of Object.entries(config.services)) {
      this.expose.set(name, cfg.expose);
      const isolation = cfg.isolation ?? 'shared';
      if (isolation !== 'shared') {
        const pool = new ConnectionPool<ServiceConnection>({
          service: name,
          max: cfg.pool.max,
          idleMs: cfg.pool.idle_s * 1000,
          clock,
          // Calls only: the shared connection keeps the lists, so a pooled one tells nobody of changes.
          create: (key, capabilities) => {
            const c = new ServiceConnection(name, cfg, log.child({ pooled: key.slice(0, 12) }), environmentFor(name), capabilities);
            c.on('resourceUpdated', (uri: string) => this.emit('resourceUpdated', name, uri));
            return c;
          },
        });
        this.pools.set(name, { isolation, pool });
      }
      const conn = new ServiceConnection(name, cfg, log, environmentFor(name));
      conn.on('changed', (kind: ChangeKind | 'all') => this.rebuild(kind, name));
      conn.on('resourceUpdated', (uri: string) => this.emit('resourceUpdated', name, uri));
      this.services.set(name, conn);
      // Defaults (max 16, idle 60 s) come from the config schema, like every other setting.
      if (isolation === 'shared' && cfg.overflow.max > 0) {
        let n = 0;
        const router = new OverflowRouter<ServiceConnection>({
          service: name,
          main: conn,
          max: cfg.overflow.max,
          idleMs: cfg.overflow.idle_s * 1000,
          clock,
          // Calls only, like a pooled connection: the main one keeps the lists and the subscriptions. A
          // call there may change the service's lists (a remote one may tell only the session it came
          // through): the main connection lists again and agents are told.
          create: () => {
            // One breaker and one concurrency cap for the service, whichever of its connections a call takes.
            const c = new ServiceConnection(name, cfg, log.child({ overflow: ++n }), { ...environmentFor(name), guard: conn.guard });
            c.on('changed', (kind: ChangeKind | 'all') => {
              if (kind !== 'all') void this.relisted(name, kind, true);
            });
            return c;
          },
        });
        this.overflows.set(name, router);
      }
    }
  }

  /** Connects every service in parallel. A service that fails keeps retrying; the others serve. */
  async start(): Promise<void> {
    await Promise.all([...this.services.values()].map((s) => s.start()));
    // Who holds a name at start-up follows the config order, not which service connected first.
    this.started = true;
    this.rebuild('all');
    // An alias of a tool or prompt the service does not list is most likely a typo: say so once.
    for (const s of this.services.values()) {
      const expose = this.expose.get(s.name);
      if (s.state !== 'ready' || !expose) continue;
      const tools = new Set(s.tools.map((t) => t.name));
      const prompts = new Set(s.prompts.map((p) => p.name));
      for (const local of Object.keys(expose.aliases ?? {}).filter((n) => !tools.has(n)))
        this.log.warn({ service: s.name, tool: local }, `services.${s.name}.expose.aliases names a tool the service does not list: ${local}`);
      for (const local of Object.keys(expose.prompt_aliases ?? {}).filter((n) => !prompts.has(n)))
        this.log.warn({ service: s.name, prompt: local }, `services.${s.name}.expose.prompt_aliases names a prompt the service does not list: ${local}`);
    }
  }

  async stop(): Promise<void> {
    this.pins?.close();
    await Promise.all([
      ...[...this.pools.values()].map((p) => p.pool.close()),
      ...[...this.overflows.values()].map((o) => o.close()),
      ...[...this.services.values()].map((s) => s.stop()),
    ]);
  }

  /**
   * Where a call of this agent went, when that connection exists: its isolation key (shared: "") and
   * connection. For state a connection holds on the agent's behalf (a resource subscription).
   */
  connectionOf(service: string, agent: { principal: string; session: string | null }): { key: string; conn: ServiceConnection | undefined } {
    const isolated = this.pools.get(service);
    if (!isolated) return { key: '', conn: this.services.get(service) };
    const key = isolated.isolation === 'session' && agent.session !== null ? `${agent.principal}\u0000${agent.session}` : agent.principal;
    return { key, conn: isolated.pool.peek(key) };
  }

  /**
   * The connection a call of this agent goes to, held until `release`: the service's shared one (or,
   * while that waits for an agent, one of its overflow connections), or under `isolation` the
   * principal's (or the 2025 session's) own from the pool.
   */
  async connectionFor(
    service: string,
    agent: { principal: string; session: string | null; capabilities: ClientCapabilities },
    /** The call: a subscription stays on the shared connection; others may overflow (upstream/overflow). */
    call?: { method: ForwardMethod; name: string | undefined },
  ): Promise<{ conn: ServiceConnection; release: () => void }> {
    // A subscription stays on the connection that holds the agent's others (shared or its first own one).
    const subscription = call?.method === 'resources/subscribe' || call?.method === 'resources/unsubscribe';
    const isolated = this.pools.get(service);
    if (isolated) {
      const perSession = isolated.isolation === 'session' && agent.session !== null;
      const { key } = this.connectionOf(service, agent);
      // While the principal's (session's) connection waits for an agent, a call takes another of its
      // own: an abandoned round blocks none of the principal's other agents. Bounded by the pool (each
      // waiting key is in it); subscriptions stay on the first.
      let k = key;
      for (let i = 2; !subscription && (isolated.pool.peek(k)?.waiting ?? 0) > 0; i++) k = `${key}\u0000#${i}`;
      // A connection of one agent session declares exactly that agent's capabilities (a 2025 service
      // learns them at initialize); one shared by a principal's sessions declares the gateway's set.
      return isolated.pool.acquire(k, perSession ? agent.capabilities : undefined);
    }
    const overflow = this.overflows.get(service);
    if (overflow && call && !subscription) return overflow.acquire(call);
    const conn = this.services.get(service);
    if (!conn) throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${service}" is not configured`);
    return { conn, release: () => undefined };
  }

  /** The clashes of the current lists (each withheld entry once); empty when every name has one owner. */
  clashes(): readonly NameClash[] {
    return this.clashList;
  }

  tools(): readonly CatalogTool[] {
    return this.toolList;
  }

  tool(name: string): CatalogTool | undefined {
    return this.toolIndex.get(name);
  }

  /** The quarantined tool of this name (its definition changed since it was pinned), if any. */
  quarantined(name: string): QuarantinedTool | undefined {
    const q = this.quarantine.get(name);
    if (q) return q;
    for (const held of this.quarantine.values()) if (held.exposed === name) return held;
    return undefined;
  }

  /** Every quarantined tool, by name (for /readyz and the operator). */
  quarantinedTools(): ReadonlyMap<string, QuarantinedTool> {
    return this.quarantine;
  }

  prompts(): readonly CatalogPrompt[] {
    return this.promptList;
  }

  prompt(name: string): CatalogPrompt | undefined {
    return this.promptIndex.get(name);
  }

  resources(): readonly Resource[] {
    return this.resourceList;
  }

  /** Resource templates with the policy's `tool` facts (the URI template names it), for the list phase. */
  templateEntries(): Array<{ template: ResourceTemplate; facts: ToolFacts }> {
    return this.templateList.map((t) => ({ template: t.template, facts: this.resourceFacts(t.service, t.template.uriTemplate) }));
  }

  /** The policy's `tool` facts for reading one resource: the URI names it, the service is its namespace. */
  resourceFacts(service: string, uri: string): ToolFacts {
    return { name: uri, namespace: service, local_name: uri, annotations: {}, definition_hash: sha256(uri) };
  }

  /** The service that published this resource template (exactly this `uriTemplate`), for completion. */
  templateService(uriTemplate: string): string | undefined {
    return this.templateList.find((t) => t.template.uriTemplate === uriTemplate)?.service;
  }

  /** The service that serves a resource URI: the one that listed it, else the first whose template matches. */
  resourceService(uri: string): string | undefined {
    const owner = this.resourceOwner.get(uri);
    if (owner) return owner;
    for (const t of this.templateList) {
      if (t.matcher.match(uri)) return t.service;
    }
    return undefined;
  }

  service(name: string): ServiceConnection | undefined {
    return this.services.get(name);
  }

  /** Per service; `connections` counts the extra ones (overflow or isolated) when the service has them. */
  health(): Array<{
    name: string;
    state: string;
    era?: string;
    tools: number;
    restarts: number;
    breaker: string;
    in_flight: number;
    connections?: { overflow: number } | { isolated: number };
    resource_subscriptions?: number;
    quarantined_tools?: string[];
    error?: string;
  }> {
    const quarantined = new Map<string, string[]>();
    for (const [canonical, q] of this.quarantine) quarantined.set(q.service, [...(quarantined.get(q.service) ?? []), canonical]);
    return [...this.services.values()].map((s) => {
      const overflow = this.overflows.get(s.name);
      const pool = this.pools.get(s.name)?.pool;
      return {
        name: s.name,
        state: s.state,
        ...(s.era ? { era: s.era } : {}),
        tools: s.tools.length,
        restarts: s.restarts,
        breaker: s.guard.state,
        in_flight: s.guard.active,
        ...(overflow ? { connections: { overflow: overflow.size } } : pool ? { connections: { isolated: pool.size } } : {}),
        // A 2026-07-28 service: the URIs the gateway holds on its listen stream (a 2025 service keeps its own count).
        ...(s.era === 'modern' ? { resource_subscriptions: s.resourceSubscriptions } : {}),
        // Tools hidden until an operator approves their changed definition (canonical names; readiness unchanged).
        ...(quarantined.has(s.name) ? { quarantined_tools: quarantined.get(s.name)!.sort() } : {}),
        ...(s.lastError ? { error: s.lastError } : {}),
      };
    });
  }

  /**
   * Another replica saw `service`'s list change: list it again here (a remote service may tell only
   * the connection it changed through). The caller has already told this replica's agents, so the
   * rebuild tells nobody, and nothing goes back to the other replicas. A service this replica does not
   * have, or a failed list, leaves the catalog as it was.
   */
  async peerChanged(service: string, kind: ChangeKind): Promise<void> {
    return this.relisted(service, kind, false);
  }

  /** Lists `kind` of `service` again on its main connection and rebuilds (telling agents when `notify`). */
  private async relisted(service: string, kind: ChangeKind, notify: boolean): Promise<void> {
    const conn = this.services.get(service);
    if (!conn) return;
    try {
      await conn.relist(kind);
    } catch (e) {
      this.log.warn({ service, kind, err: (e as Error).message }, 'listing the service again after a change elsewhere failed');
      return;
    }
    this.rebuild(kind, service, notify);
  }

  /** Rebuilds the namespaced lists; emits `listChanged` (kind, service) for each list that really changed, when `notify`. */
  private rebuild(kind: ChangeKind | 'all', service?: string, notify = true): void {
    const clashes: NameClash[] = [];
    const held = <T>(v: T | undefined): T | undefined => (this.started ? v : undefined);
    const tools = new Claims<CatalogTool>('tool', (n) => held(this.toolIndex.get(n)), clashes);
    const prompts = new Claims<CatalogPrompt>('prompt', (n) => held(this.promptIndex.get(n)), clashes);
    const uris = new Claims<{ service: string; canonical: string; resource: Resource }>(
      'resource',
      (u) => {
        const service = held(this.resourceOwner.get(u));
        return service === undefined ? undefined : { service, canonical: u };
      },
      clashes,
    );
    const templateOwner = new Map(this.templateList.map((t) => [t.template.uriTemplate, t.service]));
    const templates = new Claims<{ service: string; canonical: string; template: ResourceTemplate; matcher: UriTemplate }>(
      'resource template',
      (u) => {
        const service = held(templateOwner.get(u));
        return service === undefined ? undefined : { service, canonical: u };
      },
      clashes,
    );
    const quarantine = new Map<string, QuarantinedTool>();
    // A service that is down (restarting) keeps its last known lists: agents do not see tools flap,
    // and a call made meanwhile waits briefly for the restart, then fails as unavailable.
    for (const s of this.services.values()) {
      const expose = this.expose.get(s.name);
      for (const t of s.tools) {
        const canonical = `${s.name}.${t.name}`;
        const name = exposedName(s.name, expose, expose?.aliases, t.name);
        // Only a pinned definition is served: policy sees the hash and annotations of what was approved.
        const pin = this.pins?.check(canonical, { ...t });
        if (pin?.state === 'changed') {
          quarantine.set(canonical, { service: s.name, canonical, pinned: pin.pinned, listed: pin.hash, ...(name !== canonical ? { exposed: name } : {}) });
          continue;
        }
        const annotations: Record<string, unknown> = { ...(t.annotations ?? {}) };
        const facts = { name: canonical, namespace: s.name, local_name: t.name, annotations, definition_hash: sha256(canonicalJson(t)) };
        tools.claim(name, { name, canonical, service: s.name, local: t.name, definition: { ...t, name }, facts });
      }
      for (const p of s.prompts) {
        const canonical = `${s.name}.${p.name}`;
        const name = exposedName(s.name, expose, expose?.prompt_aliases, p.name);
        const facts = {
          name: canonical,
          namespace: s.name,
          local_name: p.name,
          annotations: {},
          definition_hash: sha256(canonicalJson({ ...p, name: canonical })),
        };
        prompts.claim(name, { name, canonical, service: s.name, local: p.name, definition: { ...p, name }, facts });
      }
      for (const r of s.resources) uris.claim(r.uri, { service: s.name, canonical: r.uri, resource: r });
      for (const t of s.templates) {
        try {
          templates.claim(t.uriTemplate, { service: s.name, canonical: t.uriTemplate, template: t, matcher: new UriTemplate(t.uriTemplate) });
        } catch {
          this.log.warn({ service: s.name, template: t.uriTemplate }, 'invalid resource template ignored');
        }
      }
    }
    const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    this.toolList = [...tools.kept.values()].sort(byName);
    this.toolIndex = new Map(tools.kept);
    this.promptList = [...prompts.kept.values()].sort(byName);
    this.promptIndex = new Map(prompts.kept);
    this.resourceList = [...uris.kept.values()].map((r) => r.resource);
    this.resourceOwner = new Map([...uris.kept].map(([u, r]) => [u, r.service]));
    this.templateList = [...templates.kept.values()];
    this.clashList = clashes;
    this.quarantine = quarantine;
    this.pins?.flush();
    this.version++;
    for (const c of clashes) {
      const key = `${c.kind}\u0001${c.name}\u0001${c.other.service}\u0001${c.other.canonical}`;
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.log.warn({ kind: c.kind, name: c.name, service: c.other.service, holder: c.holder.service }, clashMessage(c));
      this.emit('clash', c);
    }
    const toolList = this.toolList;
    const promptList = this.promptList;
    const resources = this.resourceList;
    const templateList = this.templateList;
    // Tell agents only about lists that really changed (a restart usually changes nothing).
    const sig: Record<ChangeKind, string> = {
      tools: toolList.map((t) => `${t.name}@${t.facts.definition_hash}`).join('\n'),
      prompts: promptList.map((p) => p.name).join('\n'),
      resources: `${resources.map((r) => r.uri).join('\n')}\n${templateList.map((t) => t.template.uriTemplate).join('\n')}`,
    };
    const kinds: ChangeKind[] = kind === 'all' ? ['tools', 'prompts', 'resources'] : [kind];
    for (const k of kinds) {
      if (sig[k] === this.signatures[k]) continue;
      this.signatures[k] = sig[k];
      if (notify) this.emit('listChanged', k, service);
    }
  }
}
