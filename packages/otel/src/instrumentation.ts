// Subscribes to the cyredis tracing channels and turns each call into an OpenTelemetry span and metrics.
import diagnosticsChannel, { type TracingChannelSubscribers } from 'node:diagnostics_channel';
import {
  context,
  metrics,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Counter,
  type Histogram,
  type Link,
  type Meter,
  type MeterProvider,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { OperationContext } from '@cyredis/core';
import { extract, inject } from './propagation.js';
import { readSources, type StatsSources } from './sources.js';

/** The instrumentation's name and version, as its tracer and meter report them. */
export const INSTRUMENTATION_NAME = '@cyredis/otel';
const INSTRUMENTATION_VERSION = '0.1.0';

/** Options of `new CyredisInstrumentation(…)`. */
export interface InstrumentationOptions {
  /** Where spans go. Default: the global tracer provider (`trace.setGlobalTracerProvider`). */
  tracerProvider?: TracerProvider;
  /** Where metrics go. Default: the global meter provider (`metrics.setGlobalMeterProvider`). */
  meterProvider?: MeterProvider;
  /** Make spans. Default true. */
  spans?: boolean;
  /** Record metrics. Default true. */
  metrics?: boolean;
  /**
   * Store the pushing span's context with each job pushed (queue `traceContext`), so its processing span links
   * to it. Default true.
   */
  propagate?: boolean;
}

const OPTION_NAMES: readonly string[] = ['tracerProvider', 'meterProvider', 'spans', 'metrics', 'propagate'];
/** The plain channel every lost lease is published on (`LOST` of @cyredis/lock). */
const LOST_CHANNEL = 'cyredis:lock:lost';

/** Every traced operation, by package: the channel is `cyredis:<package>:<operation>`. */
export const OPERATIONS = {
  /** `@cyredis/ratelimit`'s. */
  ratelimit: ['limit', 'peek', 'reset'],
  /** `@cyredis/lock`'s. */
  lock: ['acquire', 'acquireMany', 'semaphore.acquire', 'fair.acquire', 'extend', 'release'],
  /** `@cyredis/cache`'s. */
  cache: ['get', 'getMany', 'getOrSet', 'load', 'set', 'setMany', 'has', 'delete', 'deleteMany', 'deleteByTag', 'clear'],
  /** `@cyredis/queue`'s (`process`: a worker's run of one job). */
  queue: ['push', 'pushBulk', 'fetch', 'complete', 'ack', 'fail', 'extend', 'release', 'process'],
} as const;

type Package = keyof typeof OPERATIONS;

/** The instruments, made once per instrumentation. */
interface Instruments {
  decisions: Counter;
  checkDuration: Histogram;
  acquisitions: Counter;
  lockWait: Histogram;
  lockHold: Histogram;
  lostLeases: Counter;
  cacheRequests: Counter;
  loaderCalls: Counter;
  loaderDuration: Histogram;
  jobsAdded: Counter;
  jobsStarted: Counter;
  jobsCompleted: Counter;
  jobsRetried: Counter;
  jobsDead: Counter;
  processDuration: Histogram;
}

/** One subscription of one channel, kept so `disable` can undo it. */
interface Subscription {
  name: string;
  handlers: TracingChannelSubscribers<OperationContext>;
}

/**
 * Turns every cyredis call into an OpenTelemetry span (parented to the caller's active context; a job's
 * processing span links to the span that pushed it) and metrics, through `@opentelemetry/api`: bring your
 * own SDK. `enable()` subscribes to the channels, `disable()` leaves them (free again).
 */
export class CyredisInstrumentation {
  private readonly tracer: Tracer | undefined;
  private readonly meter: Meter | undefined;
  private readonly instruments: Instruments | undefined;
  private readonly propagate: boolean;
  private readonly spans = new WeakMap<OperationContext, Span>();
  /** When each lease was taken (`performance.now()`), for its hold time at release. */
  private readonly held = new WeakMap<object, number>();
  private subscriptions: Subscription[] = [];
  private observed: StatsSources = {};

  constructor(options: InstrumentationOptions = {}) {
    for (const key of Object.keys(options)) {
      if (!OPTION_NAMES.includes(key)) throw new TypeError(`options.${key}: unknown option (known: ${OPTION_NAMES.join(', ')})`);
    }
    if (options.spans !== false) this.tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
    if (options.metrics !== false) {
      this.meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
      this.instruments = makeInstruments(this.meter);
      this.observeGauges(this.meter);
    }
    this.propagate = options.propagate !== false;
  }

  /** A lease found gone (an extension refused, or a `using` lease ran out): the `cyredis:lock:lost` channel. */
  private readonly countLost = (): void => this.instruments?.lostLeases.add(1);

  /** Whether it is subscribed. */
  get enabled(): boolean {
    return this.subscriptions.length > 0;
  }

  /** Subscribes to every cyredis channel (again a no-op while enabled). */
  enable(): this {
    if (this.enabled) return this;
    for (const pkg of Object.keys(OPERATIONS) as Package[]) {
      for (const operation of OPERATIONS[pkg]) {
        const name = `cyredis:${pkg}:${operation}`;
        const handlers = this.handlers(pkg, operation);
        diagnosticsChannel.tracingChannel<unknown, OperationContext>(name).subscribe(handlers);
        this.subscriptions.push({ name, handlers });
      }
    }
    diagnosticsChannel.subscribe(LOST_CHANNEL, this.countLost);
    return this;
  }

  /** Leaves every channel: cyredis calls cost nothing extra again. */
  disable(): void {
    for (const { name, handlers } of this.subscriptions) diagnosticsChannel.tracingChannel<unknown, OperationContext>(name).unsubscribe(handlers);
    this.subscriptions = [];
    diagnosticsChannel.unsubscribe(LOST_CHANNEL, this.countLost);
  }

  /**
   * Reports the gauges of these queues (`waiting`, `delayed`, …), caches (size, evictions) at each metrics
   * collection, read with their `stats()`; replaces what was observed before.
   */
  observe(sources: StatsSources): void {
    this.observed = sources;
  }

  private handlers(pkg: Package, operation: string): TracingChannelSubscribers<OperationContext> {
    return {
      start: (ctx) => this.start(pkg, operation, ctx),
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: (ctx) => this.finish(pkg, operation, ctx),
      error: (ctx) => this.failed(ctx),
    };
  }

  private start(pkg: Package, operation: string, ctx: OperationContext): void {
    if (pkg === 'queue' && operation === 'process') this.instruments?.jobsStarted.add(1, queueAttributes(ctx));
    if (this.tracer === undefined) return;
    const active = context.active();
    const messaging = pkg === 'queue' && (operation === 'push' || operation === 'pushBulk' || operation === 'process');
    const kind = !messaging ? SpanKind.INTERNAL : operation === 'process' ? SpanKind.CONSUMER : SpanKind.PRODUCER;
    const links: Link[] = [];
    if (operation === 'process' && ctx.traceContext !== undefined) {
      const pushed = extract(ctx.traceContext);
      if (pushed !== undefined) links.push({ context: pushed });
    }
    const name = messaging ? `${operation === 'process' ? 'process' : 'send'} ${ctx.name ?? ''}`.trimEnd() : `${pkg}.${operation}`;
    const span = this.tracer.startSpan(name, { kind, links, attributes: startAttributes(pkg, operation, ctx, messaging) }, active);
    this.spans.set(ctx, span);
    if (messaging && operation !== 'process' && this.propagate && ctx.traceContext === undefined) {
      ctx.traceContext = inject(trace.setSpan(active, span));
    }
  }

  private failed(ctx: OperationContext): void {
    const span = this.spans.get(ctx);
    if (span === undefined) return;
    const error = ctx.error;
    // A refused acquire is an answer, not a failure.
    if (ctx.outcome === 'refused') return;
    if (error instanceof Error) span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }

  private finish(pkg: Package, operation: string, ctx: OperationContext): void {
    const seconds = ctx.startedAt === undefined ? 0 : (performance.now() - ctx.startedAt) / 1000;
    if (this.instruments !== undefined) this.record(this.instruments, pkg, operation, ctx, seconds);
    const span = this.spans.get(ctx);
    if (span === undefined) return;
    span.setAttributes(endAttributes(ctx));
    if (ctx.error !== undefined) span.setAttribute('error.type', errorType(ctx.error));
    span.end();
  }

  private record(m: Instruments, pkg: Package, operation: string, ctx: OperationContext, seconds: number): void {
    const failed = ctx.error !== undefined;
    if (pkg === 'ratelimit') {
      if (operation !== 'limit') return;
      const attributes: Attributes = { 'cyredis.ratelimit.name': ctx.name ?? '', 'cyredis.outcome': ctx.outcome ?? 'error' };
      if (ctx.rule !== undefined) attributes['cyredis.ratelimit.rule'] = ctx.rule;
      m.decisions.add(1, attributes);
      m.checkDuration.record(seconds, { 'cyredis.ratelimit.name': ctx.name ?? '' });
    } else if (pkg === 'lock') {
      this.recordLock(m, operation, ctx, seconds);
    } else if (pkg === 'cache') {
      const attributes: Attributes = { 'cyredis.cache.name': ctx.name ?? '' };
      if (operation === 'load') {
        m.loaderCalls.add(1, { ...attributes, 'cyredis.outcome': failed ? 'error' : 'ok' });
        m.loaderDuration.record(seconds, attributes);
      } else if ((operation === 'get' || operation === 'getOrSet') && ctx.outcome !== undefined) {
        const outcome: Attributes = { ...attributes, 'cyredis.outcome': ctx.outcome };
        if (ctx.tier !== undefined) outcome['cyredis.cache.tier'] = ctx.tier;
        m.cacheRequests.add(1, outcome);
      }
    } else {
      this.recordQueue(m, operation, ctx, seconds);
    }
  }

  private recordLock(m: Instruments, operation: string, ctx: OperationContext, seconds: number): void {
    if (operation.endsWith('acquire') || operation === 'acquireMany') {
      const kind = operation === 'acquire' ? 'mutex' : operation === 'acquireMany' ? 'many' : operation.slice(0, operation.indexOf('.'));
      const attributes: Attributes = { 'cyredis.lock.kind': kind };
      m.acquisitions.add(1, { ...attributes, 'cyredis.outcome': ctx.outcome ?? 'error' });
      m.lockWait.record(seconds, attributes);
      if (ctx.outcome === 'acquired' && ctx.target !== undefined) this.held.set(ctx.target, performance.now());
    } else if (operation === 'release' && ctx.target !== undefined) {
      const since = this.held.get(ctx.target);
      if (since !== undefined) m.lockHold.record((performance.now() - since) / 1000);
      this.held.delete(ctx.target);
    }
  }

  private recordQueue(m: Instruments, operation: string, ctx: OperationContext, seconds: number): void {
    const attributes = queueAttributes(ctx);
    if (operation === 'push' && ctx.outcome === 'added') m.jobsAdded.add(1, attributes);
    else if (operation === 'pushBulk' && ctx.error === undefined) m.jobsAdded.add(addedCount(ctx.result), attributes);
    else if (operation === 'complete' && ctx.outcome === 'completed') m.jobsCompleted.add(1, attributes);
    else if (operation === 'ack' && ctx.completed) m.jobsCompleted.add(ctx.completed, attributes);
    else if (operation === 'fail' && ctx.outcome === 'retry') m.jobsRetried.add(1, attributes);
    else if (operation === 'fail' && ctx.outcome === 'dead') m.jobsDead.add(1, attributes);
    else if (operation === 'process') m.processDuration.record(seconds, { ...attributes, ...(ctx.error === undefined ? {} : { 'error.type': errorType(ctx.error) }) });
  }

  /** The gauges read from observed queues and caches at each collection. */
  private observeGauges(meter: Meter): void {
    const waiting = meter.createObservableGauge('cyredis.queue.jobs.waiting', { description: 'Jobs waiting to run (grouped ones included).', unit: '{job}' });
    const delayed = meter.createObservableGauge('cyredis.queue.jobs.delayed', { description: 'Jobs waiting for their delay or retry backoff.', unit: '{job}' });
    const active = meter.createObservableGauge('cyredis.queue.jobs.active', { description: 'Jobs leased by a worker now.', unit: '{job}' });
    const deadJobs = meter.createObservableGauge('cyredis.queue.jobs.dead_letters', { description: 'Jobs in the dead letter set.', unit: '{job}' });
    const size = meter.createObservableGauge('cyredis.cache.size', { description: 'Entries in the cache (Redis).', unit: '{entry}' });
    const evictions = meter.createObservableCounter('cyredis.cache.evictions', { description: 'Live entries removed to stay within maxSize.', unit: '{entry}' });
    meter.addBatchObservableCallback(
      async (result) => {
        const read = await readSources(this.observed);
        for (const { name, stats } of read.queues) {
          const attributes = { 'messaging.destination.name': name };
          result.observe(waiting, stats.waiting, attributes);
          result.observe(delayed, stats.delayed + stats.failed, attributes);
          result.observe(active, stats.processing, attributes);
          result.observe(deadJobs, stats.dead, attributes);
        }
        for (const { name, stats } of read.caches) {
          result.observe(size, stats.size, { 'cyredis.cache.name': name });
          result.observe(evictions, stats.evictions, { 'cyredis.cache.name': name });
        }
      },
      [waiting, delayed, active, deadJobs, size, evictions],
    );
  }
}

/** Subscribes a new instrumentation: `instrument(options)` is `new CyredisInstrumentation(options).enable()`. */
export function instrument(options: InstrumentationOptions = {}): CyredisInstrumentation {
  return new CyredisInstrumentation(options).enable();
}

function makeInstruments(meter: Meter): Instruments {
  const seconds = { unit: 's' };
  return {
    decisions: meter.createCounter('cyredis.ratelimit.decisions', { description: 'Rate limit checks, by outcome (admitted, refused) and binding rule.', unit: '{decision}' }),
    checkDuration: meter.createHistogram('cyredis.ratelimit.check.duration', { ...seconds, description: 'Time a limit check took.' }),
    acquisitions: meter.createCounter('cyredis.lock.acquisitions', { description: 'Lock acquire calls, by outcome (acquired, refused, error).', unit: '{acquisition}' }),
    lockWait: meter.createHistogram('cyredis.lock.wait.duration', { ...seconds, description: 'Time an acquire took, waiting included.' }),
    lockHold: meter.createHistogram('cyredis.lock.hold.duration', { ...seconds, description: 'Time from acquire to release of a lease.' }),
    lostLeases: meter.createCounter('cyredis.lock.lost', { description: 'Leases found gone: an extension was refused, or a using() lease ran out while Redis did not answer.', unit: '{lease}' }),
    cacheRequests: meter.createCounter('cyredis.cache.requests', { description: 'Cache lookups, by outcome (hit, miss, stale) and tier (l1, l2).', unit: '{request}' }),
    loaderCalls: meter.createCounter('cyredis.cache.loader.calls', { description: 'Loader runs of getOrSet.', unit: '{call}' }),
    loaderDuration: meter.createHistogram('cyredis.cache.loader.duration', { ...seconds, description: 'Time a loader ran.' }),
    jobsAdded: meter.createCounter('cyredis.queue.jobs.added', { description: 'Jobs pushed (new ones only).', unit: '{job}' }),
    jobsStarted: meter.createCounter('cyredis.queue.jobs.started', { description: 'Job runs started by a worker.', unit: '{job}' }),
    jobsCompleted: meter.createCounter('cyredis.queue.jobs.completed', { description: 'Jobs completed.', unit: '{job}' }),
    jobsRetried: meter.createCounter('cyredis.queue.jobs.retried', { description: 'Failed runs that will be retried.', unit: '{job}' }),
    jobsDead: meter.createCounter('cyredis.queue.jobs.dead', { description: 'Jobs dead-lettered.', unit: '{job}' }),
    processDuration: meter.createHistogram('messaging.process.duration', { ...seconds, description: 'Time a worker handler ran on one job.' }),
  };
}

function queueAttributes(ctx: OperationContext): Attributes {
  return { 'messaging.system': 'cyredis', 'messaging.destination.name': ctx.name ?? '' };
}

/** What a span knows when it starts. */
function startAttributes(pkg: Package, operation: string, ctx: OperationContext, messaging: boolean): Attributes {
  const attributes: Attributes = { 'cyredis.package': pkg, 'cyredis.operation': operation };
  if (ctx.name !== undefined) attributes['cyredis.name'] = ctx.name;
  if (ctx.key !== undefined) attributes['cyredis.key'] = ctx.key;
  if (ctx.count !== undefined) attributes['cyredis.count'] = ctx.count;
  if (messaging) {
    attributes['messaging.system'] = 'cyredis';
    attributes['messaging.destination.name'] = ctx.name ?? '';
    attributes['messaging.operation.name'] = operation;
    attributes['messaging.operation.type'] = operation === 'process' ? 'process' : 'send';
    if (ctx.key !== undefined) attributes['messaging.message.id'] = ctx.key;
    if (operation === 'pushBulk' && ctx.count !== undefined) attributes['messaging.batch.message_count'] = ctx.count;
    if (ctx.attempts !== undefined) attributes['cyredis.queue.attempts'] = ctx.attempts;
  }
  return attributes;
}

/** What a span learns when the call settles. */
function endAttributes(ctx: OperationContext): Attributes {
  const attributes: Attributes = {};
  if (ctx.key !== undefined) attributes['cyredis.key'] = ctx.key;
  if (ctx.outcome !== undefined) attributes['cyredis.outcome'] = ctx.outcome;
  if (ctx.tier !== undefined) attributes['cyredis.cache.tier'] = ctx.tier;
  if (ctx.loaded !== undefined) attributes['cyredis.cache.loaded'] = ctx.loaded;
  if (ctx.rule !== undefined) attributes['cyredis.ratelimit.rule'] = ctx.rule;
  if (ctx.waitedMs !== undefined) attributes['cyredis.lock.waited_ms'] = ctx.waitedMs;
  if (ctx.completed !== undefined) attributes['cyredis.queue.completed'] = ctx.completed;
  return attributes;
}

function errorType(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

/** How many jobs of an `addBulk` result were new. */
function addedCount(result: unknown): number {
  if (!Array.isArray(result)) return 0;
  let added = 0;
  for (const r of result as { added?: boolean }[]) if (r.added === true) added++;
  return added;
}
