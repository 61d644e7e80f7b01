import { fileURLToPath } from 'node:url';
import { LuaScriptManager } from '@cyredis/core';
import type { DemoContext } from '../context.js';

export const title = '@cyredis/core: register a script from a file and run it (seed call shape)';

export default async function demo({ redis, prefix, log }: DemoContext): Promise<void> {
  const scripts = new LuaScriptManager(redis);
  const file = fileURLToPath(new URL('../../lua/seed_counter.lua', import.meta.url));
  const s = await scripts.registerScriptFile('seed_counter', file);
  log(`registered ${s.name} sha=${s.sha}`);
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < 3; i++) {
    const remaining = await scripts.executeScript(s, { keys: [`${prefix}:user:123`], args: [100, 3600, now, 200] });
    log(`call ${i + 1}: remaining ${String(remaining)}`);
  }
  await redis.script('FLUSH');
  const after = await scripts.executeScript(s, { keys: [`${prefix}:user:123`], args: [100, 3600, now, 200] });
  log(`after SCRIPT FLUSH the call still works: remaining ${String(after)}`);
}
