// `pnpm --filter @cyredis/bench run ab-queue <other checkout>`: this checkout's queue against another build's, side by side.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { median, withServer } from './harness.js';

/**
 * Two builds of @cyredis/queue cannot share one `pnpm bench` run, so this runs both in one Node process on
 * one private Redis and alternates them (the order swapped every round): each round gives one ratio
 * (this checkout ÷ the other), and the median of those ratios is the figure, as machine drift moves both
 * builds of a round together. The other checkout must be built (`pnpm turbo run build`). Rows:
 *   e2e32  a producer pushes JOBS jobs in bulks of 1000 while a Worker (concurrency 32, no-op handler) runs
 *          them, timed to the last completion (the `pnpm bench queue` end-to-end row);
 *   e2e1   the same with concurrency 1 and a quarter of the jobs;
 *   push32 JOBS single pushes, 32 in flight;
 *   bulk   JOBS jobs pushed in bulks of 1000.
 * Environment: ROUNDS (default 11), JOBS (default 20000), ROWS (comma-separated, default all), OPTIONS and
 * OTHER_OPTIONS (JSON JobQueue options of this checkout's and the other build's queues; default
 * `{"events":false,"removeOnComplete":true}` here, `{}` there: a build from before events and retention
 * has neither, so these compare the same work).
 */

interface QueueModule {
  JobQueue: new (redis: Redis, name: string, options: object) => {
    push(data: unknown): Promise<unknown>;
    pushBulk(items: { data: unknown }[]): Promise<unknown>;
  };
  Worker: new (queue: unknown, handler: () => undefined, options: { concurrency: number }) => {
    on(event: 'completed', listener: () => void): unknown;
    close(): Promise<void>;
  };
}

type Row = (mod: QueueModule, options: object) => Promise<number>;

const other = process.argv[2];
if (!other) throw new Error('usage: ab-queue <path of another checkout, built>');
const rounds = Number(process.env.ROUNDS ?? 11);
const jobs = Number(process.env.JOBS ?? 20_000);
const ours = JSON.parse(process.env.OPTIONS ?? '{"events":false,"removeOnComplete":true}') as object;
const theirs = JSON.parse(process.env.OTHER_OPTIONS ?? '{}') as object;

const load = async (root: string) => (await import(pathToFileURL(resolve(root, 'packages/queue/dist/index.js')).href)) as QueueModule;
const here = await load(resolve(import.meta.dirname, '../../..'));
const there = await load(other);

await withServer(async (url) => {
  const redis = new Redis(url);
  const workerRedis = new Redis(url);
  let counter = 0;
  const prefix = 'abq';
  const clean = async () => {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  };
  const pushAll = async (queue: InstanceType<QueueModule['JobQueue']>, total: number) => {
    for (let from = 0; from < total; from += 1000) await queue.pushBulk(Array.from({ length: Math.min(1000, total - from) }, (_, k) => ({ data: { i: from + k } })));
  };
  const endToEnd =
    (concurrency: number, total: number): Row =>
    async (mod, options) => {
      const name = `q${counter++}`;
      const queue = new mod.JobQueue(redis, name, { prefix, ...options });
      let done = 0;
      let finish!: () => void;
      const all = new Promise<void>((r) => (finish = r));
      const start = performance.now();
      const worker = new mod.Worker(new mod.JobQueue(workerRedis, name, { prefix, ...options }), () => undefined, { concurrency });
      worker.on('completed', () => {
        if (++done === total) finish();
      });
      await pushAll(queue, total);
      await all;
      const rate = (total / (performance.now() - start)) * 1000;
      await worker.close();
      return rate;
    };
  const rows: Record<string, Row> = {
    e2e32: endToEnd(32, jobs),
    e2e1: endToEnd(1, Math.max(1, Math.floor(jobs / 4))),
    push32: async (mod, options) => {
      const queue = new mod.JobQueue(redis, `q${counter++}`, { prefix, ...options });
      const start = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < jobs) await queue.push({ i: next++ });
        }),
      );
      return (jobs / (performance.now() - start)) * 1000;
    },
    bulk: async (mod, options) => {
      const queue = new mod.JobQueue(redis, `q${counter++}`, { prefix, ...options });
      const start = performance.now();
      await pushAll(queue, jobs);
      return (jobs / (performance.now() - start)) * 1000;
    },
  };
  const wanted = process.env.ROWS?.split(',') ?? Object.keys(rows);
  console.log(`# queue A/B: ${rounds} rounds, ${jobs} jobs; this checkout ${JSON.stringify(ours)} vs ${other} ${JSON.stringify(theirs)}`);
  for (const name of wanted) {
    const row = rows[name];
    if (!row) throw new Error(`no row ${name}; have ${Object.keys(rows).join(', ')}`);
    // One untimed run each warms the scripts and the JIT.
    await row(here, ours);
    await row(there, theirs);
    await clean();
    const ratios: number[] = [];
    const timed = async (mod: QueueModule, options: object) => {
      const rate = await row(mod, options);
      await clean();
      return rate;
    };
    for (let r = 0; r < rounds; r++) {
      // Which build goes first alternates, so neither always meets a warmer machine.
      let mine: number;
      let theirsRate: number;
      if (r % 2 === 0) {
        mine = await timed(here, ours);
        theirsRate = await timed(there, theirs);
      } else {
        theirsRate = await timed(there, theirs);
        mine = await timed(here, ours);
      }
      ratios.push(mine / theirsRate);
    }
    console.log(`${name}: this checkout ÷ the other, median ${median(ratios).toFixed(3)} (rounds ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`);
  }
  redis.disconnect();
  workerRedis.disconnect();
});
