import { randomPrefix, waitFor } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmartCache } from '../src/index.js';

type StatsFault = 'deleted' | 'replaced' | 'expired';
type Op =
  | { op: 'get'; key: string }
  | { op: 'getMany'; keys: string[] }
  | { op: 'set'; key: string; value: number }
  | { op: 'setMany'; keys: string[]; value: number }
  | { op: 'delete'; key: string }
  | { op: 'stats'; fault: StatsFault };

const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('get' as const), key }),
  // One MGET whose keys may repeat: each lookup counts, and a key's last lookup decides its place.
  fc.record({ op: fc.constant('getMany' as const), keys: fc.array(key, { minLength: 2, maxLength: 5 }) }),
  fc.record({ op: fc.constant('set' as const), key, value: fc.integer() }),
  // One batch (an MPUT: one TTL, no tags): every entry is written, then the LRU ones beyond maxSize go.
  fc.record({ op: fc.constant('setMany' as const), keys: fc.uniqueArray(key, { minLength: 2, maxLength: 4 }), value: fc.integer() }),
  fc.record({ op: fc.constant('delete' as const), key }),
  // The stats hash lost (DEL or expiry, as an eviction or a daily rotation would) or replaced by another hash.
  fc.record({ op: fc.constant('stats' as const), fault: fc.constantFrom<StatsFault>('deleted', 'replaced', 'expired') }),
);

/** What the stats hash holds after it was replaced (a rotation script's, say): the model's counters restart there. */
const REPLACED = { hits: 7, misses: 3, sets: 11, evictions: 2 };

/** Issue 12 §4 as ops: k1, k2 written, k1 read, then the stats hash lost; the next write must evict k2. */
const issueSequence = (fault: StatsFault): [number, Op[]] => [
  2,
  [
    { op: 'set', key: 'a', value: 1 },
    { op: 'set', key: 'b', value: 2 },
    { op: 'get', key: 'a' },
    { op: 'stats', fault },
    { op: 'set', key: 'c', value: 3 },
    { op: 'get', key: 'b' },
    { op: 'get', key: 'a' },
    { op: 'get', key: 'c' },
  ],
];

/** A key looked up again before the lookups are reported: its last lookup decides its place (b is evicted). */
const repeatedLookups: [number, Op[]] = [
  2,
  [
    { op: 'set', key: 'a', value: 1 },
    { op: 'set', key: 'b', value: 2 },
    { op: 'getMany', keys: ['a', 'b', 'a'] },
    { op: 'get', key: 'b' },
    { op: 'get', key: 'a' },
    { op: 'set', key: 'c', value: 3 },
  ],
];

/** The reference: a Map in LRU order (first = least recently used) and the counters the stats must show. */
class Model {
  readonly entries = new Map<string, number>();
  hits = 0;
  misses = 0;
  sets = 0;
  evictions = 0;

  constructor(private readonly maxSize: number) {}

  get(k: string): number | undefined {
    const value = this.entries.get(k);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(k);
    this.entries.set(k, value);
    return value;
  }

  set(k: string, value: number): void {
    this.setMany([[k, value]]);
  }

  /** A batch is written whole before the bound is applied: an entry it rewrites is not evicted on the way. */
  setMany(entries: [string, number][]): void {
    for (const [k, value] of entries) {
      this.sets++;
      this.entries.delete(k);
      this.entries.set(k, value);
    }
    while (this.entries.size > this.maxSize) {
      this.entries.delete(this.entries.keys().next().value!);
      this.evictions++;
    }
  }

  delete(k: string): boolean {
    return this.entries.delete(k);
  }

  /** The counters start again from what the stats hash now holds; the entries and their order are untouched. */
  restartCounts(from: { hits: number; misses: number; sets: number; evictions: number } = { hits: 0, misses: 0, sets: 0, evictions: 0 }): void {
    ({ hits: this.hits, misses: this.misses, sets: this.sets, evictions: this.evictions } = from);
  }
}

type TagOp =
  | { op: 'set'; key: string; tags: string[] }
  | { op: 'get'; key: string }
  | { op: 'delete'; keys: string[] }
  | { op: 'deleteByTag'; tag: string };

const tag = fc.constantFrom('t1', 't2', 't3');
const tagOp: fc.Arbitrary<TagOp> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key, tags: fc.uniqueArray(tag, { maxLength: 3 }) }),
  fc.record({ op: fc.constant('get' as const), key }),
  fc.record({ op: fc.constant('delete' as const), keys: fc.uniqueArray(key, { minLength: 1, maxLength: 3 }) }),
  fc.record({ op: fc.constant('deleteByTag' as const), tag }),
);

/** The tags of the live entries, as the tag index must list them: `tag → sorted keys`. */
function expectedIndex(entries: Map<string, string[]>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, tags] of entries) for (const t of tags) (out[t] ??= []).push(k);
  for (const keys of Object.values(out)) keys.sort();
  return out;
}

