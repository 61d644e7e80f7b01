import { RedisServer } from '@cyredis/testing';
import { Redis } from 'ioredis';

/** One contender in a group: `sample()` runs once per round and returns one number in `unit`. */
export interface BenchCase {
  name: string;
  unit: string;
  /** true when a larger number is better (ops/s); false for latency and bytes. */
  higherIsBetter: boolean;
  sample: () => Promise<number>;
}

/** Contenders measured against each other: their rounds are interleaved (A B C, A B C, …). */
export interface BenchGroup {
  title: string;
  cases: BenchCase[];
  /** Runs once after every round of this group (e.g. to drop keys written by the round). */
  afterRound?: () => Promise<void>;
}

export interface BenchContext {
  /** The private server's URL (or REDIS_URL). */
  redisUrl: string;
  /** A new ioredis client; closed by the runner after the suite. */
  client: () => Redis;
  /** How long one throughput sample runs, in ms. */
  durationMs: number;
}

export interface BenchSuite {
  name: string;
  groups: (ctx: BenchContext) => Promise<BenchGroup[]>;
  /** Runs after the suite's groups, to close what `groups` opened. */
  teardown?: () => Promise<void>;
}

export interface CaseResult {
  suite: string;
  group: string;
  name: string;
  unit: string;
  higherIsBetter: boolean;
  samples: number[];
  median: number;
  min: number;
  max: number;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Runs `op` with `concurrency` calls in flight for `durationMs` (after a short warm-up) and returns
 * completed operations per second. `op` gets a running counter so cases can spread keys.
 */
export async function throughput(op: (i: number) => Promise<unknown>, concurrency: number, durationMs: number): Promise<number> {
  let counter = 0;
  const runFor = async (ms: number) => {
    const deadline = performance.now() + ms;
    let done = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          await op(counter++);
          done++;
        }
      }),
    );
    return done;
  };
  await runFor(Math.min(200, durationMs / 5));
  const start = performance.now();
  const done = await runFor(durationMs);
  return (done / (performance.now() - start)) * 1000;
}

/** Runs `total` operations `concurrency` at a time and returns operations per second. */
export async function timeBatch(total: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await op(next++);
    }),
  );
  return (total / (performance.now() - start)) * 1000;
}

export async function withServer<T>(fn: (url: string) => Promise<T>): Promise<T> {
  if (process.env.REDIS_URL) return fn(process.env.REDIS_URL);
  const server = await RedisServer.start({ args: ['--maxmemory-policy', 'noeviction'] });
  try {
    return await fn(server.url);
  } finally {
    await server.stop();
  }
}

export async function runSuite(suite: BenchSuite, ctx: BenchContext, runs: number, log: (line: string) => void): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  try {
    for (const group of await suite.groups(ctx)) {
      const samples = new Map<BenchCase, number[]>(group.cases.map((c) => [c, []]));
      for (let round = 0; round < runs; round++) {
        for (const c of group.cases) samples.get(c)!.push(await c.sample());
        await group.afterRound?.();
      }
      for (const c of group.cases) {
        const values = samples.get(c)!;
        const result = {
          suite: suite.name, group: group.title, name: c.name, unit: c.unit, higherIsBetter: c.higherIsBetter,
          samples: values, median: median(values), min: Math.min(...values), max: Math.max(...values),
        };
        results.push(result);
      }
      log(formatGroup(group.title, results.filter((r) => r.group === group.title && r.suite === suite.name)));
    }
  } finally {
    await suite.teardown?.();
  }
  return results;
}

function fmt(n: number): string {
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toPrecision(3);
}

/** A markdown table: median, min–max, and the ratio of each median to the first case's. */
export function formatGroup(title: string, rows: CaseResult[]): string {
  const base = rows[0];
  const lines = [`\n### ${title}`, '', '| case | median | min – max | unit | vs first |', '|---|---:|---:|---|---:|'];
  for (const r of rows) {
    const ratio = base && base.median !== 0 ? r.median / base.median : Number.NaN;
    lines.push(`| ${r.name} | ${fmt(r.median)} | ${fmt(r.min)} – ${fmt(r.max)} | ${r.unit} | ${ratio.toFixed(2)}× |`);
  }
  return lines.join('\n');
}

export { Redis };
