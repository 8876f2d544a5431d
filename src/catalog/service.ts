/**
 * One connection to one service: spawn (stdio) or reach (Streamable HTTP), negotiate the protocol era
 * once and remember it, keep the service's lists current, restart with backoff when it dies.
 *
 * One connection per service serves every agent session: a thousand agents never mean a thousand
 * service processes. Calls are multiplexed over it by JSON-RPC id.
 */
import { EventEmitter } from 'node:events';
import { Client, ProtocolError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type {
  DiscoverResult,
  JSONRPCNotification,
  MessageExtraInfo,
  Prompt,
  RequestOptions,
  Resource,
  ResourceTemplateType as ResourceTemplate,
  Tool,
  Transport,
} from '@modelcontextprotocol/client';
import { GatewayError } from '../errors.js';
import type { ServiceConfig } from '../config/types.js';
import type { Logger } from '../types.js';
import { ChildProcessTransport } from './stdio-transport.js';

export type ServiceState = 'starting' | 'ready' | 'down' | 'stopped';

/** A server-to-client request (2025-era elicitation or sampling) raised by the service during a call. */
export interface InteractionRequest {
  method: 'elicitation/create' | 'sampling/createMessage';
  params: Record<string, unknown>;
}

/**
 * The call a server-to-client request belongs to. A 2025-era service sends its elicitation on the
 * shared connection without naming the call that caused it, so the request is attributed only when
 * exactly one interactive call is in flight on this service; otherwise it is refused.
 */
export interface InteractionSink {
  interact(req: InteractionRequest): Promise<Record<string, unknown>>;
}

export interface ForwardOptions {
  signal?: AbortSignal;
  onprogress?: (p: { progress: number; total?: number; message?: string }) => void;
  /** Receives the service's 2025-era elicitation/sampling requests for this call. */
  sink?: InteractionSink;
  timeoutMs?: number;
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

  protected override _onnotification(raw: JSONRPCNotification, extra?: MessageExtraInfo): void {
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

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** What a connection gets from the gateway besides its config. */
export interface ServiceEnvironment {
  /** Extra environment for a stdio child (e.g. where to find the gateway's credential keys). */
  env?: Record<string, string>;
  /** fetch for a remote service (e.g. with a client certificate for mutual TLS). */
  fetch?: FetchLike;
  /** `_meta` key whose value is also sent to remote services as `Authorization: Bearer`. */
  credentialMetaKey?: string;
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

  private client: Client | undefined;
  private discover: DiscoverResult | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private delay: number;
  private readonly sinks = new Set<InteractionSink>();
  private readyWaiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    private readonly cfg: ServiceConfig,
    private readonly log: Logger,
    private readonly environment: ServiceEnvironment = {},
  ) {
    super();
    this.delay = cfg.restart?.initial_delay_ms ?? 250;
  }

  /** Connects once; failures schedule a retry with backoff (the gateway serves the other services meanwhile). */
  async start(): Promise<void> {
    this.stopping = false;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.state = 'stopped';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const c = this.client;
    this.client = undefined;
    await c?.close().catch(() => undefined);
    this.wakeWaiters();
  }

  /** Resolves when the service is ready, or throws ERR_SERVICE_UNAVAILABLE after `timeoutMs`. */
  async whenReady(timeoutMs: number): Promise<Client> {
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
  async forward(method: string, params: Record<string, unknown>, opts: ForwardOptions = {}): Promise<Record<string, unknown>> {
    const client = await this.whenReady(Math.min(this.cfg.call_timeout_ms, 5000));
    if (opts.sink) this.sinks.add(opts.sink);
    // Our own idle timeout, reset by progress (the SDK's cannot see progress routed around it).
    const timeoutMs = opts.timeoutMs ?? this.cfg.call_timeout_ms;
    const ac = new AbortController();
    let timedOut = false;
    let timer = setTimeout(expire, timeoutMs);
    function expire() {
      timedOut = true;
      ac.abort();
    }
    const onAbort = () => ac.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let token: string | undefined;
    if (opts.onprogress) {
      token = `gw-${++progressSeq}`;
      const relay = opts.onprogress;
      (client as GatewayClient).progressRoutes.set(token, (p) => {
        clearTimeout(timer);
        timer = setTimeout(expire, timeoutMs);
        relay(p);
      });
      params = { ...params, _meta: { ...((params._meta as Record<string, unknown> | undefined) ?? {}), progressToken: token } };
    }
    const ro: RequestOptions = { signal: ac.signal, timeout: 2_147_483_647, allowInputRequired: true };
    try {
      const req = { method, params } as Parameters<Client['request']>[0];
      return (await client.request(req as never, ro as never)) as Record<string, unknown>;
    } catch (e) {
      if (timedOut) throw new GatewayError('ERR_SERVICE_TIMEOUT', `service "${this.name}" did not answer in time`, { service: this.name });
      throw this.mapError(e, opts.signal);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (token) (client as GatewayClient).progressRoutes.delete(token);
      if (opts.sink) this.sinks.delete(opts.sink);
    }
  }

  private mapError(e: unknown, signal?: AbortSignal): Error {
    if (e instanceof ProtocolError) return e;
    const err = e as { code?: unknown; message?: string; name?: string };
    if (signal?.aborted) return new GatewayError('ERR_SERVICE_ERROR', 'request cancelled', { service: this.name, cancelled: true });
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
      capabilities: { elicitation: { form: {}, url: {} }, sampling: {} },
      versionNegotiation: this.negotiation(),
      inputRequired: { autoFulfill: false },
      listChanged: {
        tools: { onChanged: (err, tools) => this.listChanged('tools', err, tools) },
        prompts: { onChanged: (err, prompts) => this.listChanged('prompts', err, prompts) },
        resources: { onChanged: (err, resources) => this.listChanged('resources', err, resources) },
      },
    });
    client.setRequestHandler('elicitation/create', async (req) => this.interaction('elicitation/create', req.params) as never);
    client.setRequestHandler('sampling/createMessage', async (req) => this.interaction('sampling/createMessage', req.params) as never);
    client.onerror = (err) => this.log.debug({ service: this.name, err: err.message }, 'service transport error');
    const transport = this.transport();
    try {
      const prior =
        this.era === 'legacy' ? { kind: 'legacy' as const } : this.era === 'modern' && this.discover ? { kind: 'modern' as const, discover: this.discover } : undefined;
      await client.connect(transport, { timeout: this.cfg.connect_timeout_ms, ...(prior ? { prior } : {}) });
      this.era = client.getProtocolEra();
      this.discover = client.getDiscoverResult();
      this.pid = transport instanceof ChildProcessTransport ? transport.pid : undefined;
      await this.refreshAll(client);
    } catch (e) {
      this.lastError = (e as Error).message;
      this.log.warn({ service: this.name, err: this.lastError }, 'service connect failed');
      await client.close().catch(() => undefined);
      this.state = 'down';
      this.scheduleRestart();
      return;
    }
    if (this.stopping) {
      await client.close().catch(() => undefined);
      return;
    }
    this.client = client;
    client.onclose = () => this.onClosed(client);
    this.state = 'ready';
    this.lastError = undefined;
    this.delay = this.cfg.restart?.initial_delay_ms ?? 250;
    this.log.info({ service: this.name, era: this.era, tools: this.tools.length, pid: this.pid }, 'service ready');
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
      return new ChildProcessTransport({
        command: this.cfg.command === 'node' ? process.execPath : this.cfg.command,
        args: [...(this.cfg.args ?? [])],
        env,
        ...(this.cfg.cwd ? { cwd: this.cfg.cwd } : {}),
        onStderr: (line) => this.log.debug({ service: this.name, stderr: line }, 'service stderr'),
      });
    }
    return new StreamableHTTPClientTransport(new URL(this.cfg.url), {
      requestInit: { headers: { ...(this.cfg.headers ?? {}) }, redirect: 'manual' },
      fetch: credentialFetch(this.environment.fetch ?? fetch, this.environment.credentialMetaKey),
    });
  }

  private async refreshAll(client: Client): Promise<void> {
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

  private listChanged(kind: 'tools' | 'prompts' | 'resources', err: Error | null, items: unknown[] | null): void {
    if (err || !items) {
      this.log.warn({ service: this.name, kind, err: err?.message }, 'service list refresh failed');
      return;
    }
    if (kind === 'tools') this.tools = items as Tool[];
    if (kind === 'prompts') this.prompts = items as Prompt[];
    if (kind === 'resources') {
      this.resources = items as Resource[];
      const c = this.client;
      if (c) {
        void c
          .listResourceTemplates(undefined, { cacheMode: 'refresh' })
          .then((r) => {
            this.templates = r.resourceTemplates;
            this.emit('changed', 'resources');
          })
          .catch(() => undefined);
      }
    }
    this.emit('changed', kind);
  }

  private async interaction(method: InteractionRequest['method'], params: unknown): Promise<Record<string, unknown>> {
    if (this.sinks.size !== 1) {
      // No call, or several, could have caused it: refusing is the only answer that cannot misroute.
      this.log.warn({ service: this.name, method, inflight: this.sinks.size }, 'server-to-client request refused: cannot attribute it to one call');
      throw new ProtocolError(-32600, `${method} refused by the gateway: it cannot be attributed to exactly one call in progress`);
    }
    const [sink] = this.sinks;
    return sink!.interact({ method, params: (params ?? {}) as Record<string, unknown> });
  }

  private onClosed(client: Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    if (this.stopping) return;
    this.state = 'down';
    this.lastError = 'service connection closed';
    this.restarts++;
    this.log.warn({ service: this.name, restarts: this.restarts }, 'service connection lost; restarting');
    this.emit('changed', 'all');
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.stopping || this.restartTimer) return;
    const max = this.cfg.restart?.max_delay_ms ?? 30000;
    const wait = Math.min(this.delay, max);
    this.delay = Math.min(this.delay * 2, max);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.connect();
    }, wait);
    this.restartTimer.unref();
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
function credentialFetch(base: FetchLike, metaKey: string | undefined): FetchLike {
  if (!metaKey) return base;
  return async (input, init) => {
    if (init && typeof init.body === 'string' && init.body.includes(metaKey)) {
      try {
        const msg = JSON.parse(init.body) as { params?: { _meta?: Record<string, unknown> } };
        const cred = msg.params?._meta?.[metaKey];
        if (typeof cred === 'string') {
          const headers = new Headers(init.headers);
          headers.set('authorization', `Bearer ${cred}`);
          return base(input, { ...init, headers });
        }
      } catch {
        /* not a single JSON-RPC message: send as is */
      }
    }
    return base(input, init);
  };
}
