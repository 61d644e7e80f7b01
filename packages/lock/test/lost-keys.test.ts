import { randomPrefix, RedisServer } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockManager } from '../src/index.js';

describe.each(topologies)('when the server forgets a lock, on %s', (topology) => {
  let prefix: string;
  let locks: LockManager;
  const redis = suiteClient(topology);

  beforeEach(() => {
    prefix = randomPrefix();
    locks = new LockManager(redis, { prefix, ttlMs: 300_000 });
  });
  afterEach(async () => {
    await locks.close();
    await deleteByPrefix(redis, prefix);
  });

  // A name with a hash tag lives under other keys (see keys.ts); its token must survive the same loss.
  it.each(['r', '{acct}:1'])('a key deleted during a valid lease (an eviction) of %s: the next owner gets a higher token', async (name) => {
    const first = await locks.acquire(name);
    await redis.del(locks.keyOf(name));
    const second = await locks.acquire(name);
    expect(second.owner).not.toBe(first.owner);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    // The first holder finds out at its next extend or release.
    await expect(first.extend()).rejects.toThrow(/no longer held/);
    expect(await first.release()).toBe(false);
    expect(await second.release()).toBe(true);
  });

  it('an idle resource costs nothing a minute after its lease ends: 1,000 names leave only expiring keys', async () => {
    const names = Array.from({ length: 1_000 }, (_, i) => `user:${i}`);
    const held = await Promise.all(names.map((name) => locks.acquire(name, { ttlMs: 5_000 })));
    await Promise.all(held.slice(0, 500).map((lock) => lock.release()));
    // Released or not, each key is gone within a minute of the end of its 5 s lease.
    for (const name of names) {
      const pttl = await redis.pttl(locks.keyOf(name));
      expect(pttl, name).toBeGreaterThan(0);
      expect(pttl, name).toBeLessThanOrEqual(60_000);
    }
  });
});

describe('a restart without persistence (FLUSHALL)', () => {
  it('the first token after it is higher than the highest before it, for every resource', async () => {
    const server = await RedisServer.start();
    const redis = server.client();
    const locks = new LockManager(redis, { prefix: randomPrefix() });
    try {
      const resources = ['a', 'b', 'c'];
      const highest = new Map<string, bigint>();
      for (let round = 0; round < 20; round++) {
        for (const resource of resources) {
          const lock = await locks.acquire(resource, { ttlMs: 60_000 });
          highest.set(resource, lock.fencingToken);
          if (round < 19) await lock.release();
        }
      }
      await server.command('FLUSHALL');
      for (const resource of resources) {
        // The last round's leases were still valid: the server forgot them with everything else.
        const after = await locks.acquire(resource);
        expect(after.fencingToken).toBeGreaterThan(highest.get(resource)!);
        await after.release();
      }
    } finally {
      await locks.close();
      redis.disconnect();
      await server.stop();
    }
  });
});

describe('eviction warning', () => {
  async function warningsFor(policy: string): Promise<Error[]> {
    const server = await RedisServer.start({ args: ['--maxmemory-policy', policy] });
    const redis = server.client();
    const locks = new LockManager(redis, { prefix: randomPrefix() });
    const warnings: Error[] = [];
    const listener = (warning: Error) => {
      if ((warning as { code?: string }).code === 'CYREDIS_EVICTION') warnings.push(warning);
    };
    process.on('warning', listener);
    try {
      await (await locks.acquire('a')).release();
      await (await locks.acquire('b')).release();
      // The check's CONFIG GET went out before the first script call, on the same connection.
      await new Promise((resolve) => setImmediate(resolve));
      return warnings;
    } finally {
      process.off('warning', listener);
      await locks.close();
      redis.disconnect();
      await server.stop();
    }
  }

  it('warns once at first use when the server may evict lock keys, naming the risk', async () => {
    const warnings = await warningsFor('allkeys-lru');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toContain('@cyredis/lock');
    expect(warnings[0]!.message).toContain('allkeys-lru');
    expect(warnings[0]!.message).toContain('second owner');
  });

  it('stays quiet under noeviction', async () => {
    expect(await warningsFor('noeviction')).toEqual([]);
  });
});
