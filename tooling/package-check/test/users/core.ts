import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { CyRedisError, InvalidArgumentError, LuaScriptManager, type RegisteredScript } from '@cyredis/core';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const scripts = new LuaScriptManager(redis);
const s: RegisteredScript = scripts.registerScript('user_incr', "return redis.call('INCRBY', KEYS[1], ARGV[1])");
const total = await scripts.executeScript<number>(s, { keys: [`${process.env.KEY_PREFIX}:{c}`], args: [3] });
if (total !== 3) throw new Error(`expected 3, got ${total}`);
try {
  await scripts.executeScript(s, { keys: [''], args: [1] });
  throw new Error('bad key accepted');
} catch (err) {
  if (!(err instanceof InvalidArgumentError) || !(err instanceof CyRedisError)) throw err;
}
void readFileSync;
void fileURLToPath;
redis.disconnect();
