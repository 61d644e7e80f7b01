import { createHash } from 'node:crypto';
import { readPackageLua } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const SOURCE = readPackageLua(new URL('../src/index.ts', import.meta.url), 'smart_cache');

describe.each(topologies)('smart_cache.lua called raw (seed contract) on %s', (topology) => {
  let redis: Redis | Cluster;
  let sha: string;
  let k: (name: string) => string;

  beforeAll(async () => {
    redis = connect(topology);
    await redis.ping();
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) sha = String(await node.script('LOAD', SOURCE));
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    const p = randomPrefix();
    // The seed's names; on the cluster every key of one cache shares a hash tag, as the header says.
    k = (name) => (topology === 'cluster' ? `{${p}}:${name}` : `${p}:${name}`);
  });

  const call = (entry: string, ...args: (string | number)[]) =>
    redis.evalsha(sha, 3, k(entry), k('access:log'), k('stats:key'), ...args);
  // TOUCH (internal format) takes the tag keys as KEYS[4..5] and the entries it records as KEYS[6..];
  // `counts`: the hit keys, then optionally the hit and miss counts.
  const touch = (counts: number[], ...entries: string[]) =>
    redis.evalsha(sha, 5 + entries.length, k('x'), k('access:log'), k('stats:key'), k('tags'), k('tagged'), ...entries.map(k), 'TOUCH', 1, ...counts);

  // Members and tag pairs name the cache; drop everything before the entry's name to compare.
  const sameEntry = (text: string) => text.replace(/[^\0]*entry=/, 'entry=');
  /** What the writes left in the cache whose keys are `<cache>:…` (entries `<cache>:entry=<name>`), comparable across caches. */
  const cacheState = async (cache: string, names: string[]) => ({
    log: (await redis.zrange(k(`${cache}:log`), '0', '-1', 'WITHSCORES')).map(sameEntry),
    stats: await redis.hgetall(k(`${cache}:stats`)),
    tags: (await redis.zrange(k(`${cache}:tags`), '0', '-1')).map(sameEntry),
    tagged: Object.entries(await redis.hgetall(k(`${cache}:tagged`))).map(([member, tags]) => [sameEntry(member), tags]),
    values: await Promise.all(names.map((entry) => redis.get(k(`${cache}:entry=${entry}`)))),
    noTtl: (await Promise.all(names.map((entry) => redis.pttl(k(`${cache}:entry=${entry}`))))).map((pttl) => pttl === -1),
  });

  it('has the SHA that SCRIPT LOAD returns', () => {
    expect(sha).toBe(createHash('sha1').update(SOURCE).digest('hex'));
  });

  it('answers GET, SET and STATS exactly as the seed shows', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await call('cache:key', 'GET', now)).toBeNull();
    expect(await call('cache:key', 'SET', now, 'value', 3600, 1000)).toBe(0);
    expect(await call('cache:key', 'GET', now)).toBe('value');
    const pttl = await redis.pttl(k('cache:key'));
    expect(pttl).toBeGreaterThan(3_590_000);
    expect(pttl).toBeLessThanOrEqual(3_600_000);
    expect(await call('cache:key', 'STATS', now)).toEqual([
      'hits', 1, 'misses', 1, 'sets', 1, 'evictions', 0, 'size', 1, 'hit_rate', '0.5000',
    ]);
  });

  it('evicts the least recently used entry, even when every call passes the same time', async () => {
    for (const name of ['a', 'b', 'c']) expect(await call(name, 'SET', 100, name, 3600, 3)).toBe(0);
    expect(await call('a', 'GET', 100)).toBe('a');
    expect(await call('d', 'SET', 100, 'd', 3600, 3)).toBe(1);
    expect(await call('b', 'GET', 100)).toBeNull();
    for (const name of ['a', 'c', 'd']) expect(await call(name, 'GET', 100)).toBe(name);
    expect(await redis.zcard(k('access:log'))).toBe(3);
    expect(await call('x', 'STATS', 100)).toEqual([
      'hits', 4, 'misses', 1, 'sets', 4, 'evictions', 1, 'size', 3, 'hit_rate', '0.8000',
    ]);
  });

  // Issue 12 §4: a lost stats hash used to restart the clock, so the next SETs evicted themselves. The clock
  // lives in that hash again (one HINCRBY per write), but a missing clock continues from the log's top.
  const statsFaults: [string, () => Promise<unknown>][] = [
    ['deleted', () => redis.del(k('stats:key'))],
    ['replaced by a fresh hash', async () => {
      await redis.del(k('stats:key'));
      await redis.hset(k('stats:key'), 'hits', 0, 'misses', 0, 'clock', 0);
    }],
    ['expired', async () => {
      await redis.pexpire(k('stats:key'), 1);
      await waitFor(async () => (await redis.exists(k('stats:key'))) === 0);
    }],
  ];
  it.each(statsFaults)('evicts the least recently used entry after the stats key was %s', async (_, fault) => {
    expect(await call('k1', 'SET', 1767225600, 'v1', 3600, 2)).toBe(0);
    expect(await call('k2', 'SET', 1767225601, 'v2', 3600, 2)).toBe(0);
    expect(await call('k1', 'GET', 1767225602)).toBe('v1');
    await fault();
    expect(await call('k3', 'SET', 1767225603, 'v3', 3600, 2)).toBe(1);
    expect(await call('k2', 'GET', 1767225604)).toBeNull();
    expect(await call('k3', 'GET', 1767225605)).toBe('v3');
    expect(await call('k4', 'SET', 1767225606, 'v4', 3600, 2)).toBe(1);
    expect(await call('k1', 'GET', 1767225607)).toBeNull();
    expect(await redis.zcard(k('access:log'))).toBe(2);
    // The counts restarted with the hash: 1 set and 2 lookups since (k2's miss, k3's hit, k1's miss).
    const stats = (await call('x', 'STATS', 1)) as (string | number)[];
    expect(stats.slice(0, 8)).toEqual(['hits', 1, 'misses', 2, 'sets', 2, 'evictions', 2]);
  });

  it('continues the clock and the counts from a stats hash without a clock (the previous version\'s)', async () => {
    // The previous version kept `sets` as a counter and the clock only in the log's scores.
    for (const [score, name] of [[41, 'a'], [42, 'b']] as const) {
      await redis.set(k(name), name);
      await redis.zadd(k('access:log'), score, topology === 'cluster' ? `:${name}` : k(name));
    }
    await redis.hset(k('stats:key'), 'hits', 5, 'misses', 2, 'sets', 9, 'evictions', 1);
    expect(await call('x', 'STATS', 1)).toEqual(['hits', 5, 'misses', 2, 'sets', 9, 'evictions', 1, 'size', 2, 'hit_rate', '0.7143']);
    expect(await call('a', 'GET', 1)).toBe('a');
    expect(await call('c', 'SET', 1, 'c', 3600, 2)).toBe(1);
    // a was stamped 43 (above b's 42), c 44: b was the least recently used.
    expect(await redis.exists(k('b'))).toBe(0);
    expect(await redis.zrange(k('access:log'), '0', '-1', 'WITHSCORES')).toEqual(
      topology === 'cluster' ? [':a', '43', ':c', '44'] : [k('a'), '43', k('c'), '44'],
    );
    expect(await call('x', 'STATS', 1)).toEqual(['hits', 6, 'misses', 2, 'sets', 10, 'evictions', 2, 'size', 2, 'hit_rate', '0.7500']);
  });

  it('stores an entry without a TTL for ttl none, bounded by max_size like any other', async () => {
    expect(await call('a', 'SET', 1, 'A', 'none', 2)).toBe(0);
    expect(await redis.pttl(k('a'))).toBe(-1);
    // With grace_ms (the API's form) an entry without a TTL is always fresh.
    expect(await call('a', 'GET', 1, 1000)).toEqual(['A', 2 ** 52]);
    await call('b', 'SET', 1, 'B', 3600, 2);
    await call('c', 'SET', 1, 'C', 'none', 2);
    expect(await redis.exists(k('a'))).toBe(0);
    expect(await redis.pttl(k('c'))).toBe(-1);
    // A later write with a TTL replaces the entry's "no TTL".
    await call('c', 'SET', 1, 'C2', 3600, 2);
    expect(await redis.pttl(k('c'))).toBeGreaterThan(3_590_000);
  });

  it('puts a hit entry the access log lost back in it, so the size bound recovers', async () => {
    for (const name of ['a', 'b', 'c']) await call(name, 'SET', 1, name, 'none', 3);
    await redis.del(k('access:log'));
    expect(await call('a', 'GET', 1)).toBe('a');
    const member = (name: string) => (topology === 'cluster' ? `:${name}` : k(name));
    expect(await touch([1], 'b')).toBe(1);
    expect(await redis.zrange(k('access:log'), '0', '-1')).toEqual([member('a'), member('b')]);
    // c was neither read nor written: it stays outside the log (until its TTL, if it has one).
    for (const name of ['d', 'e']) await call(name, 'SET', 1, name, 'none', 3);
    expect(await call('f', 'SET', 1, 'f', 'none', 3)).toBe(1);
    expect(await redis.exists(k('a'))).toBe(0);
    expect(await redis.zrange(k('access:log'), '0', '-1')).toEqual([member('d'), member('e'), member('f')]);
  });

  it('fails before its first write when the stats key has the wrong type', async () => {
    await call('a', 'SET', 1, 'old', 3600, 10);
    await redis.set(k('stats:key'), 'not a hash');
    const keys = [k('a'), k('b'), k('access:log'), k('stats:key')];
    const before = await Promise.all(keys.map((key) => redis.dump(key)));
    await expect(call('b', 'SET', 1, 'new', 3600, 10)).rejects.toThrow(/WRONGTYPE/);
    await expect(call('a', 'GET', 1)).rejects.toThrow(/WRONGTYPE/);
    await expect(call('b', 'GET', 1)).rejects.toThrow(/WRONGTYPE/);
    expect(await Promise.all(keys.map((key) => redis.dump(key)))).toEqual(before);
  });

  it('a PUT (the fast path) on an access log of the wrong type fails and leaves every key as it was', async () => {
    // The fast path advances the clock before it stamps the log: it must put the clock back. (It takes only
    // keys with a hash tag, so these have one on a single node too.)
    const t = (name: string) => k(`{t}:${name}`);
    const keys = [t('a'), t('access:log'), t('stats:key'), t('tags'), t('tagged')];
    const put = (entry: string) => redis.evalsha(sha, 5, t(entry), ...keys.slice(1), 'PUT', 1, 10, '', 'o', 'new', 60_000);
    await put('a');
    await put('a');
    expect(await redis.hget(t('stats:key'), 'clock')).toBe('2');
    await redis.del(t('access:log'));
    await redis.set(t('access:log'), 'not a sorted set');
    const before = await Promise.all(keys.map((key) => redis.dump(key)));
    await expect(put('a')).rejects.toThrow(/WRONGTYPE/);
    await expect(put('b')).rejects.toThrow(/WRONGTYPE/);
    expect(await Promise.all(keys.map((key) => redis.dump(key)))).toEqual(before);
    expect(await redis.exists(t('b'))).toBe(0);
  });

  it('drops access-log members whose values expired (on lookup and by the sweep)', async () => {
    for (let i = 0; i < 20; i++) await call(`e${i}`, 'SET', 1, 'v', 0.05, 100);
    await call('live', 'SET', 1, 'v', 3600, 100);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await call('e0', 'GET', 1)).toBeNull();
    expect(await redis.zscore(k('access:log'), topology === 'cluster' ? ':e0' : k('e0'))).toBeNull();
    for (let i = 0; i < 12; i++) await call('live', 'SET', 1, 'v', 3600, 100);
    const stats = (await call('x', 'STATS', 1)) as (string | number)[];
    expect(stats[stats.indexOf('size') + 1]).toBe(1);
    expect(await redis.zcard(k('access:log'))).toBe(1);
  });

  it('writes a PUT (the fast path) exactly as the general SET does', async () => {
    // Two caches get the same writes: "m" as PUTs (the client's lone `set`), "s" as SETs with the tag keys
    // (never the fast path). Each step covers a branch: a new stats hash, evictions, tags added, kept
    // (the fast path), changed and dropped (the general path), an expired member left to the sweep, a key
    // the fast path's pattern refuses.
    const keysOf = (cache: string, entry: string) =>
      [`${cache}:entry=${entry}`, `${cache}:log`, `${cache}:stats`, `${cache}:tags`, `${cache}:tagged`].map(k);
    const write = async (entry: string, ttl: string, max: number, tags = '') => {
      const fast = await redis.evalsha(sha, 5, ...keysOf('m', entry), 'PUT', 1, max, '', 'o', entry, ttl, ...(tags ? [tags] : []));
      const general = await redis.evalsha(sha, 5, ...keysOf('s', entry), 'SET', 1, entry, ttl, max, 'ms', 0, '', 'o', '', tags);
      expect(fast).toBe(general);
    };
    const state = (cache: string) => cacheState(cache, ['a', 'b', 'c', 'd', 'e']);
    for (const entry of ['a', 'b', 'c']) await write(entry, '3600000', 3);
    await write('d', '3600000', 3);
    await write('b', '3600000', 3, 't1\0t2');
    await write('b', '3600000', 3, 't1\0t2');
    await write('c', '3600000', 3, 't2');
    expect((await state('m')).tags).toEqual(['t1\0entry=b', 't2\0entry=b', 't2\0entry=c']);
    await write('c', '3600000', 3, 't3');
    await write('b', '3600000', 3);
    expect(await state('m')).toEqual(await state('s'));
    expect((await state('m')).values).toEqual([null, 'b', 'c', 'd', null]);
    await write('e', '1', 100);
    await write('q"uote', '3600000', 100);
    await waitFor(async () => (await redis.exists(k('m:entry=e'), k('s:entry=e'))) === 0, { timeoutMs: 5_000 });
    for (let i = 0; i < 16; i++) await write('c', '3600000', 100);
    const swept = await state('m');
    expect(swept).toEqual(await state('s'));
    expect(swept.log.filter((_, i) => i % 2 === 0)).toEqual(['entry=d', 'entry=b', 'entry=q"uote', 'entry=c']);
    expect(swept.tags).toEqual([]);

    // A longer log: the fast path checks the sweep's 16 ranks itself when they need no wrap, ending the call
    // when all are alive and leaving an expired member to the general path's sweep. Every step must match.
    const names = [...Array.from({ length: 20 }, (_, i) => `p${i}`), 'x', ...Array.from({ length: 20 }, (_, i) => `q${i}`)];
    for (const name of names) await write(name, name === 'x' ? '1' : '3600000', 100);
    await waitFor(async () => (await redis.exists(k('m:entry=x'), k('s:entry=x'))) === 0, { timeoutMs: 5_000 });
    for (let i = 0; i < 192; i++) {
      await write('c', '3600000', 100);
      expect(await state('m')).toEqual(await state('s'));
    }
    const log = (await state('m')).log.filter((_, i) => i % 2 === 0);
    expect(log).not.toContain('entry=x');
    expect(log).toHaveLength(44);
  });

  it('writes an MPUT exactly as the MSET with its one ttl and no tags does', async () => {
    // Two caches get the same batches: "m" as MPUTs, "s" as MSETs. The steps cover new entries, rewrites,
    // evictions within and across batches, a ttl of none, an entry whose tags an MPUT drops, an expired member
    // left to the sweep, and a key given twice in one batch.
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const keysOf = (cache: string, entries: string[]) => {
      const full = entries.map((entry) => k(`${cache}:entry=${entry}`));
      return [full[0]!, ...[`${cache}:log`, `${cache}:stats`, `${cache}:tags`, `${cache}:tagged`].map(k), ...full.slice(1)];
    };
    const batch = async (entries: string[], ttl: string, max: number) => {
      const values = entries.map((entry) => `${entry}@${ttl}`);
      const mput = await redis.evalsha(sha, 4 + entries.length, ...keysOf('m', entries), 'MPUT', 1, max, '', 'o', ttl, ...values);
      const mset = await redis.evalsha(sha, 4 + entries.length, ...keysOf('s', entries), 'MSET', 1, max, 'ms', 0, '', 'o', ...values.flatMap((v) => [v, ttl, '']));
      expect(mput).toBe(mset);
      return mput;
    };
    const state = (cache: string) => cacheState(cache, names);
    expect(await batch(['a', 'b', 'c'], '3600000', 3)).toBe(0);
    expect(await batch(['d', 'a'], 'none', 3)).toBe(1);
    // Tag b in both caches through the general SET, then let an MPUT rewrite it without tags.
    for (const cache of ['m', 's']) {
      await redis.evalsha(sha, 5, ...keysOf(cache, ['b']), 'SET', 1, 'b', 3600000, 3, 'ms', 0, '', 'o', '', 't1\0t2');
    }
    expect((await state('m')).tags).toHaveLength(2);
    expect(await batch(['b', 'e', 'f', 'e'], '3600000', 3)).toBe(2);
    const after = await state('m');
    expect(after).toEqual(await state('s'));
    expect(after.tags).toEqual([]);
    expect(after.tagged).toEqual([]);
    expect(after.log.filter((_, i) => i % 2 === 0)).toEqual(['entry=b', 'entry=f', 'entry=e']);
    expect(await batch(['g'], '1', 100)).toBe(0);
    await waitFor(async () => (await redis.exists(k('m:entry=g'), k('s:entry=g'))) === 0, { timeoutMs: 5_000 });
    for (let i = 0; i < 20; i++) {
      await batch(['a', 'b'], '3600000', 100);
      expect(await state('m')).toEqual(await state('s'));
    }
    expect((await state('m')).log.filter((_, i) => i % 2 === 0)).not.toContain('entry=g');
  });

  it('checks tags only where a batch changes them, and still refuses bad ones beside unchanged ones', async () => {
    const names = ['a', 'b', 'c'];
    const mset = (...triples: [string, string][]) =>
      redis.evalsha(sha, 4 + triples.length, ...[k(`t:entry=${triples[0]![0]}`), ...['t:log', 't:stats', 't:tags', 't:tagged'].map(k), ...triples.slice(1).map(([entry]) => k(`t:entry=${entry}`))],
        'MSET', 1, 10, 'ms', 0, '', 'o', ...triples.flatMap(([entry, tags]) => [entry, '60000', tags]));
    await mset(['a', 't1\0t2'], ['b', 't1'], ['c', 't2']);
    const tagState = async () => {
      const { tags: index, tagged } = await cacheState('t', names);
      return { index, tagged: tagged.sort() };
    };
    expect((await tagState()).index).toEqual(['t1\0entry=a', 't1\0entry=b', 't2\0entry=a', 't2\0entry=c']);
    // a keeps its tags (not checked again), b changes them, c drops them.
    await mset(['a', 't1\0t2'], ['b', 't3'], ['c', '']);
    const after = await tagState();
    expect(after.index).toEqual(['t1\0entry=a', 't2\0entry=a', 't3\0entry=b']);
    expect(after.tagged).toEqual([['entry=a', 't1\0t2'], ['entry=b', 't3']]);
    // An unchanged entry first does not let a bad text after it through, nor a bad text that replaces tags.
    for (const bad of ['x\0\0y', 'z'.repeat(257)]) {
      await expect(mset(['a', 't1\0t2'], ['b', bad])).rejects.toThrow(/^ERR smart_cache: tags must be/);
      await expect(mset(['b', bad], ['a', 't1\0t2'])).rejects.toThrow(/^ERR smart_cache: tags must be/);
    }
    expect(await tagState()).toEqual(after);
    expect(await redis.get(k('t:entry=b'))).toBe('b');
  });

  it('records lookups made with plain GETs (TOUCH): hits move to the MRU end, misses leave the log', async () => {
    for (const name of ['a', 'b', 'c']) await call(name, 'SET', 1, name, 3600, 10);
    await redis.del(k('c'));
    const member = (name: string) => (topology === 'cluster' ? `:${name}` : k(name));
    expect(await touch([1], 'a', 'zz', 'c')).toBe(1);
    expect(await redis.zrange(k('access:log'), '0', '-1')).toEqual([member('b'), member('a')]);
    expect(await call('x', 'STATS', 1)).toEqual(['hits', 1, 'misses', 2, 'sets', 3, 'evictions', 0, 'size', 2, 'hit_rate', '0.3333']);
  });

  it('counts every lookup a TOUCH reports and stamps each key it is given once, in its order', async () => {
    for (const name of ['a', 'b', 'c']) await call(name, 'SET', 1, name, 3600, 10);
    const member = (name: string) => (topology === 'cluster' ? `:${name}` : k(name));
    // Lookups b a b a b (three hits of b, two of a), ending with a: the keys come as b, a; then zz missed three times.
    const before = Number(await redis.hget(k('stats:key'), 'clock'));
    expect(await touch([2, 5, 3], 'b', 'a', 'zz')).toBe(5);
    expect(await redis.zrange(k('access:log'), '0', '-1', 'WITHSCORES')).toEqual([
      member('c'), String(before), member('b'), String(before + 4), member('a'), String(before + 5),
    ]);
    expect(await call('x', 'STATS', 1)).toEqual(['hits', 5, 'misses', 3, 'sets', 3, 'evictions', 0, 'size', 3, 'hit_rate', '0.6250']);
  });

  it('answers bad input with an ERR reply that writes nothing', async () => {
    await call('a', 'SET', 1, 'old', 3600, 10);
    const keys = [k('a'), k('access:log'), k('stats:key'), k('tags'), k('tagged')];
    const snapshot = async () => Promise.all(keys.map((key) => redis.dump(key)));
    const before = await snapshot();
    const bad: [string, (string | number)[]][] = [
      ['unknown operation', ['NOPE', 1]],
      ['current_time', ['GET', 'soon']],
      ['current_time', ['GET', -1]],
      ['current_time', ['SET', 'inf', 'v', 10, 10]],
      ['ttl', ['SET', 1, 'new', 0, 10]],
      ['ttl', ['SET', 1, 'new', -5, 10]],
      ['ttl', ['SET', 1, 'new', 'nan', 10]],
      ['ttl', ['SET', 1, 'new', 'inf', 10]],
      ['ttl', ['SET', 1, 'new', 1e20, 10]],
      ['max_size', ['SET', 1, 'new', 10, 0]],
      ['max_size', ['SET', 1, 'new', 10, 1.5]],
      ['max_size', ['SET', 1, 'new', 10, 'x']],
      ['value missing', ['SET', 1]],
      ['unit', ['SET', 1, 'new', 10, 10, 'hours']],
      ['grace_ms', ['GET', 1, -1]],
    ];
    // The internal operations take the tag keys too (KEYS[4..5]); tags are joined by NUL.
    const internal: [string, (string | number)[]][] = [
      ['batch', ['CLEAR', 1, 0]],
      ['hits', ['TOUCH', 1, 3]],
      ['hits', ['TOUCH', 1, -1]],
      ['hit_count and miss_count', ['TOUCH', 1, 0, 1, 0]],
      ['hit_count and miss_count', ['TOUCH', 1, 0, 0, 2]],
      ['hit_count and miss_count', ['TOUCH', 1, 0, 0]],
      ['tags', ['SET', 1, 'new', 10, 10, 's', 0, '', '', '', 'a\0\0b']],
      ['tags', ['SET', 1, 'new', 10, 10, 's', 0, '', '', '', 'x'.repeat(257)]],
      ['tags', ['SET', 1, 'new', 10, 10, 's', 0, '', '', '', Array.from({ length: 17 }, (_, i) => `t${i}`).join('\0')]],
      ['tags', ['MSET', 1, 10, 'ms', 0, '', '', 'new', 1000, '\0']],
      ['value/ttl/tags', ['MSET', 1, 10, 'ms', 0, '', '', 'new', 1000]],
      ['wrong number of keys: one per value', ['MPUT', 1, 10, '', '', 1000]],
      ['wrong number of keys: one per value', ['MPUT', 1, 10, '', '', 1000, 'x', 'y']],
      ['ttl', ['MPUT', 1, 10, '', '', 0, 'x']],
      ['max_size', ['MPUT', 1, 0, '', '', 1000, 'x']],
      ['PUT takes 7 or 8 arguments', ['PUT', 1, 10, '', '', 'new']],
      ['PUT takes 7 or 8 arguments', ['PUT', 1, 10, '', '', 'new', 1000, '', 'x']],
      ['tags', ['PUT', 1, 10, '', '', 'new', 1000, 'a\0\0b']],
      ['current_time', ['PUT', 'soon', 10, '', '', 'new', 1000]],
      ['max_size', ['PUT', 1, 0, '', '', 'new', 1000]],
      ['ttl', ['PUT', 1, 10, '', '', 'new', 0]],
      ['ttl', ['PUT', 1, 10, '', '', 'new', '1e3x']],
      ['tag must be', ['DELTAG', 1, '', 10]],
      ['tag must be', ['DELTAG', 1, 'a\0b', 10]],
      ['batch', ['DELTAG', 1, 'a', 0]],
      ['grace_ms', ['HAS', 1, -1]],
    ];
    // A tag given to the seed's 3-key SET cannot be kept: refused, rather than dropped.
    const seedTags = ['SET', 1, 'new', 10, 10, 's', 0, '', '', '', 'a'];
    await expect(call('a', ...seedTags)).rejects.toThrow(/^ERR smart_cache: wrong number of keys: tags need/);
    const withTagKeys = (entry: string, ...args: (string | number)[]) =>
      redis.evalsha(sha, 5, k(entry), k('access:log'), k('stats:key'), k('tags'), k('tagged'), ...args);
    for (const [message, args] of bad) {
      await expect(call('a', ...args), JSON.stringify(args)).rejects.toThrow(new RegExp(`^ERR smart_cache: .*${message}`));
    }
    for (const [message, args] of internal) {
      await expect(withTagKeys('a', ...args), JSON.stringify(args)).rejects.toThrow(new RegExp(`^ERR smart_cache: .*${message}`));
    }
    // A batch checks each ttl text that differs from the entry before's: a bad one after a good one still fails.
    const twoEntries = (...args: (string | number)[]) =>
      redis.evalsha(sha, 6, k('a'), k('access:log'), k('stats:key'), k('tags'), k('tagged'), k('b'), ...args);
    await expect(twoEntries('MSET', 1, 10, 'ms', 0, '', '', 'x', 1000, '', 'y', 0, '')).rejects.toThrow(/^ERR smart_cache: ttl/);
    await expect(twoEntries('MSET', 1, 10, 's', 0, '', '', 'x', 'none', '', 'y', 'nan', '')).rejects.toThrow(/^ERR smart_cache: ttl/);
    expect(await redis.exists(k('b'))).toBe(0);
    // TOUCH's counts: at least one lookup per key given (here one hit key, b), integers up to 2^31.
    for (const counts of [[0, 0], [1, 'x'], [1, -1], ['nan', 0], [1.5, 0], [2 ** 31 + 1, 0]]) {
      await expect(twoEntries('TOUCH', 1, 1, ...counts), JSON.stringify(counts)).rejects.toThrow(/^ERR smart_cache: hit_count and miss_count/);
    }
    await expect(call('a', 'CLEAR', 1, 10)).rejects.toThrow(/^ERR smart_cache: wrong number of keys: CLEAR takes at least 5/);
    await expect(call('a', 'PUT', 1, 10, '', '', 'new', 1000)).rejects.toThrow(/^ERR smart_cache: wrong number of keys: PUT takes at least 5/);
    await expect(redis.evalsha(sha, 2, k('a'), k('access:log'), 'GET', 1)).rejects.toThrow(/^ERR smart_cache: wrong number of keys/);
    await expect(call('a', 'LEASE', 1, 0, 'token', 1000, 0)).rejects.toThrow(/^ERR smart_cache: wrong number of keys/);
    if (topology === 'cluster') {
      // Entry keys must carry the access log's tag prefix, since eviction rebuilds them from it.
      const p = k('').slice(0, -1);
      await expect(redis.evalsha(sha, 3, `x${p}:a`, `${p}:access:log`, `${p}:stats:key`, 'GET', 1)).rejects.toThrow(/^ERR smart_cache: entry key must start/);
      const tagKeys = [`${p}:tags`, `${p}:tagged`];
      await expect(redis.evalsha(sha, 6, `${p}:x`, `${p}:access:log`, `${p}:stats:key`, ...tagKeys, `x${p}:a`, 'TOUCH', 1, 1)).rejects.toThrow(/^ERR smart_cache: entry key must start/);
    }
    expect(await snapshot()).toEqual(before);
    expect(await call('a', 'GET', 1)).toBe('old');
  });
});
