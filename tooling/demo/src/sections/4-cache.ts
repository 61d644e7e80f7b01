import { SmartCache } from '@cyredis/cache';
import { LuaScriptManager } from '@cyredis/core';
import type { DemoContext } from '../context.js';

export const title = '@cyredis/cache: LRU-bounded cache, shared stats, one loader across callers, L1 kept coherent';

export default async function demo({ redis, prefix, log }: DemoContext): Promise<void> {
  // The shipped script, called raw exactly as the seed README shows.
  const scripts = new LuaScriptManager(redis);
  const raw = await scripts.registerScriptFile('smart_cache', new URL(import.meta.resolve('@cyredis/cache/lua/smart_cache.lua')));
  const keys = (k: string) => [`${prefix}:cache:${k}`, `${prefix}:access:log`, `${prefix}:stats:key`];
  const now = Math.floor(Date.now() / 1000);
  for (const k of ['a', 'b', 'c']) await scripts.executeScript(raw, { keys: keys(k), args: ['SET', now, `value ${k}`, 3600, 2] });
  log(`raw SET a, b, c with max_size 2 → a evicted: GET a = ${String(await scripts.executeScript(raw, { keys: keys('a'), args: ['GET', now] }))}`);
  log(`raw STATS → ${JSON.stringify(await scripts.executeScript(raw, { keys: keys('x'), args: ['STATS', now] }))}`);

  // The TypeScript API: values keep their types, the loader runs once for concurrent callers.
  const users = new SmartCache<{ name: string; since: Date; tags: Set<string> }>(redis, {
    name: 'users',
    prefix,
    maxSize: 1_000,
    defaultTtlMs: 60_000,
  });
  let loads = 0;
  const load = async () => {
    loads++;
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { name: 'Ada', since: new Date('2020-01-01'), tags: new Set(['admin']) };
  };
  const got = await Promise.all(Array.from({ length: 20 }, () => users.getOrSet('u:1', load)));
  log(`20 concurrent getOrSet → loader ran ${loads} time(s); since is a ${got[0]!.since.constructor.name}, tags a ${got[0]!.tags.constructor.name}`);
  log(`delete u:1 → ${await users.delete('u:1')}; get → ${(await users.get('u:1')) === undefined ? 'a miss' : 'still there'}`);

  // Two instances (think: two processes) with L1: a set in one drops the other's local copy.
  const a = new SmartCache<string>(redis, { name: 'flags', prefix, maxSize: 100, defaultTtlMs: 60_000, l1: { maxEntries: 100 } });
  const other = redis.duplicate();
  const b = new SmartCache<string>(other, { name: 'flags', prefix, maxSize: 100, defaultTtlMs: 60_000, l1: { maxEntries: 100 } });
  try {
    await a.set('mode', 'blue');
    // b fills its L1 once its pub/sub subscription is live (it only trusts L1 while it hears invalidations).
    for (let i = 0; i < 100 && (await b.stats()).l1Hits < 3; i++) {
      await b.get('mode');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    log(`b read 'mode': ${(await b.stats()).l1Hits} reads answered from its L1, no round trip`);
    await a.set('mode', 'green');
    let seen = await b.get('mode');
    for (let i = 0; i < 100 && seen !== 'green'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      seen = await b.get('mode');
    }
    log(`a set 'mode' = green → b now reads ${String(seen)}`);
    log(`shared stats: ${JSON.stringify(await a.stats())}`);
  } finally {
    await Promise.all([users.close(), a.close(), b.close()]);
    await other.quit();
  }
}
