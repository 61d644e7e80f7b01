import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { InvalidArgumentError } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import express from 'express';
import { rateLimit, type Options, type RateLimitRequestHandler } from 'express-rate-limit';
import { Redis, type Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { CyRedisStore, type CyRedisStoreOptions } from '../src/express-rate-limit.js';

// express-rate-limit itself (the real middleware, installed) with CyRedisStore, through what its docs say a
// store does: increment, decrement (skipFailedRequests / skipSuccessfulRequests), resetKey, get, init with
// the middleware's options, shared keys (localKeys false), headers and passOnStoreError.

interface App {
  url: string;
  limiter: RateLimitRequestHandler;
  store: CyRedisStore;
  close: () => Promise<void>;
}

type Erl = Partial<Omit<Options, 'store'>>;

async function start(client: Redis | Cluster, erl: Erl, storeOptions: CyRedisStoreOptions): Promise<App> {
  const store = new CyRedisStore(client, storeOptions);
  const limiter = rateLimit({
    windowMs: 60_000,
    limit: 2,
    keyGenerator: (req) => req.get('x-client') ?? 'anonymous',
    // The logger would print the errors these tests cause on purpose.
    logger: { error: () => undefined, warn: () => undefined } as unknown as Options['logger'],
    ...erl,
    store,
  });
  const app = express();
  app.use(limiter);
  app.get('/', (req, res) => {
    res.json((req as express.Request & { rateLimit: unknown }).rateLimit);
  });
  app.get('/fail', (_req, res) => {
    res.status(500).send('failed');
  });
  app.use(((err: Error, _req, res, _next) => {
    res.status(500).send(`${err.name}: ${err.message}`);
  }) satisfies express.ErrorRequestHandler);
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, limiter, store, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe.each(topologies)('express-rate-limit with CyRedisStore on %s', (topology) => {
  let redis: Redis | Cluster;
  let other: Redis | Cluster;
  let offline: Redis;

  beforeAll(() => {
    redis = connect(topology);
    other = connect(topology);
    offline = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false });
    offline.on('error', () => undefined);
  });
  afterAll(async () => {
    offline.disconnect();
    await redis.quit();
    await other.quit();
  });

  async function withApp(erl: Erl, run: (app: App) => Promise<void>, client: Redis | Cluster = redis, storeOptions: CyRedisStoreOptions = {}): Promise<void> {
    const app = await start(client, erl, { prefix: randomPrefix(), ...storeOptions });
    try {
      await run(app);
    } finally {
      await app.close();
    }
  }

  const get = (app: App, path = '/', client = 'c') => fetch(`${app.url}${path}`, { headers: { 'x-client': client } });

  it('counts hits with the middleware limit and window, then answers 429 with an honest Retry-After', async () => {
    await withApp({ standardHeaders: 'draft-7', legacyHeaders: true }, async (app) => {
      const replies = [];
      for (let i = 0; i < 4; i++) replies.push(await get(app));
      expect(replies.map((r) => r.status)).toEqual([200, 200, 429, 429]);
      expect(await replies[0]!.json()).toMatchObject({ limit: 2, used: 1, remaining: 1 });
      expect(replies[0]!.headers.get('ratelimit')).toMatch(/^limit=2, remaining=1, reset=(59|60)$/);
      expect(replies[0]!.headers.get('ratelimit-policy')).toBe('2;w=60');
      expect(replies[1]!.headers.get('x-ratelimit-remaining')).toBe('0');
      // The first hit leaves the window 60 s after it was made (less the time the requests took).
      expect(Number(replies[2]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(50);
      expect(Number(replies[2]!.headers.get('retry-after'))).toBeLessThanOrEqual(60);
      // Another client has its own budget.
      expect((await get(app, '/', 'd')).status).toBe(200);
    });
  });

  it('draft-6 and draft-8 headers read the same store', async () => {
    await withApp({ standardHeaders: 'draft-6' }, async (app) => {
      const reply = await get(app);
      expect(reply.headers.get('ratelimit-limit')).toBe('2');
      expect(reply.headers.get('ratelimit-remaining')).toBe('1');
    });
    await withApp({ standardHeaders: 'draft-8', identifier: 'api' }, async (app) => {
      expect((await get(app)).headers.get('ratelimit')).toMatch(/^"api"; r=1; t=(59|60)$/);
    });
  });

  it('keys are shared: two processes (two connections, two middleware) admit the limit between them', async () => {
    const prefix = randomPrefix();
    const a = await start(redis, {}, { prefix });
    const b = await start(other, {}, { prefix });
    try {
      expect(a.store.localKeys).toBe(false);
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await get(i % 2 === 0 ? a : b)).status);
      expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  /** Waits until `spy` (the store's decrement) was called `n` times and every call settled. */
  async function decrements(spy: MockInstance, n: number): Promise<void> {
    await waitFor(() => spy.mock.calls.length >= n, { message: `${n} decrements` });
    await Promise.all(spy.mock.results.map((r) => r.value as Promise<void>));
  }

  it('skipFailedRequests: failed requests give their hit back; refused ones took none and give none', async () => {
    await withApp({ skipFailedRequests: true }, async (app) => {
      const decrement = vi.spyOn(app.store, 'decrement');
      for (let i = 0; i < 4; i++) {
        expect((await get(app, '/fail')).status).toBe(500);
        await decrements(decrement, i + 1);
      }
      expect((await get(app)).status).toBe(200);
      expect((await get(app)).status).toBe(200);
      // Refused (a 429 is a failed request, so express-rate-limit decrements it too): nothing is given back.
      expect((await get(app)).status).toBe(429);
      await decrements(decrement, 5);
      expect((await get(app)).status).toBe(429);
      await decrements(decrement, 6);
      expect(await app.limiter.getKey('c')).toMatchObject({ totalHits: 2 });
    });
  });

  it('skipSuccessfulRequests: only failed requests count', async () => {
    await withApp({ skipSuccessfulRequests: true }, async (app) => {
      const decrement = vi.spyOn(app.store, 'decrement');
      for (let i = 0; i < 4; i++) {
        expect((await get(app)).status).toBe(200);
        await decrements(decrement, i + 1);
      }
      expect((await get(app, '/fail')).status).toBe(500);
      expect((await get(app, '/fail')).status).toBe(500);
      expect((await get(app)).status).toBe(429);
    });
  });

  it('resetKey and getKey: the middleware reads and resets a client through the store', async () => {
    await withApp({}, async (app) => {
      expect(await app.limiter.getKey('c')).toBeUndefined();
      await get(app);
      const info = await app.limiter.getKey('c');
      expect(info).toMatchObject({ totalHits: 1 });
      expect(info!.resetTime!.getTime()).toBeGreaterThan(Date.now() + 50_000);
      await get(app);
      expect((await get(app)).status).toBe(429);
      // Typed as void by express-rate-limit; this store's resetKey returns its promise.
      await (app.limiter.resetKey('c') as unknown as Promise<void>);
      expect((await get(app)).status).toBe(200);
    });
  });

  it('a limit function needs a numeric limit on the store; with one, it applies', async () => {
    await withApp({ limit: () => 2 }, async (app) => {
      const reply = await get(app);
      expect(reply.status).toBe(500);
      expect(await reply.text()).toMatch(/InvalidArgumentError: options\.limit: the middleware limit is a function/);
    });
    await withApp({ limit: () => 2 }, async (app) => {
      expect([(await get(app)).status, (await get(app)).status, (await get(app)).status]).toEqual([200, 200, 429]);
    }, redis, { limit: 2 });
  });

  it('passOnStoreError: Redis unreachable lets requests through; without it they fail', async () => {
    await withApp({ passOnStoreError: true }, async (app) => expect((await get(app)).status).toBe(200), offline, { timeoutMs: 200 });
    await withApp({}, async (app) => expect((await get(app)).status).toBe(500), offline, { timeoutMs: 200 });
  });

  it('refuses bad store options, naming them', () => {
    // @ts-expect-error -- not an option
    expect(() => new CyRedisStore(redis, { windowMs: 5 })).toThrow(expect.objectContaining({ argument: 'options.windowMs' }) as Error);
    expect(() => new CyRedisStore('redis://localhost' as unknown as Redis)).toThrow(InvalidArgumentError);
  });
});
