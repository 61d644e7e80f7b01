import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LuaScriptManager } from '@cyredis/core';
import { RateLimiter, rateLimitHeaders } from '@cyredis/ratelimit';
import * as express from '@cyredis/ratelimit/express';
import * as fastify from '@cyredis/ratelimit/fastify';
import * as hono from '@cyredis/ratelimit/hono';
import * as koa from '@cyredis/ratelimit/koa';
import { CyRedisStore } from '@cyredis/ratelimit/express-rate-limit';
import { CyRedisThrottlerStorage } from '@cyredis/ratelimit/nestjs-throttler';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = process.env.KEY_PREFIX ?? 'user';
const limiter = new RateLimiter(redis, { limit: 2, windowMs: 60_000, prefix });
const first = await limiter.limit('user:1', { cost: 1 });
const second = await limiter.limit('user:1');
const third = await limiter.limit('user:1');
if (!first.allowed || !second.allowed || third.allowed || third.retryAfterMs <= 0) throw new Error(JSON.stringify([first, second, third]));
const headers: Record<string, string> = rateLimitHeaders(third);
if (!('RateLimit' in headers) && !('ratelimit' in headers)) throw new Error(JSON.stringify(headers));
if ([express, fastify, hono, koa].some((m) => Object.keys(m).length === 0)) throw new Error('empty middleware module');
// The adapters: a Nest storage decides on its own; the express-rate-limit store after the middleware's init.
const storage = new CyRedisThrottlerStorage(redis, { prefix });
const nest = await storage.increment('nest-user', 60_000, 1, 0);
if (nest.isBlocked || nest.totalHits !== 1 || !(await storage.increment('nest-user', 60_000, 1, 0)).isBlocked) throw new Error(JSON.stringify(nest));
if (typeof new CyRedisStore(redis, { prefix }).increment !== 'function') throw new Error('store');

// The seed's raw call, with the script file shipped in the package.
const lua = readFileSync(fileURLToPath(import.meta.resolve('@cyredis/ratelimit/lua/rate_limiter.lua')), 'utf8');
const scripts = new LuaScriptManager(redis);
const raw = scripts.registerScript('rate_limiter', lua);
const remaining = await scripts.executeScript(raw, { keys: [`${prefix}:user:123:requests`], args: [100, 3600, Math.floor(Date.now() / 1000), 200] });
if (typeof remaining !== 'number' || remaining <= 0) throw new Error(`raw call: ${String(remaining)}`);
redis.disconnect();
