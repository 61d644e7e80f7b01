import { SmartCache } from '@cyredis/cache';
import { createKeyv } from '@keyv/redis';
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import { createCache, type Cache } from 'cache-manager';
import type { Redis } from 'ioredis';
import { Keyv, type KeyvStoreAdapter } from 'keyv';
import { throughput, type BenchCase, type BenchGroup, type BenchSuite } from '../harness.js';

/** A 1 KB value, as an object so every library pays for its serializer. */
const VALUE = { id: 1, body: 'x'.repeat(1000) };
const KEYS = 1024;

/**
 * Key indexes drawn Zipf(1) over the KEYS keys (rank r with weight 1/r, a common model of cache traffic: a few
 * keys take most reads), from a fixed seed so every run and every case reads the same sequence.
 */
function zipfDraws(count: number): Uint16Array {
  const cdf = new Float64Array(KEYS);
  let total = 0;
  for (let r = 0; r < KEYS; r++) {
    total += 1 / (r + 1);
    cdf[r] = total;
  }
  let seed = 1;
  const draws = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    seed = (seed * 48271) % 2147483647;
    const u = (seed / 2147483647) * total;
    let lo = 0;
    let hi = KEYS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    draws[i] = lo;
  }
  return draws;
}
const TTL_MS = 10 * 60_000;
const MEMORY_ENTRIES = 5_000;

/**
 * The floor of a one-call write with SmartCache's guarantees: only the six calls its `set` makes (clock, size,
 * tags check, value, LRU stamp, bus message), with no input checks, eviction or sweep. Against a plain `SET PX`
 * at 1 in flight it shows what any such script costs before its own logic.
 */
const FLOOR_SCRIPT = `local c = redis.call('HINCRBY', KEYS[3], 'clock', 1)
redis.call('ZCARD', KEYS[2])
redis.call('HEXISTS', KEYS[5], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], c, ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 0`;

/** The smallest Keyv store over ioredis, to tell cache-manager's own cost from node-redis's. */
function ioredisKeyvStore(redis: Redis, prefix: string): KeyvStoreAdapter {
  const store = {
    opts: {},
    get: (key: string) => redis.get(prefix + key).then((v) => v ?? undefined),
    set: (key: string, value: string, ttl?: number) => (ttl ? redis.set(prefix + key, value, 'PX', ttl) : redis.set(prefix + key, value)),
    delete: (key: string) => redis.del(prefix + key).then((n) => n > 0),
    clear: () => Promise.resolve(),
    on: () => store,
  };
  return store as unknown as KeyvStoreAdapter;
}

const opsCase = (name: string, concurrency: number, durationMs: number, op: (i: number) => Promise<unknown>): BenchCase => ({
  name,
  unit: 'ops/s',
  higherIsBetter: true,
  sample: () => throughput(op, concurrency, durationMs),
});

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/**
 * SmartCache against bentocache (L2 only, and L1+L2 with its Redis bus) and cache-manager 7 (Keyv over
 * node-redis, and over ioredis), with a plain ioredis GET/SET as the ceiling of each Redis-side row.
 */
const closers: (() => Promise<unknown>)[] = [];

