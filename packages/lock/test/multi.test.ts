import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { Cluster, type Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, LockLostError, LockManager, LockUnavailableError, MultiLock } from '../src/index.js';

describe.each(topologies)('acquireMany on %s', (topology) => {
  let prefix: string;
  let managers: LockManager[];

  const redis = suiteClient(topology);
  beforeEach(() => {
    prefix = randomPrefix();
    managers = [];
  });
  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
    await deleteByPrefix(redis, prefix);
  });
  const manager = () => {
    const m = new LockManager(redis, { prefix, ttlMs: 30_000 });
    managers.push(m);
    return m;
  };

  it('takes all the locks, in the order named, with increasing tokens; extends and releases them together', async () => {
    const locks = manager();
    const many = await locks.acquireMany(['acct:2', 'acct:1', 'acct:3'], { ttlMs: 5_000 });
    expect(many).toBeInstanceOf(MultiLock);
    expect(many.locks.map((l) => l.resource)).toEqual(['acct:2', 'acct:1', 'acct:3']);
    for (const name of ['acct:1', 'acct:2', 'acct:3']) expect((await locks.status(name)).locked).toBe(true);
    await many.extend(20_000);
    expect(many.remainingMs).toBeGreaterThan(5_000);
    expect(await many.release()).toBe(true);
    for (const name of ['acct:1', 'acct:2', 'acct:3']) expect((await locks.status(name)).locked).toBe(false);
    await expect(many.extend()).rejects.toBeInstanceOf(LockLostError);
    expect(await many.release()).toBe(true);
  });

  it('is all or nothing: one name held elsewhere, and none is taken', async () => {
    const [a, b] = [manager(), manager()];
    const held = await a.acquire('acct:2', { ttlMs: 60_000 });
    const err = await b.acquireMany(['acct:1', 'acct:2', 'acct:3']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockUnavailableError);
    expect((err as LockUnavailableError).holder).toBe(held.owner);
    for (const name of ['acct:1', 'acct:3']) expect((await a.status(name)).locked).toBe(false);
    // With time to wait, it gets them all once the holder releases.
    const waiting = b.acquireMany(['acct:3', 'acct:2', 'acct:1'], { waitMs: 60_000 });
    await held.release();
    const many = await waiting;
    expect(many.locks.find((l) => l.resource === 'acct:2')!.fencingToken).toBeGreaterThan(held.fencingToken);
    await many.release();
  });

  it('never deadlocks, whatever order callers name the resources in', async () => {
    const [a, b, c] = [manager(), manager(), manager()];
    const names = ['x', 'y', 'z'];
    const rounds = async (m: LockManager, order: string[]) => {
      for (let i = 0; i < 10; i++) {
        // Leases far longer than the wait: progress never comes from a lease running out.
        const many = await m.acquireMany(order, { waitMs: 60_000, ttlMs: 120_000 });
        expect(await many.release()).toBe(true);
      }
    };
    await Promise.all([rounds(a, names), rounds(b, [...names].reverse()), rounds(c, ['y', 'x', 'z'])]);
  });

  it('refuses bad input with InvalidArgumentError naming it', async () => {
    const locks = manager();
    const refused = async (argument: string, run: () => unknown) => {
      const err = await Promise.resolve()
        .then(run)
        .catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
    };
    await refused('resources', () => locks.acquireMany([]));
    await refused('resources', () => locks.acquireMany('acct:1' as never));
    await refused('resources[2]', () => locks.acquireMany(['a', 'b', 'a']));
    await refused('resource', () => locks.acquireMany(['a', '']));
    await refused('options.ttlMs', () => locks.acquireMany(['a'], { ttlMs: 1 }));
    await refused('options.count', () => locks.acquireMany(['a'], { count: 2 } as never));
    expect((await locks.status('a')).locked).toBe(false);
  });

  it('names sharing a hash tag: one script call to acquire them, one to extend, one to release', async () => {
    const locks = manager();
    // Loads the script on the tag's master, so no NOSCRIPT resend counts.
    await (await locks.acquire('{acct}:warm-up')).release();
    const calls = await scriptCalls(redis, prefix);
    try {
      const before = await calls.count();
      const many = await locks.acquireMany(['{acct}:2', '{acct}:1', '{acct}:3'], { ttlMs: 5_000 });
      expect(await calls.count()).toBe(before + 1);
      expect(many.locks.map((l) => l.resource)).toEqual(['{acct}:2', '{acct}:1', '{acct}:3']);
      for (const name of ['{acct}:1', '{acct}:2', '{acct}:3']) expect((await locks.status(name)).owner).toBe(many.locks[0]!.owner);
      const afterStatus = await calls.count();
      await many.extend(10_000);
      expect(await calls.count()).toBe(afterStatus + 1);
      expect(await many.release()).toBe(true);
      expect(await calls.count()).toBe(afterStatus + 2);
    } finally {
      calls.stop();
    }
  });

  it('names sharing a hash tag: all or nothing, and with time to wait it gets them all', async () => {
    const [a, b] = [manager(), manager()];
    const held = await a.acquire('{acct}:2', { ttlMs: 60_000 });
    const calls = await scriptCalls(redis, prefix);
    let err: unknown;
    try {
      const before = await calls.count();
      err = await b.acquireMany(['{acct}:1', '{acct}:2', '{acct}:3']).catch((e: unknown) => e);
      // One call tried all three, one gave back the two it took.
      expect(await calls.count()).toBe(before + 2);
    } finally {
      calls.stop();
    }
    expect(err).toBeInstanceOf(LockUnavailableError);
    expect((err as LockUnavailableError).holder).toBe(held.owner);
    for (const name of ['{acct}:1', '{acct}:3']) expect((await a.status(name)).locked).toBe(false);
    const waiting = b.acquireMany(['{acct}:3', '{acct}:2', '{acct}:1'], { waitMs: 60_000 });
    await held.release();
    const many = await waiting;
    expect(many.locks.find((l) => l.resource === '{acct}:2')!.fencingToken).toBeGreaterThan(held.fencingToken);
    expect(await many.release()).toBe(true);
  });

  it('mixes tagged and untagged names (ordered with rollback where slots differ), never deadlocking', async () => {
    const [a, b] = [manager(), manager()];
    const names = ['{acct}:1', 'plain', '{acct}:2', '{other}:1'];
    const rounds = async (m: LockManager, order: string[]) => {
      for (let i = 0; i < 10; i++) {
        const many = await m.acquireMany(order, { waitMs: 60_000, ttlMs: 120_000 });
        expect(many.locks.map((l) => l.resource)).toEqual(order);
        expect(await many.release()).toBe(true);
      }
    };
    await Promise.all([rounds(a, names), rounds(b, [...names].reverse())]);
    for (const name of names) expect((await a.status(name)).locked).toBe(false);
  });
});

