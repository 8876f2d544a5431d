/**
 * The namespaced catalog: tools and prompts of service `fs` appear as `fs.<name>`; resources keep their
 * URIs and are routed to the service that listed them (or whose template matches). Rebuilt only when a
 * service's lists change, and shared by every session: sessions never copy it.
 */
import { EventEmitter } from 'node:events';
import { UriTemplate } from '@modelcontextprotocol/client';
import type { ClientCapabilities, Prompt, Resource, ResourceTemplateType as ResourceTemplate, Tool } from '@modelcontextprotocol/client';
import type { Config } from '../config/types.js';
import type { Logger, ToolFacts } from '../types.js';
import { canonicalJson, sha256 } from '../canonical.js';
import { ServiceConnection, type ServiceEnvironment } from './connection.js';
import { GatewayError } from '../errors.js';
import { type Clock, systemClock } from '../clock.js';
import { ConnectionPool } from './pool.js';

/**
 * One entry agents can ask for (a tool or a prompt) under its namespaced name, with the facts
 * policy decides on, computed once per catalog rebuild rather than per decision.
 */
interface CatalogEntry<D> {
  /** Namespaced name, e.g. "fs.read". */
  name: string;
  service: string;
  local: string;
  /** The definition agents see (namespaced name). */
  definition: D;
  /** The `tool` facts of the policy input; `definition_hash` is sha256 over the service's own definition. */
  facts: ToolFacts;
}

export type CatalogTool = CatalogEntry<Tool>;
export type CatalogPrompt = CatalogEntry<Prompt>;

export type ChangeKind = 'tools' | 'prompts' | 'resources';

export class Catalog extends EventEmitter {
  readonly services = new Map<string, ServiceConnection>();
  /** Isolated connections of the services configured with `isolation: principal | session`. */
  readonly pools = new Map<string, { isolation: 'principal' | 'session'; pool: ConnectionPool<ServiceConnection> }>();
  private toolList: CatalogTool[] = [];
  private toolIndex = new Map<string, CatalogTool>();
  private promptList: CatalogPrompt[] = [];
  private promptIndex = new Map<string, CatalogPrompt>();
  private resourceList: Resource[] = [];
  private resourceOwner = new Map<string, string>();
  private templateList: Array<{ service: string; template: ResourceTemplate; matcher: UriTemplate }> = [];
  /** Bumped on every rebuild. */
  version = 0;
  private readonly signatures: Record<ChangeKind, string | undefined> = { tools: undefined, prompts: undefined, resources: undefined };

  constructor(
    config: Config,
    private readonly log: Logger,
    environmentFor: (service: string) => ServiceEnvironment = () => ({}),
    clock: Clock = systemClock,
  ) {
    super();
    for (const [name, cfg] of Object.entries(config.services)) {
      const isolation = cfg.isolation ?? 'shared';
      if (isolation !== 'shared') {
        const pool = new ConnectionPool<ServiceConnection>({
          service: name,
          max: cfg.pool?.max ?? 32,
          idleMs: (cfg.pool?.idle_s ?? 300) * 1000,
          clock,
          // Calls only: the shared connection keeps the lists, so a pooled one tells nobody of changes.
          create: (key, capabilities) => {
            const c = new ServiceConnection(name, cfg, log.child({ service: name, pooled: key.slice(0, 12) }), environmentFor(name), capabilities);
            c.on('resourceUpdated', (uri: string) => this.emit('resourceUpdated', name, uri));
            return c;
          },
        });
        this.pools.set(name, { isolation, pool });
      }
      const conn = new ServiceConnection(name, cfg, log.child({ service: name }), environmentFor(name));
      conn.on('changed', (kind: ChangeKind | 'all') => this.rebuild(kind));
      conn.on('resourceUpdated', (uri: string) => this.emit('resourceUpdated', name, uri));
      this.services.set(name, conn);
    }
  }

  /** Connects every service in parallel. A service that fails keeps retrying; the others serve. */
  async start(): Promise<void> {
    await Promise.all([...this.services.values()].map((s) => s.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...[...this.pools.values()].map((p) => p.pool.close()), ...[...this.services.values()].map((s) => s.stop())]);
  }

  /**
   * The connection a call of this agent goes to, held until `release`: the service's shared one, or
   * under `isolation` the principal's (or the 2025 session's) own from the pool.
   */
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