const suite: BenchSuite = {
  name: 'cache',
  groups: async ({ client, redisUrl, durationMs }) => {
    const redis = client();
    const busClient = client();
    const keys = Array.from({ length: KEYS }, (_, i) => `u:${i}`);
    const key = (i: number) => keys[i & (KEYS - 1)]!;
    const plainKeys = keys.map((k) => `bench:plain:${k}`);
    const text = JSON.stringify(VALUE);
    const floorSha = (await redis.script('LOAD', FLOOR_SCRIPT)) as string;
    const floorKeys = keys.map((k) => `bench:floor:{f}:e:${k}`);
    const floorWrite = (i: number) =>
      redis.evalsha(floorSha, 5, floorKeys[i & (KEYS - 1)]!, 'bench:floor:{f}:log', 'bench:floor:{f}:stats', 'bench:floor:{f}:tags', 'bench:floor:{f}:tagh', keys[i & (KEYS - 1)]!, JSON.stringify(VALUE), TTL_MS, 'bench:floor:bus', Date.now(), 100_000, 'origin');

    const smart = new SmartCache<typeof VALUE>(redis, { name: 'bench', maxSize: 100_000, defaultTtlMs: TTL_MS });
    const smartL1 = new SmartCache<typeof VALUE>(redis, { name: 'bench-l1', maxSize: 100_000, defaultTtlMs: TTL_MS, l1: { maxEntries: 10_000 } });
    const smartTags = new SmartCache<typeof VALUE>(redis, { name: 'bench-tags', maxSize: 100_000, defaultTtlMs: TTL_MS });
    const tagged = (i: number) => ({ tags: ['tenant:7', `user:${i & 127}`] });
    const bentoL2 = new BentoCache({
      default: 'l2',
      stores: { l2: bentostore().useL2Layer(redisDriver({ connection: redis, prefix: 'bench:bento2' })) },
    });
    const bentoL1 = new BentoCache({
      default: 'l1',
      stores: {
        l1: bentostore()
          .useL1Layer(memoryDriver({ maxItems: 10_000 }))
          .useL2Layer(redisDriver({ connection: redis, prefix: 'bench:bento1' }))
          .useBus(redisBusDriver({ connection: busClient.options })),
      },
    });
    const keyvNodeRedis = createKeyv(redisUrl, { namespace: 'bench:cm' });
    const cmNodeRedis: Cache = createCache({ stores: [keyvNodeRedis] });
    const cmIoredis: Cache = createCache({ stores: [new Keyv({ store: ioredisKeyvStore(redis, 'bench:cmio:'), namespace: '' })] });
    closers.push(
      () => smart.close(),
      () => smartL1.close(),
      () => smartTags.close(),
      () => bentoL2.disconnect(),
      () => bentoL1.disconnect(),
      () => cmNodeRedis.disconnect(),
      () => cmIoredis.disconnect(),
    );

    for (let i = 0; i < KEYS; i++) {
      await redis.set(plainKeys[i]!, text, 'PX', TTL_MS);
      await smart.set(keys[i]!, VALUE);
      await smartL1.set(keys[i]!, VALUE);
      await smartTags.set(keys[i]!, VALUE, tagged(i));
      await bentoL2.set({ key: keys[i]!, value: VALUE, ttl: TTL_MS });
      await bentoL1.set({ key: keys[i]!, value: VALUE, ttl: TTL_MS });
      await cmNodeRedis.set(keys[i]!, VALUE, TTL_MS);
      await cmIoredis.set(keys[i]!, VALUE, TTL_MS);
    }
    // Warm every L1 and every script cache before timing.
    for (let i = 0; i < KEYS; i++) await Promise.all([smartL1.get(keys[i]!), bentoL1.get({ key: keys[i]! })]);

    const groups: BenchGroup[] = [];
    for (const concurrency of [1, 64]) {
      groups.push({
        title: `get hit, Redis tier, 1 KB value, ${concurrency} in flight (ops/s)`,
        cases: [
          opsCase('ioredis GET + JSON.parse (ceiling)', concurrency, durationMs, async (i) => JSON.parse((await redis.get(plainKeys[i & (KEYS - 1)]!))!) as typeof VALUE),
          opsCase('bentocache (L2 only)', concurrency, durationMs, (i) => bentoL2.get({ key: key(i) })),
          opsCase('cache-manager + @keyv/redis', concurrency, durationMs, (i) => cmNodeRedis.get(key(i))),
          opsCase('cache-manager + Keyv over ioredis', concurrency, durationMs, (i) => cmIoredis.get(key(i))),
          opsCase('SmartCache (Redis only)', concurrency, durationMs, (i) => smart.get(key(i))),
        ],
      });
      groups.push({
        title: `get hit, L1 + L2, 1 KB value, ${concurrency} in flight (ops/s)`,
        cases: [
          opsCase('bentocache (L1 + L2 + bus)', concurrency, durationMs, (i) => bentoL1.get({ key: key(i) })),
          opsCase('SmartCache (L1 + Redis)', concurrency, durationMs, (i) => smartL1.get(key(i))),
        ],
      });
      groups.push({
        title: `set, 1 KB value, ${concurrency} in flight (ops/s)`,
        cases: [
          opsCase('ioredis SET PX (ceiling)', concurrency, durationMs, (i) => redis.set(plainKeys[i & (KEYS - 1)]!, JSON.stringify(VALUE), 'PX', TTL_MS)),
          opsCase("EVALSHA of only a set's six calls (floor of a one-call write)", concurrency, durationMs, floorWrite),
          opsCase('bentocache (L2 only)', concurrency, durationMs, (i) => bentoL2.set({ key: key(i), value: VALUE, ttl: TTL_MS })),
          opsCase('bentocache (L1 + L2 + bus)', concurrency, durationMs, (i) => bentoL1.set({ key: key(i), value: VALUE, ttl: TTL_MS })),
          opsCase('cache-manager + @keyv/redis', concurrency, durationMs, (i) => cmNodeRedis.set(key(i), VALUE, TTL_MS)),
          opsCase('cache-manager + Keyv over ioredis', concurrency, durationMs, (i) => cmIoredis.set(key(i), VALUE, TTL_MS)),
          opsCase('SmartCache (Redis only)', concurrency, durationMs, (i) => smart.set(key(i), VALUE)),
          opsCase('SmartCache (L1 + Redis)', concurrency, durationMs, (i) => smartL1.set(key(i), VALUE)),
          opsCase('SmartCache, 2 tags (Redis only)', concurrency, durationMs, (i) => smartTags.set(key(i), VALUE, tagged(i & (KEYS - 1)))),
        ],
      });
    }
    // Hot keys: lookups of the same key within a few ms (what the per-key TOUCH of plain reads is for).
    const zipf = zipfDraws(1 << 16);
    const hot = (i: number) => zipf[i & 0xffff]!;
    groups.push({
      title: 'get hit, Redis tier, 1 KB value, keys drawn Zipf(1), 64 in flight (ops/s)',
      cases: [
        opsCase('ioredis GET + JSON.parse (ceiling)', 64, durationMs, async (i) => JSON.parse((await redis.get(plainKeys[hot(i)]!))!) as typeof VALUE),
        opsCase('bentocache (L2 only)', 64, durationMs, (i) => bentoL2.get({ key: keys[hot(i)]! })),
        opsCase('cache-manager + @keyv/redis', 64, durationMs, (i) => cmNodeRedis.get(keys[hot(i)]!)),
        opsCase('SmartCache (Redis only)', 64, durationMs, (i) => smart.get(keys[hot(i)]!)),
      ],
    });
    const load = () => Promise.resolve(VALUE);
    groups.push({
      title: 'getOrSet hit, 1 KB value, 64 in flight (ops/s)',
      cases: [
        opsCase('bentocache (L2 only)', 64, durationMs, (i) => bentoL2.getOrSet({ key: key(i), factory: load, ttl: TTL_MS })),
        opsCase('bentocache (L1 + L2 + bus)', 64, durationMs, (i) => bentoL1.getOrSet({ key: key(i), factory: load, ttl: TTL_MS })),
        opsCase('cache-manager wrap (@keyv/redis)', 64, durationMs, (i) => cmNodeRedis.wrap(key(i), load, TTL_MS)),
        opsCase('SmartCache (Redis only)', 64, durationMs, (i) => smart.getOrSet(key(i), load)),
        opsCase('SmartCache (L1 + Redis)', 64, durationMs, (i) => smartL1.getOrSet(key(i), load)),
      ],
    });

    // Redis memory per entry: used_memory before and after writing MEMORY_ENTRIES fresh entries.
    let round = 0;
    const memoryCase = (name: string, write: (k: string) => Promise<unknown>): BenchCase => ({
      name,
      unit: 'bytes/entry',
      higherIsBetter: false,
      sample: async () => {
        const r = round++;
        const before = await usedMemory(redis);
        for (let i = 0; i < MEMORY_ENTRIES; i += 100) {
          await Promise.all(Array.from({ length: 100 }, (_, j) => write(`m${r}:${i + j}`)));
        }
        return ((await usedMemory(redis)) - before) / MEMORY_ENTRIES;
      },
    });
    const memSmart = new SmartCache<typeof VALUE>(redis, { name: 'bench-mem', maxSize: 1_000_000, defaultTtlMs: TTL_MS });
    const memTagged = new SmartCache<typeof VALUE>(redis, { name: 'bench-mem-tags', maxSize: 1_000_000, defaultTtlMs: TTL_MS });
    closers.push(() => memSmart.close(), () => memTagged.close());
    // Two tags per entry: one shared by many entries (a tenant), one by few (a user).
    const tagsOf = (k: string) => ['tenant:7', `user:${Number(k.slice(k.indexOf(':') + 1)) % 1000}`];
    groups.push({
      title: `Redis memory per entry, 1 KB value, ${MEMORY_ENTRIES} entries (used_memory delta)`,
      cases: [
        memoryCase('ioredis SET PX (floor)', (k) => redis.set(`bench:mem:plain:${k}`, text, 'PX', TTL_MS)),
        memoryCase('bentocache (L2 only)', (k) => bentoL2.set({ key: `mem:${k}`, value: VALUE, ttl: TTL_MS })),
        memoryCase('cache-manager + @keyv/redis', (k) => cmNodeRedis.set(`mem:${k}`, VALUE, TTL_MS)),
        memoryCase('SmartCache (entry + LRU index)', (k) => memSmart.set(k, VALUE)),
        memoryCase('SmartCache, 2 tags per entry (entry + LRU index + tag index)', (k) => memTagged.set(k, VALUE, { tags: tagsOf(k) })),
      ],
    });
    groups.push({
      title: 'SmartCache index overhead per entry (MEMORY USAGE of the index keys ÷ entries)',
      cases: [
        {
          name: 'SmartCache access log',
          unit: 'bytes/entry',
          higherIsBetter: false,
          sample: async () => {
            const entries = await redis.zcard('cyredis:cache:{bench-mem}:log');
            const bytes = Number(await redis.call('MEMORY', 'USAGE', 'cyredis:cache:{bench-mem}:log', 'SAMPLES', '0'));
            return bytes / entries;
          },
        },
        {
          name: 'SmartCache tag index + entry tags, 2 tags per entry',
          unit: 'bytes/entry',
          higherIsBetter: false,
          sample: async () => {
            const entries = await redis.zcard('cyredis:cache:{bench-mem-tags}:log');
            let bytes = 0;
            for (const key of ['cyredis:cache:{bench-mem-tags}:tags', 'cyredis:cache:{bench-mem-tags}:tagged']) {
              bytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
            }
            return bytes / entries;
          },
        },
      ],
    });
    return groups;
  },
  teardown: async () => {
    await Promise.all(closers.splice(0).map((close) => close().catch(() => undefined)));
  },
};

export default suite;
