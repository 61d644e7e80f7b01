// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { SmartCache } from '@cyredis/cache';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const cache = new SmartCache<{ at: Date }>(redis, { name: 'cjs', maxSize: 10, defaultTtlMs: 60_000, prefix: process.env.KEY_PREFIX ?? 'user' });
  await cache.set('k', { at: new Date(0) });
  const got = await cache.get('k');
  if (!(got?.at instanceof Date)) throw new Error(JSON.stringify(got));
  await cache.close();
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
