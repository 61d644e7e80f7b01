import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LuaScriptManager } from '@cyredis/core';
import { rateLimitHeaders, RateLimiter } from '@cyredis/ratelimit';
import type { DemoContext } from '../context.js';

export const title = '@cyredis/ratelimit: exact sliding window with burst, several rules in one call, HTTP fields';

export default async function demo({ redis, prefix, log }: DemoContext): Promise<void> {
  // The seed's raw call, with the script shipped in the package: the reply is the capacity left for the call.
  const source = readFileSync(createRequire(import.meta.url).resolve('@cyredis/ratelimit/lua/rate_limiter.lua'), 'utf8');
  const scripts = new LuaScriptManager(redis);
  const raw = scripts.registerScript('rate_limiter', source);
  const now = Math.floor(Date.now() / 1000);
  const replies: unknown[] = [];
  for (let i = 0; i < 3; i++) replies.push(await scripts.executeScript(raw, { keys: [`${prefix}:user:123:requests`], args: [2, 3600, now, 2] }));
  log(`raw EVALSHA, limit 2 per hour: replies ${replies.join(', ')} (0 = limited)`);

  const limiter = new RateLimiter(redis, { limit: 5, windowMs: 1000, burst: 8, prefix });
  const results = [];
  for (let i = 0; i < 9; i++) results.push(await limiter.limit('user:123'));
  log(`limit 5/s with burst 8: ${results.map((r) => (r.allowed ? 'ok' : 'no')).join(' ')}`);
  const refused = results.at(-1)!;
  log(`refused: remaining ${refused.remaining}, retry after ${refused.retryAfterMs} ms`);
  log(`headers: ${JSON.stringify(rateLimitHeaders(refused))}`);
  log(`peek consumes nothing: remaining ${(await limiter.peek('user:123')).remaining}`);
  await limiter.reset('user:123');
  log(`after reset: remaining ${(await limiter.peek('user:123')).remaining}`);

  const api = new RateLimiter(redis, {
    rules: [
      { limit: 5, windowMs: 1000 },
      { limit: 3, windowMs: 60_000 },
    ],
    prefix,
  });
  const decisions = [];
  for (let i = 0; i < 4; i++) decisions.push(await api.limit('key:abc'));
  log(`5/s and 3/min in one call: ${decisions.map((r) => `${r.allowed ? 'ok' : 'no'}(rule ${r.rule}, ${r.remaining} left)`).join(' ')}`);
  const ten = new RateLimiter(redis, { limit: 10, windowMs: 60_000, prefix });
  const hundred = await Promise.all(Array.from({ length: 100 }, () => ten.limit('burst')));
  log(`100 concurrent calls against limit 10: ${hundred.filter((r) => r.allowed).length} admitted`);
}
