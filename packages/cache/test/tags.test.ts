import { waitFor } from '@cyredis/testing';
import { topologies } from '@cyredis/testing/context';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '../src/index.js';
import { cacheSuite } from './fixtures/caches.js';

describe.each(topologies)('SmartCache tags on %s', (topology) => {
  const { redis, other, make, keyOf } = cacheSuite(topology);
  /** The tag index as `tag → sorted cache keys`, read raw. */
  const index = async (): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const pair of await redis.zrange(keyOf('tags'), '0', '-1')) {
      const [tag, member] = pair.split('\0') as [string, string];
      (out[tag] ??= []).push(member.slice(':e:'.length));
    }
    for (const keys of Object.values(out)) keys.sort();
    return out;
  };

  it('deleteByTag removes exactly the entries carrying the tag, with all their tags, and counts them', async () => {
    const cache = make<number>();
    await cache.set('u:1', 1, { ttlMs: 30_000, tags: ['tenant:7', 'users'] });
    await cache.setMany([
      { key: 'u:2', value: 2, tags: ['tenant:7'] },
      { key: 'u:3', value: 3, tags: ['tenant:8', 'users'] },
      { key: 'plain', value: 4 },
    ]);
    expect(await cache.getOrSet('u:4', () => 5, { tags: ['tenant:7'] })).toBe(5);
    expect(await index()).toEqual({ 'tenant:7': ['u:1', 'u:2', 'u:4'], 'tenant:8': ['u:3'], users: ['u:1', 'u:3'] });
    expect(await cache.deleteByTag('tenant:7')).toBe(3);
    expect(await cache.getMany(['u:1', 'u:2', 'u:3', 'u:4', 'plain'])).toEqual([undefined, undefined, 3, undefined, 4]);
    expect(await index()).toEqual({ 'tenant:8': ['u:3'], users: ['u:3'] });
    expect(await redis.hgetall(keyOf('tagged'))).toEqual({ ':e:u:3': 'tenant:8\0users' });
    expect(await cache.deleteByTag('tenant:7')).toBe(0);
    expect(await cache.stats()).toMatchObject({ size: 2 });
  });

  it('a write replaces the entry\'s tags; delete, deleteMany, eviction and clear drop them', async () => {
    const cache = make<number>({ maxSize: 3 });
    await cache.set('a', 1, { tags: ['x', 'y'] });
    await cache.set('a', 2, { tags: ['y', 'z'] });
    expect(await index()).toEqual({ y: ['a'], z: ['a'] });
    expect(await cache.deleteByTag('x')).toBe(0);
    await cache.set('a', 3);
    expect(await index()).toEqual({});
    await cache.setMany(['b', 'c', 'd'].map((key) => ({ key, value: 0, tags: ['t'] })));
    // A full cache: a evicted first (least recently used), then the next write evicts b.
    expect(await index()).toEqual({ t: ['b', 'c', 'd'] });
    await cache.set('e', 0, { tags: ['t'] });
    expect(await index()).toEqual({ t: ['c', 'd', 'e'] });
    expect(await cache.delete('c')).toBe(true);
    expect(await cache.deleteMany(['d', 'zz'])).toBe(1);
    expect(await index()).toEqual({ t: ['e'] });
    await cache.clear();
    expect(await index()).toEqual({});
    expect(await redis.exists(keyOf('tags'), keyOf('tagged'))).toBe(0);
  });

  it('drops the tags of an entry whose value expired when a lookup misses on it', async () => {
    const cache = make<number>();
    await cache.set('short', 1, { ttlMs: 30, tags: ['t'] });
    await waitFor(async () => (await redis.exists(keyOf('e:short'))) === 0);
    expect(await cache.get('short')).toBeUndefined();
    // Plain reads report their misses in the next TOUCH, at most 5 ms later.
    await waitFor(async () => Object.keys(await index()).length === 0);
    expect(await redis.hlen(keyOf('tagged'))).toBe(0);
  });

  it('removes more entries than one batch holds, and every process drops them from its L1', async () => {
    const cache = make<number>({ maxSize: 2_000, l1: { maxEntries: 2_000 } });
    const peer = make<number>({ maxSize: 2_000, l1: { maxEntries: 2_000 } }, other);
    const keys = Array.from({ length: 1_200 }, (_, i) => `k${i}`);
    await cache.setMany(keys.map((key) => ({ key, value: 1, tags: ['bulk'] })));
    await cache.set('keep', 2, { tags: ['other'] });
    // Both L1 tiers hold copies (each once its bus subscription is up: L1 fills only while it listens).
    await waitFor(async () => {
      await Promise.all([cache.getMany([...keys, 'keep']), peer.getMany([...keys, 'keep'])]);
      return (await cache.stats()).l1Size === keys.length + 1 && (await peer.stats()).l1Size === keys.length + 1;
    });
    expect(await cache.deleteByTag('bulk')).toBe(keys.length);
    expect(await cache.get('k0')).toBeUndefined();
    expect((await cache.stats()).l1Size).toBe(1);
    // At most `keep` remains: a peer whose bus subscription was lost and renewed meanwhile (seen once on a loaded
    // cluster) drops its whole L1, which also drops every tagged copy.
    await waitFor(async () => (await peer.stats()).l1Size <= 1);
    expect(await peer.get('k1199')).toBeUndefined();
    expect(await peer.get('keep')).toBe(2);
    expect(await index()).toEqual({ other: ['keep'] });
  });

  it('refuses bad tags with InvalidArgumentError naming them, writing nothing', async () => {
    const cache = make<number>();
    const calls: [string, () => Promise<unknown>][] = [
      ['options.tags', () => cache.set('a', 1, { tags: 'x' as never })],
      ['options.tags[1]', () => cache.set('a', 1, { tags: ['ok', ''] })],
      ['options.tags[0]', () => cache.set('a', 1, { tags: ['x'.repeat(LIMITS.maxTagBytes + 1)] })],
      ['options.tags[0]', () => cache.set('a', 1, { tags: ['a\0b'] })],
      ['options.tags[0]', () => cache.set('a', 1, { tags: ['lone\uD800'] })],
      ['options.tags[0]', () => cache.set('a', 1, { tags: [7 as never] })],
      ['options.tags', () => cache.set('a', 1, { tags: Array.from({ length: LIMITS.maxTags + 1 }, (_, i) => `t${i}`) })],
      ['entries[1].tags[0]', () => cache.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 2, tags: [''] }])],
      ['options.tags[0]', () => cache.getOrSet('a', () => 1, { tags: [''] })],
      ['tag', () => cache.deleteByTag('')],
      ['tag', () => cache.deleteByTag('x'.repeat(LIMITS.maxTagBytes + 1))],
      ['tag', () => cache.deleteByTag(undefined as never)],
    ];
    for (const [argument, call] of calls) await expect(call(), argument).rejects.toMatchObject({ name: 'InvalidArgumentError', argument });
    // Repeats count once; the cap is on distinct tags.
    await cache.set('a', 1, { tags: [...Array.from({ length: LIMITS.maxTags }, (_, i) => `t${i}`), 't0'] });
    expect(Object.keys(await index())).toHaveLength(LIMITS.maxTags);
    expect(await redis.exists(keyOf('e:b'))).toBe(0);
  });
});
