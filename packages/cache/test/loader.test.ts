import { waitFor } from '@cyredis/testing';
import { topologies } from '@cyredis/testing/context';
import { describe, expect, it, vi } from 'vitest';
import { LoaderTimeoutError } from '../src/index.js';
import { cacheSuite, gate } from './fixtures/caches.js';

describe.each(topologies)('SmartCache getOrSet statuses, loader context and timeouts, has, deleteMany on %s', (topology) => {
  const { redis, other, make, keyOf } = cacheSuite(topology, { maxSize: 1_000 });
  /** Waits until `key`'s value is past its TTL (only grace left) for a cache with `graceMs`. */
  const untilStale = (key: string, graceMs: number) => waitFor(async () => (await redis.pttl(keyOf(`e:${key}`))) <= graceMs);

  it('tells where each value came from: miss-loaded, hit, l1-hit, stale', async () => {
    const cache = make<string>({ graceMs: 60_000 });
    const withL1 = make<string>({ graceMs: 60_000, l1: { maxEntries: 10 } }, other);
    expect(await cache.getOrSetWithStatus('a', () => 'A')).toEqual({ value: 'A', status: 'miss-loaded' });
    expect(await cache.getOrSetWithStatus('a', () => 'B')).toEqual({ value: 'A', status: 'hit' });
    await waitFor(async () => (await withL1.getOrSetWithStatus('a', () => 'C')).status === 'l1-hit');
    expect(await withL1.getOrSet('a', () => 'C')).toBe('A');
    await cache.set('old', 'O', { ttlMs: 20 });
    await untilStale('old', 60_000);
    const failing = vi.fn(() => Promise.reject(new Error('db down')));
    expect(await cache.getOrSetWithStatus('old', failing)).toEqual({ value: 'O', status: 'stale' });
    expect(failing).toHaveBeenCalledTimes(1);
  });

  it('stores a value for the TTL the loader sets, and not at all when it skips the cache', async () => {
    const cache = make<string | null>({ leaseMs: 60_000 });
    expect(await cache.getOrSet('missing', (ctx) => {
      ctx.setTtl(5_000);
      return null;
    }, { ttlMs: 60_000 })).toBeNull();
    const pttl = await redis.pttl(keyOf('e:missing'));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(5_000);
    const draft = vi.fn((ctx: { skipCache(): void }) => {
      ctx.skipCache();
      return 'draft';
    });
    expect(await cache.getOrSetWithStatus('d', draft)).toEqual({ value: 'draft', status: 'miss-loaded' });
    expect(await redis.exists(keyOf('e:d'))).toBe(0);
    // The lease is freed at once, so the next caller loads instead of waiting it out.
    await waitFor(async () => (await redis.exists(keyOf('l:d'))) === 0);
    expect(await cache.getOrSet('d', draft)).toBe('draft');
    expect(draft).toHaveBeenCalledTimes(2);
    // A bad TTL from the loader: the caller gets InvalidArgumentError, the lease is freed, nothing stored.
    for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(cache.getOrSet('bad', (ctx) => {
        ctx.setTtl(ttlMs);
        return 'x';
      })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'ctx.setTtl' });
    }
    await waitFor(async () => (await redis.exists(keyOf('l:bad'))) === 0);
    expect(await redis.exists(keyOf('e:bad'))).toBe(0);
  });

  it('past softTimeoutMs serves the stale value while the load goes on; no second loader starts elsewhere', async () => {
    const cache = make<string>({ graceMs: 60_000 });
    const elsewhere = make<string>({ graceMs: 60_000 }, other);
    await cache.set('k', 'v1', { ttlMs: 20 });
    await untilStale('k', 60_000);
    const slow = gate<string>();
    const loader = vi.fn(() => slow.promise);
    const start = performance.now();
    expect(await cache.getOrSetWithStatus('k', loader, { softTimeoutMs: 50, ttlMs: 60_000 })).toEqual({ value: 'v1', status: 'stale' });
    expect(performance.now() - start).toBeGreaterThanOrEqual(45);
    const second = vi.fn(() => 'other');
    expect(await elsewhere.getOrSetWithStatus('k', second, { softTimeoutMs: 50 })).toEqual({ value: 'v1', status: 'stale' });
    expect(second).not.toHaveBeenCalled();
    slow.open('v2');
    await waitFor(async () => (await elsewhere.get('k')) === 'v2');
    expect(loader).toHaveBeenCalledTimes(1);
    // Without a stale value, softTimeoutMs does not cut the wait short.
    const fresh = gate<string>();
    const loading = cache.getOrSetWithStatus('n', () => fresh.promise, { softTimeoutMs: 1 });
    // Well past the soft timeout (time only has to pass here, so load can only make it longer).
    await new Promise((resolve) => setTimeout(resolve, 30));
    fresh.open('N');
    expect(await loading).toEqual({ value: 'N', status: 'miss-loaded' });
  });

  it('past hardTimeoutMs rejects with LoaderTimeoutError and frees the lease; the late value is not stored', async () => {
    const cache = make<string>({ leaseMs: 60_000 });
    const elsewhere = make<string>({ leaseMs: 60_000 }, other);
    const stuck = gate<string>();
    await expect(cache.getOrSet('k', () => stuck.promise, { hardTimeoutMs: 100 })).rejects.toBeInstanceOf(LoaderTimeoutError);
    await waitFor(async () => (await redis.exists(keyOf('l:k'))) === 0);
    expect(await elsewhere.getOrSetWithStatus('k', () => 'fresh')).toEqual({ value: 'fresh', status: 'miss-loaded' });
    stuck.open('late');
    // Past the microtasks in which a late write would be sent: a get sent now would come after it.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await cache.get('k')).toBe('fresh');
    // A caller waiting for another process's load gives up at its hardTimeoutMs too.
    const holding = gate<string>();
    const holder = cache.getOrSet('w', () => holding.promise);
    await waitFor(async () => (await redis.exists(keyOf('l:w'))) === 1);
    const waited = elsewhere.getOrSet('w', () => 'never', { hardTimeoutMs: 100 });
    await expect(waited).rejects.toMatchObject({ name: 'LoaderTimeoutError', key: 'w', timeoutMs: 100 });
    holding.open('W');
    expect(await holder).toBe('W');
  });

  it('refuses bad timeouts with InvalidArgumentError naming them', async () => {
    const cache = make<number>();
    const bad: [string, object][] = [
      ['options.softTimeoutMs', { softTimeoutMs: -1 }],
      ['options.softTimeoutMs', { softTimeoutMs: Number.NaN }],
      ['options.softTimeoutMs', { softTimeoutMs: Number.POSITIVE_INFINITY }],
      ['options.hardTimeoutMs', { hardTimeoutMs: 0 }],
      ['options.hardTimeoutMs', { hardTimeoutMs: -5 }],
      ['options.hardTimeoutMs', { hardTimeoutMs: Number.POSITIVE_INFINITY }],
      ['options.hardTimeoutMs', { hardTimeoutMs: 2 ** 31 }],
      ['options.softTimeout', { softTimeout: 5 }],
    ];
    for (const [argument, options] of bad) {
      await expect(cache.getOrSet('a', () => 1, options), argument).rejects.toMatchObject({ name: 'InvalidArgumentError', argument });
    }
    expect(await redis.exists(keyOf('e:a'), keyOf('l:a'))).toBe(0);
  });

  it('has tells whether a fresh value is there, counting no lookup', async () => {
    const cache = make<number>({ graceMs: 60_000 });
    await cache.set('a', 1);
    await cache.set('short', 2, { ttlMs: 20 });
    expect(await cache.has('a')).toBe(true);
    expect(await cache.has('zz')).toBe(false);
    await untilStale('short', 60_000);
    // Past its TTL (kept only for grace): a get would miss, so has says no.
    expect(await cache.has('short')).toBe(false);
    await cache.delete('a');
    expect(await cache.has('a')).toBe(false);
    expect(await cache.stats()).toMatchObject({ hits: 0, misses: 0 });
    await expect(cache.has('')).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'key' });
  });

  it('deleteMany removes entries in batches and counts those that existed', async () => {
    const cache = make<number>({ maxSize: 2_000 });
    const keys = Array.from({ length: 1_100 }, (_, i) => `k${i}`);
    await cache.setMany(keys.map((key) => ({ key, value: 1 })));
    expect(await cache.deleteMany([...keys, 'missing'])).toBe(keys.length);
    expect(await cache.stats()).toMatchObject({ size: 0 });
    expect(await cache.deleteMany([])).toBe(0);
    await expect(cache.deleteMany('k1' as never)).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'keys' });
    await expect(cache.deleteMany(['ok', ''])).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'keys[1]' });
  });
});
