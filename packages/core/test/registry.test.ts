import { freePort, randomPrefix, waitFor } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, listRegistered, listRegistry, NameRecorder, RedisUnavailableError, registryKey } from '../src/index.js';

describe.each(topologies)('NameRecorder and listRegistry on %s', (topology) => {
  const redis = suiteClient(topology);

  it('records each name once per interval, lists newest first and pages', async () => {
    const key = registryKey(randomPrefix(), 'thing');
    const recorder = new NameRecorder(redis, key, { refreshMs: 60_000 });
    recorder.record('a');
    await waitFor(async () => (await redis.zcard(key)) === 1, { timeoutMs: 10_000 });
    recorder.record('b');
    await waitFor(async () => (await redis.zcard(key)) === 2, { timeoutMs: 10_000 });
    const firstB = Number(await redis.zscore(key, 'b'));
    // Within the interval a second use writes nothing: the score stays.
    recorder.record('b');
    recorder.record('c');
    await waitFor(async () => (await redis.zcard(key)) === 3, { timeoutMs: 10_000 });
    expect(Number(await redis.zscore(key, 'b'))).toBe(firstB);
    const all = await listRegistry(redis, key);
    expect(all.map((e) => e.name).sort()).toEqual(['a', 'b', 'c']);
    expect(all[0]!.lastSeenMs).toBeGreaterThanOrEqual(all[2]!.lastSeenMs);
    expect(all[0]!.lastSeenMs).toBeLessThanOrEqual(Date.now() + 1);
    const page = await listRegistry(redis, key, { limit: 2, offset: 1 });
    expect(page).toEqual(all.slice(1, 3));
    expect(await redis.pttl(key)).toBeGreaterThan(0);
    await redis.del(key);
  });

  it('keeps at most maxEntries, dropping the least recently seen, and hides entries past ttlMs', async () => {
    const key = registryKey(randomPrefix(), 'thing');
    const recorder = new NameRecorder(redis, key, { maxEntries: 2, refreshMs: 0 });
    for (const name of ['a', 'b', 'c']) {
      recorder.record(name);
      await waitFor(async () => (await redis.zscore(key, name)) !== null, { timeoutMs: 10_000 });
    }
    expect((await redis.zrange(key, '0', '-1')).sort()).toEqual(['b', 'c']);
    // An entry last seen longer ago than the ttl is not listed.
    await redis.zadd(key, Date.now() - 10_000, 'old');
    expect((await listRegistry(redis, key, {}, 5000)).map((e) => e.name)).not.toContain('old');
    expect((await listRegistry(redis, key, {}, 60_000)).map((e) => e.name)).toContain('old');
    await redis.del(key);
  });

  it('listRegistered reads the registry of a kind under a prefix, and rejects with a typed error when Redis does not answer', async () => {
    const prefix = randomPrefix();
    const recorder = new NameRecorder(redis, registryKey(prefix, 'thing'));
    recorder.record('x');
    await waitFor(async () => (await listRegistered(redis, 'thing', { prefix })).length === 1, { timeoutMs: 10_000 });
    expect((await listRegistered(redis, 'thing', { prefix, limit: 1 }))[0]!.name).toBe('x');
    expect(await listRegistered(redis, 'other', { prefix })).toEqual([]);
    await redis.del(recorder.key);
    // Nothing listens on this port: the call waits in ioredis's offline queue until the deadline.
    const dead = new Redis({ port: await freePort(), lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: () => 50 });
    dead.on('error', () => undefined);
    const started = performance.now();
    await expect(listRegistered(dead, 'thing', { timeoutMs: 200 })).rejects.toThrow(RedisUnavailableError);
    expect(performance.now() - started).toBeLessThan(10_000);
    dead.disconnect();
  });

  it('refuses bad input', async () => {
    expect(() => registryKey('a{b', 'thing')).toThrow(InvalidArgumentError);
    expect(() => registryKey('', 'thing')).toThrow(InvalidArgumentError);
    expect(() => new NameRecorder(redis, 'k', { maxEntries: 0 })).toThrow(InvalidArgumentError);
    await expect(listRegistry(redis, 'k', { limit: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(listRegistry(redis, 'k', { limit: 1001 })).rejects.toThrow(InvalidArgumentError);
    await expect(listRegistry(redis, 'k', { offset: -1 })).rejects.toThrow(InvalidArgumentError);
    await expect(listRegistry(redis, 'k', { size: 1 } as never)).rejects.toThrow(/not an option/);
    await expect(listRegistered(redis, 'thing', { timeoutMs: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(listRegistered(redis, 'thing', { prefx: 'p' } as never)).rejects.toThrow(/did you mean "prefix"/);
    await expect(listRegistered({} as never, 'thing')).rejects.toThrow(InvalidArgumentError);
  });
});
