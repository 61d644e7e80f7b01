import { JobQueue, Worker, type JobQueueOptions } from '@cyredis/queue';
import BeeQueue from 'bee-queue';
import { Queue as BullQueue, Worker as BullWorker } from 'bullmq';
import type { Redis } from 'ioredis';
import { timeBatch, type BenchCase, type BenchGroup, type BenchSuite } from '../harness.js';

/** Jobs per sample (the 20k; lower it with QUEUE_JOBS for a quick look). */
const JOBS = Number(process.env.QUEUE_JOBS ?? 20_000);
const CHUNK = 1000;
const MEMORY_JOBS = 10_000;
/** Retention and events as BullMQ and we default to for the end-to-end runs: keep the last 1000 completed for an hour. */
const KEEP = { count: 1000, age: 3600 };

/** One library, opened fresh (under a new queue name) for every sample. */
interface Contender {
  name: string;
  open: (queueName: string) => Promise<Handle>;
}

interface Handle {
  pushOne: (i: number) => Promise<unknown>;
  pushMany: (from: number, count: number) => Promise<unknown>;
  /** Starts workers at `concurrency`; resolves once `total` jobs completed (each returning `result`). */
  process: (concurrency: number, total: number, result?: unknown) => Promise<void>;
  close: () => Promise<void>;
}

const data = (i: number) => ({ i });
let queueCounter = 0;

function done(total: number): { tick: () => void; all: Promise<void> } {
  let count = 0;
  let resolve!: () => void;
  const all = new Promise<void>((r) => (resolve = r));
  return {
    tick: () => {
      if (++count === total) resolve();
    },
    all,
  };
}

async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** Groups of the grouped run: job i goes to group i mod GROUPS. */
const GROUPS = 100;

/**
 * Our queue under `options` (events and retention), as a contender named `name`. `redis` produces;
 * `workerRedis` serves our worker, as the peers' workers have connections of their own. `grouped`: each job
 * in one of GROUPS groups (default concurrency 1 each).
 */
function cyredis(redis: Redis, workerRedis: Redis, name: string, options: JobQueueOptions<{ i: number }> = {}, grouped = false): Contender {
  return {
    name,
    open: (queueName) => {
      const queue = new JobQueue<{ i: number }>(redis, queueName, { prefix: 'benchq', ...options });
      let worker: Worker<{ i: number }> | undefined;
      return Promise.resolve({
        pushOne: (i) => queue.push(data(i)),
        pushMany: (from, count) =>
          queue.pushBulk(Array.from({ length: count }, (_, k) => (grouped ? { data: data(from + k), group: `g${(from + k) % GROUPS}` } : { data: data(from + k) }))),
        process: async (concurrency, total, result) => {
          const { tick, all } = done(total);
          worker = new Worker(new JobQueue<{ i: number }>(workerRedis, queueName, { prefix: 'benchq', ...options }), () => result, { concurrency });
          worker.on('completed', tick);
          await all;
        },
        close: async () => {
          await worker?.close();
          await deleteKeys(redis, `benchq:queue:{${queueName}}:*`);
        },
      });
    },
  };
}

/**
 * `redis` produces; `workerRedis` serves our worker, as the peers' workers have connections of their own.
 * `keep`: completed jobs BullMQ and we keep (`true`: none; default: the last 1000 for an hour, both with
 * events on, their defaults); bee-queue keeps none and sends no events (its fastest settings).
 */
