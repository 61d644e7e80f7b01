import diagnosticsChannel from 'node:diagnostics_channel';
import { CONTENT_TYPE, instrument, PrometheusMetrics, type CyredisInstrumentation } from '@cyredis/otel';

// With the API's no-op global providers: subscribes, makes nothing, unsubscribes.
const otel: CyredisInstrumentation = instrument();
if (!otel.enabled || !diagnosticsChannel.tracingChannel('cyredis:queue:push').hasSubscribers) throw new Error('not subscribed');
otel.disable();
if (diagnosticsChannel.tracingChannel('cyredis:queue:push').hasSubscribers) throw new Error('still subscribed');
const prometheus = new PrometheusMetrics();
const text = await prometheus.metrics();
prometheus.close();
if (!text.includes('# TYPE cyredis_queue_jobs gauge') || !CONTENT_TYPE.startsWith('text/plain')) throw new Error(text);
