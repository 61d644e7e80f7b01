import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomPrefix, sleep, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, redisUrl } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobQueue } from '../src/index.js';
import { decodeEventEntries } from '../src/protocol.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/crash-worker.mjs', import.meta.url));
const JOBS = 2000;
const LEASE_MS = 300;

describe('crash safety: worker processes killed with SIGKILL (single node)', () => {
  let redis: Redis;
  let prefix: string;
  const children = new Set<ChildProcess>();

  beforeAll(() => {
    redis = connect('single') as Redis;
    prefix = randomPrefix();
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, [FIXTURE, redisUrl(), prefix, 'crash', String(LEASE_MS), '4'], { stdio: 'ignore' });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }

  it(`completes each of ${JOBS} jobs exactly once or dead-letters it with its reason; stalled events account for every lease that ran out`, async () => {
    const queue = new JobQueue<number>(redis, 'crash', { prefix, eventsMaxLen: 1_000_000 });
    await queue.pushBulk(Array.from({ length: JOBS }, (_, i) => ({ data: i, id: `job-${i}`, maxRetries: 20 })));
    for (let i = 0; i < 3; i++) startWorker();
    let kills = 0;
    const deadline = Date.now() + 90_000;
    for (;;) {
      const stats = await queue.stats();
      if (stats.completed + stats.dead === JOBS) break;
      expect(Date.now(), `not finished: ${JSON.stringify(stats)}`).toBeLessThan(deadline);
      await sleep(150 + Math.random() * 300);
      const victims = [...children];
      if (kills < 12 && victims.length > 0) {
        victims[Math.floor(Math.random() * victims.length)]!.kill('SIGKILL');
        kills++;
        startWorker();
      }
    }
    for (const child of children) child.kill('SIGKILL');
    await waitFor(() => children.size === 0);

    const stats = await queue.stats();
    expect(stats).toMatchObject({ waiting: 0, delayed: 0, processing: 0, failed: 0 });
    expect(stats.completed + stats.dead).toBe(JOBS);
    const dead = stats.dead > 0 ? await queue.deadJobs(1000) : [];
    for (const job of dead) expect(job.error).toBe('lease expired');

    // Every lease ends once: completed, or its lease ran out (stalled) and the job went back or died.
    const entries = decodeEventEntries([[queue.eventsKey, await redis.xrange(queue.eventsKey, '-', '+')]]);
    const count = new Map<string, Record<string, number>>();
    for (const { name, jobId } of entries.flatMap((e) => e.events)) {
      const c = count.get(jobId) ?? {};
      c[name] = (c[name] ?? 0) + 1;
      count.set(jobId, c);
    }
    let stalled = 0;
    for (let i = 0; i < JOBS; i++) {
      const c = count.get(`job-${i}`) ?? {};
      expect(c.added, `job-${i}`).toBe(1);
      expect((c.completed ?? 0) + (c.dead ?? 0), `job-${i}`).toBe(1);
      expect(c.active, `job-${i}`).toBe((c.stalled ?? 0) + (c.completed ?? 0));
      stalled += c.stalled ?? 0;
    }
    expect(stalled).toBeGreaterThan(0);
    // Each completion deletes the job, and the ids were distinct: the counter counts each job once.
    const runs = await redis.hgetall(`${prefix}:runs`);
    expect(Object.keys(runs)).toHaveLength(JOBS);

    // Redelivery time: gap between a job's consecutive starts (the lease, plus the time to the next pop).
    const starts = new Map<string, number[]>();
    for (const line of await redis.lrange(`${prefix}:starts`, 0, -1)) {
      const [id, at] = line.split(' ');
      starts.set(id!, [...(starts.get(id!) ?? []), Number(at)]);
    }
    const gaps = [...starts.values()].flatMap((t) => t.slice(1).map((at, i) => at - t[i]!)).sort((a, b) => a - b);
    const redelivered = [...starts.values()].filter((t) => t.length > 1).length;
    console.log(
      `crash test: ${kills} SIGKILLs, ${stalled} stalled leases, ${redelivered} jobs redelivered, ${stats.dead} dead; redelivery gap ms ` +
        `median ${gaps[Math.floor(gaps.length / 2)] ?? '-'}, max ${gaps.at(-1) ?? '-'} (lease ${LEASE_MS} ms)`,
    );
    expect(kills).toBeGreaterThan(0);
  });
});
