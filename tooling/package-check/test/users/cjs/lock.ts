// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { LockManager } from '@cyredis/lock';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const locks = new LockManager(redis, { ttlMs: 10_000, prefix: process.env.KEY_PREFIX ?? 'user' });
  const lock = await locks.acquire('cjs');
  if (typeof lock.fencingToken !== 'bigint' || (await lock.release()) !== true) throw new Error('acquire/release');
  await locks.close();
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
