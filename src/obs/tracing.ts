/**
 * OpenTelemetry traces (the official SDK, OTLP/HTTP JSON export). One span per call, with children
 * for authentication (measured at the HTTP edge), the policy decision (a child per engine), the
 * decision record's write and the service. The call's trace context goes to the service (`_meta`
 * `traceparent`, and the HTTP header for a remote service) and into the decision record.
 *
 * The provider is not registered globally and no context manager is installed: every parent is
 * passed explicitly, so nothing depends on async context propagation through the SDK's callbacks.
 * Spans of steps measured before their parent existed (authentication, the synchronous engines) are
 * created afterwards with their measured start and end times.
 */
import { type Attributes, type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type TimeInput, trace, type Tracer } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import type { GatewayConfig } from '../../schemas/generated/config.js';
import type { CallContext } from '../pipeline/ports.js';
import type { Decision, Logger } from '../types.js';
import type { EngineTiming } from './observer.js';

export type TracingConfig = NonNullable<GatewayConfig['tracing']>;

/** performance.now() milliseconds as the epoch milliseconds a span's time takes. */
const at = (perfMs: number): TimeInput => performance.timeOrigin + perfMs;

const propagator = new W3CTraceContextPropagator();
const getter = {
  keys: (c: Record<string, string>) => Object.keys(c),
  get: (c: Record<string, string>, k: string) => c[k],
};
const setter = {
  set(c: Record<string, string>, k: string, v: string) {
    c[k] = v;
  },
};

/** Outcomes that are not a failure of the call (its span's status stays unset). */
const FINE = new Set(['ok', 'input_required']);

export class Tracing {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  private readonly trustParent: boolean;

