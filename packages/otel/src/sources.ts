// The queues and caches whose gauges are reported, read through their `stats()` at each collection.

/** What the gauges read of a queue: `JobQueue.stats()`. */
export interface QueueCounts {
  /** Jobs waiting to run. */
  waiting: number;
  /** Jobs waiting for their delay. */
  delayed: number;
  /** Jobs leased now. */
  processing: number;
  /** Failed jobs waiting for their retry. */
  failed: number;
  /** Dead letters. */
  dead: number;
  /** Completed jobs counted. */
  completed: number;
}

/** What the gauges read of a cache: `SmartCache.stats()`. */
export interface CacheCounts {
  /** Redis lookups that found a fresh entry. */
  hits: number;
  /** Redis lookups that found nothing fresh. */
  misses: number;
  /** Live entries removed to stay within `maxSize`. */
  evictions: number;
  /** Entries in the cache. */
  size: number;
  /** Lookups this process answered from L1. */
  l1Hits: number;
  /** Entries in this process's L1. */
  l1Size: number;
}

/** A queue to report: a `JobQueue` (anything with its `name` and `stats()`). */
export interface QueueSource {
  /** The queue's name. */
  readonly name: string;
  /** Its counts per state. */
  stats(): Promise<QueueCounts>;
}

/** A cache to report: a `SmartCache` (anything with its `name` and `stats()`). */
export interface CacheSource {
  /** The cache's name. */
  readonly name: string;
  /** Its statistics. */
  stats(): Promise<CacheCounts>;
}

/** The queues and caches to report gauges of. */
export interface StatsSources {
  /** Queues: waiting, delayed, active and dead jobs. */
  queues?: readonly QueueSource[];
  /** Caches: size and evictions (and, in the Prometheus text, hits and misses). */
  caches?: readonly CacheSource[];
}

/** The stats read at one collection; a source whose read failed is left out of it. */
export interface ReadSources {
  /** Each queue's name and counts. */
  queues: { name: string; stats: QueueCounts }[];
  /** Each cache's name and statistics. */
  caches: { name: string; stats: CacheCounts }[];
}

/** Reads every source at once; one that fails (Redis unreachable) is skipped, not fatal to the others. */
export async function readSources(sources: StatsSources): Promise<ReadSources> {
  const queues = sources.queues ?? [];
  const caches = sources.caches ?? [];
  const [q, c] = await Promise.all([Promise.allSettled(queues.map((s) => s.stats())), Promise.allSettled(caches.map((s) => s.stats()))]);
  return {
    queues: q.flatMap((r, i) => (r.status === 'fulfilled' ? [{ name: queues[i]!.name, stats: r.value }] : [])),
    caches: c.flatMap((r, i) => (r.status === 'fulfilled' ? [{ name: caches[i]!.name, stats: r.value }] : [])),
  };
}