function contenders(redis: Redis, workerRedis: Redis, url: string, keep: { count: number; age: number } | boolean = KEEP): Contender[] {
  const { hostname: host, port } = new URL(url);
  const connection = { host, port: Number(port), maxRetriesPerRequest: null };
  const ours: JobQueueOptions<{ i: number }> =
    typeof keep === 'boolean' ? { removeOnComplete: keep } : { removeOnComplete: { count: keep.count, ageMs: keep.age * 1000 } };
  return [
    {
      name: 'BullMQ 6.7',
      open: async (name) => {
        const queue = new BullQueue(name, { connection, defaultJobOptions: { removeOnComplete: keep, removeOnFail: { count: 10_000, age: 7 * 86_400 } } });
        await queue.waitUntilReady();
        let worker: BullWorker | undefined;
        return {
          pushOne: (i) => queue.add('job', data(i)),
          pushMany: (from, count) => queue.addBulk(Array.from({ length: count }, (_, k) => ({ name: 'job', data: data(from + k) }))),
          process: async (concurrency, total, result) => {
            const { tick, all } = done(total);
            worker = new BullWorker(name, () => Promise.resolve(result), { connection, concurrency });
            worker.on('completed', tick);
            await all;
          },
          close: async () => {
            await worker?.close();
            await queue.obliterate({ force: true });
            await queue.close();
          },
        };
      },
    },
    {
      name: 'bee-queue 2.0',
      open: async (name) => {
        const settings = { redis: { host, port: Number(port) }, removeOnSuccess: true, getEvents: false, sendEvents: false, storeJobs: false };
        const queue = new BeeQueue<{ i: number }>(name, { ...settings, isWorker: false });
        await queue.ready();
        let worker: BeeQueue<{ i: number }> | undefined;
        return {
          pushOne: (i) => queue.createJob(data(i)).save(),
          pushMany: (from, count) => queue.saveAll(Array.from({ length: count }, (_, k) => queue.createJob(data(from + k)))),
          process: async (concurrency, total) => {
            const { tick, all } = done(total);
            worker = new BeeQueue<{ i: number }>(name, { ...settings, isWorker: true });
            worker.on('succeeded', tick);
            worker.process(concurrency, () => Promise.resolve());
            await all;
          },
          close: async () => {
            await worker?.close();
            await queue.destroy();
            await queue.close();
          },
        };
      },
    },
    cyredis(redis, workerRedis, '@cyredis/queue', ours),
  ];
}

async function withQueue<T>(c: Contender, fn: (h: Handle) => Promise<T>): Promise<T> {
  const handle = await c.open(`bq${process.pid}x${queueCounter++}`);
  try {
    return await fn(handle);
  } finally {
    await handle.close();
  }
}

async function pushAll(h: Handle, total: number): Promise<void> {
  for (let from = 0; from < total; from += CHUNK) await h.pushMany(from, Math.min(CHUNK, total - from));
}

const rate = (c: Contender, fn: (h: Handle) => Promise<number>): BenchCase => ({ name: c.name, unit: 'jobs/s', higherIsBetter: true, sample: () => withQueue(c, fn) });

/**
 * 20k no-op jobs against BullMQ and bee-queue on one Redis: single and bulk push, end to end (a producer
 * pushing in bulks of 1000 while a worker processes, timed until the last completion) at concurrency 1
 * and 32, ours with events and retention on and off, our batched push and pop, and Redis bytes per waiting
 * job and per kept completed job.
 */