  constructor(cfg: TracingConfig, version: string, log: Logger) {
    const otlp = new OTLPTraceExporter({ url: cfg.otlp_endpoint, ...(cfg.headers ? { headers: { ...cfg.headers } } : {}), timeoutMillis: 10_000 });
    const exporter = new LoggedExporter(otlp, log);
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': cfg.service_name, 'service.version': version }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(cfg.sample_ratio) }),
      // Batched off the call path; a scrape-like one second delay keeps a trace close behind its calls.
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000, maxQueueSize: 4096, maxExportBatchSize: 512 })],
    });
    this.tracer = this.provider.getTracer('micro-mcp', version);
    this.trustParent = cfg.trust_traceparent;
  }

  /** Sends what is buffered and stops (lifecycle release). */
  async close(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined);
  }

  /** The span of one call, parented by the agent's trace context only when configured to trust it. */
  callSpan(cc: CallContext, call: { method: string; service: string; tool: string; decisionId: string; meta: Record<string, unknown> }): CallSpan {
    const parent = this.trustParent ? agentContext(call.meta, cc) : ROOT_CONTEXT;
    const start = cc.edge?.startMs ?? performance.now();
    const span = this.tracer.startSpan(
      // Resources are named by their method alone: a URI is unbounded and may carry what a name must not.
      call.tool === call.method ? call.method : `${call.method} ${call.tool}`,
      {
        kind: SpanKind.SERVER,
        startTime: at(start),
        attributes: {
          'mcp.method.name': call.method,
          'micro_mcp.service': call.service,
          'micro_mcp.tool': call.tool,
          'micro_mcp.decision_id': call.decisionId,
          'micro_mcp.request_id': cc.requestId,
          'micro_mcp.era': cc.era,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(ROOT_CONTEXT, span);
    if (cc.edge) this.tracer.startSpan('authenticate', { startTime: at(cc.edge.authStartMs) }, ctx).end(at(cc.edge.authEndMs));
    return new CallSpan(this.tracer, span, ctx, call.service);
  }
}

/**
 * Tracing never refuses a call: a collector that is down or refuses loses spans, not calls. The loss
 * is logged (at most once a minute, with the count since) so it does not go unnoticed.
 */
class LoggedExporter implements SpanExporter {
  private lost = 0;
  private lastWarn = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.inner.export(spans, (r) => {
      if (r.code !== ExportResultCode.SUCCESS) {
        this.lost += spans.length;
        const now = this.now();
        if (now - this.lastWarn >= 60_000) {
          this.lastWarn = now;
          // The message of a failed export names the status or the socket error, never the headers.
          this.log.warn({ spans_lost: this.lost, err: r.error?.message?.slice(0, 200) }, 'trace export failed; spans dropped');
          this.lost = 0;
        }
      }
      done(r);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** The agent's trace context: `_meta.traceparent` (the MCP convention) first, else the HTTP headers. */
function agentContext(meta: Record<string, unknown>, cc: CallContext): Context {
  const carrier: Record<string, string> = {};
  if (typeof meta.traceparent === 'string') {
    carrier.traceparent = meta.traceparent;
    if (typeof meta.tracestate === 'string') carrier.tracestate = meta.tracestate;
  } else if (cc.edge?.traceparent !== undefined) {
    carrier.traceparent = cc.edge.traceparent;
    if (cc.edge.tracestate !== undefined) carrier.tracestate = cc.edge.tracestate;
  }
  // A malformed traceparent is ignored by the propagator: the call starts a new trace.
  return propagator.extract(ROOT_CONTEXT, carrier, getter);
}

/** One call's span and its children. */
export class CallSpan {
  readonly ids: { trace_id: string; span_id: string };
  private service: Span | undefined;

  constructor(
    private readonly tracer: Tracer,
    private readonly span: Span,
    private readonly ctx: Context,
    private readonly serviceName: string,
  ) {
    const sc = span.spanContext();
    this.ids = { trace_id: sc.traceId, span_id: sc.spanId };
  }

  /** The decision: a `policy` span with one child per engine, at the times they ran. */
  policy(t0: number, t1: number, engines: readonly EngineTiming[], decision: Decision): void {
    const rules = [...new Set(decision.reasons.map((r) => r.id))].sort();
    const p = this.tracer.startSpan(
      'policy',
      { startTime: at(t0), attributes: { 'micro_mcp.allow': decision.allow, 'micro_mcp.rules': rules, 'micro_mcp.policy_revision': decision.policy_revision } },
      this.ctx,
    );
    const pctx = trace.setSpan(this.ctx, p);
    for (const e of engines) {
      const verdict = decision.engines?.find((v) => v.engine === e.engine);
      const attrs: Attributes = { 'micro_mcp.engine': e.engine };
      if (verdict) attrs['micro_mcp.allow'] = verdict.allow;
      const s = this.tracer.startSpan(`policy ${e.engine}`, { startTime: at(e.startMs), attributes: attrs }, pctx);
      if (e.error) s.setStatus({ code: SpanStatusCode.ERROR, message: e.error });
      s.end(at(e.startMs + e.durationMs));
    }
    p.end(at(t1));
  }

  /** A step measured by the pipeline (the decision record's write). */
  step(name: string, t0: number, t1: number, error?: string): void {
    const s = this.tracer.startSpan(name, { startTime: at(t0) }, this.ctx);
    if (error) s.setStatus({ code: SpanStatusCode.ERROR, message: error });
    s.end(at(t1));
  }

  event(name: string, attrs: Attributes): void {
    this.span.addEvent(name, attrs);
  }

  /** The call goes to the service: its span starts, and its context is what the service receives. */
  forwarding(): Record<string, string> {
    this.service = this.tracer.startSpan(
      `service ${this.serviceName}`,
      { kind: SpanKind.CLIENT, attributes: { 'micro_mcp.service': this.serviceName } },
      this.ctx,
    );
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, this.service), carrier, setter);
    return carrier;
  }

  /** The call ended: the service span (if any) and the call's span end, in error unless it went well. */
  end(outcome: string, rules: string): void {
    const failed = !FINE.has(outcome);
    if (this.service) {
      if (failed) this.service.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      this.service.end();
    }
    this.span.setAttributes({ 'micro_mcp.outcome': outcome, 'micro_mcp.rule': rules });
    if (failed) this.span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
    this.span.end();
  }
}
