import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { deleteByPrefix, topologies, suiteClient } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CyRedisError,
  Lock,
  LockLostError,
  LockManager,
  LockUnavailableError,
  QuorumUnreachableError,
  RedisUnavailableError,
} from '../src/index.js';

describe.each(topologies)('LockManager on %s', (topology) => {
  let prefix: string;
  let locks: LockManager;

  const redis = suiteClient(topology);
  const leaseEnd = async (key: string) => Number(await redis.hget(key, 'e'));
  beforeEach(() => {
    prefix = randomPrefix();
    locks = new LockManager(redis, { prefix, ttlMs: 10_000 });
  });
  afterEach(async () => {
    await locks.close();
    await deleteByPrefix(redis, prefix);
  });

  it('acquires, refuses a second owner, extends, releases, and reports status', async () => {
    const lock = await locks.acquire('invoice:42', { ttlMs: 5_000 });
    expect(lock).toBeInstanceOf(Lock);
    expect(lock.resource).toBe('invoice:42');
    expect(lock.owner).toMatch(/^[0-9a-f-]{36}$/);
    expect(lock.fencingToken).toBeGreaterThan(0n);
    expect(lock.remainingMs).toBeGreaterThan(4_000);
    expect(lock.remainingMs).toBeLessThanOrEqual(5_000);

    expect(await locks.tryAcquire('invoice:42')).toBeNull();
    const refused = await locks.acquire('invoice:42').catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(LockUnavailableError);
    expect(refused).toBeInstanceOf(CyRedisError);
    expect((refused as LockUnavailableError).holder).toBe(lock.owner);
    expect((refused as LockUnavailableError).nodes[0]).toMatchObject({ node: 0, state: 'refused', owner: lock.owner });

    const status = await locks.status('invoice:42');
    expect(status).toMatchObject({ locked: true, owner: lock.owner, fencingToken: lock.fencingToken });
    expect(status.ttlMs).toBeGreaterThan(4_000);

    await lock.extend(20_000);
    expect(lock.remainingMs).toBeGreaterThan(19_000);
    expect((await locks.status('invoice:42')).ttlMs).toBeGreaterThan(19_000);

    expect(await lock.release()).toBe(true);
    expect(await lock.release()).toBe(true);
    expect(await locks.status('invoice:42')).toEqual({ locked: false, ttlMs: 0, fencingToken: lock.fencingToken });
    await expect(lock.extend()).rejects.toBeInstanceOf(LockLostError);

    const next = await locks.acquire('invoice:42');
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    await next.release();
  });

  it('keeps the local deadline at or before the server expiry', async () => {
    for (let i = 0; i < 20; i++) {
      const lock = await locks.acquire(`r${i}`, { ttlMs: 2_000 });
      expect(lock.validUntil).toBeLessThanOrEqual(await leaseEnd(locks.keyOf(`r${i}`)));
      await lock.extend(3_000);
      expect(lock.validUntil).toBeLessThanOrEqual(await leaseEnd(locks.keyOf(`r${i}`)));
      await lock.release();
    }
  });

  it('is idempotent for the same owner: a resent acquire keeps the token', async () => {
    const a = await locks.acquire('job', { owner: 'worker-1' });
    const again = await locks.acquire('job', { owner: 'worker-1' });
    expect(again.fencingToken).toBe(a.fencingToken);
    expect(await again.release()).toBe(true);
    expect(await a.release()).toBe(true);
  });

  it('force unlock ends any lease, is idempotent, and keeps tokens increasing', async () => {
    const lock = await locks.acquire('r');
    expect(await locks.forceUnlock('r')).toBe(true);
    expect(await locks.forceUnlock('r')).toBe(false);
    expect(await lock.release()).toBe(false);
    await expect(lock.extend()).rejects.toBeInstanceOf(LockLostError);
    const next = await locks.acquire('r');
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    await next.release();
  });

  it('hands the lock to a waiter on release, without waiting for the lease to end', async () => {
    const holder = await locks.acquire('r', { ttlMs: 60_000 });
    const waiting = locks.acquire('r', { waitMs: 30_000 });
    await holder.release();
    // The waiter's own retry would only come at the lease's end (60 s) or waitMs (30 s): the release woke it.
    const next = await waiting;
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    await next.release();
  });

  it('retries at the end of a lease whose holder never releases', async () => {
    const holder = await locks.acquire('r', { ttlMs: 300 });
    const next = await locks.acquire('r', { waitMs: 20_000 });
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    expect(await holder.release()).toBe(false);
    await next.release();
  });

  it('gives up after waitMs with LockUnavailableError, and stops at an abort', async () => {
    const holder = await locks.acquire('r', { ttlMs: 60_000 });
    await expect(locks.acquire('r', { waitMs: 50 })).rejects.toBeInstanceOf(LockUnavailableError);
    const controller = new AbortController();
    const waiting = locks.acquire('r', { waitMs: 30_000, signal: controller.signal });
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    await expect(locks.acquire('r', { signal: AbortSignal.abort() })).rejects.toThrow();
    expect((await locks.status('r')).owner).toBe(holder.owner);
    await holder.release();
  });

  it('using: extends past the ttl, releases at the end, and returns the result', async () => {
    const out = await locks.using(
      'r',
      async (signal, lock) => {
        // Outlive three leases: the background extension must keep the lock.
        const until = performance.now() + 3 * lock.ttlMs;
        // (A 1 s lease leaves the renewal half a second of slack on a loaded machine.)
        await waitFor(() => performance.now() > until, { timeoutMs: 30_000 });
        expect(signal.aborted).toBe(false);
        expect((await locks.status('r')).owner).toBe(lock.owner);
        return 'done';
      },
      { ttlMs: 1_000 },
    );
    expect(out).toBe('done');
    expect((await locks.status('r')).locked).toBe(false);
  });

  it('using: rethrows the routine error after releasing, with no unhandled rejection', async () => {
    const boom = new Error('boom');
    await expect(
      locks.using('r', () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect((await locks.status('r')).locked).toBe(false);
  });

  it('using: aborts its signal when the lease is lost, and rejects with LockLostError although the routine returned', async () => {
    let reason: unknown;
    const outcome = await locks
      .using(
        'r',
        async (signal) => {
          await locks.forceUnlock('r');
          await waitFor(() => signal.aborted, { timeoutMs: 10_000 });
          reason = signal.reason;
          return 'done';
        },
        { ttlMs: 300 },
      )
      .catch((err: unknown) => err);
    expect(reason).toBeInstanceOf(LockLostError);
    expect(outcome).toBe(reason);
    // Whichever noticed first says why: the refused extension, or (on a loaded machine) the local deadline.
    expect((outcome as LockLostError).message).toMatch(
      /^lock "r" is no longer held by this owner: (node 0 refused \(not held: the lease expired, was released or force-unlocked\)|its lease ran out on the local clock before an extension was confirmed)$/,
    );
  });

  it('using: rejects with LockLostError when the lease was taken before the routine returned and no extension noticed', async () => {
    const outcome = await locks
      .using(
        'r',
        async () => {
          // Taken over behind its back, well inside its lease: no renewal ran yet.
          await locks.forceUnlock('r');
          await (await locks.acquire('r', { owner: 'thief' })).extend();
          return 'done';
        },
        { ttlMs: 10_000 },
      )
      .catch((err: unknown) => err);
    expect(outcome).toBeInstanceOf(LockLostError);
    expect((outcome as LockLostError).message).toContain('was gone when using() released it');
    expect((await locks.status('r')).owner).toBe('thief');
  });

  it('settles calls of one tick on one resource in order: the first is granted, the second names it', async () => {
    const [first, second] = await Promise.allSettled([locks.acquire('r', { owner: 'one' }), locks.acquire('r', { owner: 'two' })]);
    expect(first).toMatchObject({ status: 'fulfilled', value: { owner: 'one' } });
    expect(second.status).toBe('rejected');
    const refused = (second as PromiseRejectedResult).reason as LockUnavailableError;
    expect(refused).toBeInstanceOf(LockUnavailableError);
    expect(refused.holder).toBe('one');
    expect(await (first as PromiseFulfilledResult<Lock>).value.release()).toBe(true);
  });

  it('keeps lock keys apart from data keys and other resources', () => {
    expect(locks.keyOf('invoice:42')).toBe(`${prefix}:lock:{invoice:42}:lock`);
    expect(locks.keyOf('a}:lock')).not.toBe(locks.keyOf('a'));
    // A name with a hash tag hashes on it (see keys.test.ts); one with braces but no tag stays escaped.
    expect(locks.keyOf('{x}')).toBe(`${prefix}:lock:{x}:{%7Bx%7D}:lock`);
    expect(locks.keyOf('{}x')).toBe(`${prefix}:lock:{%7B%7Dx}:lock`);
  });
});

describe('LockManager round trips (private single node)', () => {
  it('takes one script call to acquire and one to release; calls made in one tick share one', async () => {
    const server = await RedisServer.start();
    const redis = server.client();
    const locks = new LockManager(redis, { prefix: randomPrefix() });
    const calls = async () => {
      const stats = await redis.info('commandstats');
      return ['evalsha', 'eval'].reduce((sum, name) => sum + Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0), 0);
    };
    try {
      await (await locks.acquire('warm-up')).release();
      const before = await calls();
      const lock = await locks.acquire('r');
      expect(await calls()).toBe(before + 1);
      await lock.release();
      expect(await calls()).toBe(before + 2);
      // The ten calls of one tick go as one batch.
      const many = await Promise.all(Array.from({ length: 10 }, (_, i) => locks.acquire(`r${i}`)));
      expect(await calls()).toBe(before + 3);
      expect(new Set(many.map((l) => l.resource)).size).toBe(10);
      // One call reads the server clock once: each resource's first token is that time in µs.
      expect(new Set(many.map((l) => l.fencingToken)).size).toBe(1);
      expect(await Promise.all(many.map((l) => l.release()))).toEqual(many.map(() => true));
      expect(await calls()).toBe(before + 4);
      // A call takes at most 32: 40 in one tick go as two calls, each still one round trip.
      const more = await Promise.all(Array.from({ length: 40 }, (_, i) => locks.acquire(`m${i}`)));
      expect(await calls()).toBe(before + 6);
      expect(await Promise.all(more.map((l) => l.release()))).toEqual(more.map(() => true));
      // A batch that gets no reply fails every operation in it as an outage, none as contention.
      const gone = server.client({ enableOfflineQueue: false, retryStrategy: () => null });
      const unreachable = new LockManager(gone);
      gone.disconnect();
      const failed = await Promise.allSettled([unreachable.acquire('x'), unreachable.acquire('y')]);
      for (const f of failed) {
        const reason = (f as PromiseRejectedResult).reason as Error;
        expect(reason).toBeInstanceOf(RedisUnavailableError);
        expect(reason).not.toBeInstanceOf(QuorumUnreachableError);
      }
      await unreachable.close();
    } finally {
      await locks.close();
      redis.disconnect();
      await server.stop();
    }
  });
});
