import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LuaScriptManager } from '@cyredis/core';
import { LockManager, LockUnavailableError, QuorumUnreachableError } from '@cyredis/lock';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = process.env.KEY_PREFIX ?? 'user';
const locks = new LockManager(redis, { ttlMs: 10_000, prefix });
const lock = await locks.acquire('invoice:42', { ttlMs: 5_000 });
const token: bigint = lock.fencingToken;
if (typeof token !== 'bigint' || (await locks.tryAcquire('invoice:42')) !== null) throw new Error('second holder');
await lock.extend(5_000);
if ((await lock.release()) !== true || (await lock.release()) !== true) throw new Error('release is idempotent');
const out = await locks.using('invoice:42', (signal) => Promise.resolve(signal.aborted ? 'aborted' : 'done'), { ttlMs: 5_000 });
if (out !== 'done') throw new Error(out);
if (!(LockUnavailableError.prototype instanceof Error) || !(QuorumUnreachableError.prototype instanceof Error)) throw new Error('errors');

const lua = readFileSync(fileURLToPath(import.meta.resolve('@cyredis/lock/lua/distributed_lock.lua')), 'utf8');
const scripts = new LuaScriptManager(redis);
const raw = scripts.registerScript('distributed_lock', lua);
const acquired = await scripts.executeScript<unknown[]>(raw, { keys: [`${prefix}:lock:key`], args: ['unique_value', 30_000] });
if (acquired[0] !== 1) throw new Error(`raw acquire: ${JSON.stringify(acquired)}`);
await (locks as unknown as { close?: () => Promise<void> }).close?.();
redis.disconnect();
