// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { Redis } from 'ioredis';
import { RateLimiter } from '@cyredis/ratelimit';
import { expressRateLimit } from '@cyredis/ratelimit/express';
import { fastifyRateLimit } from '@cyredis/ratelimit/fastify';
import { honoRateLimit } from '@cyredis/ratelimit/hono';
import { koaRateLimit } from '@cyredis/ratelimit/koa';
import { CyRedisStore } from '@cyredis/ratelimit/express-rate-limit';
import { CyRedisThrottlerStorage } from '@cyredis/ratelimit/nestjs-throttler';

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://localhost:6379');
  const limiter = new RateLimiter(redis, { limit: 1, windowMs: 60_000, prefix: process.env.KEY_PREFIX ?? 'user' });
  const first = await limiter.limit('cjs');
  const second = await limiter.limit('cjs');
  if (!first.allowed || second.allowed) throw new Error(JSON.stringify([first, second]));
  if (![expressRateLimit, fastifyRateLimit, honoRateLimit, koaRateLimit, CyRedisStore, CyRedisThrottlerStorage].every((f) => typeof f === 'function')) throw new Error('middleware');
  await redis.quit();
}
main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
