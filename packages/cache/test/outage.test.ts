import { CyRedisError } from '@cyredis/core';
import { FaultProxy, randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SmartCache } from '../src/index.js';

// A private server behind a fault proxy (single node only: the proxy fronts one server).
describe('SmartCache when Redis is unreachable', () => {
  let server: RedisServer;
  let proxy: FaultProxy;
  let redis: Redis;

  beforeAll(async () => {
    server = await RedisServer.start();
    proxy = await FaultProxy.start(server.address);
    redis = new Redis({ host: proxy.host, port: proxy.port, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
  });
  afterAll(async () => {
    redis.disconnect();
    await proxy.close();
    await server.stop();
  });

  it('get is a miss and getOrSet calls the loader, after timeoutMs, with no error thrown', async () => {
    const onError = vi.fn();
    const cache = new SmartCache<string>(redis, { name: 'down', prefix: randomPrefix(), maxSize: 10, defaultTtlMs: 60_000, timeoutMs: 200, onError });
    await cache.set('k', 'v');
    expect(await cache.get('k')).toBe('v');
    proxy.dropRequests = true;
    try {
      expect(await cache.get('k')).toBeUndefined();
      expect(await cache.getMany(['k', 'x'])).toEqual([undefined, undefined]);
      expect(await cache.getOrSet('k', () => 'from loader')).toBe('from loader');
      await expect(cache.set('k', 'w')).rejects.toMatchObject({ name: 'RedisTimeoutError' });
      expect(onError).toHaveBeenCalled();
    } finally {
      proxy.dropRequests = false;
      proxy.resetAll();
    }
    // The timed-out set is an unknown outcome: ioredis resends it after the reset, so either value may be there.
    await waitFor(async () => ['v', 'w'].includes((await cache.get('k')) ?? ''));
    await cache.close();
  });

  it('clears L1 when the connection is lost, and fills it again once back', async () => {
    const cache = new SmartCache<string>(redis, { name: 'lost', prefix: randomPrefix(), maxSize: 10, defaultTtlMs: 60_000, l1: { maxEntries: 10 } });
    await waitFor(async () => {
      await cache.set('k', 'v');
      return (await cache.stats()).l1Size === 1;
    });
    proxy.resetAll();
    await waitFor(async () => (await cache.stats()).l1Size === 0, { message: 'L1 survived a lost connection' });
    await waitFor(async () => {
      await cache.get('k');
      return (await cache.stats()).l1Size === 1;
    });
    await cache.close();
  });

  it('leaves no stale L1 copy after a write made while its bus connection was away', async () => {
    const writer = new Redis(server.url);
    const prefix = randomPrefix();
    const options = { name: 'gap', prefix, maxSize: 10, defaultTtlMs: 60_000 };
    const cache = new SmartCache<string>(redis, { ...options, l1: { maxEntries: 10 } });
    const other = new SmartCache<string>(writer, options);
    try {
      await waitFor(async () => {
        await cache.set('k', 'v');
        return (await cache.stats()).l1Size === 1;
      });
      // The write's message is published while the subscriber reconnects, so it is never heard.
      await writer.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await other.set('k', 'w');
      await waitFor(async () => (await cache.get('k')) === 'w', { message: 'L1 kept the value overwritten during the gap' });
      // Once subscribed again, L1 fills and is invalidated as before.
      await waitFor(async () => {
        await cache.get('k');
        return (await cache.stats()).l1Size === 1;
      });
      await other.set('k', 'x');
      await waitFor(async () => (await cache.get('k')) === 'x');
    } finally {
      await Promise.all([cache.close(), other.close()]);
      await writer.quit();
    }
  });
});

// Issue 12 §2: no call waits on Redis without a deadline. A client with ioredis' defaults (20 retries per
// request, reconnecting forever) would hold a call for many seconds on its own.
describe('SmartCache on a dead server', () => {
  const TIMEOUT_MS = 300;
  /** What a loaded 2-core machine may add to a timer; far below ioredis' own retry time. */
  const SLACK_MS = 1_000;

  it('settles every public call within timeoutMs plus a small bound, with a typed error or a miss', async () => {
    const server = await RedisServer.start();
    const redis = new Redis(server.url);
    redis.on('error', () => undefined);
    const options = { prefix: randomPrefix(), maxSize: 10, timeoutMs: TIMEOUT_MS, onError: () => undefined };
    const plain = new SmartCache<string>(redis, { ...options, name: 'plain' });
    const tiered = new SmartCache<string>(redis, { ...options, name: 'tiered', l1: { maxEntries: 10 }, graceMs: 1_000 });
    try {
      await plain.set('k', 'v');
      await waitFor(async () => {
        await tiered.set('k', 'v');
        return (await tiered.stats()).l1Size === 1;
      });
      await server.kill();
      const settled = async (name: string, call: () => Promise<unknown>) => {
        const start = performance.now();
        const outcome = await call().then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        );
        return { name, ms: performance.now() - start, ...outcome };
      };
      const results = await Promise.all(
        [plain, tiered].flatMap((cache, i) => [
          settled(`${i} get`, () => cache.get('other')),
          settled(`${i} getMany`, () => cache.getMany(['x', 'y'])),
          settled(`${i} getOrSet`, () => cache.getOrSet('z', () => 'loaded')),
          settled(`${i} set`, () => cache.set('k', 'w')),
          settled(`${i} setMany`, () => cache.setMany([{ key: 'a', value: 'b' }])),
          settled(`${i} delete`, () => cache.delete('k')),
          settled(`${i} clear`, () => cache.clear()),
          settled(`${i} stats`, () => cache.stats()),
          settled(`${i} has`, () => cache.has('k')),
          settled(`${i} deleteMany`, () => cache.deleteMany(['k', 'a'])),
          settled(`${i} deleteByTag`, () => cache.deleteByTag('t')),
          settled(`${i} getOrSetWithStatus`, () => cache.getOrSetWithStatus('y', () => 'loaded', { hardTimeoutMs: 60_000 })),
        ]),
      );
      for (const r of results) {
        expect(r.ms, r.name).toBeLessThan(TIMEOUT_MS + SLACK_MS);
        if ('error' in r) expect(r.error, r.name).toBeInstanceOf(CyRedisError);
      }
      const byName = Object.fromEntries(results.map((r) => [r.name, r]));
      expect(byName['0 get']).toMatchObject({ value: undefined });
      expect(byName['1 getOrSet']).toMatchObject({ value: 'loaded' });
      expect(byName['0 getOrSetWithStatus']).toMatchObject({ value: { value: 'loaded', status: 'miss-loaded' } });
      expect(byName['0 set']).toMatchObject({ error: { name: expect.stringMatching(/^Redis(Timeout|Unavailable)Error$/) } });
      for (const cache of [plain, tiered]) {
        const start = performance.now();
        await cache.close();
        expect(performance.now() - start).toBeLessThan(TIMEOUT_MS + SLACK_MS);
      }
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});
