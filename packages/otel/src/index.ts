// The public surface of @cyredis/otel: the OpenTelemetry instrumentation and the Prometheus text metrics.
export { CyredisInstrumentation, instrument, INSTRUMENTATION_NAME, OPERATIONS, type InstrumentationOptions } from './instrumentation.js';
export { CONTENT_TYPE, PrometheusMetrics } from './prometheus.js';
export type { CacheCounts, CacheSource, QueueCounts, QueueSource, StatsSources } from './sources.js';