/**
 * Counts the script calls (EVALSHA or EVAL) whose arguments name `prefix`, on every master, with MONITOR: so
 * other suites sharing the servers do not count. `count()` first waits until each master's MONITOR stream
 * has shown an ECHO sent after the calls, so no call is still on its way.
 */
async function scriptCalls(redis: Redis | Cluster, prefix: string): Promise<{ count: () => Promise<number>; stop: () => void }> {
  const masters = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let calls = 0;
  const seen = new Set<string>();
  const monitors = await Promise.all(
    masters.map(async (master) => {
      const monitor = await master.monitor();
      monitor.on('monitor', (_time: string, args: string[]) => {
        const command = args[0]?.toLowerCase();
        if ((command === 'evalsha' || command === 'eval') && args.some((a) => a.includes(prefix))) calls++;
        if (command === 'echo' && args[1]?.startsWith(`${prefix}:mark:`)) seen.add(args[1]);
      });
      return monitor;
    }),
  );
  let marks = 0;
  const count = async () => {
    const marked = masters.map((_, i) => `${prefix}:mark:${marks++}:${i}`);
    await Promise.all(masters.map((master, i) => master.echo(marked[i]!)));
    await waitFor(() => marked.every((m) => seen.has(m)), { message: 'MONITOR shows the marks' });
    return calls;
  };
  return { count, stop: () => monitors.forEach((m) => m.disconnect()) };
}

describe('acquireMany round trips (private single node)', () => {
  it('takes one script call to acquire and one to release', async () => {
    const server = await RedisServer.start();
    const redis = server.client();
    const locks = new LockManager(redis);
    try {
      await (await locks.acquire('warm-up')).release();
      await redis.config('RESETSTAT');
      const many = await locks.acquireMany(['a', 'b', 'c', 'd']);
      await many.release();
      const stats = await redis.info('commandstats');
      expect(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1]).toBe('2');
    } finally {
      await locks.close();
      redis.disconnect();
      await server.stop();
    }
  });
});

describe('acquireMany on Redlock', () => {
  it('takes every lock on a quorum', async () => {
    const servers = await Promise.all([RedisServer.start(), RedisServer.start(), RedisServer.start()]);
    const clients = servers.map((s) => s.client());
    const locks = new LockManager(clients);
    try {
      const many = await locks.acquireMany(['p', 'q']);
      for (const name of ['p', 'q']) expect((await locks.status(name)).locked).toBe(true);
      expect(await many.release()).toBe(true);
    } finally {
      await locks.close();
      for (const client of clients) client.disconnect();
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});
