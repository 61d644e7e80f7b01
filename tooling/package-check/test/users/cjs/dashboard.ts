// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { serveDashboard } from '@cyredis/dashboard';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const dashboard = await serveDashboard({ redis, prefix: process.env.KEY_PREFIX ?? 'user', queues: ['cjs'], port: 0 });
  const queues = (await (await fetch(new URL('api/queues', dashboard.url))).json()) as { name: string }[];
  if (queues[0]?.name !== 'cjs') throw new Error(JSON.stringify(queues));
  await dashboard.close();
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
