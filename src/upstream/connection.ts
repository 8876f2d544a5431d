/**
 * One connection to one service: spawn (stdio) or reach (Streamable HTTP), negotiate the protocol era
 * once and remember it, keep the service's lists current, restart with backoff when it dies.
 *
 * One connection per service serves every agent session: a thousand agents never mean a thousand
 * service processes. Calls are multiplexed over it by JSON-RPC id.
 */
import { EventEmitter } from 'node:events';
import {
  CLIENT_CAPABILITIES_META_KEY,
  Client,
  LOG_LEVEL_META_KEY,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  StreamableHTTPClientTransport,
  SUBSCRIPTION_ID_META_KEY,
} from '@modelcontextprotocol/client';
import type {
  CallToolRequestParams,
  ClientCapabilities,
  CompleteRequestParams,
  CreateMessageRequest,
  CreateMessageResult,
  DiscoverResult,
  ElicitRequest,
  ElicitResult,
  GetPromptRequestParams,
  InputRequiredResult,
  JSONRPCNotification,
  ListRootsRequest,
  ListRootsResult,
  LoggingLevel,
  LoggingMessageNotificationParams,
  McpSubscription,
  MessageExtraInfo,
  Prompt,
  ReadResourceRequestParams,
  RequestOptions,
  ResultTypeMap,
  Resource,
  ResourceTemplateType as ResourceTemplate,
  StandardSchemaV1,
  SubscribeRequestParams,
  SubscriptionFilter,
  Tool,
  Transport,
  UnsubscribeRequestParams,
} from '@modelcontextprotocol/client';
import path from 'node:path';
import { CREDENTIAL_ENV, CREDENTIAL_META_KEY } from '../../schemas/contracts/service-credential.js';
import { type Clock, systemClock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { ServiceConfig } from '../config/types.js';
import type { Logger } from '../types.js';
import { Backoff, ServiceGuard } from './resilience.js';
import { ChildProcessTransport } from './stdio-transport.js';
import { traceHeaders } from './trace-headers.js';
import { isRecord } from '../canonical.js';

export type ServiceState = 'starting' | 'ready' | 'down' | 'stopped';

/** A server-to-client request (2025-era elicitation, sampling or, where forwarded, roots/list) raised by the service during a call. */
export type InteractionRequest = ElicitRequest | CreateMessageRequest | ListRootsRequest;
/** The answer the service receives for it. */
export type InteractionAnswer<R extends InteractionRequest> = R extends ElicitRequest
  ? ElicitResult
  : R extends ListRootsRequest
    ? ListRootsResult
    : CreateMessageResult;

/** The methods the gateway forwards to a service on an agent's behalf. */
export type ForwardMethod = 'tools/call' | 'prompts/get' | 'resources/read' | 'completion/complete' | 'resources/subscribe' | 'resources/unsubscribe';
/** 2026-07-28 multi-round-trip retry fields, which travel in a retried request's params. */
type RetryParams = {
  inputResponses?: Record<string, unknown>;
  requestState?: string;
};
interface ForwardParamsMap {
  'tools/call': CallToolRequestParams;
  'prompts/get': GetPromptRequestParams;
  'resources/read': ReadResourceRequestParams;
  'completion/complete': CompleteRequestParams;
  'resources/subscribe': SubscribeRequestParams;
  'resources/unsubscribe': UnsubscribeRequestParams;
}
/** Their params as sent to the service (the agent's, with the local name and the gateway's `_meta`). */
export type ForwardParams<M extends ForwardMethod> = ForwardParamsMap[M] & RetryParams;
/** Their results: complete, or a 2026-era service's `input_required` round. */
export type ForwardResult<M extends ForwardMethod> = ResultTypeMap[M] | InputRequiredResult;
/** A service's answer and its size as JSON (measured once: the cap and the audit both use it). */
export interface Forwarded<M extends ForwardMethod> {
  result: ForwardResult<M>;
  bytes: number;
}

/**
 * The call a server-to-client request belongs to. A 2025-era service sends its elicitation on the
 * shared connection without naming the call that caused it, so the request is attributed only when
 * exactly one interactive call is in flight on this service; otherwise it is refused.
 */
export interface InteractionSink {
  interact<R extends InteractionRequest>(req: R): Promise<InteractionAnswer<R>>;
}

export interface ForwardOptions {
  signal?: AbortSignal;
  onprogress?: (p: { progress: number; total?: number; message?: string }) => void;
  /** Receives the service's 2025-era elicitation/sampling requests for this call. */
  sink?: InteractionSink;
  timeoutMs?: number;
  /** `_meta` entries sent with the request (the per-call credential, the agent's own keys). */
  meta?: Record<string, unknown>;
  /**
   * Receives the service's `notifications/message` attributed to this call, and the agent's threshold
   * (a 2026 service is asked for exactly that level; a 2025 service's shared connection sends every level).
   */
  log?: { level: LoggingLevel; relay: (p: LoggingMessageNotificationParams) => void };
  /**
   * The calling agent's capabilities as a service may see them: a 2026 service gets exactly these in
   * the request's envelope (never the gateway's own). A 2025 connection declared its capabilities once,
   * at initialize; there the gateway refuses any input request the agent did not declare.
   */
  capabilities?: ClientCapabilities;
}

const GATEWAY_INFO = { name: 'micro-mcp-gateway', version: '0.1.0' };

type ProgressParams = { progress: number; total?: number; message?: string };

/**
 * The SDK client dispatches notifications a tick after responses and forgets a request's progress
 * handler when its response arrives, so a service's last progress notification, sent right before
 * its result, was lost. Progress for forwarded calls is therefore routed here, synchronously, at the
 * moment the message arrives (in wire order), under progress tokens the gateway assigns itself.
 */
class GatewayClient extends Client {
  readonly progressRoutes = new Map<string, (p: ProgressParams) => void>();
  /** Where the service's log messages go (the connection attributes them to a call). */
  onLog: ((p: LoggingMessageNotificationParams) => void) | undefined;
  /** Where the service's `notifications/resources/updated` go (the gateway's subscription registry). */
  onUpdated: ((uri: string) => void) | undefined;
  /** 2026-07-28: the subscription id of the last acknowledged listen that names resources (the gateway's own). */
  resourceAckId: unknown;
  /** 2026-07-28: the gateway's current resource listen; updates stamped with another id are stale. */
  watchId: unknown;
  /** Result validators by era and method (see resultSchema). */
  readonly #validators = new Map<string, StandardSchemaV1>();

  /**
   * The negotiated era's own result validation for a spec method, built once per era and method.
   * request()'s spec-method overload builds the same validator on every request, and to learn
   * whether the era has the method it first validates `undefined` against the result schema: a
   * failed zod parse with a formatted error per forwarded call (~2.5% of the gateway's busy CPU).
   * Passed as the explicit schema, it checks exactly what the overload checks, and request() still
   * applies the era gate to spec methods. Undefined when the era has no result schema for the method.
   */
  resultSchema(method: ForwardMethod): StandardSchemaV1 | undefined {
    const codec = this._wireCodec();
    const key = `${codec.era}\0${method}`;
    const known = this.#validators.get(key);
    if (known !== undefined) return known;
    const probe = codec.validateResult(method, undefined);
    if (!probe.ok && probe.reason === 'not-in-era') return undefined;
    const schema: StandardSchemaV1 = {
      '~standard': {
        version: 1,
        vendor: 'mcp-wire-codec',
        validate(value: unknown) {
          const outcome = codec.validateResult(method, value);
          if (outcome.ok) return { value: outcome.value };
          return { issues: [{ message: outcome.reason === 'invalid' ? outcome.message : `not-in-era: ${method}` }] };
        },
      },
    };
    this.#validators.set(key, schema);
    return schema;
  }

  protected override _onnotification(raw: JSONRPCNotification, extra?: MessageExtraInfo): void {
    if (raw.method === 'notifications/message') {
      this.onLog?.((raw.params ?? {}) as LoggingMessageNotificationParams);
      return;
    }
    if (raw.method === 'notifications/resources/updated') {
      const params = raw.params as { uri?: unknown; _meta?: Record<string, unknown> } | undefined;
      const sid = params?._meta?.[SUBSCRIPTION_ID_META_KEY];
      // While a resubscription replaces the listen stream, the old one's copy of an update is dropped.
      if (sid !== undefined && sid !== this.watchId) return;
      if (typeof params?.uri === 'string') this.onUpdated?.(params.uri);
      return;
    }
    if (raw.method === 'notifications/subscriptions/acknowledged') {
      const params = raw.params as { notifications?: { resourceSubscriptions?: unknown }; _meta?: Record<string, unknown> } | undefined;
      if (params?.notifications?.resourceSubscriptions !== undefined) this.resourceAckId = params._meta?.[SUBSCRIPTION_ID_META_KEY];
    }
    if (raw.method === 'notifications/progress') {
      const params = (raw.params ?? {}) as ProgressParams & { progressToken?: unknown };
      const route = typeof params.progressToken === 'string' ? this.progressRoutes.get(params.progressToken) : undefined;
      if (route) {
        const { progressToken: _t, ...p } = params;
        route(p);
        return;
      }
    }
    super._onnotification(raw, extra);
  }
}

let progressSeq = 0;

/** A per-call budget of notifications per second; returns true once the call has exceeded it. */
function notificationBudget(perSecond: number): () => boolean {
  let windowStart = 0;
  let count = 0;
  return () => {
    const t = performance.now();
    if (t - windowStart >= 1000) {
      windowStart = t;
      count = 0;
    }
    return ++count > perSecond;
  };
}

/** The size of a value as JSON text (what an audit record counts as response_bytes). */
function jsonSize(v: unknown): number {
  try {
    return JSON.stringify(v)?.length ?? 0;
  } catch {
    return 0;
  }
}

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** What a connection gets from the gateway besides its config. */
export interface ServiceEnvironment {
  /** Extra environment for a stdio child (e.g. where to find the gateway's credential keys). */
  env?: Record<string, string>;
  /** fetch for a remote service (e.g. with a client certificate for mutual TLS). */
  fetch?: FetchLike;
  /** Time and randomness for the breaker and the restart backoff (tests inject them). */
  clock?: Clock;
  random?: () => number;
  /** The service's breaker and concurrency cap, when this is one more connection to it (upstream/overflow). */
  guard?: ServiceGuard;
}

/** 2026-07-28: what a connection listens for on its list-changes stream, and the stream when it is open. */
interface ListChanges {
  filter: SubscriptionFilter;
  sub?: McpSubscription;
}

export class ServiceConnection extends EventEmitter {
  state: ServiceState = 'starting';
  lastError: string | undefined;
  era: 'legacy' | 'modern' | undefined;
  tools: Tool[] = [];
  prompts: Prompt[] = [];
  resources: Resource[] = [];
  templates: ResourceTemplate[] = [];
  restarts = 0;
  pid: number | undefined;

  private client: GatewayClient | undefined;
  /** The transport of a connect in progress (spawned, not yet initialised). */
  private connecting: Transport | undefined;
  private discover: DiscoverResult | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  /** 2026-07-28: waits between attempts to listen for list changes again (the restart backoff's settings). */
  private readonly listenBackoff: Backoff;
  private readonly clock: Clock;
  /** The circuit breaker and concurrency cap the pipeline admits calls through (upstream/resilience). */
  readonly guard: ServiceGuard;
  private readonly sinks = new Set<InteractionSink>();
  private readonly declared: ClientCapabilities;
  /** Questions handed to agents and not answered yet, of the current client (a closed one's cannot be answered to it). */
  private readonly asked = new Set<object>();
  /** Every forwarded request in flight on this connection (to attribute what names no call). */
  private readonly inflight = new Map<ForwardOptions, ((p: LoggingMessageNotificationParams) => void) | undefined>();
  private readyWaiters: Array<() => void> = [];
  /**
   * 2026-07-28: the resource URIs the gateway is subscribed to at this service, on one listen
   * stream of its own (`watch`), changed one at a time (`watching`).
   */
  private watched = new Set<string>();
  private watch: McpSubscription | undefined;
  private watching: Promise<void> = Promise.resolve();
  private readonly watchQueue: Array<{ change: { add?: string; remove?: string }; settle: (e?: Error) => void }> = [];
  /**
   * 2025: the resource URIs this connection has subscribed to at the service (made, not yet ended). A
   * new process (a restart) or session (a reconnect) knows none of them: they are subscribed again.
   */
  private readonly subscribed = new Set<string>();

  constructor(
    readonly name: string,
    private readonly cfg: ServiceConfig,
    private readonly log: Logger,
    private readonly environment: ServiceEnvironment = {},
    /**
     * What this connection declares at a 2025 initialize: the gateway's relayed set by default (roots
     * only with `roots: forward`); one agent's own on a connection that serves only that agent
     * (`isolation: session`).
     */
    declared?: ClientCapabilities,
  ) {
    super();
    this.declared = declared ?? { elicitation: { form: {}, url: {} }, sampling: {}, ...(cfg.roots === 'forward' ? { roots: {} } : {}) };
    this.clock = environment.clock ?? systemClock;
    const backoff = { initialMs: cfg.restart?.initial_delay_ms ?? 250, maxMs: cfg.restart?.max_delay_ms ?? 30000 };
    this.backoff = new Backoff(backoff, environment.random);
    this.listenBackoff = new Backoff(backoff, environment.random);
    this.guard =
      environment.guard ??
      new ServiceGuard(
        name,
        { maxConcurrent: cfg.max_concurrent, failures: cfg.breaker.failures, cooldownMs: cfg.breaker.cooldown_ms },
        this.clock,
        (state, failures) => this.log.warn({ service: name, breaker: state, failures }, `service circuit breaker ${state.replace('_', '-')}`),
      );
  }

  /**
   * The service's input requests handed to a call's agent and not answered yet. While one waits, the
   * connection takes no new calls (upstream/overflow): a new call's own request would be ambiguous.
   */
  get waiting(): number {
    return this.asked.size;
  }

  /** Connects once; failures schedule a retry with backoff (the gateway serves the other services meanwhile). */
  async start(): Promise<void> {
    this.stopping = false;
    if (this.cfg.transport === 'stdio' && this.cfg.sandbox?.mode === 'none') {
      this.log.warn({ service: this.name }, 'service runs WITHOUT an OS sandbox (sandbox.mode: none in its config)');
    }
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.state = 'stopped';
    if (this.restartTimer) this.clock.clearTimeout(this.restartTimer);
    // A connection still being made is closed too (its transport: the SDK client may not hold it
    // yet): its process must not outlive a stop during start-up.
    const c = this.client;
    const pending = this.connecting;
    this.client = undefined;
    this.connecting = undefined;
    await Promise.all([c?.close().catch(() => undefined), pending?.close().catch(() => undefined)]);
    this.wakeWaiters();
  }

  /** Resolves when the service is ready, or throws ERR_SERVICE_UNAVAILABLE after `timeoutMs`. */
  async whenReady(timeoutMs: number): Promise<GatewayClient> {
    if (this.state === 'ready' && this.client) return this.client;
    if (this.state !== 'stopped' && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, timeoutMs);
        const self = this;
        function done() {
          clearTimeout(t);
          self.readyWaiters = self.readyWaiters.filter((w) => w !== done);
          resolve();
        }
        this.readyWaiters.push(done);
      });
    }
    if (this.state === 'ready' && this.client) return this.client;
    throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.name}" is unavailable`, { service: this.name });
  }

  /**
   * Forwards one request to the service. Progress and cancellation are relayed; a 2026-era
   * `input_required` result is returned as is (the caller wraps it); protocol errors from the
   * service are re-thrown as ProtocolError so the agent sees the service's code and message.
   */
  async forward<M extends ForwardMethod>(method: M, params: ForwardParams<M>, opts: ForwardOptions = {}): Promise<Forwarded<M>> {
    const client = await this.whenReady(Math.min(this.cfg.call_timeout_ms, 5000));
    const subscription =
      (method === 'resources/subscribe' || method === 'resources/unsubscribe') && 'uri' in params && typeof params.uri === 'string' ? params.uri : undefined;
    if (this.era === 'modern' && subscription !== undefined) {
      // A 2026-07-28 service has no resources/subscribe: the gateway subscribes on its own listen stream.
      await this.rewatch(method === 'resources/subscribe' ? { add: subscription } : { remove: subscription });
      return { result: {} as ForwardResult<M>, bytes: 2 };
    }
    // Ended here whatever the service answers: a reconnect must not subscribe to it again.
    if (method === 'resources/unsubscribe' && subscription !== undefined) this.subscribed.delete(subscription);
    if (opts.sink) this.sinks.add(opts.sink);
    // Our own idle timeout, reset by progress (the SDK's cannot see progress routed around it).
    const timeoutMs = opts.timeoutMs ?? this.callTimeoutFor(method === 'tools/call' && 'name' in params ? params.name : undefined);
    const ac = new AbortController();
    let ended: 'timeout' | 'flood' | undefined;
    let timer = setTimeout(() => stop('timeout'), timeoutMs);
    function stop(why: 'timeout' | 'flood') {
      ended = why;
      ac.abort();
    }
    // Log messages attributed to this call count against the same per-call budget as progress.
    const logs = opts.log;
    const logFlood = notificationBudget(this.cfg.max_notifications_per_s);
    this.inflight.set(opts, logs ? (p) => (logFlood() ? stop('flood') : logs.relay(p)) : undefined);
    const onAbort = () => ac.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let token: string | undefined;
    if (opts.onprogress) {
      token = `gw-${++progressSeq}`;
      const relay = opts.onprogress;
      const flood = notificationBudget(this.cfg.max_notifications_per_s);
      client.progressRoutes.set(token, (p) => {
        if (flood()) return stop('flood');
        clearTimeout(timer);
        timer = setTimeout(() => stop('timeout'), timeoutMs);
        relay(p);
      });
    }
    const meta: Record<string, unknown> = { ...params._meta, ...opts.meta, ...(token ? { progressToken: token } : {}) };
    // A 2026 service sends log messages only at or above the level the request asks for (our
    // _meta wins over the SDK's envelope); none when the agent asked for none.
    if (this.era === 'modern' && opts.log) meta[LOG_LEVEL_META_KEY] = opts.log.level;
    if (this.era === 'modern') meta[CLIENT_CAPABILITIES_META_KEY] = opts.capabilities ?? {};
    const wire: Record<string, unknown> = { ...params, _meta: meta };
    // allowInputRequired: a 2026 service's input_required result comes back as a value (the
    // pipeline wraps it for the agent), so the result may be either half of ForwardResult<M>.
    const ro: RequestOptions = { signal: ac.signal, timeout: 2_147_483_647, allowInputRequired: true };
    let result: ForwardResult<M>;
    try {
      const schema = client.resultSchema(method);
      result = (
        schema === undefined ? await client.request({ method, params: wire }, ro) : await client.request({ method, params: wire }, schema, ro)
      ) as ForwardResult<M>;
    } catch (e) {
      if (ended === 'timeout') throw new GatewayError('ERR_SERVICE_TIMEOUT', `service "${this.name}" did not answer in time`, { service: this.name });
      if (ended === 'flood') {
        throw new GatewayError(
          'ERR_SERVICE_FLOOD',
          `service "${this.name}" sent more than ${this.cfg.max_notifications_per_s} notifications a second; call ended`,
          { service: this.name },
        );
      }
      const mapped = this.mapError(e, method, opts.signal);
      // A remote service that cannot be reached: connect again (with backoff) rather than keep a dead session.
      if (mapped instanceof GatewayError && mapped.code === 'ERR_SERVICE_UNAVAILABLE' && this.cfg.transport === 'http') this.reconnect(client);
      throw mapped;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (token) client.progressRoutes.delete(token);
      if (opts.sink) this.sinks.delete(opts.sink);
      this.inflight.delete(opts);
    }
    withoutEnvelope(result);
    if (method === 'resources/subscribe' && subscription !== undefined) {
      this.subscribed.add(subscription);
      // Made on a connection that has since been replaced: the new one has not heard of it.
      if (this.client && this.client !== client) void this.resubscribe(this.client, [subscription]);
    }
    const bytes = jsonSize(result);
    const cap = this.maxResultBytes(method === 'tools/call' && 'name' in params ? params.name : undefined);
    if (bytes > cap)
      throw new GatewayError('ERR_RESULT_TOO_LARGE', `service "${this.name}" answered with more than ${cap} bytes; the answer was dropped`, {
        service: this.name,
        max_bytes: cap,
      });
    return { result, bytes };
  }

  /**
   * 2026-07-28: a listen stream's filter is fixed, so a change to the subscribed URIs opens a stream
   * with the new set and closes the old one only once the service has acknowledged the new one (no
   * update is lost in between; the old one's are dropped from then on). Changes queued while a
   * listen is being opened are made together by the next one. Rejects when the service does not
   * acknowledge an added URI (it is not held then).
   */
  private rewatch(change: { add?: string; remove?: string } = {}): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.watchQueue.push({ change, settle: (e) => (e ? reject(e) : resolve()) }));
    this.watching = this.watching.then(() => this.applyWatch());
    return done;
  }

  /** Listens again with the URIs held (after a reconnect or a stream the service ended); a failure is logged. */
  private rewatchLogged(): void {
    this.rewatch().catch((e: Error) => this.log.warn({ service: this.name, err: e.message }, 'resubscribing to resources failed'));
  }

  /** Makes the queued changes on the current connection. */
  private async applyWatch(): Promise<void> {
    const batch = this.watchQueue.splice(0);
    if (batch.length === 0) return; // taken by an earlier run
    const client = this.client;
    try {
      if (!client || this.era !== 'modern')
        throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.name}" is not connected`, { service: this.name });
      const next = new Set(this.watched);
      for (const { change } of batch) {
        if (change.add !== undefined) next.add(change.add);
        if (change.remove !== undefined) next.delete(change.remove);
      }
      const same = next.size === this.watched.size && [...next].every((u) => this.watched.has(u));
      if (!same || (next.size === 0) !== (this.watch === undefined)) {
        let sub: McpSubscription | undefined;
        let id: unknown;
        if (next.size > 0) {
          client.resourceAckId = undefined;
          sub = await client.listen({ resourceSubscriptions: [...next] }, { timeout: this.cfg.call_timeout_ms });
          id = client.resourceAckId;
          if (client !== this.client) {
            // Reconnected meanwhile: the new connection listens again with the set as it stands.
            await sub.close().catch(() => undefined);
            throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.name}" reconnected; subscribe again`, { service: this.name });
          }
          // Only what the service acknowledged is held.
          const honored = new Set(sub.honoredFilter.resourceSubscriptions ?? []);
          for (const u of next) if (!honored.has(u)) next.delete(u);
          if (next.size === 0) {
            await sub.close().catch(() => undefined);
            sub = undefined;
          }
        }
        const old = this.watch;
        this.watch = sub;
        this.watched = next;
        client.watchId = id;
        await old?.close().catch(() => undefined);
        if (sub) void sub.closed.then((why) => this.watchEnded(client, sub, why));
      }
      for (const { change, settle } of batch) {
        const refused = change.add !== undefined && !this.watched.has(change.add);
        settle(
          refused ? new GatewayError('ERR_SERVICE_ERROR', `service "${this.name}" did not take the resource subscription`, { service: this.name }) : undefined,
        );
      }
    } catch (e) {
      for (const { settle } of batch) settle(e as Error);
    }
  }

  /** The service ended the gateway's resource listen while the connection lives on: listened again after a pause. */
  private watchEnded(client: GatewayClient, sub: McpSubscription, why: 'local' | 'graceful' | 'remote'): void {
    if (why === 'local' || this.watch !== sub || this.client !== client || this.stopping) return;
    this.watch = undefined;
    this.log.warn({ service: this.name, why }, 'service ended the resource subscription stream; subscribing again');
    this.clock.setTimeout(() => {
      this.rewatchLogged();
    }, 1000);
  }

  /**
   * 2026-07-28: a service's list changes arrive only on a listen stream, which the SDK opens when it
   * connects with discovery (ClientOptions.listChanged), never when it connects from a known
   * DiscoverResult (a restart or reconnect here), and never again. So `openListChanges` opens it after
   * such a connect, before the lists are read, as the SDK's discovery connect does; and when the
   * service did not acknowledge it, or ends it while the connection lives on (a proxy's idle timeout
   * cuts a remote one), the gateway listens again after the restart backoff and reads the lists again,
   * since changes made meanwhile were announced to nobody. Without this the catalog, pins included,
   * would stay as it was (a reconnect is from the known DiscoverResult too).
   */
  private async openListChanges(client: GatewayClient, fromPrior: boolean): Promise<ListChanges | undefined> {
    const caps = client.getServerCapabilities() ?? {};
    const filter = {
      ...(caps.tools?.listChanged ? { toolsListChanged: true } : {}),
      ...(caps.prompts?.listChanged ? { promptsListChanged: true } : {}),
      ...(caps.resources?.listChanged ? { resourcesListChanged: true } : {}),
    };
    if (Object.keys(filter).length === 0) return undefined;
    if (!fromPrior) return { filter, sub: client.autoOpenedSubscription };
    return { filter, sub: await client.listen(filter, { timeout: this.cfg.connect_timeout_ms }).catch(() => undefined) };
  }

  /** The connection is up: its list-changes stream is watched, or listened for again when there is none. */
  private watchListChanges(client: GatewayClient, listChanges: ListChanges | undefined): void {
    if (!listChanges) return;
    const { filter, sub } = listChanges;
    if (sub) {
      this.listenBackoff.reset();
      void sub.closed.then((why) => this.listChangesEnded(client, filter, why));
      return;
    }
    this.log.warn({ service: this.name }, 'service did not acknowledge the listen for list changes; listening again');
    this.relistenListChanges(client, filter);
  }

  private listChangesEnded(client: GatewayClient, filter: SubscriptionFilter, why: 'local' | 'graceful' | 'remote'): void {
    if (why === 'local' || this.client !== client || this.stopping) return;
    // Said when it is time to listen again: a stream ended by the connection's own end (a crash) is not news.
    this.relistenListChanges(client, filter, () => this.log.warn({ service: this.name, why }, 'service ended the stream of list changes; listening again'));
  }

  private relistenListChanges(client: GatewayClient, filter: SubscriptionFilter, announce?: () => void): void {
    this.clock.setTimeout(() => {
      if (this.client !== client || this.stopping) return;
      announce?.();
      client
        .listen(filter, { timeout: this.cfg.call_timeout_ms })
        .then(async (sub) => {
          if (this.client !== client || this.stopping) return void (await sub.close().catch(() => undefined));
          this.listenBackoff.reset();
          void sub.closed.then((why) => this.listChangesEnded(client, filter, why));
          this.log.info({ service: this.name }, 'listening for list changes');
          await this.refreshAll(client).then(
            () => this.emit('changed', 'all'),
            (e: Error) => this.log.warn({ service: this.name, err: e.message }, 'service list refresh failed'),
          );
        })
        .catch((e: Error) => {
          if (this.client !== client || this.stopping) return;
          this.log.warn({ service: this.name, err: e.message }, 'listening for list changes failed; trying again later');
          this.relistenListChanges(client, filter);
        });
    }, this.listenBackoff.next());
  }

  /**
   * 2025: subscribes the new connection to the URIs the old one held, one at a time (in order with an
   * agent's unsubscribe meanwhile, which drops its URI first). A failure is logged (no URI) and the URI
   * is kept, so the next reconnect tries it again.
   */
  private async resubscribe(client: GatewayClient, uris: readonly string[] = [...this.subscribed]): Promise<void> {
    let failed = 0;
    let err: string | undefined;
    for (const uri of uris) {
      if (this.client !== client) return;
      if (!this.subscribed.has(uri)) continue;
      try {
        await client.subscribeResource({ uri }, { timeout: this.cfg.call_timeout_ms });
      } catch (e) {
        failed++;
        err = (e as Error).message;
      }
    }
    if (failed > 0) this.log.warn({ service: this.name, failed, err }, 'resubscribing to resources failed');
  }

  /** 2026-07-28: how many resource URIs the gateway is subscribed to at this service (shared by its agents). */
  get resourceSubscriptions(): number {
    return this.watched.size;
  }

  /** Resource subscriptions this connection holds at the service, of either era (a pool never reaps it while any). */
  get subscriptionsHeld(): number {
    return this.subscribed.size + this.watched.size;
  }

  /** The largest single message read from this service: its largest answer cap plus room for the envelope. */
  private largestMessage(): number {
    const caps = [this.cfg.max_result_bytes, ...Object.values(this.cfg.tools).map((t) => t.max_result_bytes ?? 0)];
    return Math.max(...caps) + 64 * 1024;
  }

  /** How long a call to this service may run without an answer (progress resets it): its longest tool's. */
  get callTimeoutMs(): number {
    return Math.max(this.cfg.call_timeout_ms, ...Object.values(this.cfg.tools).map((t) => t.call_timeout_ms ?? 0));
  }

  /** A tool's call timeout (config tools.<name>.call_timeout_ms), else the service's. */
  callTimeoutFor(tool?: string): number {
    return (tool !== undefined ? this.cfg.tools[tool]?.call_timeout_ms : undefined) ?? this.cfg.call_timeout_ms;
  }

  /** The cap on one answer of this service (for a tool, its own when configured). */
  maxResultBytes(tool?: string): number {
    return (tool !== undefined ? this.cfg.tools[tool]?.max_result_bytes : undefined) ?? this.cfg.max_result_bytes;
  }

  /** Whether the calling agent's roots may reach this service (config `roots: forward`; never by default). */
  get forwardsRoots(): boolean {
    return this.cfg.roots === 'forward';
  }

  /** The agent's `_meta` keys this service may see (config `forward_meta`; none by default). */
  get forwardMeta(): readonly string[] {
    return this.cfg.forward_meta;
  }

  private mapError(e: unknown, method: ForwardMethod, signal?: AbortSignal): Error {
    if (e instanceof ProtocolError) return e;
    const err = e as { code?: unknown; message?: string; name?: string };
    if (signal?.aborted) return new GatewayError('ERR_SERVICE_ERROR', 'request cancelled', { service: this.name, cancelled: true });
    // The service answered, but not with what the method returns (checked against the era's result
    // schema): dropped. Neither the answer nor the schema's complaint about it reaches the agent or
    // the log, and the breaker does not count it: the service is up.
    if (e instanceof SdkError && e.code === SdkErrorCode.InvalidResult) {
      this.log.warn({ service: this.name, method }, 'service answered with an invalid result');
      return new GatewayError('ERR_SERVICE_ERROR', `service "${this.name}" answered ${method} with an invalid result; the answer was dropped`, {
        service: this.name,
      });
    }
    if (err.code === 'REQUEST_TIMEOUT' || /timed? ?out/i.test(err.message ?? '')) {
      return new GatewayError('ERR_SERVICE_TIMEOUT', `service "${this.name}" did not answer in time`, { service: this.name });
    }
    if (typeof err.code === 'number') return new ProtocolError(err.code, err.message ?? 'service error');
    this.log.warn({ service: this.name, err: err.message }, 'service request failed');
    return new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.name}" failed to answer`, { service: this.name });
  }

  private async connect(): Promise<void> {
    this.state = 'starting';
    const client = new GatewayClient(GATEWAY_INFO, {
      capabilities: this.declared,
      versionNegotiation: this.negotiation(),
      inputRequired: { autoFulfill: false },
      listChanged: {
        tools: { onChanged: (err, tools) => this.refreshed('tools', err, tools, (t) => (this.tools = t)) },
        prompts: { onChanged: (err, prompts) => this.refreshed('prompts', err, prompts, (p) => (this.prompts = p)) },
        resources: { onChanged: (err, resources) => this.refreshed('resources', err, resources, (r) => this.resourcesChanged(r)) },
      },
    });
    client.onLog = (p) => this.logMessage(p);
    client.onUpdated = (uri) => this.emit('resourceUpdated', uri);
    // Only what this connection declared can be asked of it (the SDK refuses a handler for the rest).
    if (this.declared.elicitation) client.setRequestHandler('elicitation/create', (req) => this.interaction(req));
    if (this.declared.sampling) client.setRequestHandler('sampling/createMessage', (req) => this.interaction(req));
    if (this.declared.roots) client.setRequestHandler('roots/list', (req) => this.interaction(req));
    // A roots/list this connection never declared (the SDK would answer a bare "Method not found"): say why.
    else client.fallbackRequestHandler = async (req) => this.undeclared(req.method);
    client.onerror = (err) => this.log.debug({ service: this.name, err: err.message }, 'service transport error');
    const transport = this.transport();
    this.connecting = transport;
    let listChanges: ListChanges | undefined;
    try {
      const prior =
        this.era === 'legacy'
          ? { kind: 'legacy' as const }
          : this.era === 'modern' && this.discover
            ? { kind: 'modern' as const, discover: this.discover }
            : undefined;
      await client.connect(transport, { timeout: this.cfg.connect_timeout_ms, ...(prior ? { prior } : {}) });
      this.era = client.getProtocolEra();
      this.discover = client.getDiscoverResult();
      this.pid = transport instanceof ChildProcessTransport ? transport.pid : undefined;
      // A connect from a known DiscoverResult opened no listen for list changes (the SDK's discovery does).
      listChanges = this.era === 'modern' ? await this.openListChanges(client, prior?.kind === 'modern') : undefined;
      await this.refreshAll(client);
      // A 2025 service's level is one per connection, shared by every agent: it sends every level and
      // the gateway filters per agent (each agent's threshold, only to the call's own agent).
      if (this.era === 'legacy' && client.getServerCapabilities()?.logging) {
        await client.setLoggingLevel('debug').catch((e: Error) => this.log.warn({ service: this.name, err: e.message }, 'service refused logging/setLevel'));
      }
    } catch (e) {
      if (this.connecting === transport) this.connecting = undefined;
      await client.close().catch(() => undefined);
      if (this.stopping) return;
      // A sandbox that bwrap could not build is the reason, not the closed connection it caused.
      this.lastError = (transport instanceof ChildProcessTransport ? transport.failure : undefined) ?? (e as Error).message;
      this.log.warn({ service: this.name, err: this.lastError }, 'service connect failed');
      this.state = 'down';
      this.scheduleRestart();
      return;
    }
    if (this.connecting === transport) this.connecting = undefined;
    if (this.stopping) {
      await client.close().catch(() => undefined);
      return;
    }
    this.client = client;
    client.onclose = () => this.onClosed(client);
    this.state = 'ready';
    this.lastError = undefined;
    this.backoff.reset();
    const sandbox = this.cfg.transport === 'stdio' ? (this.cfg.sandbox?.mode ?? 'bwrap') : undefined;
    this.log.info({ service: this.name, era: this.era, tools: this.tools.length, pid: this.pid, ...(sandbox ? { sandbox } : {}) }, 'service ready');
    this.watchListChanges(client, listChanges);
    // A new connection to a 2026-07-28 service: the gateway's resource subscriptions are made again.
    this.watch = undefined;
    if (this.era === 'modern' && this.watched.size > 0) {
      this.rewatchLogged();
    }
    // A 2025 service: every URI still subscribed through this connection is subscribed again.
    if (this.era === 'legacy' && this.subscribed.size > 0) void this.resubscribe(client);
    this.emit('ready');
    this.emit('changed', 'all');
    this.wakeWaiters();
  }

  private negotiation() {
    switch (this.cfg.era) {
      case 'legacy':
        return { mode: 'legacy' as const };
      case 'modern':
        return { mode: { pin: '2026-07-28' } };
      default:
        return { mode: 'auto' as const, probe: { timeoutMs: this.cfg.connect_timeout_ms } };
    }
  }

  private transport(): Transport {
    if (this.cfg.transport === 'stdio') {
      const env: Record<string, string> = { ...(this.cfg.env ?? {}), ...(this.environment.env ?? {}) };
      for (const k of this.cfg.inherit_env ?? []) {
        const v = process.env[k];
        if (v !== undefined) env[k] = v;
      }
      // On unless the config says otherwise; the gateway's run dir (the credential JWKS) is readable.
      const sb = this.cfg.sandbox;
      const jwks = env[CREDENTIAL_ENV.jwksFile];
      return new ChildProcessTransport({
        command: this.cfg.command === 'node' ? process.execPath : this.cfg.command,
        args: [...(this.cfg.args ?? [])],
        env,
        ...(this.cfg.cwd ? { cwd: this.cfg.cwd } : {}),
        onStderr: (line) => this.log.debug({ service: this.name, stderr: line }, 'service stderr'),
        // A message far beyond the largest answer allowed is not read into memory: the connection drops.
        maxMessageBytes: this.largestMessage(),
        sandbox: { mode: sb?.mode ?? 'bwrap', read: sb?.read ?? [], network: sb?.network ?? false, gatewayRead: jwks ? [path.dirname(jwks)] : [] },
      });
    }
    return new StreamableHTTPClientTransport(new URL(this.cfg.url), {
      requestInit: { headers: { ...(this.cfg.headers ?? {}) }, redirect: 'manual' },
      fetch: cappedResponses(traceHeaders(credentialFetch(this.environment.fetch ?? fetch)), this.largestMessage()),
    });
  }

  private async refreshAll(client: GatewayClient): Promise<void> {
    const caps = client.getServerCapabilities() ?? {};
    const opts = { cacheMode: 'refresh' as const };
    this.tools = caps.tools ? (await client.listTools(undefined, opts)).tools : [];
    this.prompts = caps.prompts ? (await client.listPrompts(undefined, opts)).prompts : [];
    if (caps.resources) {
      this.resources = (await client.listResources(undefined, opts)).resources;
      this.templates = (await client.listResourceTemplates(undefined, opts)).resourceTemplates;
    } else {
      this.resources = [];
      this.templates = [];
    }
  }

  /** Lists `kind` again from the service (resources with their templates) and stores it; tells nobody. Rejects when not connected. */
  async relist(kind: 'tools' | 'prompts' | 'resources'): Promise<void> {
    const client = this.client;
    if (!client) throw new GatewayError('ERR_SERVICE_UNAVAILABLE', `service "${this.name}" is not connected`, { service: this.name });
    const caps = client.getServerCapabilities() ?? {};
    const opts = { cacheMode: 'refresh' as const };
    if (kind === 'tools' && caps.tools) this.tools = (await client.listTools(undefined, opts)).tools;
    if (kind === 'prompts' && caps.prompts) this.prompts = (await client.listPrompts(undefined, opts)).prompts;
    if (kind === 'resources' && caps.resources) {
      this.resources = (await client.listResources(undefined, opts)).resources;
      this.templates = (await client.listResourceTemplates(undefined, opts)).resourceTemplates;
    }
  }

  /** Stores a refreshed list and tells the catalog; a failed refresh is logged and the last list stays. */
  private refreshed<T>(kind: 'tools' | 'prompts' | 'resources', err: Error | null, items: T[] | null, store: (items: T[]) => void): void {
    if (err || !items) {
      this.log.warn({ service: this.name, kind, err: err?.message }, 'service list refresh failed');
      return;
    }
    store(items);
    this.emit('changed', kind);
  }

  /** Resources changed: templates are refreshed with them (the SDK's listChanged covers only the list). */
  private resourcesChanged(resources: Resource[]): void {
    this.resources = resources;
    this.client
      ?.listResourceTemplates(undefined, { cacheMode: 'refresh' })
      .then((r) => {
        this.templates = r.resourceTemplates;
        this.emit('changed', 'resources');
      })
      .catch(() => undefined);
  }

  /**
   * A service's log message names no call. It goes to the one call in flight on this connection
   * when there is exactly one; otherwise (none, or several that could have caused it) it is dropped,
   * never misrouted. Per-principal or per-session connections (`isolation`) make that exact.
   */
  private logMessage(p: LoggingMessageNotificationParams): void {
    if (this.inflight.size !== 1) {
      this.log.debug({ service: this.name, inflight: this.inflight.size }, 'service log message dropped: not attributable to one call');
      return;
    }
    const [relay] = this.inflight.values();
    relay?.(p);
  }

  private async interaction<R extends InteractionRequest>(req: R): Promise<InteractionAnswer<R>> {
    // Whatever is in flight may ask again (upstream/overflow learns which tools ask).
    this.emit('asking');
    // Exactly one call in flight, and one that can take the question: any other request in flight (a
    // prompt, a read: they take no questions) could as well be the one asking.
    if (this.sinks.size !== 1 || this.inflight.size !== 1) {
      // No call, or several, could have caused it: refusing is the only answer that cannot misroute.
      this.log.warn(
        { service: this.name, method: req.method, inflight: this.sinks.size, requests: this.inflight.size },
        'server-to-client request refused: cannot attribute it to one call',
      );
      throw new ProtocolError(-32600, `${req.method} refused by the gateway: it cannot be attributed to exactly one call in progress`);
    }
    const [sink] = this.sinks;
    const question = {};
    this.asked.add(question);
    try {
      return await sink!.interact(req);
    } finally {
      this.asked.delete(question);
    }
  }

  /** A request this connection did not declare it takes: refused with the reason, logged without contents. */
  private async undeclared(method: string): Promise<never> {
    if (method !== 'roots/list') throw new ProtocolError(-32601, 'Method not found');
    this.log.warn({ service: this.name, method }, 'server-to-client request refused: roots are not forwarded to this service');
    throw new ProtocolError(
      -32601,
      this.forwardsRoots
        ? 'roots/list refused by the gateway: the calling agent did not declare roots'
        : `roots/list refused by the gateway: roots are not forwarded to this service (services.${this.name}.roots is not "forward")`,
    );
  }

  private onClosed(client: GatewayClient): void {
    if (this.client !== client) return;
    this.client = undefined;
    // Whoever asked is gone: the restarted service waits for nobody (the agent's late answer goes nowhere).
    this.asked.clear();
    if (this.stopping) return;
    this.state = 'down';
    this.lastError = 'service connection closed';
    this.restarts++;
    this.log.warn({ service: this.name, restarts: this.restarts }, 'service connection lost; restarting');
    this.emit('changed', 'all');
    this.scheduleRestart();
  }

  /** Drops the connection to an unreachable remote service and connects again (with backoff). */
  private reconnect(client: GatewayClient): void {
    if (this.client !== client || this.stopping) return;
    this.client = undefined;
    this.asked.clear();
    this.state = 'down';
    this.lastError = 'service unreachable';
    this.restarts++;
    this.log.warn({ service: this.name, restarts: this.restarts }, 'remote service unreachable; reconnecting');
    this.emit('changed', 'all');
    void client.close().catch(() => undefined);
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.stopping || this.restartTimer) return;
    this.restartTimer = this.clock.setTimeout(() => {
      this.restartTimer = undefined;
      void this.connect();
    }, this.backoff.next());
  }

  private wakeWaiters(): void {
    const ws = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of ws) w();
  }
}

