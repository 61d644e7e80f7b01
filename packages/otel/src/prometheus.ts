// Prometheus text exposition of the queue, cache and limiter metrics, for users without OpenTelemetry.
import diagnosticsChannel, { type TracingChannelSubscribers } from 'node:diagnostics_channel';
import type { OperationContext } from '@cyredis/core';
import { readSources, type StatsSources } from './sources.js';

const LIMIT_CHANNEL = 'cyredis:ratelimit:limit';

/** One metric family of the text format: its name, type, help and samples. */
interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  samples: { labels: Record<string, string>; value: number }[];
}

/**
 * Metrics in the Prometheus text format (version 0.0.4), without OpenTelemetry: the gauges of the queues and
 * caches given (read with `stats()` on each `metrics()` call) and the decisions of every rate limiter of the
 * process by limiter and outcome (counted from the `cyredis:ratelimit:limit` channel while it is open).
 * Serve `metrics()` with the content type `CONTENT_TYPE`.
 */
export class PrometheusMetrics {
  /** Decisions per limiter name, per outcome. */
  private readonly decisions = new Map<string, Map<string, number>>();
  private readonly handlers: TracingChannelSubscribers<OperationContext>;
  private closed = false;

  constructor(private readonly sources: StatsSources = {}) {
    const none = (): void => undefined;
    this.handlers = { start: none, end: none, asyncStart: none, error: none, asyncEnd: (ctx) => this.count(ctx) };
    diagnosticsChannel.tracingChannel<unknown, OperationContext>(LIMIT_CHANNEL).subscribe(this.handlers);
  }

  /** The text exposition now: reads every source's `stats()` (a source that fails is left out). */
  async metrics(): Promise<string> {
    const read = await readSources(this.sources);
    const families: Family[] = [];
    const queueStates = ['waiting', 'delayed', 'processing', 'failed', 'dead', 'completed'] as const;
    families.push({
      name: 'cyredis_queue_jobs',
      type: 'gauge',
      help: 'Jobs per state (completed: those counted since the queue began).',
      samples: read.queues.flatMap(({ name, stats }) => queueStates.map((state) => ({ labels: { queue: name, state }, value: stats[state] }))),
    });
    const cache = (name: string, type: Family['type'], help: string, field: keyof (typeof read.caches)[number]['stats']): void => {
      families.push({ name, type, help, samples: read.caches.map(({ name: cacheName, stats }) => ({ labels: { cache: cacheName }, value: stats[field] })) });
    };
    cache('cyredis_cache_hits_total', 'counter', 'Redis lookups that found a fresh entry (shared by every process).', 'hits');
    cache('cyredis_cache_misses_total', 'counter', 'Redis lookups that found nothing fresh (shared).', 'misses');
    cache('cyredis_cache_evictions_total', 'counter', 'Live entries removed to stay within maxSize (shared).', 'evictions');
    cache('cyredis_cache_entries', 'gauge', 'Entries in the cache.', 'size');
    cache('cyredis_cache_l1_hits_total', 'counter', 'Lookups this process answered from its L1.', 'l1Hits');
    cache('cyredis_cache_l1_entries', 'gauge', 'Entries in this process L1.', 'l1Size');
    families.push({
      name: 'cyredis_ratelimit_decisions_total',
      type: 'counter',
      help: 'Rate limit checks of this process, by limiter and outcome.',
      samples: [...this.decisions].flatMap(([limiter, outcomes]) => [...outcomes].map(([outcome, value]) => ({ labels: { limiter, outcome }, value }))),
    });
    return families.map(format).join('');
  }

  /** Stops counting limiter decisions. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    diagnosticsChannel.tracingChannel<unknown, OperationContext>(LIMIT_CHANNEL).unsubscribe(this.handlers);
  }

  private count(ctx: OperationContext): void {
    const limiter = ctx.name ?? '';
    const outcome = ctx.outcome ?? 'error';
    let outcomes = this.decisions.get(limiter);
    if (outcomes === undefined) this.decisions.set(limiter, (outcomes = new Map<string, number>()));
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
}

/** The content type of the text format `metrics()` returns. */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function format(family: Family): string {
  let out = `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n`;
  for (const { labels, value } of family.samples) {
    const text = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',');
    out += `${family.name}{${text}} ${Number.isFinite(value) ? value : Number.NaN}\n`;
  }
  return out;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
