import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LuaScriptManager } from '@cyredis/core';
import { SmartCache } from '@cyredis/cache';

interface User {
  id: number;
  born: Date;
}
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = process.env.KEY_PREFIX ?? 'user';
const cache = new SmartCache<User>(redis, { name: 'users', maxSize: 100, defaultTtlMs: 60_000, prefix });
await cache.set('u:1', { id: 1, born: new Date(0) }, { ttlMs: 30_000 });
const u: User | undefined = await cache.get('u:1');
if (!(u?.born instanceof Date)) throw new Error(JSON.stringify(u));
const v = await cache.getOrSet('u:2', () => Promise.resolve({ id: 2, born: new Date(1) }), { ttlMs: 30_000 });
if (v.id !== 2 || (await cache.delete('u:1')) !== true) throw new Error('getOrSet/delete');
const s = await cache.stats();
if (s.sets < 2 || s.maxSize !== 100) throw new Error(JSON.stringify(s));

const lua = readFileSync(fileURLToPath(import.meta.resolve('@cyredis/cache/lua/smart_cache.lua')), 'utf8');
const scripts = new LuaScriptManager(redis);
const raw = scripts.registerScript('smart_cache', lua);
const keys = [`${prefix}:{c}:cache:key`, `${prefix}:{c}:access:log`, `${prefix}:{c}:stats:key`];
const now = Math.floor(Date.now() / 1000);
await scripts.executeScript(raw, { keys, args: ['SET', now, 'value', 3600, 1000] });
if ((await scripts.executeScript(raw, { keys, args: ['GET', now] })) !== 'value') throw new Error('raw GET');
await (cache as unknown as { close?: () => Promise<void> }).close?.();
redis.disconnect();
