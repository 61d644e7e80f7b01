import { RedisServer, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CyRedisError, JobQueue, Worker } from '../src/index.js';

// The probe: maxmemory 20mb with allkeys-lru, 3,000 jobs of 10 KB pushed and then worked off.
// Before, all 3,000 vanished and stats() read zeros, with no error.
let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await RedisServer.start({ args: ['--maxmemory', '20mb', '--maxmemory-policy', 'allkeys-lru'] });
  redis = server.client();
});
afterAll(async () => {
  await redis.quit();
  await server.stop();
});

describe('JobQueue under allkeys-lru eviction (private server, maxmemory 20mb)', () => {
  it('keeps working: jobs complete or are dead-lettered with the reason, and jobs pushed afterwards all run', async () => {
    const queue = new JobQueue<{ n: number; pad: string }>(redis, 'evicted');
    const pad = 'x'.repeat(10_000);
    const ids: string[] = [];
    for (let from = 0; from < 3000; from += 100) {
      ids.push(...(await queue.pushBulk(Array.from({ length: 100 }, (_, k) => ({ data: { n: from + k, pad } })))));
    }
    const pushed = new Set(ids);
    const completed = new Set<string>();
    const errors: unknown[] = [];
    const worker = new Worker(queue, () => undefined, { concurrency: 16, leaseMs: 1000, blockMs: 100 });
    worker.on('completed', (job) => completed.add(job.id));
    worker.on('error', (err) => errors.push(err));
    // Jobs pushed once the evictions are over all run: the worker did not wedge.
    const after = await queue.pushBulk(Array.from({ length: 100 }, (_, k) => ({ data: { n: 10_000 + k, pad: '' } })));
    try {
      await waitFor(
        async () => {
          const s = await queue.stats();
          expect(Object.values(s).every((v) => v >= 0)).toBe(true);
          return s.waiting + s.delayed + s.processing + s.failed === 0 ? true : undefined;
        },
        { timeoutMs: 60_000 },
      );
    } finally {
      await worker.close({ timeoutMs: 0 });
    }
    const dead = new Map((await queue.deadJobs(1000)).map((d) => [d.id, d.error]));
    // What eviction took whole (a record with the list or set that held its id, or every key of the
    // queue at once, its id counter too, so later pushes reuse ids) leaves nothing to find; everything
    // else ran or is dead with its reason. Before, the worker wedged and nothing ran.
    const gone = 3000 + after.length - completed.size - dead.size;
    console.log(
      `allkeys-lru, 20mb: 3000 pushed (${pushed.size} distinct ids), ${completed.size} completed, ${dead.size} dead ` +
        `(${[...dead.values()].filter((e) => e === 'record lost').length} "record lost"), ${gone} evicted without a trace`,
    );
    for (const reason of dead.values()) expect(reason).not.toBe('');
    expect(after.filter((id) => !completed.has(id))).toEqual([]);
    for (const err of errors) expect(err).toBeInstanceOf(CyRedisError);
  });
});