describe.each(topologies)('SmartCache against an LRU model on %s', (topology) => {
  const prefix = randomPrefix();

  const redis = suiteClient(topology, prefix);

  it('keeps exactly the model\'s entries, never more than maxSize, and exact statistics, whatever happens to the stats key', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 30 }), async (maxSize, ops) => {
        const name = `m${run++}`;
        const cache = new SmartCache<number>(redis, { name, prefix, maxSize, defaultTtlMs: 60_000 });
        const log = `${prefix}:cache:{${name}}:log`;
        const statsKey = `${prefix}:cache:{${name}}:stats`;
        const model = new Model(maxSize);
        for (const o of ops) {
          if (o.op === 'get') expect(await cache.get(o.key)).toBe(model.get(o.key));
          else if (o.op === 'getMany') expect(await cache.getMany(o.keys)).toEqual(o.keys.map((k) => model.get(k)));
          else if (o.op === 'set') {
            await cache.set(o.key, o.value);
            model.set(o.key, o.value);
          } else if (o.op === 'setMany') {
            // Each entry its own value, so a value written to the wrong key shows.
            const entries = o.keys.map((k, i): [string, number] => [k, o.value + i]);
            await cache.setMany(entries.map(([k, value]) => ({ key: k, value })));
            model.setMany(entries);
          } else if (o.op === 'delete') expect(await cache.delete(o.key)).toBe(model.delete(o.key));
          else {
            // stats() sends the lookups not yet reported, so they land in the old hash, as the model counts them.
            await cache.stats();
            await redis.del(statsKey);
            if (o.fault === 'replaced') await redis.hset(statsKey, REPLACED);
            if (o.fault === 'expired') {
              await redis.hset(statsKey, 'hits', 0);
              await redis.pexpire(statsKey, 1);
              await waitFor(async () => (await redis.exists(statsKey)) === 0);
            }
            model.restartCounts(o.fault === 'replaced' ? REPLACED : undefined);
          }
          expect(await redis.zcard(log)).toBeLessThanOrEqual(maxSize);
        }
        // stats() first: it also sends the lookups this process has not reported yet.
        expect(await cache.stats()).toMatchObject({
          hits: model.hits,
          misses: model.misses,
          sets: model.sets,
          evictions: model.evictions,
          size: model.entries.size,
          maxSize,
        });
        // The access log holds exactly the live entries, least recently used first.
        const members = await redis.zrange(log, '0', '-1');
        expect(members.map((m) => m.slice(':e:'.length))).toEqual([...model.entries.keys()]);
        await cache.close();
      }),
      { numRuns: topology === 'cluster' ? 25 : 40, examples: [issueSequence('deleted'), issueSequence('replaced'), issueSequence('expired'), repeatedLookups] },
    );
  });

  it('keeps the tag index to exactly the tags of live entries, through writes, evictions, deletes and deleteByTag', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(tagOp, { maxLength: 30 }), async (maxSize, ops) => {
        const name = `t${run++}`;
        const cache = new SmartCache<number>(redis, { name, prefix, maxSize, defaultTtlMs: 60_000 });
        const base = `${prefix}:cache:{${name}}:`;
        // Live entries in LRU order (first = least recently used) with their tags.
        const entries = new Map<string, string[]>();
        const touch = (k: string, tags: string[]) => {
          entries.delete(k);
          entries.set(k, tags);
        };
        for (const o of ops) {
          if (o.op === 'set') {
            await cache.set(o.key, 1, { tags: o.tags });
            touch(o.key, o.tags);
            if (entries.size > maxSize) entries.delete(entries.keys().next().value!);
          } else if (o.op === 'get') {
            const tags = entries.get(o.key);
            expect(await cache.get(o.key)).toBe(tags === undefined ? undefined : 1);
            if (tags !== undefined) touch(o.key, tags);
          } else if (o.op === 'delete') {
            const existed = o.keys.filter((k) => entries.delete(k)).length;
            expect(await cache.deleteMany(o.keys)).toBe(existed);
          } else {
            const tagged = [...entries].filter(([, tags]) => tags.includes(o.tag)).map(([k]) => k);
            for (const k of tagged) entries.delete(k);
            expect(await cache.deleteByTag(o.tag)).toBe(tagged.length);
          }
          const index: Record<string, string[]> = {};
          for (const pair of await redis.zrange(`${base}tags`, '0', '-1')) {
            const [t, member] = pair.split('\0') as [string, string];
            (index[t] ??= []).push(member.slice(':e:'.length));
          }
          for (const keys of Object.values(index)) keys.sort();
          expect(index).toEqual(expectedIndex(entries));
          const tagged = Object.entries(await redis.hgetall(`${base}tagged`)).map(([m, tags]) => [m.slice(':e:'.length), tags.split('\0').sort()]);
          expect(Object.fromEntries(tagged)).toEqual(Object.fromEntries([...entries].filter(([, tags]) => tags.length > 0).map(([k, tags]) => [k, [...tags].sort()])));
        }
        await cache.stats();
        expect((await redis.zrange(`${base}log`, '0', '-1')).map((m) => m.slice(':e:'.length))).toEqual([...entries.keys()]);
        await cache.close();
      }),
      { numRuns: topology === 'cluster' ? 25 : 40 },
    );
  });
});
