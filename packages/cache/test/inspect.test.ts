import { randomPrefix, waitFor } from '@cyredis/testing';
import { topologies } from '@cyredis/testing/context';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, SmartCache } from '../src/index.js';
import { cacheSuite } from './fixtures/caches.js';

// Discovery and read-only inspection: the registry of caches and one entry's TTL, size and tags.
describe.each(topologies)('SmartCache inspection on %s', (topology) => {
  const suite = cacheSuite(topology);
  const { redis, other, make, keyOf } = suite;

  it('list shows the caches used under a prefix, from any process, most recently used first', async () => {
    await make({ name: 'users' }).set('a', 1);
    await make({ name: 'pages' }, other).get('b');
    const names = async () => (await SmartCache.list(redis, { prefix: suite.prefix })).map((e) => e.name).sort();
    await waitFor(async () => (await names()).length === 2, { timeoutMs: 10_000 });
    expect(await names()).toEqual(['pages', 'users']);
    // A cache never used is not listed; another prefix lists nothing of this one.
    make({ name: 'idle' });
    expect(await names()).toEqual(['pages', 'users']);
    expect(await SmartCache.list(redis, { prefix: randomPrefix() })).toEqual([]);
    const [page] = await SmartCache.list(redis, { prefix: suite.prefix, limit: 1, offset: 1 });
    expect(page!.lastSeenMs).toBeGreaterThan(Date.now() - 60_000);
  });

  it('inspect: TTL, bytes and tags, without counting a lookup or moving the entry in the LRU', async () => {
    const cache = make<string>({ maxSize: 2 });
    await cache.set('a', 'x'.repeat(100), { ttlMs: 30_000, tags: ['t1', 't2'] });
    await cache.set('b', 'y');
    const before = await cache.stats();
    const info = await cache.inspect('a');
    expect(info).toMatchObject({ stale: false, tags: ['t1', 't2'] });
    expect(info!.ttlMs).toBeGreaterThan(20_000);
    expect(info!.ttlMs).toBeLessThanOrEqual(30_000);
    expect(info!.bytes).toBeGreaterThanOrEqual(100);
    expect(await cache.inspect('b')).toMatchObject({ tags: [] });
    expect(await cache.inspect('missing')).toBeUndefined();
    expect(await cache.stats()).toMatchObject({ hits: before.hits, misses: before.misses, size: 2 });
    // 'a' is still the least recently used: the next write evicts it.
    await cache.set('c', 'z');
    expect(await cache.inspect('a')).toBeUndefined();
    expect(await redis.exists(keyOf('e:b'))).toBe(1);
    // Another process sees the same entry.
    const seen = await make<string>({}, other).inspect('b');
    expect(seen).toMatchObject({ bytes: (await cache.inspect('b'))!.bytes });
  });

  it('refuses bad input', async () => {
    const cache = make();
    await expect(cache.inspect('')).rejects.toThrow(InvalidArgumentError);
    await expect(cache.inspect(1 as never)).rejects.toThrow(InvalidArgumentError);
    await expect(SmartCache.list(redis, { prefix: 'a{b' })).rejects.toThrow(InvalidArgumentError);
    await expect(SmartCache.list(redis, { limit: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(SmartCache.list(redis, { prefx: 'p' } as never)).rejects.toThrow(/did you mean "prefix"/);
    await expect(SmartCache.list({} as never)).rejects.toThrow(InvalidArgumentError);
  });
});
