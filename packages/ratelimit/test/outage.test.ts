import type { AddressInfo } from 'node:net';
import { randomPrefix, RedisServer } from '@cyredis/testing';
import express, { type ErrorRequestHandler } from 'express';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expressRateLimit } from '../src/express.js';
import { RateLimiter, RedisUnavailableError, type OnRedisError, type RateLimitResult } from '../src/index.js';

// With the server gone, ioredis alone queues a call through its reconnects (20 retries, about 41 s): the
// default timeoutMs is what bounds every call. The slack covers a loaded machine's event-loop lag.
const SLACK_MS = 1500;

/** Settles `promise` and says how long it took. */
async function timed<T>(promise: Promise<T>): Promise<{ ms: number; outcome: PromiseSettledResult<T> }> {
  const start = performance.now();
  const [outcome] = await Promise.allSettled([promise]);
  return { ms: performance.now() - start, outcome };
}

function rejection(outcome: PromiseSettledResult<unknown>): unknown {
  if (outcome.status === 'fulfilled') throw new Error(`expected a rejection, got ${JSON.stringify(outcome.value)}`);
  return outcome.reason;
}

describe('RateLimiter with its server killed (a private redis-server, default options)', () => {
  let server: RedisServer;
  let redis: Redis;
  let prefix: string;

  beforeAll(async () => {
    server = await RedisServer.start();
    redis = server.client();
    // Connection errors are expected here; they reach callers through the limiter.
    redis.on('error', () => undefined);
    prefix = randomPrefix();
    // A first call loads the script and proves the connection worked before the server goes.
    expect((await new RateLimiter(redis, { prefix, limit: 5, windowMs: 60_000 }).limit('warm')).allowed).toBe(true);
    await server.kill();
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });

  it("every call rejects within the default timeoutMs (onRedisError 'throw'), with an outage error the package exports", async () => {
    const limiter = new RateLimiter(redis, { prefix, limit: 5, windowMs: 60_000 });
    const calls = await Promise.all([
      timed(limiter.limit('a')),
      timed(limiter.limit('a', { requestId: 'r1' })),
      timed(limiter.limit('b', { cost: 2 })),
      timed(limiter.peek('a')),
      timed(limiter.reset('a')),
    ]);
    for (const { ms, outcome } of calls) {
      expect(rejection(outcome)).toBeInstanceOf(RedisUnavailableError);
      expect(ms).toBeLessThan(limiter.timeoutMs + SLACK_MS);
    }
  });

  it.each([
    ['allow', true],
    ['deny', false],
  ] as const)("onRedisError '%s' without timeoutMs answers within the default deadline", async (onRedisError, allowed) => {
    const limiter = new RateLimiter(redis, { prefix, limit: 5, windowMs: 60_000, onRedisError });
    const calls = await Promise.all([timed(limiter.limit('a')), timed(limiter.limit('c')), timed(limiter.peek('a'))]);
    for (const { ms, outcome } of calls) {
      expect(outcome.status).toBe('fulfilled');
      const result = (outcome as PromiseFulfilledResult<RateLimitResult>).value;
      expect(result.allowed).toBe(allowed);
      expect(result.error).toBeInstanceOf(RedisUnavailableError);
      expect(ms).toBeLessThan(limiter.timeoutMs + SLACK_MS);
    }
  });

  it.each([
    ['throw', 500],
    ['allow', 200],
    ['deny', 429],
  ] as const)("an Express request behind the middleware answers within the deadline (onRedisError '%s' → %i)", async (onRedisError: OnRedisError, status) => {
    const limiter = new RateLimiter(redis, { prefix, limit: 5, windowMs: 60_000, onRedisError });
    const errors: unknown[] = [];
    const app = express();
    app.use(expressRateLimit({ limiter }));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const onError: ErrorRequestHandler = (err, _req, res, _next) => {
      errors.push(err);
      res.status(500).send('down');
    };
    app.use(onError);
    const http = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => http.once('listening', resolve));
    try {
      const { port } = http.address() as AddressInfo;
      const { ms, outcome } = await timed(fetch(`http://127.0.0.1:${port}/`));
      expect(outcome.status).toBe('fulfilled');
      expect((outcome as PromiseFulfilledResult<Response>).value.status).toBe(status);
      expect(ms).toBeLessThan(limiter.timeoutMs + SLACK_MS);
      expect(errors.every((err) => err instanceof RedisUnavailableError)).toBe(true);
      expect(errors).toHaveLength(onRedisError === 'throw' ? 1 : 0);
    } finally {
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('a shorter timeoutMs is honoured too', async () => {
    const limiter = new RateLimiter(redis, { prefix, limit: 5, windowMs: 60_000, timeoutMs: 200, onRedisError: 'allow' });
    const { ms, outcome } = await timed(limiter.limit('a'));
    expect(outcome.status).toBe('fulfilled');
    expect(ms).toBeLessThan(200 + SLACK_MS);
  });
});
