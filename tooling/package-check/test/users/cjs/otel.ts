// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { instrument, PrometheusMetrics } from '@cyredis/otel';

async function main(): Promise<void> {
  const otel = instrument();
  otel.disable();
  const prometheus = new PrometheusMetrics();
  const text = await prometheus.metrics();
  prometheus.close();
  if (!text.includes('cyredis_queue_jobs')) throw new Error(text);
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
