import { CyRedisError } from '@cyredis/core';
import { JobQueue, Worker, type DeadJob, type Job } from '@cyredis/queue';
import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SteadyLoad } from '../src/load.js';

// Keys lost: what an allkeys-* eviction (one DEL) or a restart without persistence (FLUSHALL) does to a
// queue under load. The promise: no job in no state, no call that hangs or throws an untyped error, and a
// worker that keeps processing new jobs.
let server: RedisServer;
let client: Redis;

// The losses are sent on connections of their own (`server.command`), as another client's DEL would be.
beforeAll(async () => {
  server = await RedisServer.start();
  client = server.client();
});
afterAll(async () => {
  client.disconnect();
  await server.stop();
});

interface Item {
  i: number;
}

/** The queue's keys, by what they hold. */
function queueKeys(q: JobQueue<Item>): Record<string, string> {
  const [waiting, processing, failed, dead] = q.keys as [string, string, string, string];
  return {
    'priority index': waiting,
    'priority 0 list': `${waiting}:w:0`,
    'job records': `${waiting}:jobs`,
    'job states': `${waiting}:state`,
    meta: `${waiting}:meta`,
    delayed: `${waiting}:delayed`,
    processing,
    failed,
    dead,
    wake: `${waiting}:wake`,
    completed: `${waiting}:completed`,
    events: `${waiting}:events`,
    'progress, return values and logs': `${waiting}:info`,
  };
}

const LOSSES = [
  'priority index', 'priority 0 list', 'job records', 'job states', 'meta', 'delayed', 'processing', 'failed', 'dead', 'wake', 'completed', 'events',
  'progress, return values and logs', 'FLUSHALL',
];

/**
 * Pushes jobs from 8 loops while a worker (concurrency 4) runs them: every 5th fails its first attempt
 * (so `failed` holds jobs), every 7th is delayed 30 ms, every 11th always fails with no retry (so `dead`
 * holds jobs). Applies `lose` once traffic flows, then checks the promise.
 */
async function lossUnderLoad(loss: string): Promise<void> {
  const q = new JobQueue<Item>(client, 'lost', { prefix: randomPrefix('kl'), backoff: { baseMs: 10, maxMs: 50 } });
  const pushed = new Map<string, number>();
  const completed = new Map<string, number>();
  const errors: unknown[] = [];
  let flushedAt = Infinity;
  const handler = (job: Job<Item>) => {
    if (job.data.i % 11 === 0) throw new Error('doomed');
    if (job.data.i % 5 === 0 && job.attempts === 1) throw new Error('first attempt fails');
  };
  const worker = new Worker(q, handler, { concurrency: 4, leaseMs: 500, blockMs: 200 });
  worker.on('completed', (job) => completed.set(job.id, (completed.get(job.id) ?? 0) + 1));
  worker.on('error', (err) => errors.push(err));
  const push = async (i: number, id: string) => {
    const started = Date.now();
    await q.push({ i }, { id, maxRetries: i % 11 === 0 ? 0 : 5, delayMs: i % 7 === 0 ? 30 : 0 });
    pushed.set(id, started);
  };
  const load = new SteadyLoad((i) => push(i, `job-${i}`)).start();
  try {
    await load.resumed(100);
    if (loss === 'FLUSHALL') {
      await server.command('FLUSHALL');
      flushedAt = Date.now();
    } else {
      await server.command('DEL', queueKeys(q)[loss]!);
    }
    await load.resumed(100);
    const report = await load.stop();
    expect(report.untyped, 'untyped errors reached callers').toEqual([]);
    // After a FLUSHALL the jobs pushed before it are gone with everything else (no persistence): only
    // the ones whose push started after it are checked.
    const owed = [...pushed].filter(([, at]) => at > flushedAt || flushedAt === Infinity).map(([id]) => id);
    // Nothing left in flight: every job ran to completion or was dead-lettered. The counts alone can read 0
    // before the audit has found the jobs a lost set held (they are in no set until then), so this waits
    // for every owed job too, and fails with the ones still in no state when the deadline passes.
    let dead = new Map<string, DeadJob<Item>>();
    let inNoState: string[] = [];
    await waitFor(
      async () => {
        const s = await q.stats();
        dead = new Map((await q.deadJobs(1000)).map((d) => [d.id, d]));
        inNoState = owed.filter((id) => !completed.has(id) && !dead.has(id));
        return s.waiting + s.delayed + s.processing + s.failed === 0 && inNoState.length === 0 ? true : undefined;
      },
      { timeoutMs: 30_000, message: `queue did not settle after losing ${loss}` },
    ).catch(() => undefined);
    expect(inNoState, `jobs in no state after losing ${loss}`).toEqual([]);
    const settled = await q.stats();
    expect(settled.waiting + settled.delayed + settled.processing + settled.failed, `queue did not settle after losing ${loss}`).toBe(0);
    for (const id of owed) expect(completed.has(id) && dead.has(id), `${id} both completed and dead`).toBe(false);
    for (const d of dead.values()) expect(d.error, `dead ${d.id} has a reason`).not.toBe('');
    const twice = [...completed].filter(([, n]) => n > 1);
    expect(twice, 'completed more than once').toEqual([]);
    // The worker keeps processing new jobs.
    const fresh = Array.from({ length: 20 }, (_, k) => `new-${k}`);
    for (const id of fresh) await push(1, id);
    await waitFor(() => fresh.every((id) => completed.has(id)) || undefined, { timeoutMs: 30_000, message: 'new jobs not processed' });
    for (const err of errors) expect(err, String(err)).toBeInstanceOf(CyRedisError);
    console.log(`keys lost (${loss}): ${report.ok} pushes, ${completed.size} completed, ${dead.size} dead, ${errors.length} worker errors`);
  } finally {
    await load.stop();
    await worker.close({ timeoutMs: 0 });
  }
}

describe('queue: keys lost under load', () => {
  it.each(LOSSES)('%s lost: no job in no state, no untyped error, the worker goes on', async (loss) => {
    await lossUnderLoad(loss);
  });
});
