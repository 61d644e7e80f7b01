import { randomPrefix } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmartCache } from '../src/index.js';

type Op = { op: 'get'; key: string } | { op: 'set'; key: string; value: number } | { op: 'delete'; key: string };

const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('get' as const), key }),
  fc.record({ op: fc.constant('set' as const), key, value: fc.integer() }),
  fc.record({ op: fc.constant('delete' as const), key }),
);

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
    this.sets++;
    this.entries.delete(k);
    this.entries.set(k, value);
    if (this.entries.size > this.maxSize) {
      this.entries.delete(this.entries.keys().next().value!);
      this.evictions++;
    }
  }

  delete(k: string): boolean {
    return this.entries.delete(k);
  }
}

describe.each(topologies)('SmartCache against an LRU model on %s', (topology) => {
  const prefix = randomPrefix();

  const redis = suiteClient(topology, prefix);

  it('keeps exactly the model\'s entries, never more than maxSize, and exact statistics', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 30 }), async (maxSize, ops) => {
        const name = `m${run++}`;
        const cache = new SmartCache<number>(redis, { name, prefix, maxSize, defaultTtlMs: 60_000 });
        const log = `${prefix}:cache:{${name}}:log`;
        const model = new Model(maxSize);
        for (const o of ops) {
          if (o.op === 'get') expect(await cache.get(o.key)).toBe(model.get(o.key));
          else if (o.op === 'set') {
            await cache.set(o.key, o.value);
            model.set(o.key, o.value);
          } else expect(await cache.delete(o.key)).toBe(model.delete(o.key));
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
      { numRuns: topology === 'cluster' ? 25 : 40 },
    );
  });
});
