import { spawn, type ChildProcess } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SmartCache } from '@cyredis/cache';
import { LockLostError, LockManager, type Lock } from '@cyredis/lock';
import { JobQueue, Worker } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { clusterSeeds, connect, deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import { context, SpanKind, SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader, type HistogramMetricData } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CyredisInstrumentation, OPERATIONS, PrometheusMetrics } from '../src/index.js';

const WORKER = fileURLToPath(new URL('./fixtures/otel-worker.mjs', import.meta.url));

/** A reader the test collects from when it wants. */
class TestReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A metric's data points now, as attributes and value (a histogram's value is its count). */
async function points(reader: TestReader, name: string): Promise<{ attributes: Attributes; value: number }[]> {
  const { resourceMetrics } = await reader.collect();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      if ((metric as HistogramMetricData).dataPoints.length > 0 && typeof metric.dataPoints[0]!.value === 'object') {
        return (metric as HistogramMetricData).dataPoints.map((p) => ({ attributes: p.attributes, value: p.value.count }));
      }
      return metric.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value as number }));
    }
  }
  return [];
}

/** The sum of a metric's points whose attributes include `match`. */
async function total(reader: TestReader, name: string, match: Attributes): Promise<number> {
  const all = await points(reader, name);
  return all.filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v)).reduce((sum, p) => sum + p.value, 0);
}

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});

describe('channels without a subscriber', () => {
  it('an instrumentation that was disabled leaves every channel without subscribers', () => {
    const instrumentation = new CyredisInstrumentation({ metrics: false }).enable();
    const names = Object.entries(OPERATIONS).flatMap(([pkg, ops]) => ops.map((op) => `cyredis:${pkg}:${op}`));
    expect(names.every((name) => diagnosticsChannel.tracingChannel(name).hasSubscribers)).toBe(true);
    instrumentation.disable();
    expect(names.some((name) => diagnosticsChannel.tracingChannel(name).hasSubscribers)).toBe(false);
  });

  it('refuses an unknown option', () => {
    expect(() => new CyredisInstrumentation({ spanz: true } as never)).toThrow(/options\.spanz: unknown option/);
  });
});

