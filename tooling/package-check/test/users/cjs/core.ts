// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { InvalidArgumentError, LuaScriptManager } from '@cyredis/core';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const scripts = new LuaScriptManager(redis);
  const s = scripts.registerScript('cjs_incr', "return redis.call('INCRBY', KEYS[1], ARGV[1])");
  const total = await scripts.executeScript<number>(s, { keys: [`${process.env.KEY_PREFIX}:{c}`], args: [2] });
  if (total !== 2 || !(InvalidArgumentError.prototype instanceof Error)) throw new Error(`expected 2, got ${total}`);
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
