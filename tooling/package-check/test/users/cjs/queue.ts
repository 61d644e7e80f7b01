// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { JobQueue } from '@cyredis/queue';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const queue = new JobQueue<{ to: string }>(redis, 'cjs', { prefix: process.env.KEY_PREFIX ?? 'user' });
  await queue.push({ to: 'a' }, { id: 'j1' });
  const jobs = await queue.pop(1, { leaseMs: 10_000 });
  if (jobs[0]?.data.to !== 'a' || (await queue.complete(jobs[0])) !== true) throw new Error(JSON.stringify(jobs));
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
