/**
 * The pipeline's CallObserver (pipeline/ports.ts) over the metrics and, when configured, the traces:
 * the one place that turns a call's steps into series and spans.
 */
import type { CallContext, CallObserver, CallWatch } from '../pipeline/ports.js';
import type { Decision } from '../types.js';
import type { GatewayMetrics } from './metrics.js';
import type { Tracing } from './tracing.js';

/** One engine's evaluation inside a decision, as the policy set reports it (onEvaluated). */
export interface EngineTiming {
  engine: string;
  startMs: number;
  durationMs: number;
  error?: string | undefined;
}

export class Observer implements CallObserver {
  /** Engines evaluated since the current decision began (decide() is synchronous: nothing interleaves). */
  private engines: EngineTiming[] = [];

  constructor(
    private readonly metrics: GatewayMetrics | undefined,
    private readonly tracing: Tracing | undefined,
  ) {}

  /** The policy set's onEvaluated hook: every engine run, any phase. */
  engineEvaluated(t: EngineTiming): void {
    this.metrics?.engineDecided(t.engine, t.durationMs / 1000);
    // Bounded: only a call's decision drains it, list-phase decisions would otherwise pile up.
    if (this.engines.length >= 16) this.engines.shift();
    this.engines.push(t);
  }

  begin(cc: CallContext, call: Parameters<CallObserver['begin']>[1]): CallWatch {
    const metrics = this.metrics;
    const span = this.tracing?.callSpan(cc, call);
    return {
      trace: span?.ids,
      policy: () => {
        this.engines = [];
        const t0 = performance.now();
        return (decision: Decision) => {
          span?.policy(t0, performance.now(), this.engines, decision);
          this.engines = [];
        };
      },
      audit: () => {
        const t0 = performance.now();
        return (error?: string) => span?.step('audit', t0, performance.now(), error);
      },
      limitRefused: (cause) => {
        metrics?.limitRefused(cause);
        span?.event('limit_refused', { 'micro_mcp.limit': cause });
      },
      forwarding: () => span?.forwarding() ?? {},
      ended: (outcome, rules, serviceUs, totalUs) => {
        metrics?.callEnded({
          service: call.service,
          tool: call.tool,
          outcome,
          rule: rules,
          ...(serviceUs !== undefined ? { serviceSeconds: serviceUs / 1e6 } : {}),
          ...(totalUs !== undefined ? { totalSeconds: totalUs / 1e6 } : {}),
        });
        span?.end(outcome, rules);
      },
    };
  }
}
