import { readPackageLua, type ScriptArg } from '@cyredis/core';
import { randomPrefix, traceKeys } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CacheKeys,
  decodeLease,
  encodeClear,
  encodeDelete,
  encodeDeleteByTag,
  encodeHas,
  encodeLease,
  encodeLeasedSet,
  encodeMget,
  encodeMset,
  encodePut,
  encodeRelease,
  encodeStats,
  encodeTouch,
  SCRIPT_FILE,
  type WriteSettings,
} from '../src/protocol.js';

const SOURCE = readPackageLua(new URL('../src/index.ts', import.meta.url), SCRIPT_FILE);

/**
 * The only operations that touch keys they were not given, and what those keys are: entry keys rebuilt from
 * access-log members, chosen inside the script (the Lua header's UNDECLARED KEYS and the README's
 * "Compatibility" section say the same). Every other operation must touch only its KEYS.
 */
const UNDECLARED = {
  SET: 'least recently used entries it evicts, and entries the expiry sweep checks',
  MSET: 'least recently used entries it evicts, and entries the expiry sweep checks',
  PUT: 'least recently used entries it evicts, and entries the expiry sweep checks',
  STATS: 'entries the expiry sweep checks',
  CLEAR: 'entries it deletes',
  DELTAG: 'entries carrying the tag, which it deletes',
} as const;

describe.each(topologies)('keys smart_cache.lua touches on %s', (topology) => {
  let redis: Redis | Cluster;
  let prefix: string;
  let keys: CacheKeys;
  let settings: WriteSettings;
  /** Undeclared keys per operation, over every call of the test. */
  let seen: Map<string, Set<string>>;

  const entry = (key: string) => keys.entryPrefix + key;
  /** Runs one call through the tracing prologue; returns its reply and the undeclared keys it touched, sorted. */
  const traced = async (args: ScriptArg[], callKeys: string[]) => {
    const { reply, undeclared } = await traceKeys(redis, SOURCE, callKeys, args as (string | number)[]);
    const op = String(args[0]);
    for (const key of undeclared) (seen.get(op) ?? seen.set(op, new Set()).get(op)!).add(key);
    return { reply, undeclared: [...undeclared].sort() };
  };
  /** Entry keys the access log lists now. */
  const logged = async () => (await redis.zrange(keys.log, '0', '-1')).map((member) => `${keys.log.slice(0, keys.log.indexOf('}') + 1)}${member}`);
  const mset = (names: string[], maxSize = settings.maxSize) =>
    traced(
      encodeMset(Date.now(), { ...settings, maxSize }, names.map((name) => ({ text: name, ttlMs: 60_000 })), 0, names.length),
      keys.forEntries(names.map(entry)),
    );

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    keys = new CacheKeys(`${prefix}:cache:{c}:`);
    settings = { maxSize: 3, graceMs: 0, channel: keys.channel, origin: 'me' };
    seen = new Map();
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('touches only its KEYS, except the documented entries rebuilt from the access log', async () => {
    expect((await mset(['a', 'b'])).undeclared).toEqual([]);
    // The seed's SET: evicting the least recently used entry (a) deletes a key it was not given.
    const seedSet = ['SET', Date.now(), 'C', 3600, 3];
    expect(await traced(seedSet, keys.forEntry('c', false))).toEqual({ reply: 0, undeclared: [] });
    expect(await traced(['SET', Date.now(), 'D', 3600, 3], keys.forEntry('d', false))).toEqual({ reply: 1, undeclared: [entry('a')] });
    expect(await traced(['GET', Date.now()], keys.forEntry('b', false))).toEqual({ reply: 'b', undeclared: [] });
    expect((await traced(encodeMget(Date.now(), 0), keys.forEntries([entry('b'), entry('zz')]))).undeclared).toEqual([]);
    expect((await traced(encodeTouch(Date.now(), 1, 1, 1), keys.forCache([entry('c'), entry('zz')]))).undeclared).toEqual([]);

    const leaseKeys = keys.forEntry('e', true);
    const lease = await traced(encodeLease(Date.now(), { graceMs: 0, token: 't', leaseMs: 5_000, refreshBelowMs: 0, withTtl: true }), leaseKeys);
    expect([decodeLease(lease.reply).acquired, lease.undeclared]).toEqual([true, []]);
    expect((await traced(encodeRelease(Date.now(), 't', keys.channel, 'me'), leaseKeys)).undeclared).toEqual([]);
    await traced(encodeLease(Date.now(), { graceMs: 0, token: 't2', leaseMs: 5_000, refreshBelowMs: 0, withTtl: false }), leaseKeys);
    // A leased write evicts like any other: the least recently used entry (d; b and c were read since).
    const before = await logged();
    const leased = await traced(encodeLeasedSet(Date.now(), settings, { text: 'E', ttlMs: 60_000 }, 't2'), leaseKeys);
    expect(before[0]).toBe(entry('d'));
    expect(leased).toEqual({ reply: 1, undeclared: [entry('d')] });
    expect((await traced(encodeDelete(Date.now(), keys.channel, 'me'), keys.forEntry('e', true))).undeclared).toEqual([]);
    // PUT (the client's plain set) evicts like any other write: b, once f and g are in.
    const put = (name: string) => traced(encodePut(Date.now(), settings, { text: name, ttlMs: 60_000 }), keys.forEntries([entry(name)]));
    expect(await put('f')).toEqual({ reply: 0, undeclared: [] });
    expect(await put('g')).toEqual({ reply: 1, undeclared: [entry('b')] });

    // The expiry sweep: a write that moves the clock past a multiple of 16 checks up to 16 members (all of
    // them here), and STATS checks up to 64; both touch the entries they were not given.
    const names = Array.from({ length: 12 }, (_, i) => `s${i}`);
    const sweep = await mset(names, 20);
    const declared = new Set(names.map(entry));
    expect(sweep.undeclared).toEqual((await logged()).filter((key) => !declared.has(key)).sort());
    expect(sweep.undeclared.length).toBeGreaterThan(0);
    const stats = await traced(encodeStats(Date.now()), keys.forCache());
    expect(stats.undeclared).toEqual((await logged()).sort());

    // Tags: a tagged write, HAS and a DEL of many entries touch only their KEYS; DELTAG deletes the entries
    // it finds in the tag index.
    const tagged = await traced(encodeMset(Date.now(), { ...settings, maxSize: 20 }, [{ text: 'T', ttlMs: 60_000, tags: ['t'] }], 0, 1), keys.forEntries([entry('t1')]));
    expect(tagged.undeclared).toEqual([]);
    expect((await traced(encodeHas(Date.now(), 0), keys.forEntry('t1', false))).undeclared).toEqual([]);
    expect((await traced(encodeDelete(Date.now(), keys.channel, 'me'), keys.forDeletes(['s0', 's1']))).undeclared).toEqual([]);
    await mset(['t2'], 20);
    await traced(encodeMset(Date.now(), { ...settings, maxSize: 20 }, [{ text: 'T', ttlMs: 60_000, tags: ['t'] }], 0, 1), keys.forEntries([entry('t2')]));
    expect((await traced(encodeDeleteByTag(Date.now(), 't', keys.channel, 'me'), keys.forCache())).undeclared).toEqual([entry('t1'), entry('t2')]);

    const all = (await logged()).sort();
    expect((await traced(encodeClear(Date.now(), keys.channel, 'me'), keys.forCache())).undeclared).toEqual(all);

    // The operations that touched undeclared keys are exactly the documented ones.
    expect([...seen.keys()].sort()).toEqual(Object.keys(UNDECLARED).sort());
  });
});
