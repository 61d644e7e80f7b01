import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { JobQueue, Worker } from '@cyredis/queue';
import type { DemoContext } from '../context.js';

export const title = '@cyredis/queue: priorities, delays, retries with backoff, dead letters, a worker, and the seed calls';

interface Email {
  to: string;
}

export default async function demo({ redis, prefix, log }: DemoContext): Promise<void> {
  // The seed contract: raw calls of the shipped script with its four keys (one hash tag for Cluster).
  const source = readFileSync(createRequire(import.meta.url).resolve('@cyredis/queue/lua/job_queue.lua'), 'utf8');
  const keys = ['queue', 'processing', 'failed', 'dead'].map((k) => `${prefix}:{seed}:${k}`);
  const now = Math.floor(Date.now() / 1000);
  const call = (...args: (string | number)[]) => redis.eval(source, 4, ...keys, ...args);
  log(`raw PUSH job_123 → ${String(await call('PUSH', now, 'job_123', 'job_data', 5, 3, 0))}`);
  log(`raw PUSH job_123 again → ${String(await call('PUSH', now, 'job_123', 'job_data', 5, 3, 0))} (exists)`);
  log(`raw POP 5 → ${JSON.stringify(await call('POP', now, 5))}`);
  log(`raw FAIL → ${JSON.stringify(await call('FAIL', now, 'job_123', 'smtp down'))}`);
  log(`raw STATS → ${JSON.stringify(await call('STATS', now))}`);

  // The TypeScript API: server time, leases with tokens, a worker that blocks while idle.
  const queue = new JobQueue<Email>(redis, 'emails', { prefix, maxRetries: 1, backoff: { baseMs: 100, maxMs: 1000 } });
  await queue.pushBulk([{ data: { to: 'low@example.com' } }, { data: { to: 'vip@example.com' }, priority: 9 }]);
  await queue.push({ to: 'later@example.com' }, { id: 'later', delayMs: 300 });
  await queue.push({ to: 'bounce@example.com' }, { id: 'bounce' });
  log(`stats after pushes: ${JSON.stringify(await queue.stats())}`);

  const order: string[] = [];
  const worker = new Worker(
    queue,
    (job) => {
      order.push(job.data.to);
      if (job.id === 'bounce') throw new Error(`mailbox full (attempt ${job.attempts})`);
    },
    { concurrency: 1, leaseMs: 5_000 },
  );
  const finished = new Promise<void>((resolve) => {
    let completed = 0;
    worker.on('completed', () => {
      if (++completed === 3) resolve();
    });
  });
  const buried = new Promise<void>((resolve) => {
    worker.on('failed', (job, err) => log(`failed ${job.id}: ${(err as Error).message}; retried after backoff`));
    worker.on('dead', (job, err) => {
      log(`dead ${job.id}: ${(err as Error).message}`);
      resolve();
    });
  });
  await Promise.all([finished, buried]);
  await worker.close();
  log(`served in order: ${order.join(', ')}`);
  log(`dead letters: ${JSON.stringify((await queue.deadJobs()).map((d) => ({ id: d.id, attempts: d.attempts, error: d.error })))}`);
  log(`retryDead moved ${await queue.retryDead()} job(s) back; stats ${JSON.stringify(await queue.stats())}`);
}
