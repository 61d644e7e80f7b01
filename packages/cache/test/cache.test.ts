import { InvalidArgumentError } from '@cyredis/core';
import { waitFor } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { Cluster } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import * as cacheExports from '../src/index.js';
import { type Codec } from '../src/index.js';
import { cacheSuite, gate } from './fixtures/caches.js';

describe.each(topologies)('SmartCache on %s', (topology) => {
  const suite = cacheSuite(topology);
  const { redis, other, make, keyOf } = suite;

  it('sets, gets, deletes and clears, with stats shared by every instance', async () => {
    const cache = make<{ n: number }>();
    const twin = make<{ n: number }>({}, other);
    await cache.set('a', { n: 1 });
    await twin.set('b', { n: 2 }, { ttlMs: 30_000 });
    expect(await twin.get('a')).toEqual({ n: 1 });
    expect(await cache.get('b')).toEqual({ n: 2 });
    expect(await cache.get('zz')).toBeUndefined();
    expect(await cache.delete('a')).toBe(true);
    expect(await cache.delete('a')).toBe(false);
    expect(await twin.get('a')).toBeUndefined();
    expect(await twin.stats()).toEqual({ hits: 2, misses: 2, sets: 2, evictions: 0, size: 1, maxSize: 100, hitRate: 0.5, l1Hits: 0, l1Size: 0 });
    await cache.clear();
    expect(await cache.get('b')).toBeUndefined();
    expect(await redis.exists(keyOf('e:b'), keyOf('log'))).toBe(0);
  });

  it('keeps statistics exact under concurrency from two clients', async () => {
    const a = make<number>({ maxSize: 1_000 });
    const b = make<number>({ maxSize: 1_000 }, other);
    await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).set(`k${i}`, i)));
    const found = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).get(`k${i}`)));
    expect(found.filter((v) => v !== undefined)).toHaveLength(100);
    // Each instance reports its plain reads within an event-loop turn, and before its own next call.
    await b.stats();
    expect(await a.stats()).toMatchObject({ hits: 100, misses: 100, sets: 100, evictions: 0, size: 100, hitRate: 0.5 });
  });

  it('does getMany and setMany in one round trip each', async () => {
    const cache = make<string>({ maxSize: 3 });
    await cache.set('warm', 'up');
    const spy = vi.spyOn(redis, 'sendCommand');
    await cache.setMany([
      { key: 'a', value: 'A' },
      { key: 'b', value: 'B', ttlMs: 5_000 },
      { key: 'c', value: 'C' },
    ]);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(await cache.getMany(['a', 'x', 'c', 'warm'])).toEqual(['A', undefined, 'C', undefined]);
    expect(spy).toHaveBeenCalledTimes(2);
    spy.mockRestore();
    expect(await redis.pttl(keyOf('e:b'))).toBeLessThanOrEqual(5_000);
    expect(await cache.stats()).toMatchObject({ sets: 4, evictions: 1, size: 3 });
    await cache.setMany([]);
    expect(await cache.getMany([])).toEqual([]);
  });

  /** What each command sent through `spy` was: the script operation for script calls, else the command name. */
  const sentOps = (spy: { mock: { calls: unknown[][] } }) =>
    spy.mock.calls.map(([command]) => {
      const { name, args } = command as { name: string; args: unknown[] };
      return name.startsWith('eval') ? String(args[2 + Number(args[1])]) : name;
    });

  it('sends the calls of one tick together, in the order they were made, each with its own reply', async () => {
    const cache = make<number>();
    await cache.set('a', 0);
    await cache.stats(); // the script is loaded and no lookup is waiting to be reported
    const spy = vi.spyOn(redis, 'sendCommand');
    const results = await Promise.all([
      cache.set('a', 1),
      cache.set('b', 2),
      cache.get('a'),
      cache.get('b'),
      cache.get('none'),
      cache.delete('a'),
      cache.get('a'),
      cache.getMany(['b', 'a']),
      cache.set('c', 3),
      cache.getOrSet('c', () => -1),
    ]);
    const ops = sentOps(spy);
    spy.mockRestore();
    expect(results).toEqual([undefined, undefined, 1, 2, undefined, true, undefined, [2, undefined], undefined, 3]);
    // Runs of gets and of sets share one command each (sets that share a TTL and have no tags are an MPUT, a
    // lone set a PUT, a lone get a GET); the delete keeps its place between them.
    expect(ops.filter((op) => op !== 'TOUCH')).toEqual(['MPUT', 'mget', 'DEL', 'mget', 'PUT', 'get']);
    expect(await cache.stats()).toMatchObject({ sets: 4, hits: 4, misses: 3, size: 2 });
    expect(await redis.zrange(keyOf('log'), '0', '-1')).toEqual([':e:b', ':e:c']);
  });

  it('reports a key looked up many times once, at its last lookup, and counts every lookup', async () => {
    const cache = make<number>({ maxSize: 10 });
    for (const key of ['a', 'b', 'c']) await cache.set(key, 1);
    await cache.stats(); // the script is loaded and no lookup is waiting to be reported
    const spy = vi.spyOn(redis, 'sendCommand');
    // Lookups a b a b a, then x (missing) twice, recorded at once (one MGET), so one TOUCH reports them all.
    expect(await cache.getMany(['a', 'b', 'a', 'b', 'a', 'x', 'x'])).toEqual([1, 1, 1, 1, 1, undefined, undefined]);
    const stats = await cache.stats(); // the lookups are reported first
    const touches = spy.mock.calls
      .map(([command]) => command as { name: string; args: unknown[] })
      .filter(({ name, args }) => name.startsWith('eval') && args[2 + Number(args[1])] === 'TOUCH');
    spy.mockRestore();
    expect(touches).toHaveLength(1);
    const { args } = touches[0]!;
    const keyCount = Number(args[1]);
    expect(args.slice(2 + 5, 2 + keyCount)).toEqual([keyOf('e:b'), keyOf('e:a'), keyOf('e:x')]);
    expect(args.slice(2 + keyCount + 2).map(String)).toEqual(['2', '5', '2']);
    expect(stats).toMatchObject({ sets: 3, hits: 5, misses: 2, size: 3 });
    // a was looked up last: c (written last, never read) is now the least recently used, then b.
    expect(await redis.zrange(keyOf('log'), '0', '-1')).toEqual([':e:c', ':e:b', ':e:a']);
  });

  it('sends a batch of writes as MPUT when they share a TTL and have no tags, else as MSET', async () => {
    const cache = make<string>({ maxSize: 10 });
    const forever = make<string>({ name: 'forever', maxSize: 10, defaultTtlMs: undefined });
    await cache.set('t', 'T', { tags: ['old'] });
    await forever.stats(); // its script is loaded
    const spy = vi.spyOn(redis, 'sendCommand');
    // Shared default TTL, no tags: MPUT. The entry that had a tag loses it, as a set without tags does.
    await cache.setMany([{ key: 'a', value: 'A' }, { key: 't', value: 'T2' }, { key: 'b', value: 'B' }]);
    // No TTL at all (a cache without defaultTtlMs) is shared too: MPUT. A second TTL, or a tag, makes the
    // batch an MSET.
    await forever.setMany([{ key: 'n1', value: 'N' }, { key: 'n2', value: 'N' }]);
    await cache.setMany([{ key: 'c', value: 'C' }, { key: 'd', value: 'D', ttlMs: 5_000 }]);
    await cache.setMany([{ key: 'e', value: 'E' }, { key: 'f', value: 'F', tags: ['x'] }]);
    // (The registry's record of a cache's use is a plain command of its own.)
    expect(sentOps(spy).filter((op) => op === 'MPUT' || op === 'MSET' || op === 'PUT')).toEqual(['MPUT', 'MPUT', 'MSET', 'MSET']);
    spy.mockRestore();
    expect(await cache.getMany(['a', 't', 'b', 'c', 'd', 'e', 'f'])).toEqual(['A', 'T2', 'B', 'C', 'D', 'E', 'F']);
    expect(await forever.getMany(['n1', 'n2'])).toEqual(['N', 'N']);
    expect(await redis.pttl(keyOf('e:a'))).toBeGreaterThan(50_000);
    expect(await redis.pttl(keyOf('e:n1', 'forever'))).toBe(-1);
    expect(await redis.pttl(keyOf('e:n2', 'forever'))).toBe(-1);
    expect(await redis.pttl(keyOf('e:d'))).toBeLessThanOrEqual(5_000);
    expect((await cache.inspect('t'))?.tags).toEqual([]);
    expect(await cache.deleteByTag('old')).toBe(0);
    expect((await cache.inspect('f'))?.tags).toEqual(['x']);
    expect(await cache.stats()).toMatchObject({ sets: 8, evictions: 0, size: 7 });
  });

  it('settles each call of a batch with its own command\'s error, and keeps the others', async () => {
    const onError = vi.fn();
    const cache = make<number>({ onError });
    await cache.set('k', 1);
    // An access log of the wrong type makes every script call fail; plain reads still work.
    await redis.set(keyOf('log'), 'not a sorted set');
    const [set1, set2, got, many, deleted, bad] = await Promise.allSettled([
      cache.set('x', 1),
      cache.setMany([{ key: 'y', value: 2 }]),
      cache.get('k'),
      cache.getMany(['k', 'zz']),
      cache.delete('zz'),
      cache.set('', 3),
    ]);
    expect(set1).toMatchObject({ status: 'rejected', reason: { name: 'ScriptError', message: expect.stringMatching(/WRONGTYPE/) } });
    expect(set2).toMatchObject({ status: 'rejected', reason: { name: 'ScriptError' } });
    expect(got).toEqual({ status: 'fulfilled', value: 1 });
    expect(deleted).toMatchObject({ status: 'rejected', reason: { name: 'ScriptError' } });
    expect(many).toEqual({ status: 'fulfilled', value: [1, undefined] });
    expect(bad).toMatchObject({ status: 'rejected', reason: { name: 'InvalidArgumentError', argument: 'key' } });
    await redis.del(keyOf('log'));
    await cache.set('x', 4);
    expect(await cache.get('x')).toBe(4);
  });

  it('a batch of writes beyond maxSize keeps the latest ones, and L1 keeps none of the evicted', async () => {
    const cache = make<number>({ maxSize: 3, l1: { maxEntries: 10 } });
    await waitFor(async () => {
      await cache.set('warm', 0);
      return (await cache.stats()).l1Size === 1;
    });
    const before = await cache.stats();
    await Promise.all(['a', 'b', 'k', 'c', 'k', 'd'].map((key, i) => cache.set(key, i)));
    // One MSET: consecutive clock values in call order, the repeated key ends with its later write.
    expect(await redis.zrange(keyOf('log'), '0', '-1')).toEqual([':e:c', ':e:k', ':e:d']);
    expect(await cache.stats()).toMatchObject({ sets: before.sets + 6, evictions: before.evictions + 3, size: 3 });
    await waitFor(async () => (await cache.getMany(['warm', 'a', 'b', 'k', 'c', 'd'])).join() === ',,,4,3,5', {
      message: 'L1 kept an evicted entry',
    });
  });

  it('a lone set that evicts drops the evicted entry from its own L1 (its bus message is read, not skipped)', async () => {
    const cache = make<number>({ maxSize: 2, l1: { maxEntries: 10 } });
    await waitFor(async () => {
      await cache.set('a', 1);
      return (await cache.stats()).l1Size === 1;
    });
    await cache.set('b', 2);
    expect(await cache.getMany(['a', 'b'])).toEqual([1, 2]);
    await cache.set('c', 3);
    expect(await redis.zrange(keyOf('log'), '0', '-1')).toEqual([':e:b', ':e:c']);
    await waitFor(async () => (await cache.getMany(['a', 'b', 'c'])).join() === ',2,3', { message: 'L1 kept an evicted entry' });
  });

  it('never returns an entry past its TTL, and jitter only shortens TTLs', async () => {
    const cache = make<number>({ ttlJitter: 0.5 });
    await cache.set('short', 1, { ttlMs: 150 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => cache.set(`j${i}`, i, { ttlMs: 10_000 })));
    const ttls = await Promise.all(Array.from({ length: 20 }, (_, i) => redis.pttl(keyOf(`e:j${i}`))));
    for (const ttl of ttls) expect(ttl).toBeLessThanOrEqual(10_000);
    for (const ttl of ttls) expect(ttl).toBeGreaterThan(4_000);
    expect(new Set(ttls.map((t) => Math.round(t / 100))).size).toBeGreaterThan(1);
    await waitFor(async () => (await cache.get('short')) === undefined, { message: 'entry outlived its TTL' });
    // The lookup that missed also drops the dead entry from the access log (reported within a loop turn).
    await waitFor(async () => (await redis.zscore(keyOf('log'), ':e:short')) === null);
  });

  it('re-exports every error class it throws, so instanceof works without @cyredis/core installed', async () => {
    expect(cacheExports.InvalidArgumentError).toBe(InvalidArgumentError);
    for (const name of ['CyRedisError', 'InvalidArgumentError', 'RedisUnavailableError', 'RedisTimeoutError', 'ScriptError', 'LoaderTimeoutError'] as const) {
      expect(typeof cacheExports[name], name).toBe('function');
    }
    await expect(make().set('', 1)).rejects.toBeInstanceOf(cacheExports.CyRedisError);
  });

  it('l1: false means no L1 tier', async () => {
    const cache = make<number>({ l1: false });
    await cache.set('k', 1);
    expect(await cache.get('k')).toBe(1);
    expect(await cache.get('k')).toBe(1);
    expect(await cache.stats()).toMatchObject({ hits: 2, l1Hits: 0, l1Size: 0 });
  });

  it('without defaultTtlMs, entries have no TTL and maxSize bounds them', async () => {
    const cache = make<number>({ defaultTtlMs: undefined, maxSize: 3 });
    const withL1 = make<number>({ defaultTtlMs: undefined, maxSize: 3, l1: { maxEntries: 10 }, graceMs: 1_000 });
    await cache.setMany(['a', 'b'].map((key, i) => ({ key, value: i })));
    await cache.set('c', 2);
    expect(await cache.getOrSet('d', () => 3)).toBe(3);
    for (const key of ['b', 'c', 'd']) expect(await redis.pttl(keyOf(`e:${key}`)), key).toBe(-1);
    expect(await redis.exists(keyOf('e:a'))).toBe(0);
    expect(await cache.stats()).toMatchObject({ size: 3, evictions: 1 });
    // A TTL given per call still applies; the other cache reads the entries without a TTL as always fresh.
    await cache.set('t', 4, { ttlMs: 30_000 });
    expect(await redis.pttl(keyOf('e:t'))).toBeGreaterThan(25_000);
    await waitFor(async () => (await withL1.get('d')) === 3 && (await withL1.stats()).l1Size === 1);
    expect(await withL1.getOrSet('d', () => -1)).toBe(3);
  });

  it('refuses undefined as a value (a loader returning it rejects, frees the lease, stores nothing); null is cached', async () => {
    const cache = make<number | null | undefined>({ leaseMs: 60_000 });
    const notFound = vi.fn(() => undefined);
    await expect(cache.getOrSet('u', notFound)).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'loader' });
    await expect(cache.getOrSet('u', () => Promise.resolve(undefined))).rejects.toMatchObject({ argument: 'loader' });
    await waitFor(async () => (await redis.exists(keyOf('l:u'))) === 0);
    expect(await redis.exists(keyOf('e:u'))).toBe(0);
    await expect(cache.set('u', undefined)).rejects.toMatchObject({ argument: 'value' });
    const cached = vi.fn(() => null);
    expect(await cache.getOrSet('n', cached)).toBeNull();
    expect(await cache.getOrSet('n', cached)).toBeNull();
    expect(cached).toHaveBeenCalledTimes(1);
    expect(await cache.get('n')).toBeNull();
  });

  it('uses a pluggable codec', async () => {
    const upper: Codec<string> = { encode: (v) => v.toUpperCase(), decode: (t) => `<${t}>` };
    const cache = make<string>({ codec: upper });
    await cache.set('a', 'hello');
    expect(await redis.get(keyOf('e:a'))).toBe('HELLO');
    expect(await cache.get('a')).toBe('<HELLO>');
  });

  it('getOrSet runs the loader once for 50 concurrent callers on two clients', async () => {
    const a = make<number>();
    const b = make<number>({}, other);
    const loaded = gate<number>();
    const loader = vi.fn(() => loaded.promise);
    const calls = Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).getOrSet('hot', loader));
    await waitFor(() => loader.mock.calls.length === 1);
    loaded.open(42);
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 50 }, () => 42));
    expect(loader).toHaveBeenCalledTimes(1);
    expect(await a.getOrSet('hot', loader)).toBe(42);
    expect(loader).toHaveBeenCalledTimes(1);
  });

  it('a delete during a load wins: the late write is dropped', async () => {
    const cache = make<string>();
    const loaded = gate<string>();
    const pending = cache.getOrSet('k', () => loaded.promise);
    await waitFor(async () => (await redis.exists(keyOf('l:k'))) === 1);
    expect(await cache.delete('k')).toBe(false);
    loaded.open('late');
    expect(await pending).toBe('late');
    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.stats()).toMatchObject({ sets: 0 });
  });

  /**
   * Instance a loading "k" under a 60 s lease (until `loaded` opens), and a caller of instance b (on the
   * other client) waiting on that load: b asked twice, before and after subscribing to the bus.
   */
  const waitingOnALoad = async () => {
    const a = make<string>({ leaseMs: 60_000 });
    const b = make<string>({ leaseMs: 60_000 }, other);
    const loaded = gate<string>();
    const first = a.getOrSet('k', () => loaded.promise);
    await waitFor(async () => (await redis.exists(keyOf('l:k'))) === 1);
    const second = vi.fn(() => 'from b');
    const spy = vi.spyOn(other, 'sendCommand');
    const waiting = b.getOrSet('k', second);
    await waitFor(() => sentOps(spy).filter((op) => op === 'LEASE').length === 2);
    spy.mockRestore();
    return { b, loaded, first, second, waiting };
  };

  it('a lost lease key wakes the callers waiting on it at once, instead of after leaseMs', async () => {
    const { loaded, first, second, waiting } = await waitingOnALoad();
    // The lease is lost (evicted, flushed): a's write is refused, and b must not sleep out the 60 s lease.
    await redis.del(keyOf('l:k'));
    loaded.open('from a');
    expect(await first).toBe('from a');
    const started = performance.now();
    expect(await waiting).toBe('from b');
    expect(second).toHaveBeenCalledTimes(1);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('a caller waiting on a load is woken by a set of the same instance, not only by other instances', async () => {
    const { b, loaded, first, second, waiting } = await waitingOnALoad();
    // b's own write comes back on the bus while b waits: it must wake b's caller, well before a's lease ends.
    const started = performance.now();
    await b.set('k', 'set by b');
    expect(await waiting).toBe('set by b');
    expect(second).not.toHaveBeenCalled();
    expect(performance.now() - started).toBeLessThan(10_000);
    loaded.open('from a');
    expect(await first).toBe('from a');
  });

  it('a failing loader rejects the callers and frees the lease at once', async () => {
    const cache = make<string>({ leaseMs: 60_000 });
    await expect(cache.getOrSet('k', () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    await waitFor(async () => (await redis.exists(keyOf('l:k'))) === 0);
    expect(await cache.getOrSet('k', () => 'ok')).toBe('ok');
  });

  it('serves the stale value within graceMs when the loader fails', async () => {
    const cache = make<string>({ graceMs: 30_000 });
    await cache.set('k', 'old', { ttlMs: 100 });
    await waitFor(async () => (await cache.get('k')) === undefined);
    expect(await cache.getOrSet('k', () => Promise.reject(new Error('db down')))).toBe('old');
    expect(await cache.getOrSet('k', () => 'new')).toBe('new');
    expect(await cache.get('k')).toBe('new');
  });

  it('refreshes in the background before expiry (staleWhileRevalidateMs)', async () => {
    const cache = make<string>({ staleWhileRevalidateMs: 50_000 });
    await cache.set('k', 'old', { ttlMs: 30_000 });
    const loader = vi.fn(() => 'new');
    expect(await cache.getOrSet('k', loader)).toBe('old');
    await waitFor(async () => (await cache.get('k')) === 'new');
    expect(loader).toHaveBeenCalledTimes(1);
    expect(await redis.pttl(keyOf('e:k'))).toBeGreaterThan(50_000);
  });

  it('answers from L1, and a set or delete in one instance drops the copy in another', async () => {
    const a = make<string>({ l1: { maxEntries: 10 } });
    const b = make<string>({ l1: { maxEntries: 10 } }, other);
    await a.set('k', 'v1');
    await waitFor(async () => {
      await b.get('k');
      return (await b.stats()).l1Size === 1;
    });
    expect(await b.get('k')).toBe('v1');
    expect((await b.stats()).l1Hits).toBeGreaterThan(0);
    await a.set('k', 'v2');
    await waitFor(async () => (await b.get('k')) === 'v2', { message: 'L1 kept the old value' });
    await a.delete('k');
    await waitFor(async () => (await b.get('k')) === undefined, { message: 'L1 kept a deleted value' });
    await a.set('k', 'v3');
    await b.get('k');
    await a.clear();
    await waitFor(async () => (await b.get('k')) === undefined, { message: 'L1 kept a cleared value' });
  });

  it('keeps L1 coherent for clients with a keyPrefix', async () => {
    const options = { keyPrefix: `${suite.prefix}kp:` };
    const [c1, c2] = [connect(topology, options), connect(topology, options)];
    const a = make<string>({ l1: { maxEntries: 10 } }, c1);
    const b = make<string>({ l1: { maxEntries: 10 } }, c2);
    try {
      await a.set('k', 'v1');
      await waitFor(async () => (await b.get('k')) === 'v1' && (await b.stats()).l1Size === 1);
      await a.set('k', 'v2');
      await waitFor(async () => (await b.get('k')) === 'v2', { message: 'L1 kept v1' });
      expect(await redis.exists(`${suite.prefix}kp:${keyOf('e:k')}`)).toBe(1);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([c1.quit(), c2.quit()]);
    }
  });

  it('never keeps an L1 entry past the Redis TTL', async () => {
    const cache = make<string>({ l1: { maxEntries: 10 } });
    await waitFor(async () => {
      await cache.set('k', 'v', { ttlMs: 60_000 });
      return (await cache.stats()).l1Size === 1;
    });
    await cache.set('k', 'v', { ttlMs: 150 });
    expect(await cache.get('k')).toBe('v');
    await waitFor(async () => (await cache.get('k')) === undefined);
    expect(await redis.exists(keyOf('e:k'))).toBe(0);
  });

  it('survives SCRIPT FLUSH in the middle of a run', async () => {
    const cache = make<number>({ maxSize: 1_000 });
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    let stop = false;
    const flusher = (async () => {
      let flushes = 0;
      while (!stop) {
        await Promise.all(nodes.map((n) => n.script('FLUSH')));
        flushes++;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return flushes;
    })();
    const ops = await Promise.allSettled(
      Array.from({ length: 400 }, (_, i) => (i % 2 ? cache.set(`k${i % 50}`, i) : cache.getOrSet(`g${i % 20}`, () => i))),
    );
    stop = true;
    expect(await flusher).toBeGreaterThan(0);
    expect(ops.filter((r) => r.status === 'rejected')).toEqual([]);
    // 25 keys set (odd i) and 10 loaded (even i).
    expect((await cache.stats()).size).toBe(35);
  });

  it('keeps the access-log index under 130 bytes per entry (MEMORY USAGE)', async () => {
    const cache = make<string>({ name: 'mem', maxSize: 10_000 });
    const n = 2_000;
    for (let i = 0; i < n; i += 500) {
      await cache.setMany(Array.from({ length: 500 }, (_, j) => ({ key: `user:${i + j}`, value: 'x'.repeat(100) })));
    }
    const index = Number(await redis.call('MEMORY', 'USAGE', keyOf('log', 'mem'), 'SAMPLES', '0'));
    const stats = Number(await redis.call('MEMORY', 'USAGE', keyOf('stats', 'mem'), 'SAMPLES', '0'));
    expect((index + stats) / n).toBeLessThanOrEqual(130);
  });
});