  async connectionFor(
    service: string,
    agent: { principal: string; session: string | null; capabilities: ClientCapabilities },
  ): Promise<{ conn: ServiceConnection; release: () => void }> {
    const isolated = this.pools.get(service);
    if (isolated) {
      const perSession = isolated.isolation === 'session' && agent.session !== null;
      const { key } = this.connectionOf(service, agent);
      // A connection of one agent session declares exactly that agent's capabilities (a 2025 service
      // learns them at initialize); one shared by a principal's sessions declares the gateway's set.
      return isolated.pool.acquire(key, perSession ? agent.capabilities : undefined);
    }
    const conn = this.services.get(service);
    if (!conn) throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${service}" is not configured`);
    return { conn, release: () => undefined };
  }

  tools(): readonly CatalogTool[] {
    return this.toolList;
  }

  tool(name: string): CatalogTool | undefined {
    return this.toolIndex.get(name);
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

  health(): Array<{ name: string; state: string; era?: string; tools: number; restarts: number; error?: string }> {
    return [...this.services.values()].map((s) => ({
      name: s.name,
      state: s.state,
      ...(s.era ? { era: s.era } : {}),
      tools: s.tools.length,
      restarts: s.restarts,
      ...(s.lastError ? { error: s.lastError } : {}),
    }));
  }

  private rebuild(kind: ChangeKind | 'all'): void {
    const tools: CatalogTool[] = [];
    const prompts: CatalogPrompt[] = [];
    const resources: Resource[] = [];
    const owner = new Map<string, string>();
    const templates: Array<{ service: string; template: ResourceTemplate; matcher: UriTemplate }> = [];
    // A service that is down (restarting) keeps its last known lists: agents do not see tools flap,
    // and a call made meanwhile waits briefly for the restart, then fails as unavailable.
    for (const s of this.services.values()) {
      for (const t of s.tools) {
        const name = `${s.name}.${t.name}`;
        const annotations: Record<string, unknown> = { ...(t.annotations ?? {}) };
        const facts = { name, namespace: s.name, local_name: t.name, annotations, definition_hash: sha256(canonicalJson(t)) };
        tools.push({ name, service: s.name, local: t.name, definition: { ...t, name }, facts });
      }
      for (const p of s.prompts) {
        const name = `${s.name}.${p.name}`;
        const facts = { name, namespace: s.name, local_name: p.name, annotations: {}, definition_hash: sha256(canonicalJson({ ...p, name })) };
        prompts.push({ name, service: s.name, local: p.name, definition: { ...p, name }, facts });
      }
      for (const r of s.resources) {
        if (owner.has(r.uri)) {
          this.log.warn({ uri: r.uri, service: s.name, owner: owner.get(r.uri) }, 'resource URI listed by two services; the first keeps it');
          continue;
        }
        owner.set(r.uri, s.name);
        resources.push(r);
      }
      for (const t of s.templates) {
        try {
          templates.push({ service: s.name, template: t, matcher: new UriTemplate(t.uriTemplate) });
        } catch {
          this.log.warn({ service: s.name, template: t.uriTemplate }, 'invalid resource template ignored');
        }
      }
    }
    tools.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    prompts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.toolList = tools;
    this.toolIndex = new Map(tools.map((t) => [t.name, t]));
    this.promptList = prompts;
    this.promptIndex = new Map(prompts.map((p) => [p.name, p]));
    this.resourceList = resources;
    this.resourceOwner = owner;
    this.templateList = templates;
    this.version++;
    // Tell agents only about lists that really changed (a restart usually changes nothing).
    const sig: Record<ChangeKind, string> = {
      tools: tools.map((t) => `${t.name}@${t.facts.definition_hash}`).join('\n'),
      prompts: prompts.map((p) => p.name).join('\n'),
      resources: `${resources.map((r) => r.uri).join('\n')}\n${templates.map((t) => t.template.uriTemplate).join('\n')}`,
    };
    const kinds: ChangeKind[] = kind === 'all' ? ['tools', 'prompts', 'resources'] : [kind];
    for (const k of kinds) {
      if (sig[k] === this.signatures[k]) continue;
      this.signatures[k] = sig[k];
      this.emit('listChanged', k);
    }
  }
}
