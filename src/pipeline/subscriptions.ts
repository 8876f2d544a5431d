/**
 * Agents' resource subscriptions, in both eras: a 2025 agent's resources/subscribe, and each URI a
 * 2026-07-28 agent names in subscriptions/listen (an agent here is then that listen stream). A
 * subscription is decided by policy (action `subscribe_resource`) and audited like a read, and
 * forwarded to the service that owns the URI (a 2026-07-28 service is subscribed on the gateway's own
 * listen stream to it: upstream/connection); the service's `notifications/resources/updated` reaches
 * only the agents subscribed to that URI who may read it when it arrives (decided again, like the
 * list phase). The service's own subscription is shared: it is unsubscribed when its last agent
 * unsubscribes or goes away.
 */
import type { SubscribeRequest } from '@modelcontextprotocol/server';
import { ProtocolError } from '@modelcontextprotocol/server';
import { principalKey } from '../auth/state.js';
import type { Logger } from '../types.js';
import type { Catalog } from '../upstream/catalog.js';
import type { ServiceConnection } from '../upstream/connection.js';
import type { CallPipeline, RequestScope } from './call-pipeline.js';
import type { CallContext, ProbePort } from './ports.js';

/** One agent's subscription: whom to tell, and as whom to decide. */
interface Subscriber {
  cc: CallContext;
  notify: (uri: string) => unknown;
}

export interface SubscriptionDeps {
  calls: CallPipeline;
  catalog: Catalog;
  probes: ProbePort;
  log: Logger;
  /** Subscriptions one agent (a session) may hold. Default 100. */
  maxPerAgent?: number;
}

export class ResourceSubscriptions {
  /** uri -> owning service and its subscribers (by agent: one object per agent connection). */
  private readonly byUri = new Map<string, { service: string; subs: Map<object, Subscriber> }>();
  private readonly perAgent = new Map<object, Set<string>>();
  /** Agents that went away: a subscription of theirs decided meanwhile is not kept. */
  private readonly gone = new WeakSet<object>();
  /** Subscribes in flight, per URI (as whom): an unsubscribe meanwhile must not end the service's subscription one is making. */
  private readonly making = new Map<string, Set<CallContext>>();
  /** Service unsubscribes held back for a subscribe in flight (service, connection, URI): sent if it fails and nobody holds the URI there. */
  private readonly heldBack = new Set<string>();
  private readonly max: number;

  constructor(private readonly d: SubscriptionDeps) {
    this.max = d.maxPerAgent ?? 100;
    d.catalog.on('resourceUpdated', (service: string, uri: string) => this.updated(service, uri));
  }

  /** Subscribes `agent` to the URI: refused (and recorded) when the policy denies or the agent holds too many. */
  async subscribe(agent: object, cc: CallContext, params: SubscribeRequest['params'], ctx: RequestScope, notify: (uri: string) => unknown): Promise<void> {
    const mine = this.perAgent.get(agent);
    if (mine && !mine.has(params.uri) && mine.size >= this.max) {
      const message = `too many resource subscriptions on this connection (at most ${this.max}); unsubscribe first`;
      await this.d.probes.refused(cc, { method: 'resources/subscribe', code: 'ERR_SUBSCRIPTIONS_EXCEEDED', message });
      throw new ProtocolError(-32029, message);
    }
    this.making.set(params.uri, (this.making.get(params.uri) ?? new Set()).add(cc));
    let service: string;
    try {
      service = await this.d.calls.subscribe(cc, params, ctx);
    } catch (e) {
      this.settled(params.uri, cc, undefined);
      throw e;
    }
    this.settled(params.uri, cc, service);
    let entry = this.byUri.get(params.uri);
    if (!entry || entry.service !== service) {
      entry = { service, subs: new Map() };
      this.byUri.set(params.uri, entry);
    }
    entry.subs.set(agent, { cc, notify });
    this.perAgent.set(agent, (this.perAgent.get(agent) ?? new Set()).add(params.uri));
    if (this.gone.has(agent)) {
      // It went away while this was decided and forwarded: undone (at the service too, unless shared).
      this.dropAgent(agent);
      throw new ProtocolError(-32000, 'the subscriber went away before its subscription was made; nothing was kept');
    }
  }

