import { SmartCache } from '@cyredis/cache';
import { randomPrefix, RedisServer, sleep, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { underLoad } from '../src/scenario.js';
import type { Workload } from '../src/workloads.js';

// Keys lost: the server forgets some of the cache's keys mid-run, as an allkeys-* eviction (a DEL of one key
// is exactly that) or a restart without persistence (FLUSHALL) would. Single node: a private server it may flush.
let server: RedisServer;
let client: Redis;
let admin: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  client = server.client();
  admin = server.client();
});
afterAll(async () => {
  client.disconnect();
  admin.disconnect();
  await server.stop();
});

const NAME = 'faults';
const MAX_SIZE = 32;
/** More keys than maxSize, so the LRU evicts all along. */
const KEYS = Array.from({ length: 48 }, (_, i) => `k${i}`);
const TIMEOUT_MS = 5_000;
/** Longer than any call may take: one past it has hung (a call settles within timeoutMs, twice for getOrSet). */
const HUNG_MS = 3 * TIMEOUT_MS;

class Violation extends Error {}

/** Every key of the cache the workload runs, by what it is: entries, leases, the access log, the stats hash. */
async function cacheKeys(prefix: string, part: 'e' | 'l' | 'log' | 'stats'): Promise<string[]> {
  const base = `${prefix}:cache:{${NAME}}:`;
  if (part === 'log' || part === 'stats') return [base + part];
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${base}${part}:*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/** Deletes the keys found, if any. */
async function deleteAll(keys: string[]): Promise<void> {
  if (keys.length > 0) await admin.del(...keys);
}

/** Fails a call that has not settled within HUNG_MS with an untyped error, which the scenario reports. */
function settles<T>(call: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${HUNG_MS} ms`)), HUNG_MS);
  });
  return Promise.race([call, hung]).finally(() => clearTimeout(timer));
}

/**
 * Two instances with L1 (two processes, as far as the cache can tell) writing, reading and loading 48 keys
 * under maxSize 32. After the fault: a value written through one is what the other reads (no stale L1 copy),
 * and once every key was written again, at most maxSize entries exist and the access log lists exactly them.
 * (An entry that outlives a lost log and is never read or written again stays outside the bound until its
 * TTL, so the workload uses only its 48 keys.)
 */
const cache: Workload = {
  name: 'cache',
  start: (redis, prefix) => {
    const options = { name: NAME, prefix, maxSize: MAX_SIZE, l1: { maxEntries: 100 }, timeoutMs: TIMEOUT_MS };
    const writer = new SmartCache<{ v: number }>(redis, options);
    const reader = new SmartCache<{ v: number }>(redis, options);
    return {
      op: async (i) => {
        const key = KEYS[i % KEYS.length]!;
        // Writes carry one of three tags; now and then one tag's entries are removed.
        const tags = [`t${i % 3}`];
        const call: Promise<unknown> =
          i % 4 === 0
            ? writer.set(key, { v: i }, { tags })
            : i % 4 === 1
              ? reader.getOrSet(key, () => ({ v: -i }))
              : i % 16 === 2
                ? writer.deleteByTag(tags[0]!)
                : (i % 2 ? reader : writer).get(key);
        await settles(call, `call ${i}`);
      },
      verify: async () => {
        for (const [n, key] of KEYS.entries()) {
          await reader.get(key);
          await writer.set(key, { v: -n - 1 });
          await waitFor(async () => (await reader.get(key))?.v === -n - 1, { timeoutMs: 10_000, message: `stale value of ${key}` });
        }
        const entries = await cacheKeys(prefix, 'e');
        if (entries.length > MAX_SIZE) throw new Violation(`${entries.length} entries under maxSize ${MAX_SIZE}`);
        const members = await admin.zrange(`${prefix}:cache:{${NAME}}:log`, '0', '-1');
        const listed = members.map((m) => `${prefix}:cache:{${NAME}}${m}`).sort();
        if (listed.join() !== [...entries].sort().join()) throw new Violation(`the log lists ${listed.length} entries, ${entries.length} exist`);
        // The last maxSize keys written are the ones kept: the LRU order survived the fault.
        const kept = KEYS.slice(-MAX_SIZE).map((key) => `${prefix}:cache:{${NAME}}:e:${key}`).sort();
        if (entries.sort().join() !== kept.join()) throw new Violation('the LRU kept other entries than the last written');
      },
      close: async () => {
        await Promise.all([writer.close(), reader.close()]);
      },
    };
  },
  isolated: () => Promise.resolve(),
};

/** Each fault strikes five times, 100 ms apart, while the load runs. */
const faults: [string, (prefix: string) => Promise<unknown>][] = [
  ['every entry deleted', async (prefix) => deleteAll(await cacheKeys(prefix, 'e'))],
  ['the access log (LRU index) deleted', (prefix) => admin.del(`${prefix}:cache:{${NAME}}:log`)],
  ['the stats hash deleted', (prefix) => admin.del(`${prefix}:cache:{${NAME}}:stats`)],
  ['the tag index and the entries\' tags deleted', (prefix) => admin.del(`${prefix}:cache:{${NAME}}:tags`, `${prefix}:cache:{${NAME}}:tagged`)],
  ['every lease deleted', async (prefix) => deleteAll(await cacheKeys(prefix, 'l'))],
  ['FLUSHALL', () => admin.flushall()],
];

describe('cache when Redis loses its keys', () => {
  it.each(faults)('%s mid-run: no stale L1 read, no hung or untyped call, the size bound recovers', async (_, fault) => {
    const prefix = randomPrefix('keys-lost');
    // A third instance writes right after each fault: the newest entry must survive its own write (it did
    // not when a lost stats hash restarted the LRU clock: the write after its loss evicted itself).
    const probe = new SmartCache<{ v: number }>(client, { name: NAME, prefix, maxSize: MAX_SIZE, timeoutMs: TIMEOUT_MS });
    // A full cache from the start, so every write evicts.
    await probe.setMany(KEYS.map((key) => ({ key, value: { v: 0 } })));
    const report = await underLoad(
      cache,
      client,
      async () => {
        for (let i = 0; i < 5; i++) {
          await fault(prefix);
          // One of the workload's keys: an entry nobody touches again would stay outside a lost log (see verify).
          await probe.set(KEYS[i]!, { v: i });
          if ((await admin.exists(`${prefix}:cache:{${NAME}}:e:${KEYS[i]!}`)) === 0) throw new Violation('the newest write was evicted first');
          await sleep(100);
        }
      },
      { prefix },
    ).finally(() => probe.close());
    // Losing keys is no outage: every call succeeds (a lost key is a miss, a lost lease drops one late write).
    expect(report.byKind).toEqual({});
    expect(report.failed).toBe(0);
  });
});
