import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { randomPrefix } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa, { type Context } from 'koa';
import { Redis, type Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expressRateLimit } from '../src/express.js';
import { fastifyRateLimit } from '../src/fastify.js';
import { honoRateLimit } from '../src/hono.js';
import { koaRateLimit } from '../src/koa.js';
import { InvalidArgumentError, rateLimitHeaders, RateLimiter, type RateLimitResult } from '../src/index.js';

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
  koa: (limiter) => {
    const app = new Koa();
    // Errors are answered by Koa's default handler (500); its log line is noise here.
    app.silent = true;
    app.use(koaRateLimit({ limiter, legacy: true }));
    app.use((ctx) => {
      ctx.body = 'ok';
    });
    return listen(app.listen(0, '127.0.0.1'));
  },
};

/** The request's `x-client`, `x-cost` and `x-skip` fields drive the hooks; `handler` swaps in a custom 429. */
interface Hooks {
  key: (header: (name: string) => string | undefined) => string;
  cost: (header: (name: string) => string | undefined) => number;
  skip: (header: (name: string) => string | undefined) => boolean;
}

const hooks: Hooks = {
  // Returns undefined without the field, as a careless key function reading a missing header would.
  key: (header) => header('x-client')!,
  cost: (header) => Number(header('x-cost') ?? '1'),
  skip: (header) => header('x-skip') === '1',
};

/** A custom refusal: JSON with the result the handler was given. */
const refusedBody = (result: RateLimitResult) => ({ refused: true, remaining: result.remaining, retryAfterMs: result.retryAfterMs });

const customApps: Record<string, (limiter: RateLimiter, handler: boolean) => Promise<App>> = {
  express: (limiter, handler) => {
    const app = express();
    const header = (req: express.Request) => (name: string) => req.get(name);
    app.use(
      expressRateLimit({
        limiter,
        key: (req) => hooks.key(header(req)),
        cost: (req) => hooks.cost(header(req)),
        skip: (req) => hooks.skip(header(req)),
        ...(handler ? { handler: (_req, res, _next, result) => void res.status(429).json(refusedBody(result)) } : {}),
      }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    app.use(((err: Error, _req, res, _next) => {
      res.status(500).send(`${err.name}: ${err.message}`);
    }) satisfies express.ErrorRequestHandler);
    return listen(app.listen(0, '127.0.0.1'));
  },
  fastify: async (limiter, handler) => {
    const app = Fastify();
    const header = (request: { headers: Record<string, unknown> }) => (name: string) => request.headers[name] as string | undefined;
    app.addHook(
      'onRequest',
      fastifyRateLimit({
        limiter,
        key: (request) => hooks.key(header(request)),
        cost: (request) => hooks.cost(header(request)),
        skip: (request) => hooks.skip(header(request)),
        ...(handler ? { handler: (_request, reply, result) => reply.code(429).send(refusedBody(result)) } : {}),
      }),
    );
    app.get('/', () => 'ok');
    app.setErrorHandler((err: Error, _request, reply) => reply.code(500).send(`${err.name}: ${err.message}`));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, close: () => app.close() };
  },
  hono: (limiter, handler) => {
    const app = new Hono();
    app.use(
      honoRateLimit({
        limiter,
        key: (c) => hooks.key((name) => c.req.header(name)),
        cost: (c) => hooks.cost((name) => c.req.header(name)),
        skip: (c) => hooks.skip((name) => c.req.header(name)),
        ...(handler ? { handler: (c, result) => c.json(refusedBody(result), 429) } : {}),
      }),
    );
    app.get('/', (c) => c.text('ok'));
    app.onError((err, c) => c.text(`${err.name}: ${err.message}`, 500));
    return listen(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server);
  },
  koa: (limiter, handler) => {
    const app = new Koa();
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        ctx.status = 500;
        ctx.body = `${(err as Error).name}: ${(err as Error).message}`;
      }
    });
    app.use(
      koaRateLimit<Context>({
        limiter,
        key: (ctx) => hooks.key((name) => ctx.get(name) || undefined),
        cost: (ctx) => hooks.cost((name) => ctx.get(name) || undefined),
        skip: (ctx) => hooks.skip((name) => ctx.get(name) || undefined),
        ...(handler
          ? {
              handler: (ctx, result) => {
                ctx.status = 429;
                ctx.body = refusedBody(result);
              },
            }
          : {}),
      }),
    );
    app.use((ctx) => {
      ctx.body = 'ok';
    });
    return listen(app.listen(0, '127.0.0.1'));
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

