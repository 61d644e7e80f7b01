// `pnpm demo --keep`: after the sections, leaves a demo queue with a worker, a cache and a limiter running
// under the default prefix, so `cyredis dashboard` (and every other cyredis command) has something to show.
import { SmartCache } from '@cyredis/cache';
import { JobQueue, Worker } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import type { Redis } from 'ioredis';

/** The longest the demo keeps running, so a forgotten terminal does not run it for ever. */
const KEEP_MAX_MS = 60 * 60 * 1000;
/** New jobs stop while this many wait (nothing grows without bound). */
const MAX_WAITING = 50;

interface DemoEmail {
  to: string;
  template: string;
}

/** Runs the demo traffic until Ctrl-C (or an hour), then stops it. */
export async function keepRunning(redis: Redis, url: string): Promise<void> {
  const queue = new JobQueue<DemoEmail, { messageId: string }>(redis, 'demo-emails', { maxRetries: 1, backoff: { baseMs: 2000, maxMs: 10_000 } });
  const cache = new SmartCache<string>(redis, { name: 'demo-pages', maxSize: 100, defaultTtlMs: 30_000 });
  const limiter = new RateLimiter(redis, { name: 'demo-api', limit: 5, windowMs: 10_000, recordRefusals: true });
  let n = 0;
  const worker = new Worker(queue, async (job, signal) => {
    for (let step = 1; step <= 4 && !signal.aborted; step++) {
      await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 300));
      await job.updateProgress(step * 25);
      await job.log(`step ${step} of 4`);
    }
    if (job.data.to.startsWith('bounce')) throw new Error(`mailbox of ${job.data.to} is full`);
    return { messageId: `msg-${job.id}` };
  }, { concurrency: 2 });

  const tick = async (): Promise<void> => {
    n++;
    if ((await queue.stats()).waiting < MAX_WAITING) {
      const to = n % 7 === 0 ? `bounce-${n}@example.com` : `user-${n}@example.com`;
      await queue.push({ to, template: n % 2 ? 'welcome' : 'receipt' }, n % 10 === 0 ? { delayMs: 60_000 } : {});
    }
    await cache.getOrSet(`page-${n % 12}`, () => Promise.resolve(`<h1>page ${n % 12}</h1>`));
    await limiter.limit(`client-${n % 3}`);
  };
  const timer = setInterval(() => void tick().catch((err: unknown) => console.error('demo traffic:', err)), 700);

  console.log(`\nA demo queue (demo-emails), cache (demo-pages) and limiter (demo-api) keep running on ${url}.`);
  console.log(`See them in the dashboard:  npx @cyredis/cli --url ${url} dashboard`);
  console.log('Ctrl-C stops it.');
  await new Promise<void>((resolve) => {
    const stop = setTimeout(resolve, KEEP_MAX_MS);
    process.once('SIGINT', () => {
      clearTimeout(stop);
      resolve();
    });
  });
  clearInterval(timer);
  await worker.close();
  await cache.close();
}
