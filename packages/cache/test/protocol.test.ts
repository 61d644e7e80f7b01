import { LuaScriptManager, readPackageLua, scriptName, type RegisteredScript, type ScriptArg } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CacheKeys,
  CLEAR_BATCH,
  DELETE_TAG_BATCH,
  decodeBusMessage,
  decodeClear,
  decodeDelete,
  decodeDeleteByTag,
  decodeHas,
  decodeInspect,
  decodeLease,
  decodeLeasedSet,
  decodeMget,
  decodeMset,
  decodeRelease,
  decodeStats,
  decodeTouch,
  encodeClear,
  encodeDelete,
  encodeDeleteByTag,
  encodeHas,
  encodeLease,
  encodeLeasedSet,
  encodeMget,
  encodeMput,
  encodeMset,
  encodePut,
  encodeRelease,
  encodeStats,
  encodeTouch,
  encodeWrites,
  SCRIPT_FILE,
  type BusMessage,
  type WriteSettings,
} from '../src/protocol.js';

const SOURCE = readPackageLua(new URL('../src/index.ts', import.meta.url), SCRIPT_FILE);

// The contract between src/protocol.ts and the shipped script: every operation the package sends, encoded and
// decoded by the protocol module only. (The seed's raw GET/SET/STATS forms are pinned in script.test.ts.)
describe.each(topologies)('protocol of smart_cache.lua on %s', (topology) => {
  let redis: Redis | Cluster;
  let listener: Redis | Cluster;
  let prefix: string;
  let keys: CacheKeys;
  let settings: WriteSettings;
  let heard: BusMessage[];
  /** The messages as published, for the parts `decodeBusMessage` does not keep (the op letter). */
  let published: string[];
  let scripts: LuaScriptManager;
  let script: RegisteredScript;

  const run = (args: ScriptArg[], callKeys: string[]) => scripts.executeScript(script, { keys: callKeys, args });
  const entry = (key: string) => keys.entryPrefix + key;

  beforeAll(() => {
    redis = connect(topology);
    listener = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript(scriptName('cache', SCRIPT_FILE), SOURCE);
    listener.on('message', (_channel: string, message: string) => {
      const decoded = decodeBusMessage(message, keys.entryPrefix.length);
      published.push(message);
      if (decoded) heard.push(decoded);
    });
  });
  afterAll(async () => {
    await Promise.all([redis.quit(), listener.quit()]);
  });
  beforeEach(async () => {
    prefix = randomPrefix();
    keys = new CacheKeys(`${prefix}:cache:{c}:`);
    settings = { maxSize: 2, graceMs: 0, channel: keys.channel, origin: 'me' };
    heard = [];
    published = [];
    await listener.subscribe(keys.channel);
  });
  afterEach(async () => {
    await listener.unsubscribe(keys.channel);
    await deleteByPrefix(redis, prefix);
  });

  it('MSET gives each entry its own TTL when the texts repeat, change and repeat again', async () => {
    // The script checks a ttl text only when it differs from the entry before's, and reuses that result.
    const ttls = [60_000, 60_000, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, 30_000, 60_000];
    const names = ttls.map((_, i) => `t${i}`);
    const writes = ttls.map((ttlMs, i) => ({ text: names[i]!, ttlMs }));
    const roomy = { ...settings, maxSize: 100 };
    expect(decodeMset(await run(encodeMset(Date.now(), roomy, writes, 0, writes.length), keys.forEntries(names.map(entry))))).toBe(0);
    const pttls = await Promise.all(names.map((name) => redis.pttl(entry(name))));
    const expected = [60_000, 60_000, -1, -1, 30_000, 60_000];
    for (let i = 0; i < names.length; i++) {
      if (expected[i] === -1) expect(pttls[i], names[i]).toBe(-1);
      else {
        expect(pttls[i], names[i]).toBeGreaterThan(expected[i]! - 2_000);
        expect(pttls[i], names[i]).toBeLessThanOrEqual(expected[i]!);
      }
    }
  });

  it('MSET writes each entry with its TTL in SET order, evicts beyond max_size and publishes what it did', async () => {
    const writes = [
      { text: 'A', ttlMs: 60_000 },
      { text: 'B', ttlMs: Number.POSITIVE_INFINITY },
      { text: 'C', ttlMs: 30_000 },
    ];
    expect(decodeMset(await run(encodeMset(Date.now(), settings, writes, 0, 2), keys.forEntries([entry('a'), entry('b')])))).toBe(0);
    expect(await redis.pttl(entry('a'))).toBeGreaterThan(59_000);
    expect(await redis.pttl(entry('b'))).toBe(-1);
    // Only writes[2..3) is sent: c is the third entry, so the least recently used (a) goes.
    expect(decodeMset(await run(encodeMset(Date.now(), settings, writes, 2, 3), keys.forEntries([entry('c')])))).toBe(1);
    expect(await redis.get(entry('c'))).toBe('C');
    expect(await redis.exists(entry('a'))).toBe(0);
    await waitFor(() => heard.length === 2);
    expect(heard).toEqual([
      { origin: 'me', cleared: false, keys: ['a', 'b'], evicted: [] },
      { origin: 'me', cleared: false, keys: ['c'], evicted: ['a'] },
    ]);
  });

  it('encodeWrites sends PUT, MPUT or MSET by the batch\'s shape; MPUT writes, evicts and publishes as MSET does', async () => {
    const op = (args: ScriptArg[]) => args[0];
    const ttl = (ttlMs: number, tags?: string[]) => ({ text: 'v', ttlMs, tags });
    expect(op(encodeWrites(1, settings, [ttl(1_000)], 0, 1))).toBe('PUT');
    expect(op(encodeWrites(1, settings, [ttl(1_000), ttl(1_000)], 0, 2))).toBe('MPUT');
    expect(op(encodeWrites(1, settings, [ttl(1_000), ttl(1_000, [])], 0, 2))).toBe('MPUT');
    expect(op(encodeWrites(1, settings, [ttl(1_000), ttl(2_000)], 0, 2))).toBe('MSET');
    expect(op(encodeWrites(1, settings, [ttl(1_000), ttl(1_000, ['t'])], 0, 2))).toBe('MSET');
    // Only writes[from..to) decide: the third entry's other TTL is not in this batch.
    expect(op(encodeWrites(1, settings, [ttl(2_000), ttl(1_000), ttl(1_000)], 1, 3))).toBe('MPUT');
    const grace = { ...settings, graceMs: 1_000 };
    expect(op(encodeWrites(1, grace, [ttl(1_000)], 0, 1))).toBe('MSET');
    expect(op(encodeWrites(1, grace, [ttl(1_000), ttl(1_000)], 0, 2))).toBe('MSET');

    const writes = ['A', 'B', 'C'].map((text) => ({ text, ttlMs: 60_000 }));
    expect(decodeMset(await run(encodeMput(Date.now(), settings, writes, 0, 2), keys.forEntries([entry('a'), entry('b')])))).toBe(0);
    expect(await redis.pttl(entry('a'))).toBeGreaterThan(59_000);
    const none = [{ text: 'C', ttlMs: Number.POSITIVE_INFINITY }, { text: 'D', ttlMs: Number.POSITIVE_INFINITY }];
    expect(decodeMset(await run(encodeMput(Date.now(), settings, none, 0, 2), keys.forEntries([entry('c'), entry('d')])))).toBe(2);
    expect(await redis.mget(entry('a'), entry('b'), entry('c'), entry('d'))).toEqual([null, null, 'C', 'D']);
    expect(await redis.pttl(entry('c'))).toBe(-1);
    await waitFor(() => heard.length === 2);
    expect(heard).toEqual([
      { origin: 'me', cleared: false, keys: ['a', 'b'], evicted: [] },
      { origin: 'me', cleared: false, keys: ['c', 'd'], evicted: ['a', 'b'] },
    ]);
  });

  it('bus messages carry keys that need JSON escaping exactly, evicted ones included', async () => {
    // Quotes, backslashes and control characters go through cjson; anything else is concatenated as is.
    const names = ['q"uote', 'plain', 'back\\slash', 'new\nline', 'tab\tand\u0001', 'ünï😀'];
    const one = { ...settings, maxSize: names.length - 1, origin: 'o"rigin' };
    const writes = names.map((name) => ({ text: name, ttlMs: 60_000 }));
    expect(decodeMset(await run(encodeMset(Date.now(), one, writes, 0, names.length), keys.forEntries(names.map(entry))))).toBe(1);
    for (const name of names.slice(1)) expect(await redis.get(entry(name))).toBe(name);
    await waitFor(() => heard.length === 1);
    expect(heard).toEqual([{ origin: 'o"rigin', cleared: false, keys: names, evicted: ['q"uote'] }]);
  });

  it('PUT writes one entry with its TTL, evicts beyond max_size and publishes what MSET would, for any key or origin', async () => {
    // Printable ASCII keys and origins without quotes or backslashes take the script's fast path, which
    // concatenates the message; the others take the general write (cjson). Both decode the same.
    const put = (name: string, origin: string, ttlMs = 60_000) =>
      run(encodePut(Date.now(), { ...settings, maxSize: 100, origin }, { text: name, ttlMs }), keys.forEntries([entry(name)]));
    const names = ['plain', 'sp ace/~{}', 'q"uote', 'back\\slash', 'new\nline', 'ünï😀'];
    const origins = ['me', 'o"rigin'];
    for (const name of names) for (const origin of origins) expect(decodeMset(await put(name, origin))).toBe(0);
    for (const name of names) expect(await redis.get(entry(name))).toBe(name);
    expect(await redis.pttl(entry('plain'))).toBeGreaterThan(59_000);
    expect(decodeMset(await put('forever', 'me', Number.POSITIVE_INFINITY))).toBe(0);
    expect(await redis.pttl(entry('forever'))).toBe(-1);
    const expected = names.flatMap((name) => origins.map((origin) => ({ origin, cleared: false, keys: [name], evicted: [] })));
    await waitFor(() => heard.length === expected.length + 1);
    expect(heard.slice(0, expected.length)).toEqual(expected);
    expect(published.map((message) => (JSON.parse(message) as unknown[])[1])).toEqual(published.map(() => 's'));
    // At max_size 2 the third entry evicts the least recently used one, as MSET does.
    heard = [];
    await deleteByPrefix(redis, prefix);
    for (const name of ['a', 'b', 'c']) await run(encodePut(Date.now(), settings, { text: name, ttlMs: 60_000 }), keys.forEntries([entry(name)]));
    expect(await redis.exists(entry('a'))).toBe(0);
    await waitFor(() => heard.length === 3);
    expect(heard[2]).toEqual({ origin: 'me', cleared: false, keys: ['c'], evicted: ['a'] });
  });

  it('PUT adds, keeps, replaces and drops the entry\'s tags as MSET does', async () => {
    const put = (tags: string[]) => run(encodePut(Date.now(), settings, { text: 'A', ttlMs: 60_000, tags }), keys.forEntries([entry('a')]));
    const tagState = async () => [await redis.hget(keys.tagOf, ':e:a'), await redis.zrange(keys.tagIndex, '0', '-1')];
    await put(['x', 'y']);
    expect(await tagState()).toEqual(['x\0y', ['x\0:e:a', 'y\0:e:a']]);
    await put(['x', 'y']);
    expect(await tagState()).toEqual(['x\0y', ['x\0:e:a', 'y\0:e:a']]);
    await put(['y']);
    expect(await tagState()).toEqual(['y', ['y\0:e:a']]);
    await put([]);
    expect(await redis.exists(keys.tagIndex, keys.tagOf)).toBe(0);
    expect(await redis.get(entry('a'))).toBe('A');
  });

  it('MGET decodes each lookup as [text, freshMs], with grace counted out of freshness', async () => {
    const grace = { ...settings, graceMs: 10_000 };
    await run(encodeMset(Date.now(), grace, [{ text: 'A', ttlMs: 60_000 }], 0, 1), keys.forEntries([entry('a')]));
    const lookups = decodeMget(await run(encodeMget(Date.now(), 10_000), keys.forEntries([entry('a'), entry('zz')])), 2);
    expect(lookups[0]![0]).toBe('A');
    expect(lookups[0]![1]).toBeGreaterThan(59_000);
    expect(lookups[0]![1]).toBeLessThanOrEqual(60_000);
    expect(lookups[1]).toEqual([null, 0]);
    expect(decodeStats(await run(encodeStats(Date.now()), keys.forCache()))).toEqual({
      hits: 1, misses: 1, sets: 1, evictions: 0, size: 1, hitRate: 0.5,
    });
  });

  it('TOUCH records hits and misses of plain reads for the entry keys it is given', async () => {
    await run(encodeMset(Date.now(), settings, [{ text: 'A', ttlMs: 60_000 }, { text: 'B', ttlMs: 60_000 }], 0, 2), keys.forEntries([entry('a'), entry('b')]));
    // a was looked up three times (one key, three hits), zz twice (one key, two misses).
    expect(decodeTouch(await run(encodeTouch(Date.now(), 1, 3, 2), keys.forCache([entry('a'), entry('zz')])))).toBe(3);
    // a was hit after b was written: b is now the least recently used.
    expect(await redis.zrange(keys.log, '0', '-1')).toEqual([':e:b', ':e:a']);
    expect(decodeStats(await run(encodeStats(Date.now()), keys.forCache()))).toMatchObject({ hits: 3, misses: 2, sets: 2, size: 2 });
  });

  it('LEASE takes the lease on a miss, the leased SET writes once and RELEASE wakes the waiters', async () => {
    const request = { graceMs: 0, token: 't1', leaseMs: 5_000, refreshBelowMs: 0, withTtl: true };
    const leaseKeys = keys.forEntry('a', true);
    expect(decodeLease(await run(encodeLease(Date.now(), request), leaseKeys))).toEqual({ text: null, freshMs: 0, acquired: true, leasePttlMs: 5_000 });
    const other = decodeLease(await run(encodeLease(Date.now(), { ...request, token: 't2' }), leaseKeys));
    expect(other).toMatchObject({ text: null, acquired: false });
    expect(other.leasePttlMs).toBeGreaterThan(0);
    expect(decodeLeasedSet(await run(encodeLeasedSet(Date.now(), settings, { text: 'A', ttlMs: 60_000 }, 't2'), leaseKeys))).toBe(false);
    expect(decodeLeasedSet(await run(encodeLeasedSet(Date.now(), settings, { text: 'A', ttlMs: 60_000 }, 't1'), leaseKeys))).toBe(true);
    const hit = decodeLease(await run(encodeLease(Date.now(), { ...request, token: 't3' }), leaseKeys));
    expect(hit).toMatchObject({ text: 'A', acquired: false, leasePttlMs: 0 });
    expect(hit.freshMs).toBeGreaterThan(59_000);
    // A hit due for a refresh takes the lease; RELEASE gives it back once, to its holder only.
    const refresh = decodeLease(await run(encodeLease(Date.now(), { ...request, token: 't4', refreshBelowMs: 120_000 }), leaseKeys));
    expect(refresh).toMatchObject({ text: 'A', acquired: true });
    expect(decodeRelease(await run(encodeRelease(Date.now(), 't3', keys.channel, 'me'), leaseKeys))).toBe(false);
    expect(decodeRelease(await run(encodeRelease(Date.now(), 't4', keys.channel, 'me'), leaseKeys))).toBe(true);
    await waitFor(() => heard.length === 3);
    expect(heard.map((message) => [message.keys, message.evicted])).toEqual([[['a'], []], [['a'], []], [['a'], []]]);
  });

  it('DEL reports whether the entry existed and drops its lease; CLEAR empties the cache in batches', async () => {
    await run(encodeMset(Date.now(), settings, [{ text: 'A', ttlMs: 60_000 }], 0, 1), keys.forEntries([entry('a')]));
    await run(encodeLease(Date.now(), { graceMs: 0, token: 't', leaseMs: 5_000, refreshBelowMs: 0, withTtl: false }), keys.forEntry('b', true));
    expect(decodeDelete(await run(encodeDelete(Date.now(), keys.channel, 'me'), keys.forEntry('a', true)))).toBe(1);
    expect(decodeDelete(await run(encodeDelete(Date.now(), keys.channel, 'me'), keys.forEntry('b', true)))).toBe(0);
    expect(await redis.exists(keys.leasePrefix + 'b')).toBe(0);
    const many = Array.from({ length: CLEAR_BATCH + 1 }, (_, i) => ({ text: String(i), ttlMs: 60_000 }));
    const big = { ...settings, maxSize: many.length };
    await run(encodeMset(Date.now(), big, many, 0, many.length), keys.forEntries(many.map((_, i) => entry(`k${i}`))));
    expect(decodeClear(await run(encodeClear(Date.now(), keys.channel, 'other'), keys.forCache()))).toBe(1);
    expect(decodeClear(await run(encodeClear(Date.now(), keys.channel, 'other'), keys.forCache()))).toBe(0);
    expect(await redis.exists(entry('k0'), entry(`k${CLEAR_BATCH}`))).toBe(0);
    await waitFor(() => heard.some((message) => message.cleared));
    expect(heard.at(-1)).toEqual({ origin: 'other', cleared: true, keys: [], evicted: [] });
  });

  it('MSET and the leased SET store tags; DELTAG removes a tag\'s entries in batches; DEL takes many entries; HAS', async () => {
    const big = { ...settings, maxSize: 10_000 };
    const tagged = (key: string) => keys.forEntry(key, false)[0]!;
    const writes = Array.from({ length: DELETE_TAG_BATCH + 2 }, (_, i) => ({ text: `v${i}`, ttlMs: 60_000, tags: ['t', i % 2 === 0 ? 'even' : 'odd'] }));
    const names = writes.map((_, i) => `k${i}`);
    await run(encodeMset(Date.now(), big, writes, 0, writes.length), keys.forEntries(names.map(tagged)));
    const leaseKeys = keys.forEntry('l', true);
    await run(encodeLease(Date.now(), { graceMs: 0, token: 'tok', leaseMs: 5_000, refreshBelowMs: 0, withTtl: false }), leaseKeys);
    expect(decodeLeasedSet(await run(encodeLeasedSet(Date.now(), big, { text: 'L', ttlMs: 60_000, tags: ['t', 'leased'] }, 'tok'), leaseKeys))).toBe(true);
    expect(await redis.hget(keys.tagOf, ':e:l')).toBe('t\0leased');
    expect(decodeHas(await run(encodeHas(Date.now(), 0), keys.forEntry('k0', false)))).toBe(true);
    expect(decodeHas(await run(encodeHas(Date.now(), 0), keys.forEntry('zz', false)))).toBe(false);
    const keyStart = keys.entryPrefix.length;
    const first = decodeDeleteByTag(await run(encodeDeleteByTag(Date.now(), 't', keys.channel, 'me'), keys.forCache()), keyStart);
    expect([first.removed, first.left, first.keys.length]).toEqual([DELETE_TAG_BATCH, writes.length + 1 - DELETE_TAG_BATCH, DELETE_TAG_BATCH]);
    const second = decodeDeleteByTag(await run(encodeDeleteByTag(Date.now(), 't', keys.channel, 'me'), keys.forCache()), keyStart);
    expect([second.removed, second.left]).toEqual([3, 0]);
    expect(new Set([...first.keys, ...second.keys])).toEqual(new Set([...names, 'l']));
    expect(await redis.exists(keys.tagIndex, keys.tagOf)).toBe(0);
    // DEL: entries and their leases in pairs; the count is of entries that existed.
    await run(encodeMset(Date.now(), big, [{ text: 'A', ttlMs: 60_000, tags: ['x'] }, { text: 'B', ttlMs: 60_000 }], 0, 2), keys.forEntries([tagged('a'), tagged('b')]));
    expect(decodeDelete(await run(encodeDelete(Date.now(), keys.channel, 'me'), keys.forDeletes(['a', 'zz', 'b'])))).toBe(2);
    expect(await redis.exists(tagged('a'), tagged('b'), keys.tagIndex, keys.tagOf)).toBe(0);
  });

  it('inspect reads the TTL, size and tags of what MSET wrote (the tags field is the script\'s member)', async () => {
    const graced = { ...settings, maxSize: 10, graceMs: 2000 };
    const writes = [{ text: 'hello', ttlMs: 60_000, tags: ['a', 'b'] }, { text: 'xy', ttlMs: 60_000 }];
    await run(encodeMset(Date.now(), graced, writes, 0, 2), keys.forEntries([entry('k1'), entry('k2')]));
    const read = async (key: string, graceMs: number) => decodeInspect((await redis.pipeline(keys.inspectCommands(key)).exec())!, graceMs);
    const k1 = await read('k1', 2000);
    expect(k1).toMatchObject({ bytes: 5, tags: ['a', 'b'], stale: false });
    expect(k1!.ttlMs).toBeGreaterThan(50_000);
    expect(k1!.ttlMs).toBeLessThanOrEqual(60_000);
    expect(await read('k2', 2000)).toMatchObject({ bytes: 2, tags: [], stale: false });
    expect(await read('none', 0)).toBeUndefined();
    // Within the grace only: stale, 0 ms fresh. Without a TTL: Infinity.
    await redis.pexpire(entry('k2'), 1500);
    expect(await read('k2', 2000)).toMatchObject({ ttlMs: 0, stale: true });
    await redis.persist(entry('k2'));
    expect(await read('k2', 2000)).toMatchObject({ ttlMs: Infinity, stale: false });
  });

  it('ignores bus messages that are not the script\'s', () => {
    expect(decodeBusMessage('not json', 0)).toBeUndefined();
    expect(decodeBusMessage('{"a":1}', 0)).toBeUndefined();
    expect(decodeBusMessage('["o","s",{},{}]', 3)).toEqual({ origin: 'o', cleared: false, keys: [], evicted: [] });
  });
});