describe.each(topologies)('HTTP middleware hooks on %s', (topology) => {
  let redis: Redis | Cluster;

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });

  async function withApp(name: string, handler: boolean, run: (url: string, limiter: RateLimiter) => Promise<void>): Promise<void> {
    const limiter = new RateLimiter(redis, { prefix: randomPrefix(), limit: 3, windowMs: 60_000 });
    const app = await customApps[name]!(limiter, handler);
    try {
      await run(app.url, limiter);
    } finally {
      await app.close();
    }
  }

  it.each(Object.keys(customApps))('%s: skip(req) passes a request without a check or fields; a custom handler answers refusals', async (name) => {
    await withApp(name, true, async (url, limiter) => {
      for (let i = 0; i < 5; i++) {
        const skipped = await fetch(url, { headers: { 'x-client': 'c', 'x-skip': '1' } });
        expect(skipped.status).toBe(200);
        expect(skipped.headers.get('ratelimit')).toBeNull();
      }
      expect((await limiter.peek('c')).remaining).toBe(3);
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await fetch(url, { headers: { 'x-client': 'c' } })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const refused = await fetch(url, { headers: { 'x-client': 'c' } });
      expect(refused.status).toBe(429);
      // The handler's reply carries the fields set before it ran.
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
      expect(await refused.json()).toMatchObject({ refused: true, remaining: 0 });
    });
  });

  it.each(Object.keys(customApps))('%s: a cost above the capacity is a 429 without Retry-After that consumes nothing', async (name) => {
    for (const handler of [false, true]) {
      await withApp(name, handler, async (url, limiter) => {
        const over = await fetch(url, { headers: { 'x-client': 'big', 'x-cost': '4' } });
        expect(over.status).toBe(429);
        expect(over.headers.get('retry-after')).toBeNull();
        expect(over.headers.get('ratelimit')).toBe('"default";r=3;t=0');
        if (handler) expect(await over.json()).toEqual({ refused: true, remaining: 3, retryAfterMs: null });
        else expect(await over.text()).toBe('Too Many Requests');
        expect((await limiter.peek('big')).remaining).toBe(3);
        expect((await fetch(url, { headers: { 'x-client': 'big', 'x-cost': '3' } })).status).toBe(200);
      });
    }
  });

  it.each(Object.keys(customApps))("%s: a key function returning undefined, or a cost that is no integer, is a clear error for the app's error handler", async (name) => {
    await withApp(name, false, async (url) => {
      const noKey = await fetch(url);
      expect(noKey.status).toBe(500);
      expect(await noKey.text()).toBe('InvalidArgumentError: options.key(req): must be a non-empty string, got undefined');
      const badCost = await fetch(url, { headers: { 'x-client': 'c', 'x-cost': '1.5' } });
      expect(badCost.status).toBe(500);
      expect(await badCost.text()).toBe('InvalidArgumentError: options.cost(req): must be an integer, got 1.5');
    });
  });
});