const suite: BenchSuite = {
  name: 'queue',
  groups: ({ client, redisUrl }) => {
    const redis = client();
    const workerRedis = client();
    const all = contenders(redis, workerRedis, redisUrl);

    const endToEnd = (concurrency: number, cases: Contender[] = all, title = ''): BenchGroup => ({
      title: `${JOBS} no-op jobs end to end, worker concurrency ${concurrency}${title} (jobs/s)`,
      cases: cases.map((c) =>
        rate(c, async (h) => {
          const start = performance.now();
          const processed = h.process(concurrency, JOBS);
          await pushAll(h, JOBS);
          await processed;
          return (JOBS / (performance.now() - start)) * 1000;
        }),
      ),
    });

    const groups: BenchGroup[] = [
      endToEnd(32),
      endToEnd(
        32,
        [all[0]!, cyredis(redis, workerRedis, `@cyredis/queue, ${GROUPS} groups (concurrency 1 each)`, {}, true), all[2]!],
        `: ours in ${GROUPS} groups against BullMQ and ours ungrouped`,
      ),
      endToEnd(
        32,
        [
          cyredis(redis, workerRedis, 'defaults (events, keep 1000 for 1 h)'),
          cyredis(redis, workerRedis, 'events off', { events: false }),
          cyredis(redis, workerRedis, 'events off, keep none (as before)', { events: false, removeOnComplete: true }),
          cyredis(redis, workerRedis, 'events on, keep none', { removeOnComplete: true }),
        ],
        ': @cyredis/queue, events and retention',
      ),
      endToEnd(1),
      {
        title: `push ${JOBS} jobs one call each, 32 in flight (jobs/s)`,
        cases: all.map((c) => rate(c, (h) => timeBatch(JOBS, 32, (i) => h.pushOne(i)))),
      },
      {
        title: `push ${JOBS} jobs in bulks of ${CHUNK} (jobs/s)`,
        cases: all.map((c) =>
          rate(c, async (h) => {
            const start = performance.now();
            await pushAll(h, JOBS);
            return (JOBS / (performance.now() - start)) * 1000;
          }),
        ),
      },
      {
        title: `@cyredis/queue batched: pushBulk and pop + ack in batches of ${CHUNK} (jobs/s)`,
        cases: [
          {
            name: 'pushBulk',
            unit: 'jobs/s',
            higherIsBetter: true,
            sample: async () => {
              const queue = new JobQueue<{ i: number }>(redis, `bqb${queueCounter++}`, { prefix: 'benchq' });
              const items = Array.from({ length: JOBS }, (_, i) => ({ data: data(i) }));
              const start = performance.now();
              for (let from = 0; from < JOBS; from += CHUNK) await queue.pushBulk(items.slice(from, from + CHUNK));
              const result = (JOBS / (performance.now() - start)) * 1000;
              await deleteKeys(redis, `benchq:queue:{${queue.name}}:*`);
              return result;
            },
          },
          {
            name: 'pop + ack',
            unit: 'jobs/s',
            higherIsBetter: true,
            sample: async () => {
              const queue = new JobQueue<{ i: number }>(redis, `bqb${queueCounter++}`, { prefix: 'benchq' });
              await queue.pushBulk(Array.from({ length: JOBS }, (_, i) => ({ data: data(i) })));
              const start = performance.now();
              let { jobs } = await queue.fetch(CHUNK);
              while (jobs.length > 0) ({ jobs } = await queue.ack(jobs, { fetch: CHUNK }));
              const result = (JOBS / (performance.now() - start)) * 1000;
              await deleteKeys(redis, `benchq:queue:{${queue.name}}:*`);
              return result;
            },
          },
        ],
      },
      {
        title: `Redis bytes per kept completed job, ${MEMORY_JOBS} jobs with payload {"i":n} and return value {"ok":true}, all kept, events and the queue's fixed keys included (bytes/job)`,
        cases: contenders(redis, workerRedis, redisUrl, false)
          .filter((c) => !c.name.startsWith('bee'))
          .map((c) => ({
            name: c.name,
            unit: 'bytes/job',
            higherIsBetter: false,
            sample: () =>
              withQueue(c, async (h) => {
                const before = await usedMemory(redis);
                await pushAll(h, MEMORY_JOBS);
                await h.process(32, MEMORY_JOBS, { ok: true });
                return ((await usedMemory(redis)) - before) / MEMORY_JOBS;
              }),
          })),
      },
      {
        title: `Redis bytes per waiting job, ${MEMORY_JOBS} jobs with payload {"i":n} (~11 bytes) (bytes/job)`,
        cases: all.map((c) => ({
          name: c.name,
          unit: 'bytes/job',
          higherIsBetter: false,
          sample: () =>
            withQueue(c, async (h) => {
              await pushAll(h, 100);
              const before = await usedMemory(redis);
              for (let from = 100; from < MEMORY_JOBS + 100; from += CHUNK) await h.pushMany(from, CHUNK);
              return ((await usedMemory(redis)) - before) / MEMORY_JOBS;
            }),
        })),
      },
    ];
    return Promise.resolve(groups);
  },
};

export default suite;