  /**
   * The resource URIs a 2026-07-28 agent names in one subscriptions/listen (`agent`: that stream):
   * each decided and recorded like a resources/subscribe, in order, duplicates once. Returns the ones
   * granted, which are all the acknowledgement may list; a refused one is left out (its record says
   * why: the decision, or the refusal). Past the per-agent cap the rest are refused in one record.
   */
  async listen(agent: object, cc: CallContext, uris: readonly string[], ctx: RequestScope, notify: (uri: string) => unknown): Promise<string[]> {
    const unique = [...new Set(uris)];
    if (unique.length > this.max) {
      const message = `too many resource subscriptions on this stream (at most ${this.max}); ${unique.length - this.max} left out`;
      await this.d.probes.refused(cc, { method: 'subscriptions/listen', code: 'ERR_SUBSCRIPTIONS_EXCEEDED', message });
      unique.length = this.max;
    }
    const granted: string[] = [];
    for (const uri of unique) {
      // The stream went away meanwhile: nothing more to decide for it.
      if (this.gone.has(agent)) break;
      try {
        await this.subscribe(agent, cc, { uri }, ctx, notify);
        granted.push(uri);
      } catch {
        // Recorded where it was refused (the decision or refusal record); the agent sees it left out of the ack.
      }
    }
    return granted;
  }

  /**
   * Ends the agent's subscription to `uri` (its own: nothing to decide). The service's subscription
   * lives on the connection the subscribe went to (the shared one, or the agent's isolated one): it
   * ends with the last agent subscribed through that connection.
   */
  unsubscribe(agent: object, uri: string): void {
    const entry = this.byUri.get(uri);
    this.perAgent.get(agent)?.delete(uri);
    const mine = entry?.subs.get(agent);
    if (!entry || !mine) return;
    entry.subs.delete(agent);
    if (entry.subs.size === 0) this.byUri.delete(uri);
    const { key, conn } = this.d.catalog.connectionOf(entry.service, this.agentOf(mine.cc));
    const use = this.inUse(entry.service, key, uri);
    if (use === 'held') return;
    // Another agent's subscribe through that connection is in flight: it will hold the URI, or send this when it fails.
    if (use === 'making') this.heldBack.add(`${entry.service}\u0000${key}\u0000${uri}`);
    else this.unsubscribeAt(entry.service, conn, uri);
  }

  /** Whether `uri` of `service` is held through connection `key` by a subscriber, or about to be by a subscribe in flight. */
  private inUse(service: string, key: string, uri: string): 'held' | 'making' | undefined {
    const keyOf = (cc: CallContext) => this.d.catalog.connectionOf(service, this.agentOf(cc)).key;
    const entry = this.byUri.get(uri);
    if (entry?.service === service && [...entry.subs.values()].some((s) => keyOf(s.cc) === key)) return 'held';
    return [...(this.making.get(uri) ?? [])].some((cc) => keyOf(cc) === key) ? 'making' : undefined;
  }

  /** A subscribe of `uri` as `cc` ended: made (at `made`) or failed; a service unsubscribe held back for it is settled. */
  private settled(uri: string, cc: CallContext, made: string | undefined): void {
    const making = this.making.get(uri);
    making?.delete(cc);
    if (making?.size === 0) this.making.delete(uri);
    const service = made ?? this.d.catalog.resourceService(uri);
    if (service === undefined) return;
    const { key, conn } = this.d.catalog.connectionOf(service, this.agentOf(cc));
    const held = `${service}\u0000${key}\u0000${uri}`;
    if (!this.heldBack.has(held)) return;
    // Made: its subscriber holds the URI now. Failed: sent unless another still holds it or is making it.
    if (made === undefined && this.inUse(service, key, uri) !== undefined) return;
    this.heldBack.delete(held);
    if (made === undefined) this.unsubscribeAt(service, conn, uri);
  }

  private unsubscribeAt(service: string, conn: ServiceConnection | undefined, uri: string): void {
    conn?.forward('resources/unsubscribe', { uri }).catch((e: Error) => this.d.log.debug({ service, err: e.message }, 'service unsubscribe failed'));
  }

  private agentOf(cc: CallContext): { principal: string; session: string | null } {
    return { principal: principalKey(cc.principal), session: cc.sessionId };
  }

  /** The agent went away (its session closed, its listen stream ended): every subscription of it ends, and any decided later. */
  dropAgent(agent: object): void {
    this.gone.add(agent);
    for (const uri of [...(this.perAgent.get(agent) ?? [])]) this.unsubscribe(agent, uri);
    this.perAgent.delete(agent);
  }

  get size(): number {
    return this.byUri.size;
  }

  /** `service` said `uri` changed (here, or at another replica): its subscribers here who may read it are told. */
  updated(service: string, uri: string): void {
    const entry = this.byUri.get(uri);
    // Only the service that owns the URI can say it changed.
    if (!entry || entry.service !== service) return;
    for (const sub of entry.subs.values()) {
      if (!this.d.calls.mayRead(sub.cc, service, uri)) continue;
      void Promise.resolve()
        .then(() => sub.notify(uri))
        .catch(() => undefined);
    }
  }
}