describe("the default key: the client address, as the framework's proxy setting defines it", () => {
  let redis: Redis | Cluster;

  beforeAll(() => {
    redis = connect('single');
  });
  afterAll(async () => {
    await redis.quit();
  });

  const apps: Record<string, (limiter: RateLimiter, trustProxy: boolean) => Promise<App>> = {
    express: (limiter, trustProxy) => {
      const app = express();
      if (trustProxy) app.set('trust proxy', 1);
      app.use(expressRateLimit({ limiter }));
      app.get('/', (_req, res) => {
        res.send('ok');
      });
      return listen(app.listen(0, '127.0.0.1'));
    },
    fastify: async (limiter, trustProxy) => {
      // Trust the proxy by address (the test's requests come from loopback, as from a local proxy).
      const app = Fastify({ trustProxy: trustProxy ? '127.0.0.1' : false });
      app.addHook('onRequest', fastifyRateLimit({ limiter }));
      app.get('/', () => 'ok');
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      return { url: `http://127.0.0.1:${port}/`, close: () => app.close() };
    },
    koa: (limiter, trustProxy) => {
      const app = new Koa({ proxy: trustProxy });
      app.use(koaRateLimit({ limiter }));
      app.use((ctx) => {
        ctx.body = 'ok';
      });
      return listen(app.listen(0, '127.0.0.1'));
    },
  };

  it.each(Object.keys(apps))('%s: behind a trusted proxy each forwarded client has its own budget; untrusted, they share the proxy\'s', async (name) => {
    for (const trustProxy of [true, false]) {
      const app = await apps[name]!(new RateLimiter(redis, { prefix: randomPrefix(), limit: 1, windowMs: 60_000 }), trustProxy);
      try {
        const statuses = [];
        for (const client of ['203.0.113.1', '203.0.113.2', '203.0.113.1']) {
          statuses.push((await fetch(app.url, { headers: { 'x-forwarded-for': client } })).status);
        }
        expect(statuses).toEqual(trustProxy ? [200, 200, 429] : [200, 429, 429]);
      } finally {
        await app.close();
      }
    }
  });
});

describe('middleware options', () => {
  const redis = new Redis({ port: 1, lazyConnect: true });
  const limiter = new RateLimiter(redis, { limit: 1, windowMs: 1000 });
  afterAll(() => {
    redis.disconnect();
  });

  it('are refused when unknown or of the wrong kind, naming the option', () => {
    const key = () => 'k';
    const cases: [() => unknown, string, RegExp?][] = [
      // @ts-expect-error -- keyGenerator is express-rate-limit's name; ours is key
      [() => expressRateLimit({ limiter, keyGenerator: key }), 'options.keyGenerator', /did you mean "key"/],
      // @ts-expect-error -- onLimit is not an option (handler is)
      [() => fastifyRateLimit({ limiter, onLimit: key }), 'options.onLimit'],
      // @ts-expect-error -- Hono has no client address: key is required
      [() => honoRateLimit({ limiter }), 'options.key'],
      // @ts-expect-error -- the limiter is required
      [() => expressRateLimit({}), 'options.limiter'],
      // @ts-expect-error -- skip must be a function
      [() => expressRateLimit({ limiter, skip: true }), 'options.skip'],
      // @ts-expect-error -- the options are required
      [() => fastifyRateLimit(undefined), 'options'],
      // @ts-expect-error -- legacy is a boolean
      [() => expressRateLimit({ limiter, legacy: 'yes' }), 'options.legacy'],
      // @ts-expect-error -- message is a string
      [() => fastifyRateLimit({ limiter, message: 429 }), 'options.message'],
      [() => honoRateLimit({ limiter, key, policyName: '' }), 'options.policyName'],
      // @ts-expect-error -- handler must be a function
      [() => koaRateLimit({ limiter, handler: 'refused' }), 'options.handler'],
      // @ts-expect-error -- onLimit is not an option (handler is)
      [() => koaRateLimit({ limiter, onLimit: key }), 'options.onLimit'],
    ];
    for (const [make, argument, message] of cases) {
      expect(make, argument).toThrow(expect.objectContaining({ argument }) as Error);
      if (message) expect(make).toThrow(message);
      expect(make).toThrow(InvalidArgumentError);
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
