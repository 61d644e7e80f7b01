import { randomPrefix } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, RateLimiter, type RateLimiterOptions } from '../src/index.js';

// What a caller can get wrong before any round trip: the client, the options object, and (at compile time)
// the shape of the options. The `@ts-expect-error` lines are checked by `pnpm typecheck`: each must stay an
// error for the compiler, and each also fails at run time.

function refusal(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err;
    throw err;
  }
  throw new Error('not refused');
}

describe('RateLimiter construction', () => {
  let redis: Redis;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(() => {
    // Never connects (nothing listens on port 1): everything here is refused before a round trip.
    redis = new Redis({ port: 1, lazyConnect: true });
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
  });
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtException', onUnhandled);
    redis.disconnect();
  });

  it('refuses a node-redis client with InvalidArgumentError instead of crashing the process on its first call', async () => {
    const nodeRedis = createClient({ url: redisUrl() });
    nodeRedis.on('error', () => undefined);
    await nodeRedis.connect();
    try {
      // @ts-expect-error -- a node-redis client is not an ioredis one
      const err = refusal(() => new RateLimiter(nodeRedis, { limit: 5, windowMs: 1000, prefix: randomPrefix() }));
      expect(err.argument).toBe('redis');
      expect(err.message).toMatch(/ioredis Redis or Cluster client, got a node-redis client/);
      // The node-redis connection was never used with ioredis' argument order: it still works.
      expect(await nodeRedis.ping()).toBe('PONG');
    } finally {
      nodeRedis.destroy();
    }
    expect(unhandled).toEqual([]);
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['a URL string', 'redis://localhost:6379'],
    ['a plain object', { evalsha: () => undefined }],
  ])('refuses %s as the client with InvalidArgumentError', (_, client) => {
    // @ts-expect-error -- only an ioredis Redis or Cluster is accepted
    const err = refusal(() => new RateLimiter(client, { limit: 5, windowMs: 1000 }));
    expect(err.argument).toBe('redis');
  });

  it('refuses missing options with InvalidArgumentError, not a TypeError', () => {
    // @ts-expect-error -- the options (at least a rule) are required
    expect(refusal(() => new RateLimiter(redis)).argument).toBe('options');
    // @ts-expect-error -- the options must be an object
    expect(refusal(() => new RateLimiter(redis, null)).argument).toBe('options');
  });

  it('refuses unknown option keys, naming the key and the nearest valid one', () => {
    // @ts-expect-error -- onError is not an option (onRedisError is)
    const err = refusal(() => new RateLimiter(redis, { limit: 5, windowMs: 1000, onError: 'allow' }));
    expect(err.argument).toBe('options.onError');
    expect(err.message).toMatch(/did you mean "onRedisError"/);
    // @ts-expect-error -- a misspelt rule field
    expect(refusal(() => new RateLimiter(redis, { rules: [{ limit: 5, window: 1000 }] })).argument).toBe('options.rules[0].window');
    // @ts-expect-error -- cacheRefusals takes maxEntries only
    expect(refusal(() => new RateLimiter(redis, { limit: 5, windowMs: 1000, cacheRefusals: { max: 5 } })).argument).toBe('options.cacheRefusals.max');
    // @ts-expect-error -- cacheRefusals is a boolean or an object
    expect(refusal(() => new RateLimiter(redis, { limit: 5, windowMs: 1000, cacheRefusals: 'yes' })).argument).toBe('options.cacheRefusals');
  });

  it('the types reject what fails at run time: a rule without windowMs, limit and rules together', () => {
    // @ts-expect-error -- limit without windowMs
    expect(refusal(() => new RateLimiter(redis, { limit: 5 })).argument).toBe('options.windowMs');
    // @ts-expect-error -- windowMs without limit
    expect(refusal(() => new RateLimiter(redis, { windowMs: 1000 })).argument).toBe('options.limit');
    // @ts-expect-error -- limit and rules together
    expect(refusal(() => new RateLimiter(redis, { limit: 5, windowMs: 1000, rules: [{ limit: 1, windowMs: 1000 }] })).argument).toBe('options.rules');
    // @ts-expect-error -- burst belongs in the rules when rules are given
    expect(refusal(() => new RateLimiter(redis, { rules: [{ limit: 1, windowMs: 1000 }], burst: 2 })).argument).toBe('options.rules');
    // @ts-expect-error -- a rule without windowMs
    expect(refusal(() => new RateLimiter(redis, { rules: [{ limit: 1 }] })).argument).toBe('options.rules[0].windowMs');
    // Both shapes the types accept work.
    const inline: RateLimiterOptions = { limit: 5, windowMs: 1000, burst: 8 };
    const list: RateLimiterOptions = { rules: [{ limit: 5, windowMs: 1000 }, { limit: 50, windowMs: 60_000, burst: 60 }] };
    expect(new RateLimiter(redis, inline).rules.map((r) => r.capacity)).toEqual([8]);
    expect(new RateLimiter(redis, list).rules.map((r) => r.capacity)).toEqual([5, 60]);
  });

  it('bounds the ranges the script or the timer could not honour', () => {
    const rule = { limit: 5, windowMs: 1000 };
    expect(refusal(() => new RateLimiter(redis, { ...rule, timeoutMs: 0 })).argument).toBe('options.timeoutMs');
    // setTimeout fires at once past 2^31 − 1 ms: such a deadline would fail every call.
    expect(refusal(() => new RateLimiter(redis, { ...rule, timeoutMs: 2 ** 31 })).argument).toBe('options.timeoutMs');
    expect(new RateLimiter(redis, { ...rule, timeoutMs: 2 ** 31 - 1 }).timeoutMs).toBe(2 ** 31 - 1);
    const rules = Array.from({ length: 17 }, () => rule);
    expect(refusal(() => new RateLimiter(redis, { rules })).argument).toBe('options.rules');
    expect(new RateLimiter(redis, { rules: rules.slice(0, 16) }).rules).toHaveLength(16);
  });

  it('defaults timeoutMs to 1000 ms', () => {
    expect(new RateLimiter(redis, { limit: 5, windowMs: 1000 }).timeoutMs).toBe(1000);
  });
});

describe('RateLimiter call options', () => {
  let redis: Redis;
  let limiter: RateLimiter;

  beforeAll(() => {
    redis = new Redis({ port: 1, lazyConnect: true });
    limiter = new RateLimiter(redis, { limit: 5, windowMs: 1000 });
  });
  afterAll(() => {
    redis.disconnect();
  });

  it('refuses unknown per-call options before any round trip', async () => {
    // @ts-expect-error -- costs is not an option (cost is)
    await expect(limiter.limit('a', { costs: 2 })).rejects.toThrow(/options\.costs.*did you mean "cost"/);
    // @ts-expect-error -- peek consumes nothing, so it takes no requestId
    await expect(limiter.peek('a', { requestId: 'r' })).rejects.toThrow(/options\.requestId/);
    expect(redis.status).toBe('wait');
  });

  it('refuses a caller time the script cannot hold exactly (past 2^52 µs)', async () => {
    await expect(limiter.limit('a', { nowMs: 2 ** 52 / 1000 + 1 })).rejects.toThrow(expect.objectContaining({ argument: 'options.nowMs' }) as Error);
    expect(redis.status).toBe('wait');
  });
});
