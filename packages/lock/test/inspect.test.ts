import { freePort, randomPrefix, startIndependent, waitFor, type RedisServer } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, LockManager, RedisUnavailableError, type HeldLock, type ListHeldOptions } from '../src/index.js';

/** Every page of a listing, each checked to hold at most `limit` locks. */
async function allPages(locks: LockManager, options: Omit<ListHeldOptions, 'cursor'> = {}): Promise<HeldLock[]> {
  const out: HeldLock[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await locks.listHeld({ ...options, ...(cursor === undefined ? {} : { cursor }) });
    expect(page.locks.length).toBeLessThanOrEqual(options.limit ?? 100);
    out.push(...page.locks);
    cursor = page.cursor;
    expect(++pages).toBeLessThan(10_000);
  } while (cursor !== undefined);
  return out;
}

const byResource = (locks: HeldLock[]) => new Map(locks.map((l) => [`${l.kind} ${l.resource}`, l]));

// Discovery and read-only inspection: the registry of lock prefixes and the listing of held locks.
describe.each(topologies)('LockManager inspection on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let locks: LockManager;
  /** The keys under a prefix on every master, sorted. */
  const keysUnder = async (p: string) => {
    const out: string[] = [];
    for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${p}:*`, 'COUNT', 1000);
        out.push(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
    return out.sort();
  };
  beforeEach(() => {
    prefix = randomPrefix();
    locks = new LockManager(redis, { prefix, ttlMs: 60_000, timeoutMs: 10_000 });
  });
  afterEach(async () => {
    await locks.close();
    await deleteByPrefix(redis, prefix);
  });

  it('listHeld shows every kind with its holders, lease and fencing token, and nothing free', async () => {
    const mutex = await locks.acquire('orders:1', { owner: 'worker-a' });
    const gone = await locks.acquire('orders:2');
    await gone.release();
    const semaphore = locks.semaphore('pool', { permits: 3 });
    const p1 = await semaphore.acquire({ owner: 's1', count: 2 });
    await semaphore.acquire({ owner: 's2' });
    const rw = locks.readWrite('config');
    await rw.read.acquire({ owner: 'r1' });
    await rw.read.acquire({ owner: 'r2' });
    const written = locks.readWrite('schema');
    const writer = await written.write.acquire({ owner: 'w1' });
    const fair = locks.fair('turns');
    const f = await fair.acquire({ owner: 'f1' });
    const before = await keysUnder(prefix);

    const held = byResource((await locks.listHeld()).locks);
    expect([...held.keys()].sort()).toEqual(['fair turns', 'mutex orders:1', 'readWrite config', 'readWrite schema', 'semaphore pool']);
    const m = held.get('mutex orders:1')!;
    expect(m).toMatchObject({ owner: 'worker-a', fencingToken: mutex.fencingToken, holders: [{ owner: 'worker-a', count: 1 }] });
    expect(m.ttlMs).toBeGreaterThan(50_000);
    expect(m.ttlMs).toBeLessThanOrEqual(60_000);
    const s = held.get('semaphore pool')!;
    expect(s.owner).toBeUndefined();
    expect(s.permits).toBe(3);
    expect(s.holders.map((h) => [h.owner, h.count]).sort()).toEqual([
      ['s1', 2],
      ['s2', 1],
    ]);
    expect(s.fencingToken).toBeGreaterThan(p1.fencingToken);
    const readers = held.get('readWrite config')!;
    expect(readers.owner).toBeUndefined();
    expect(readers.holders.map((h) => [h.owner, h.mode]).sort()).toEqual([
      ['r1', 'read'],
      ['r2', 'read'],
    ]);
    expect(held.get('readWrite schema')).toMatchObject({ owner: 'w1', holders: [{ owner: 'w1', mode: 'write', count: 1 }], fencingToken: writer.fencingToken });
    expect(held.get('fair turns')).toMatchObject({ owner: 'f1', waiting: 0, fencingToken: f.fencingToken });
    // Reads only: no key was created or removed, and every lock is still held.
    expect(await keysUnder(prefix)).toEqual(before);
    expect((await locks.status('orders:1')).owner).toBe('worker-a');

    await mutex.release();
    await writer.release();
    const after = byResource((await locks.listHeld()).locks);
    expect(after.has('mutex orders:1')).toBe(false);
    expect(after.has('readWrite schema')).toBe(false);
    expect(after.size).toBe(3);
  });

  it('pages through many locks with a cursor, bounded by limit, missing none', async () => {
    const names = Array.from({ length: 45 }, (_, i) => `job:${i}`);
    await Promise.all(names.map((n) => locks.acquire(n)));
    for (const limit of [1, 7, 1000]) {
      const seen = await allPages(locks, { limit });
      expect(new Set(seen.map((l) => l.resource))).toEqual(new Set(names));
    }
  });

  it('match filters resource names; names with braces and % come back as given; other prefixes stay apart', async () => {
    const odd = ['a{b}c', '100%', '{x}'];
    for (const name of [...odd, 'keep:1', 'keep:2', 'other']) await locks.acquire(name);
    const others = new LockManager(redis, { prefix: `${prefix}x`, ttlMs: 60_000 });
    await others.acquire('keep:3');
    expect((await allPages(locks, { match: 'keep:*' })).map((l) => l.resource).sort()).toEqual(['keep:1', 'keep:2']);
    expect((await allPages(locks, { match: 'a{b}*' })).map((l) => l.resource)).toEqual(['a{b}c']);
    const all = (await allPages(locks)).map((l) => l.resource).sort();
    expect(all).toEqual([...odd, 'keep:1', 'keep:2', 'other'].sort());
    expect((await allPages(others)).map((l) => l.resource)).toEqual(['keep:3']);
    await others.close();
    await deleteByPrefix(redis, `${prefix}x`);
  });

  it('names with a hash tag come back as given, of every kind; match tests the name alone', async () => {
    await locks.acquire('{acct}:1');
    await locks.acquire('{{a}');
    await locks.acquire('{ab}x');
    await locks.semaphore('{acct}:pool', { permits: 2 }).acquire();
    await locks.readWrite('{acct}:doc').write.acquire();
    await locks.fair('{acct}:turns').acquire();
    const listed = async (match?: string) => {
      const page = await locks.listHeld(match === undefined ? {} : { match });
      expect(page.cursor).toBeUndefined();
      return page.locks.map((l) => `${l.kind} ${l.resource}`).sort();
    };
    expect(await listed()).toEqual(['fair {acct}:turns', 'mutex {ab}x', 'mutex {acct}:1', 'mutex {{a}', 'readWrite {acct}:doc', 'semaphore {acct}:pool']);
    expect(await listed('{acct}:*')).toEqual(['fair {acct}:turns', 'mutex {acct}:1', 'readWrite {acct}:doc', 'semaphore {acct}:pool']);
    // The key of `{ab}x` starts with `{ab}:`, which `a*` would match: the name alone decides.
    expect(await listed('a*')).toEqual([]);
    expect(await listed('{a[a-c]}?')).toEqual(['mutex {ab}x']);
    expect(await listed('*:[^t]*')).toEqual(['mutex {acct}:1', 'readWrite {acct}:doc', 'semaphore {acct}:pool']);
  });

  it('list shows a prefix once a lock was taken under it, from any manager', async () => {
    expect(await LockManager.list(redis, { prefix })).toEqual([]);
    const lock = await locks.acquire('r');
    await waitFor(async () => (await LockManager.list(redis, { prefix })).length === 1, { timeoutMs: 10_000 });
    const [entry] = await LockManager.list(redis, { prefix });
    expect(entry!.name).toBe(prefix);
    expect(entry!.lastSeenMs).toBeGreaterThan(Date.now() - 60_000);
    expect(await LockManager.list(redis, { prefix: randomPrefix() })).toEqual([]);
    await lock.release();
  });

  it('refuses bad options and cursors', async () => {
    await expect(locks.listHeld({ limit: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(locks.listHeld({ limit: 1001 })).rejects.toThrow(InvalidArgumentError);
    await expect(locks.listHeld({ match: '' })).rejects.toThrow(InvalidArgumentError);
    await expect(locks.listHeld({ cursor: 'nonsense' })).rejects.toThrow(/options\.cursor/);
    await expect(locks.listHeld({ cursor: '99.0' })).rejects.toThrow(InvalidArgumentError);
    await expect(locks.listHeld({ limt: 5 } as never)).rejects.toThrow(/did you mean "limit"/);
    await expect(LockManager.list(redis, { prefix: 'a{b' })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('LockManager inspection when Redis does not answer', () => {
  it('listHeld and list reject with RedisUnavailableError, within the deadline', async () => {
    // Nothing listens on this port: calls wait in ioredis's offline queue until the deadline.
    const dead = new Redis({ port: await freePort(), lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: () => 50 });
    dead.on('error', () => undefined);
    const locks = new LockManager(dead, { timeoutMs: 200 });
    await expect(locks.listHeld()).rejects.toThrow(RedisUnavailableError);
    await expect(LockManager.list(dead, { timeoutMs: 200 })).rejects.toThrow(RedisUnavailableError);
    await locks.close();
    dead.disconnect();
  });
});

describe('LockManager.listHeld on Redlock (3 independent nodes)', () => {
  let servers: RedisServer[];
  let clients: Redis[];
  let locks: LockManager;
  const prefix = randomPrefix();

  beforeAll(async () => {
    servers = await startIndependent(3);
    clients = servers.map((s) => s.client());
    locks = new LockManager(clients, { prefix, ttlMs: 60_000, timeoutMs: 5_000 });
  });
  afterAll(async () => {
    await locks.close();
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('lists each lock a quorum holds once, and none a minority holds', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `r${i}`);
    const taken = await Promise.all(names.map((n) => locks.acquire(n)));
    // Only node 2 holds this one: no quorum, not held.
    const lone = new LockManager(clients[2]!, { prefix, ttlMs: 60_000 });
    await lone.acquire('minority');
    await lone.close();
    expect((await locks.status('minority')).locked).toBe(false);
    const seen = await allPages(locks, { limit: 5 });
    expect(seen.map((l) => l.resource).sort()).toEqual([...names].sort());
    expect(new Map(seen.map((l) => [l.resource, l.fencingToken]))).toEqual(new Map(taken.map((l) => [l.resource, l.fencingToken])));
  });
});