describe.each(topologies)('@cyredis/otel on %s', (topology) => {
  const redis = suiteClient(topology);
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracer = tracerProvider.getTracer('test');
  const instrumentation = new CyredisInstrumentation({ tracerProvider, meterProvider });
  let prefix: string;

  beforeAll(() => void instrumentation.enable());
  afterAll(() => instrumentation.disable());
  beforeEach(() => {
    prefix = randomPrefix();
    exporter.reset();
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  /** The finished spans named `name`. */
  const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);

  it('ratelimit: limit spans under the caller span with outcome and rule; decisions and latency by outcome', async () => {
    const name = `rl-${prefix}`;
    const limiter = new RateLimiter(redis, { name, prefix, limit: 1, windowMs: 60_000 });
    const refused: string[] = [];
    limiter.on('refused', (id) => refused.push(id));
    await tracer.startActiveSpan('caller', async (caller) => {
      expect((await limiter.limit('u1')).allowed).toBe(true);
      expect((await limiter.limit('u1')).allowed).toBe(false);
      caller.end();
    });
    const [admitted, denied] = spans('ratelimit.limit');
    const caller = spans('caller')[0]!;
    expect(admitted!.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    expect(admitted!.attributes).toMatchObject({ 'cyredis.name': name, 'cyredis.key': 'u1', 'cyredis.outcome': 'admitted', 'cyredis.ratelimit.rule': 0 });
    expect(denied!.attributes['cyredis.outcome']).toBe('refused');
    expect(denied!.status.code).toBe(SpanStatusCode.UNSET);
    expect(refused).toEqual(['u1']);
    expect(await total(reader, 'cyredis.ratelimit.decisions', { 'cyredis.ratelimit.name': name, 'cyredis.outcome': 'admitted' })).toBe(1);
    expect(await total(reader, 'cyredis.ratelimit.decisions', { 'cyredis.ratelimit.name': name, 'cyredis.outcome': 'refused' })).toBe(1);
    expect(await total(reader, 'cyredis.ratelimit.check.duration', { 'cyredis.ratelimit.name': name })).toBe(2);
  });

  it('lock: acquisitions by outcome, wait and hold time, lost leases (with the lost event)', async () => {
    const locks = new LockManager(redis, { prefix });
    const lost: Lock[] = [];
    locks.on('lost', (lock) => lost.push(lock));
    try {
      const before = await total(reader, 'cyredis.lock.acquisitions', { 'cyredis.lock.kind': 'mutex', 'cyredis.outcome': 'refused' });
      const held = await locks.acquire('res', { ttlMs: 5000 });
      expect(await locks.tryAcquire('res')).toBeNull();
      await held.release();
      const again = await locks.acquire('res', { ttlMs: 5000 });
      await locks.forceUnlock('res');
      await expect(again.extend()).rejects.toBeInstanceOf(LockLostError);
      const [first, refusal] = spans('lock.acquire');
      expect(first!.attributes).toMatchObject({ 'cyredis.key': 'res', 'cyredis.outcome': 'acquired' });
      expect(typeof first!.attributes['cyredis.lock.waited_ms']).toBe('number');
      // A refusal is an answer: the span says so without an error status.
      expect(refusal!.attributes['cyredis.outcome']).toBe('refused');
      expect(refusal!.status.code).toBe(SpanStatusCode.UNSET);
      expect(spans('lock.release')[0]!.attributes['cyredis.outcome']).toBe('released');
      const extend = spans('lock.extend')[0]!;
      expect(extend.attributes['cyredis.outcome']).toBe('lost');
      expect(extend.status.code).toBe(SpanStatusCode.ERROR);
      expect(lost).toEqual([again]);
      expect(await total(reader, 'cyredis.lock.acquisitions', { 'cyredis.lock.kind': 'mutex', 'cyredis.outcome': 'refused' })).toBe(before + 1);
      expect(await total(reader, 'cyredis.lock.hold.duration', {})).toBeGreaterThanOrEqual(1);
      expect(await total(reader, 'cyredis.lock.lost', {})).toBeGreaterThanOrEqual(1);
      const permit = await locks.semaphore('pool', { permits: 2 }).acquire();
      await permit.release();
      expect(spans('lock.semaphore.acquire')[0]!.attributes).toMatchObject({ 'cyredis.key': 'pool', 'cyredis.count': 1, 'cyredis.outcome': 'acquired' });
    } finally {
      await locks.close();
    }
  });

  it('lock: a using() lease that runs out while Redis does not answer counts as lost', async () => {
    const client = connect(topology);
    const locks = new LockManager(client, { prefix, timeoutMs: 1_000 });
    try {
      const before = await total(reader, 'cyredis.lock.lost', {});
      const outcome = await locks
        .using(
          'res',
          (signal) => {
            client.disconnect();
            return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          },
          { ttlMs: 1_000 },
        )
        .catch((err: unknown) => err);
      expect(outcome).toBeInstanceOf(LockLostError);
      expect(await total(reader, 'cyredis.lock.lost', {})).toBe(before + 1);
    } finally {
      client.disconnect();
      await locks.close();
    }
  });

  it('cache: hits and misses by tier, loader calls and duration, invalidated events; a bad call sets error status', async () => {
    const name = `c-${prefix}`;
    const cache = new SmartCache<string>(redis, { name, prefix, maxSize: 100 });
    const invalidated: unknown[] = [];
    cache.on('invalidated', (keys, reason) => invalidated.push([keys, reason]));
    try {
      expect(await cache.get('a')).toBeUndefined();
      await cache.set('a', 'x');
      expect(await cache.get('a')).toBe('x');
      expect(await cache.getOrSet('b', () => 'loaded')).toBe('loaded');
      expect(await cache.getOrSet('b', () => 'again')).toBe('loaded');
      expect(await cache.delete('a')).toBe(true);
      await expect(cache.set('', 'x')).rejects.toThrow();
      const gets = spans('cache.get');
      expect(gets.map((s) => s.attributes['cyredis.outcome'])).toEqual(['miss', 'hit']);
      expect(gets[1]!.attributes['cyredis.cache.tier']).toBe('l2');
      expect(spans('cache.getOrSet').map((s) => [s.attributes['cyredis.outcome'], s.attributes['cyredis.cache.loaded']])).toEqual([
        ['miss', true],
        ['hit', false],
      ]);
      expect(spans('cache.load')).toHaveLength(1);
      const bad = spans('cache.set').find((s) => s.attributes['cyredis.key'] === '')!;
      expect(bad.status.code).toBe(SpanStatusCode.ERROR);
      expect(bad.events.some((e) => e.name === 'exception')).toBe(true);
      expect(invalidated).toEqual([[['a'], 'delete']]);
      expect(await total(reader, 'cyredis.cache.requests', { 'cyredis.cache.name': name, 'cyredis.outcome': 'miss' })).toBe(2);
      expect(await total(reader, 'cyredis.cache.requests', { 'cyredis.cache.name': name, 'cyredis.outcome': 'hit', 'cyredis.cache.tier': 'l2' })).toBe(2);
      expect(await total(reader, 'cyredis.cache.loader.calls', { 'cyredis.cache.name': name })).toBe(1);
      expect(await total(reader, 'cyredis.cache.loader.duration', { 'cyredis.cache.name': name })).toBe(1);
      instrumentation.observe({ caches: [cache] });
      expect(await total(reader, 'cyredis.cache.size', { 'cyredis.cache.name': name })).toBe(1);
    } finally {
      instrumentation.observe({});
      await cache.close();
    }
  });

  it('queue: producer and consumer spans (messaging), job counters, processing time, gauges; a failing handler sets error status', async () => {
    const name = `q-${prefix}`;
    const queue = new JobQueue<{ n: number; fail?: boolean }>(redis, name, { prefix, maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } });
    instrumentation.observe({ queues: [queue] });
    try {
      await queue.push({ n: 1 }, { delayMs: 60_000 });
      expect(await total(reader, 'cyredis.queue.jobs.delayed', { 'messaging.destination.name': name })).toBe(1);
      await queue.pushBulk([{ data: { n: 2 } }, { data: { n: 3, fail: true } }]);
      expect(await total(reader, 'cyredis.queue.jobs.waiting', { 'messaging.destination.name': name })).toBe(2);
      const worker = new Worker(queue, (job) => {
        if (job.data.fail) throw new Error('asked to fail');
        return undefined;
      }, { blockMs: 100 });
      const dead = new Promise((resolve) => worker.once('dead', resolve));
      await dead;
      await waitFor(async () => ((await total(reader, 'cyredis.queue.jobs.completed', { 'messaging.destination.name': name })) === 1 ? true : undefined));
      await worker.close();
      const send = spans(`send ${name}`);
      expect(send).toHaveLength(2);
      expect(send[0]!.kind).toBe(SpanKind.PRODUCER);
      expect(send[0]!.attributes).toMatchObject({ 'messaging.system': 'cyredis', 'messaging.destination.name': name, 'messaging.operation.type': 'send' });
      expect(send[1]!.attributes['messaging.batch.message_count']).toBe(2);
      const processed = spans(`process ${name}`);
      expect(processed).toHaveLength(3);
      for (const span of processed) {
        expect(span.kind).toBe(SpanKind.CONSUMER);
        // Each job links to the span that pushed it (the bulk push's span for both of its jobs).
        expect(span.links.map((l) => l.context.spanId)).toEqual([send[1]!.spanContext().spanId]);
      }
      const failed = processed.filter((s) => s.status.code === SpanStatusCode.ERROR);
      expect(failed).toHaveLength(2);
      expect(failed.map((s) => s.attributes['cyredis.queue.attempts'])).toEqual([1, 2]);
      const attributes = { 'messaging.destination.name': name };
      expect(await total(reader, 'cyredis.queue.jobs.added', attributes)).toBe(3);
      expect(await total(reader, 'cyredis.queue.jobs.started', attributes)).toBe(3);
      expect(await total(reader, 'cyredis.queue.jobs.retried', attributes)).toBe(1);
      expect(await total(reader, 'cyredis.queue.jobs.dead', attributes)).toBe(1);
      expect(await total(reader, 'messaging.process.duration', attributes)).toBe(3);
    } finally {
      instrumentation.observe({});
    }
  });

  it('queue: a job pushed inside a span runs in a worker process under a span linked to it', async () => {
    const name = `xq-${prefix}`;
    const queue = new JobQueue<{ n: number; fail?: boolean }>(redis, name, { prefix, maxRetries: 0 });
    const target = topology === 'cluster' ? JSON.stringify(clusterSeeds()) : redisUrl();
    const child: ChildProcess = spawn(process.execPath, [WORKER, target, prefix, name], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
    try {
      await waitFor(() => (lines.includes('ready') ? true : undefined), { timeoutMs: 20_000 });
      const pushed = await tracer.startActiveSpan('request', async (span) => {
        await queue.push({ n: 21 });
        await queue.push({ n: 0, fail: true });
        span.end();
        return spans(`send ${name}`);
      });
      expect(pushed).toHaveLength(2);
      const request = spans('request')[0]!;
      expect(pushed[0]!.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
      const printed = await waitFor(() => (lines.length >= 3 ? lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>) : undefined), { timeoutMs: 30_000 });
      const byPush = (span: ReadableSpan) => printed.find((p) => (p.links as { spanId: string }[])[0]?.spanId === span.spanContext().spanId);
      const ok = byPush(pushed[0]!)!;
      const bad = byPush(pushed[1]!)!;
      expect(ok).toMatchObject({ name: `process ${name}`, kind: SpanKind.CONSUMER, status: SpanStatusCode.UNSET });
      expect((ok.links as { traceId: string }[])[0]!.traceId).toBe(request.spanContext().traceId);
      expect(bad.status).toBe(SpanStatusCode.ERROR);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('Prometheus text: queue and cache gauges, limiter decisions', async () => {
    const queue = new JobQueue(redis, `pq-${prefix}`, { prefix });
    const cache = new SmartCache<string>(redis, { name: `pc-${prefix}`, prefix, maxSize: 10 });
    const limiter = new RateLimiter(redis, { name: `pl-${prefix}`, prefix, limit: 1, windowMs: 60_000 });
    const exposition = new PrometheusMetrics({ queues: [queue], caches: [cache] });
    try {
      await queue.push({ a: 1 });
      await cache.set('k', 'v');
      await cache.get('k');
      await limiter.limit('x');
      await limiter.limit('x');
      const text = await exposition.metrics();
      expect(text).toContain('# TYPE cyredis_queue_jobs gauge\n');
      expect(text).toContain(`cyredis_queue_jobs{queue="pq-${prefix}",state="waiting"} 1\n`);
      expect(text).toContain(`cyredis_cache_hits_total{cache="pc-${prefix}"} 1\n`);
      expect(text).toContain(`cyredis_cache_entries{cache="pc-${prefix}"} 1\n`);
      expect(text).toContain(`cyredis_ratelimit_decisions_total{limiter="pl-${prefix}",outcome="admitted"} 1\n`);
      expect(text).toContain(`cyredis_ratelimit_decisions_total{limiter="pl-${prefix}",outcome="refused"} 1\n`);
    } finally {
      exposition.close();
      await cache.close();
    }
  });
});

// The link needs no propagator set up: without one, the job carries a W3C traceparent of its own.
describe('trace context carried in the job', () => {
  it('is a W3C traceparent of the pushing span', () => {
    const span = new BasicTracerProvider().getTracer('t').startSpan('s');
    const ctx = trace.setSpan(context.active(), span);
    const { traceId, spanId } = span.spanContext();
    return import('../src/propagation.js').then(({ extract, inject }) => {
      const carrier = inject(ctx)!;
      expect(carrier.traceparent).toBe(`00-${traceId}-${spanId}-01`);
      expect(extract(carrier)).toMatchObject({ traceId, spanId, isRemote: true });
      expect(extract({ traceparent: 'garbage' })).toBeUndefined();
    });
  });
});
