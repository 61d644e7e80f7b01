import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { randomPrefix } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { Redis, type Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expressRateLimit } from '../src/express.js';
import { fastifyRateLimit } from '../src/fastify.js';
import { honoRateLimit } from '../src/hono.js';
import { rateLimitHeaders, RateLimiter } from '../src/index.js';

interface App {
  url: string;
  close: () => Promise<void>;
}

async function listen(server: Server): Promise<App> {
  await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', resolve)));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const frameworks: Record<string, (limiter: RateLimiter) => Promise<App>> = {
  express: (limiter) => {
    const app = express();
    app.use(expressRateLimit({ limiter, legacy: true }));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    return listen(app.listen(0, '127.0.0.1'));
  },
  fastify: async (limiter) => {
    const app = Fastify();
    app.addHook('onRequest', fastifyRateLimit({ limiter, legacy: true }));
    app.get('/', () => 'ok');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, close: () => app.close() };
  },
  hono: (limiter) => {
    const app = new Hono();
    app.use(honoRateLimit({ limiter, legacy: true, key: (c) => c.req.header('x-client') ?? 'anonymous' }));
    app.get('/', (c) => c.text('ok'));
    app.onError((_err, c) => c.text('Internal Server Error', 500));
    return listen(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server);
  },
};

describe.each(topologies)('HTTP middleware on %s', (topology) => {
  let redis: Redis | Cluster;
  let offline: Redis;

  beforeAll(() => {
    redis = connect(topology);
    offline = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false });
    offline.on('error', () => undefined);
  });
  afterAll(async () => {
    offline.disconnect();
    await redis.quit();
  });

  it.each(Object.keys(frameworks))('%s: sets RateLimit fields, answers 429 with Retry-After when refused', async (name) => {
    const app = await frameworks[name]!(new RateLimiter(redis, { prefix: randomPrefix(), limit: 2, windowMs: 60_000 }));
    try {
      const replies = [];
      for (let i = 0; i < 3; i++) replies.push(await fetch(app.url));
      expect(replies.map((r) => r.status)).toEqual([200, 200, 429]);
      expect(await replies[0]!.text()).toBe('ok');
      expect(await replies[2]!.text()).toBe('Too Many Requests');
      const [first, , refused] = replies.map((r) => r.headers);
      expect(first!.get('ratelimit-policy')).toBe('"default";q=2;w=60');
      expect(first!.get('ratelimit')).toBe('"default";r=1;t=60');
      expect(first!.get('x-ratelimit-remaining')).toBe('1');
      expect(first!.get('retry-after')).toBeNull();
      expect(refused!.get('ratelimit')).toMatch(/^"default";r=0;t=(59|60)$/);
      expect(Number(refused!.get('retry-after'))).toBeGreaterThanOrEqual(59);
    } finally {
      await app.close();
    }
  });

  it.each(Object.keys(frameworks))("%s: a Redis failure with onRedisError 'throw' becomes a 500, 'allow' lets the request through", async (name) => {
    for (const [onRedisError, status] of [['throw', 500], ['allow', 200]] as const) {
      const app = await frameworks[name]!(new RateLimiter(offline, { limit: 2, windowMs: 60_000, onRedisError }));
      try {
        expect((await fetch(app.url)).status).toBe(status);
      } finally {
        await app.close();
      }
    }
  });
});

describe('rateLimitHeaders', () => {
  it('rounds seconds up and adds legacy fields on request', () => {
    const result = { allowed: false, remaining: 0, limit: 150, resetMs: 1500, retryAfterMs: 1001, windowMs: 90_000, rule: 0 };
    expect(rateLimitHeaders(result, { legacy: true, policyName: 'api' })).toEqual({
      'RateLimit-Policy': '"api";q=150;w=90',
      RateLimit: '"api";r=0;t=2',
      'Retry-After': '2',
      'X-RateLimit-Limit': '150',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': '2',
    });
  });
});
