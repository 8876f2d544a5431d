/**
 * The gateway's Prometheus metrics (prom-client), in a registry of their own (never prom-client's
 * global one, so two gateways in one process, as in tests, do not share series).
 *
 * Label values are bounded: services and tools come from the configuration and the catalog,
 * outcomes and causes from fixed lists, rule ids from the policy. A label that could still grow
 * without bound (a policy that writes ids from input, say) is capped: past MAX_VALUES distinct values
 * per label, new ones are counted under "other".
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: 100 µs (a decision) to 60 s (the default call timeout). */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Distinct values one label may take before new ones are folded into "other". */
export const MAX_VALUES = 200;

/** What the metrics read when scraped (the composition root wires the live sources in). */
export interface MetricSources {
  sessions: () => number;
  streams: () => number;
  inFlight: () => number;
  services: () => ReadonlyArray<{
    name: string;
    state: string;
    restarts: number;
    breaker?: string;
    /** Extra connections besides the main one: overflow (upstream/overflow) or isolated (upstream/pool). */
    connections?: { overflow: number } | { isolated: number };
  }>;
  policyRevision: () => string;
}

/** How one call ended, for the call counter and the latency histograms. */
export interface CallEnd {
  service: string;
  /** The namespaced tool or prompt name; "resources/read" for resources (URIs are unbounded). */
  tool: string;
  /** An audit outcome (ok, tool_error, ...), or denied / audit_unavailable for calls never forwarded. */
  outcome: string;
  /** The deciding rule ids, sorted and joined with ","; "" when no rule decided. */
  rule: string;
  serviceSeconds?: number;
  totalSeconds?: number;
}

/** The breaker states as a number (a gauge): closed 0, half-open 1, open 2. */
const BREAKER_VALUE: Record<string, number> = { closed: 0, half_open: 1, open: 2 };

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly calls: Counter<'service' | 'tool' | 'outcome' | 'rule'>;
  private readonly decisionSeconds: Histogram<'engine'>;
  private readonly serviceSeconds: Histogram<'service'>;
  private readonly totalSeconds: Histogram<'service'>;
  private readonly limitRefusals: Counter<'cause'>;
  private readonly reloadErrors: Counter;
  private readonly auditSeconds: Histogram<'kind'>;
  private readonly seen = new Map<string, Set<string>>();

  constructor(sources: MetricSources, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.calls = new Counter({
      name: 'micro_mcp_calls_total',
      help: 'Decided calls (tools/call, prompts/get, resources/read) by service, tool, outcome and deciding rule ids.',
      labelNames: ['service', 'tool', 'outcome', 'rule'],
      registers,
    });
    this.decisionSeconds = new Histogram({
      name: 'micro_mcp_decision_duration_seconds',
      help: 'Time one policy engine took to decide (list and call phase).',
      labelNames: ['engine'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.serviceSeconds = new Histogram({
      name: 'micro_mcp_service_duration_seconds',
      help: 'Time from forwarding a call to the service until it ended.',
      labelNames: ['service'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.totalSeconds = new Histogram({
      name: 'micro_mcp_call_duration_seconds',
      help: 'Time of a forwarded call in the gateway, from the policy input to its end.',
      labelNames: ['service'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.limitRefusals = new Counter({
      name: 'micro_mcp_limit_refusals_total',
      help: 'Requests refused by a limit, by cause (rate, concurrency, total, state_unavailable, service_busy, and the edge limits).',
      labelNames: ['cause'],
      registers,
    });
    this.reloadErrors = new Counter({
      name: 'micro_mcp_policy_reload_errors_total',
      help: 'Policy reloads refused (the last good set kept running).',
      registers,
    });
    this.auditSeconds = new Histogram({
      name: 'micro_mcp_audit_write_duration_seconds',
      help: 'Time to write one audit record (durable, per audit.fsync), by record kind.',
      labelNames: ['kind'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    new Gauge({ name: 'micro_mcp_sessions', help: 'Open 2025-era sessions.', registers, collect: setTo(() => sources.sessions()) });
    new Gauge({ name: 'micro_mcp_streams', help: 'Open server-to-client streams.', registers, collect: setTo(() => sources.streams()) });
    new Gauge({ name: 'micro_mcp_calls_in_flight', help: 'Calls being forwarded now.', registers, collect: setTo(() => sources.inFlight()) });
    new Gauge({
      name: 'micro_mcp_service_up',
      help: '1 when the service connection is ready, else 0.',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.services()) this.set({ service: s.name }, s.state === 'ready' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'micro_mcp_service_restarts',
      help: 'Times the service connection was lost and restarted since the gateway started.',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.services()) this.set({ service: s.name }, s.restarts);
      },
    });
    new Gauge({
      name: 'micro_mcp_service_connections',
      help: 'Connections open to the service besides its main one (for stdio: processes), by kind: overflow or isolated.',
      labelNames: ['service', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.services()) {
          const c = s.connections;
          if (c) this.set({ service: s.name, kind: 'overflow' in c ? 'overflow' : 'isolated' }, 'overflow' in c ? c.overflow : c.isolated);
        }
      },
    });
    new Gauge({
      name: 'micro_mcp_service_breaker_state',
      help: "The service's circuit breaker: 0 closed, 1 half-open, 2 open.",
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.services()) if (s.breaker !== undefined) this.set({ service: s.name }, BREAKER_VALUE[s.breaker] ?? 0);
      },
    });
    new Gauge({
      name: 'micro_mcp_policy_revision_info',
      help: 'The running policy revision (value always 1).',
      labelNames: ['revision'],
      registers,
      collect() {
        this.reset();
        this.set({ revision: sources.policyRevision() }, 1);
      },
    });
  }

  /** One call ended (or was denied or refused before it was forwarded). */
  callEnded(e: CallEnd): void {
    this.calls.inc({ service: e.service, tool: this.bounded('tool', e.tool), outcome: e.outcome, rule: this.bounded('rule', e.rule) });
    if (e.serviceSeconds !== undefined) this.serviceSeconds.observe({ service: e.service }, e.serviceSeconds);
    if (e.totalSeconds !== undefined) this.totalSeconds.observe({ service: e.service }, e.totalSeconds);
  }

  /** One engine decided (any phase). */
  engineDecided(engine: string, seconds: number): void {
    this.decisionSeconds.observe({ engine }, seconds);
  }

  limitRefused(cause: string): void {
    this.limitRefusals.inc({ cause: this.bounded('cause', cause) });
  }

  policyReloadFailed(): void {
    this.reloadErrors.inc();
  }

  auditWritten(kind: 'decision' | 'outcome' | 'event', seconds: number): void {
    this.auditSeconds.observe({ kind }, seconds);
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private bounded(label: string, value: string): string {
    let s = this.seen.get(label);
    if (!s) {
      s = new Set();
      this.seen.set(label, s);
    }
    if (s.has(value)) return value;
    if (s.size >= MAX_VALUES) return 'other';
    s.add(value);
    return value;
  }
}

function setTo(read: () => number) {
  return function (this: Gauge) {
    this.set(read());
  };
}
