import { InvalidArgumentError } from '@cyredis/core';
import { waitFor } from '@cyredis/testing';
import { topologies } from '@cyredis/testing/context';
import { describe, expect, it } from 'vitest';
import { LIMITS, SmartCache, type SmartCacheOptions } from '../src/index.js';
import { cacheSuite } from './fixtures/caches.js';

// Input checks: options, keys, values and clients are refused with InvalidArgumentError naming the argument,
// before any round trip, and nothing is written.
describe.each(topologies)('SmartCache input checks on %s', (topology) => {
  const suite = cacheSuite(topology);
  const { redis, make, keyOf } = suite;

  it('refuses bad input with InvalidArgumentError and writes nothing', async () => {
    const base = { name: 'c', prefix: suite.prefix, maxSize: 10, defaultTtlMs: 1_000 };
    const badOptions: [string, Partial<SmartCacheOptions<unknown>>][] = [
      ['options.maxSize', { maxSize: 0 }],
      ['options.maxSize', { maxSize: -3 }],
      ['options.maxSize', { maxSize: 1.5 }],
      ['options.defaultTtlMs', { defaultTtlMs: 0 }],
      ['options.defaultTtlMs', { defaultTtlMs: -1 }],
      ['options.defaultTtlMs', { defaultTtlMs: Number.NaN }],
      ['options.defaultTtlMs', { defaultTtlMs: Number.POSITIVE_INFINITY }],
      ['options.defaultTtlMs', { defaultTtlMs: 2 ** 52, graceMs: 1 }],
      ['options.name', { name: '' }],
      ['options.ttlJitter', { ttlJitter: 1 }],
      ['options.graceMs', { graceMs: -1 }],
      ['options.l1.maxEntries', { l1: { maxEntries: 0 } }],
      ['options.timeoutMs', { timeoutMs: 0 }],
      // Past setTimeout's ceiling the deadline would fire at once and fail every call.
      ['options.timeoutMs', { timeoutMs: 2 ** 31 }],
      // Likewise for the timers of callers waiting on a lease: they would poll Redis in a tight loop.
      ['options.leaseMs', { leaseMs: 2 ** 31 }],
    ];
    for (const [argument, patch] of badOptions) {
      expect(() => new SmartCache(redis, { ...base, ...patch }), argument).toThrow(expect.objectContaining({ argument }));
    }
    const cache = make();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const calls: [string, () => Promise<unknown>][] = [
      ['key', () => cache.get('')],
      ['key', () => cache.set('', 1)],
      ['key', () => cache.delete('')],
      ['key', () => cache.getOrSet('', () => 1)],
      ['keys[1]', () => cache.getMany(['a', ''])],
      ['entries[0].key', () => cache.setMany([{ key: '', value: 1 }])],
      ['options.ttlMs', () => cache.set('a', 1, { ttlMs: 0 })],
      ['options.ttlMs', () => cache.set('a', 1, { ttlMs: -10 })],
      ['options.ttlMs', () => cache.set('a', 1, { ttlMs: Number.NaN })],
      ['options.ttlMs', () => cache.set('a', 1, { ttlMs: Number.POSITIVE_INFINITY })],
      ['options.ttlMs', () => cache.set('a', 1, { ttlMs: 2 ** 53 })],
      ['entries[1].ttlMs', () => cache.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 1, ttlMs: 0 }])],
      ['options.ttlMs', () => cache.getOrSet('a', () => 1, { ttlMs: 0 })],
      ['value', () => cache.set('a', undefined)],
      ['value', () => cache.set('a', circular)],
      ['value', () => cache.set('a', { f: () => 1 })],
      ['value', () => cache.setMany([{ key: 'a', value: 1 }, { key: 'b', value: Symbol('x') }])],
    ];
    for (const [argument, call] of calls) {
      await expect(call(), argument).rejects.toThrow(InvalidArgumentError);
      await expect(call(), argument).rejects.toMatchObject({ argument });
    }
    // A value the codec refuses inside getOrSet: the caller gets the error and the lease is released.
    await expect(cache.getOrSet('a', () => Symbol('no') as unknown)).rejects.toThrow(InvalidArgumentError);
    await waitFor(async () => (await redis.exists(keyOf('l:a'))) === 0);
    expect(await cache.stats()).toMatchObject({ sets: 0, size: 0 });
  });

  it('refuses a client that is not ioredis, missing options and unknown option keys (naming the nearest)', async () => {
    const base = { name: 'c', prefix: suite.prefix, maxSize: 10 };
    // What a node-redis v4 client looks like from here: no ioredis evalsha/defineCommand/duplicate.
    const nodeRedisLike = { isOpen: true, sendCommand: () => undefined, evalSha: () => undefined, connect: () => undefined };
    for (const client of [null, undefined, 'redis://localhost:6379', nodeRedisLike, {}]) {
      expect(() => new SmartCache(client as never, base)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', argument: 'redis' }));
    }
    expect(() => new SmartCache(redis, undefined as never)).toThrow(expect.objectContaining({ argument: 'options' }));
    expect(() => new (SmartCache as unknown as new (r: unknown) => unknown)(redis)).toThrow(expect.objectContaining({ argument: 'options' }));
    const misspelt: [string, string, object][] = [
      ['options.defaultTTL', 'defaultTtlMs', { ...base, defaultTTL: 5 }],
      ['options.onRedisError', 'onError', { ...base, onRedisError: () => undefined }],
      ['options.l1.ttl', 'ttlMs', { ...base, l1: { maxEntries: 5, ttl: 5 } }],
    ];
    for (const [argument, near, options] of misspelt) {
      expect(() => new SmartCache(redis, options as never), argument).toThrow(expect.objectContaining({ argument, message: expect.stringContaining(near) }));
    }
    const cache = make<number>();
    const calls: [string, () => Promise<unknown>][] = [
      ['options.ttl', () => cache.set('a', 1, { ttl: 5 } as never)],
      ['options.ttlMS', () => cache.getOrSet('a', () => 1, { ttlMS: 5 } as never)],
      ['entries[0].ttl', () => cache.setMany([{ key: 'a', value: 1, ttl: 5 } as never])],
      ['keys', () => cache.getMany('a' as never)],
      ['entries', () => cache.setMany({ key: 'a', value: 1 } as never)],
    ];
    for (const [argument, call] of calls) await expect(call(), argument).rejects.toMatchObject({ name: 'InvalidArgumentError', argument });
    expect(await redis.exists(keyOf('e:a'))).toBe(0);
  });

  it('caps the encoded value at maxValueBytes (default 1 MiB), refusing larger ones before any round trip', async () => {
    const cache = make<string>({ leaseMs: 60_000 });
    // The default codec adds two quotes to a string.
    await cache.set('fits', 'x'.repeat(LIMITS.maxValueBytes - 2));
    expect(await redis.strlen(keyOf('e:fits'))).toBe(LIMITS.maxValueBytes);
    const tooBig: [string, () => Promise<unknown>][] = [
      ['set', () => cache.set('big', 'x'.repeat(LIMITS.maxValueBytes - 1))],
      ['set (UTF-8 bytes, not characters)', () => cache.set('big', 'é'.repeat(600_000))],
      ['setMany', () => cache.setMany([{ key: 'ok', value: 'small' }, { key: 'big', value: 'x'.repeat(LIMITS.maxValueBytes) }])],
      ['getOrSet', () => cache.getOrSet('big', () => 'x'.repeat(LIMITS.maxValueBytes))],
    ];
    for (const [what, call] of tooBig) {
      await expect(call(), what).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'value', message: expect.stringContaining('maxValueBytes') });
    }
    await waitFor(async () => (await redis.exists(keyOf('l:big'))) === 0);
    expect(await redis.exists(keyOf('e:big'), keyOf('e:ok'))).toBe(0);
    const small = make<string>({ maxValueBytes: 10 });
    await small.set('a', '12345678');
    await expect(small.set('a', '123456789')).rejects.toMatchObject({ argument: 'value' });
    for (const maxValueBytes of [0, 1.5, LIMITS.valueBytesCeiling + 1]) {
      expect(() => make({ maxValueBytes })).toThrow(expect.objectContaining({ argument: 'options.maxValueBytes' }));
    }
  });

  it('refuses keys and names that are not well-formed Unicode, so two lone surrogates never share an entry', async () => {
    const cache = make<string>({ l1: { maxEntries: 10 } });
    const [a, b] = ['user\uD800', 'user\uDBFF'];
    const calls: [string, () => Promise<unknown>][] = [
      ['key', () => cache.set(a, 'A')],
      ['key', () => cache.get(b)],
      ['key', () => cache.getOrSet(a, () => 'A')],
      ['key', () => cache.delete(b)],
      ['keys[1]', () => cache.getMany(['ok', a])],
      ['entries[0].key', () => cache.setMany([{ key: b, value: 'B' }])],
    ];
    for (const [argument, call] of calls) await expect(call(), argument).rejects.toMatchObject({ name: 'InvalidArgumentError', argument });
    expect(() => make({ name: a })).toThrow(expect.objectContaining({ argument: 'options.name' }));
    expect(() => make({ prefix: 'é'.repeat(LIMITS.maxPrefixBytes / 2 + 1) })).toThrow(expect.objectContaining({ argument: 'options.prefix' }));
    expect(await redis.exists(keyOf('log'))).toBe(0);
    // Well-formed look-alikes ('😀'.slice(0, 1) is the lone half of one) stay apart.
    await cache.set('user😀', 'A');
    await cache.set('user😁', 'B');
    expect(await cache.getMany(['user😀', 'user😁'])).toEqual(['A', 'B']);
    // Keys and names are capped in UTF-8 bytes.
    await expect(cache.get('é'.repeat(LIMITS.maxKeyBytes / 2 + 1))).rejects.toMatchObject({ argument: 'key', message: expect.stringContaining('bytes') });
    expect(await cache.get('x'.repeat(LIMITS.maxKeyBytes))).toBeUndefined();
  });
});
