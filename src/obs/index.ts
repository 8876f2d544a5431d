/**
 * Observability: Prometheus metrics (metrics.ts, served by metrics-listener.ts) and OpenTelemetry
 * traces (tracing.ts), fed by the pipeline through one CallObserver (observer.ts). Both are off
 * unless configured (`metrics:`, `tracing:`).
 */
export { GatewayMetrics, type MetricSources } from './metrics.js';
export { type MetricsListener, startMetricsListener } from './metrics-listener.js';
export { Observer } from './observer.js';
export { Tracing } from './tracing.js';
