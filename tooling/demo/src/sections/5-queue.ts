import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { JobQueue, QueueEvents, Worker } from '@cyredis/queue';
import type { DemoContext } from '../context.js';

export const title =
  '@cyredis/queue: priorities, delays, retries with backoff, dead letters, a worker, the seed calls; lookup, progress, a result awaited from another process, pause/resume';

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
  log(`getJob('later') → ${JSON.stringify(await queue.getJob('later'), ['id', 'state', 'attempts', 'createdAt', 'finishedAt'])}`);
  await inspectAcrossProcesses({ redis, prefix, log });
}

/** Lookup, progress, logs and a return value produced by a worker in another process, then pause/resume. */
async function inspectAcrossProcesses({ redis, prefix, log }: DemoContext): Promise<void> {
  const reports = new JobQueue<{ rows: number }, { pages: number }>(redis, 'reports', { prefix });
  const events = new QueueEvents<{ pages: number }>(redis, 'reports', { prefix });
  events.on('progress', ({ jobId, progress }) => log(`event progress ${jobId}: ${JSON.stringify(progress)}`));
  events.on('completed', ({ jobId, returnValue }) => log(`event completed ${jobId}: ${JSON.stringify(returnValue)}`));
  await events.ready();
  const { host, port } = redis.options;
  const child = spawn(process.execPath, [fileURLToPath(new URL('../queue-worker.js', import.meta.url)), `redis://${host}:${port}`, prefix], { stdio: 'inherit' });
  try {
    const id = await reports.push({ rows: 130 }, { id: 'report-1' });
    log(`getJob right after push: state ${(await reports.getJob(id))?.state}`);
    log(`waitUntilFinished (worker pid ${child.pid}) → ${JSON.stringify(await reports.waitUntilFinished(id, { timeoutMs: 20_000 }))}`);
    const done = await reports.getJob(id);
    log(`getJob: state ${done?.state}, progress ${JSON.stringify(done?.progress)}, returnValue ${JSON.stringify(done?.returnValue)}`);
    log(`getLogs: ${JSON.stringify(await reports.getLogs(id))}`);

    await reports.pause();
    await reports.push({ rows: 10 }, { id: 'report-2' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    log(`paused: ${await reports.isPaused()}; report-2 is ${(await reports.getJob('report-2'))?.state} while paused`);
    await reports.resume();
    log(`resumed: report-2 → ${JSON.stringify(await reports.waitUntilFinished('report-2', { timeoutMs: 20_000 }))}`);
  } finally {
    child.kill('SIGTERM');
    await events.close();
  }
}
