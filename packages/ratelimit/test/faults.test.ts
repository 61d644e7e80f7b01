import { RedisTimeoutError, RedisUnavailableError } from '@cyredis/core';
import { FaultProxy, randomPrefix, waitFor } from '@cyredis/testing';
import { connect, redisUrl } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/index.js';

describe('RateLimiter when Redis fails (single node behind a fault proxy)', () => {
  let proxy: FaultProxy;
  let through: Redis;
  let direct: Redis;
  let prefix: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    const url = new URL(redisUrl());
    proxy = await FaultProxy.start({ host: url.hostname, port: Number(url.port) });
    direct = connect('single') as Redis;
    process.on('unhandledRejection', onUnhandled);
  });
  beforeEach(() => {
    prefix = randomPrefix();
    through = new Redis(proxy.port, proxy.host, { maxRetriesPerRequest: 1 });
    // Connection errors are expected here; they reach callers through the limiter's results.
    through.on('error', () => undefined);
  });
  afterEach(() => {
    proxy.heal();
    through.disconnect();
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await proxy.close();
    await direct.quit();
    expect(unhandled).toEqual([]);
  });

  it.each([
    ['allow', true],
    ['deny', false],
  ] as const)("onRedisError '%s': a silent Redis past timeoutMs gives a result, not an exception", async (onRedisError, allowed) => {
    const limiter = new RateLimiter(through, { prefix, limit: 5, windowMs: 1000, timeoutMs: 150, onRedisError });
    expect((await limiter.limit('a')).allowed).toBe(true);
    proxy.dropReplies = true;
    const result = await limiter.limit('a');
    expect(result.allowed).toBe(allowed);
    expect(result.error).toBeInstanceOf(RedisTimeoutError);
    expect(result.retryAfterMs > 0).toBe(!allowed);
    // A batch of concurrent checks falls back check by check.
    const batch = await Promise.all(['a', 'b', 'c'].map((id) => limiter.limit(id)));
    expect(batch.map((r) => [r.allowed, r.error instanceof RedisTimeoutError])).toEqual(batch.map(() => [allowed, true]));
  });

  it("onRedisError 'throw' (the default) rejects with RedisTimeoutError", async () => {
    const limiter = new RateLimiter(through, { prefix, limit: 5, windowMs: 1000, timeoutMs: 150 });
    await limiter.limit('a');
    proxy.dropReplies = true;
    await expect(limiter.limit('a')).rejects.toThrow(RedisTimeoutError);
    const batch = await Promise.allSettled(['a', 'b'].map((id) => limiter.limit(id)));
    expect(batch.map((r) => r.status === 'rejected' && r.reason instanceof RedisTimeoutError)).toEqual([true, true]);
  });

  it("an unreachable Redis: 'allow' admits, 'throw' rejects with RedisUnavailableError", async () => {
    const allow = new RateLimiter(through, { prefix, limit: 5, windowMs: 1000, timeoutMs: 2000, onRedisError: 'allow' });
    const raise = new RateLimiter(through, { prefix, limit: 5, windowMs: 1000, timeoutMs: 2000 });
    await allow.limit('a');
    proxy.refuseConnections = true;
    proxy.resetAll();
    const result = await allow.limit('a');
    expect(result).toMatchObject({ allowed: true, remaining: 5 });
    expect(result.error).toBeInstanceOf(RedisUnavailableError);
    await expect(raise.limit('a')).rejects.toThrow(RedisUnavailableError);
  });

  it.each([
    ['with a requestId it is counted once', 'order-42', 3],
    ['without one it is counted twice', undefined, 2],
  ] as const)('a call resent by ioredis after a reconnect: %s', async (_, requestId, after) => {
    const limiter = new RateLimiter(through, { prefix, limit: 5, windowMs: 60_000 });
    const observer = new RateLimiter(direct, { prefix, limit: 5, windowMs: 60_000 });
    await limiter.limit('r');
    proxy.dropReplies = true;
    const pending = limiter.limit('r', requestId === undefined ? {} : { requestId });
    // The call ran on the server; its reply was lost. A reset makes ioredis reconnect and resend it.
    await waitFor(async () => (await observer.peek('r')).remaining === 3);
    proxy.dropReplies = false;
    proxy.resetAll();
    expect(await pending).toMatchObject({ allowed: true, remaining: after });
    expect((await observer.peek('r')).remaining).toBe(after);
  });
});