/**
 * A remote service verifies the per-call credential from the Authorization header: lift it out of the
 * outgoing request's `_meta` into the header, for this request only.
 */
function credentialFetch(base: FetchLike): FetchLike {
  return async (input, init) => {
    if (init && typeof init.body === 'string' && init.body.includes(CREDENTIAL_META_KEY)) {
      const cred = credentialIn(init.body);
      if (cred !== undefined) {
        const headers = new Headers(init.headers);
        headers.set('authorization', `Bearer ${cred}`);
        return base(input, { ...init, headers });
      }
    }
    return base(input, init);
  };
}

/**
 * A remote service's responses are read under a cap, like a stdio service's messages: a JSON body
 * as a whole, an event stream per event (the counter restarts at each blank line). Past it the body
 * errors, the request fails, and nothing more is buffered.
 */
function cappedResponses(base: FetchLike, max: number): FetchLike {
  return async (input, init) => {
    const res = await base(input, init);
    if (res.body === null) return res;
    const events = (res.headers.get('content-type') ?? '').includes('text/event-stream');
    let size = 0;
    let newlines = 0;
    const cap = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        if (!events) size += chunk.byteLength;
        else {
          for (const b of chunk) {
            if (b === 0x0a) {
              if (++newlines >= 2) size = 0;
            } else if (b !== 0x0d) {
              newlines = 0;
              size++;
            }
          }
        }
        if (size > max) ctl.error(new Error(`the service's response exceeds ${max} bytes`));
        else ctl.enqueue(chunk);
      },
    });
    return new Response(res.body.pipeThrough(cap), { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** The credential in one serialised JSON-RPC request's `params._meta`, if it carries one. */
function credentialIn(body: string): string | undefined {
  let msg: unknown;
  try {
    msg = JSON.parse(body);
  } catch {
    return undefined; // not a single JSON-RPC message: sent as is
  }
  if (!isRecord(msg) || !isRecord(msg.params) || !isRecord(msg.params._meta)) return undefined;
  const cred = msg.params._meta[CREDENTIAL_META_KEY];
  return typeof cred === 'string' ? cred : undefined;
}

/**
 * Drops the service hop's protocol envelope (`io.modelcontextprotocol/*` in a result's `_meta`, such as
 * a 2026 service's serverInfo): it describes the service's connection to the gateway, not the agent's
 * to the gateway, and would tell an agent which server sits behind it.
 */
function withoutEnvelope(result: object): void {
  const meta = (result as { _meta?: unknown })._meta;
  if (!isRecord(meta)) return;
  for (const k of Object.keys(meta)) if (k.startsWith('io.modelcontextprotocol/')) delete meta[k];
  if (Object.keys(meta).length === 0) delete (result as { _meta?: unknown })._meta;
}
