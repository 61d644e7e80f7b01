import { LuaScriptManager, type ScriptCall } from '@cyredis/core';
import { randomPrefix, RedisServer, startCluster, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LockManager, type Lock } from '../src/index.js';

// Each test breaks pub/sub on its own server: `CLIENT KILL TYPE pubsub` would hit other suites' subscribers.
describe('a waiter never sleeps through a release', () => {
  let server: RedisServer;
  let redis: Redis;
  let a: LockManager;
  let b: LockManager;

  beforeEach(async () => {
    server = await RedisServer.start();
    redis = server.client();
    redis.on('error', () => undefined);
    const prefix = randomPrefix();
    a = new LockManager(redis, { prefix });
    b = new LockManager(redis, { prefix });
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    redis.disconnect();
    await server.stop();
  });

  /** Holds 'x' for 8 s, starts a waiter, breaks the subscription with `fault`, releases: the waiter must get it promptly. */
  async function handOffAfter(fault: () => Promise<void>): Promise<number> {
    const held = await a.acquire('x', { ttlMs: 8_000 });
    const waiting = b.acquire('x', { waitMs: 60_000 });
    await waitFor(async () => ((await redis.call('PUBSUB', 'NUMSUB', a.keyOf('x'))) as [string, number])[1] === 1);
    await fault();
    const released = performance.now();
    expect(await held.release()).toBe(true);
    const next = await waiting;
    const ms = performance.now() - released;
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    await next.release();
    return ms;
  }

  it('CLIENT KILL TYPE pubsub before the release: granted promptly, not at the old lease end', async () => {
    const ms = await handOffAfter(async () => {
      await redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    });
    expect(ms).toBeLessThan(4_000);
  });

  it('the pubsub output-buffer limit drops the subscriber with the release message: granted promptly', async () => {
    // A message larger than the limit makes the server close the subscriber; the release right after it
    // is published while the subscriber is away.
    await redis.config('SET', 'client-output-buffer-limit', 'pubsub 1kb 1kb 0');
    const ms = await handOffAfter(async () => {
      await redis.publish(a.keyOf('x'), 'x'.repeat(256 * 1024));
    });
    expect(ms).toBeLessThan(4_000);
  });

  it('a server restart while waiting: the waiter retries once resubscribed', async () => {
    const held = await a.acquire('x', { ttlMs: 8_000 });
    const started = performance.now();
    const waiting = b.acquire('x', { waitMs: 60_000 });
    await waitFor(async () => ((await redis.call('PUBSUB', 'NUMSUB', a.keyOf('x'))) as [string, number])[1] === 1);
    // Back empty, so the lock is free; nobody publishes that, the resubscribe is the only news.
    await server.restart();
    const next = await waiting;
    expect(performance.now() - started).toBeLessThan(6_000);
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    await next.release();
  });
});

describe('a waiter on a cluster never sleeps through a release', () => {
  it('CLIENT KILL TYPE pubsub on every node before the release: granted promptly', async () => {
    const cluster = await startCluster({ masters: 3 });
    const redis = cluster.client();
    const prefix = randomPrefix();
    const a = new LockManager(redis, { prefix });
    const b = new LockManager(redis, { prefix });
    const everyNode = (...args: string[]) => Promise.all(cluster.nodes.map((node) => node.command(...args)));
    try {
      const held = await a.acquire('x', { ttlMs: 8_000 });
      const waiting = b.acquire('x', { waitMs: 60_000 });
      // A cluster forwards every PUBLISH to every node: the subscriber listens on one of them.
      await waitFor(async () => (await everyNode('PUBSUB', 'NUMSUB', a.keyOf('x'))).some((r) => (r as [string, number])[1] === 1));
      await everyNode('CLIENT', 'KILL', 'TYPE', 'pubsub');
      const released = performance.now();
      expect(await held.release()).toBe(true);
      const next = await waiting;
      expect(performance.now() - released).toBeLessThan(4_000);
      expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
      await next.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
      redis.disconnect();
      await cluster.stop();
    }
  });
});

describe('waiting costs no burst at the end of a lease', () => {
  it('arms the lease-end retry for the head waiter only: 50 waiters, one retry when the lease runs out', async () => {
    const server = await RedisServer.start();
    const redis = server.client();
    const prefix = randomPrefix();
    const holder = new LockManager(redis, { prefix });
    const waiters = new LockManager(redis, { prefix });
    // Lock operations sent, counted by key (a batch carries several).
    let ops = 0;
    const original = LuaScriptManager.prototype.executeScript;
    const spy = vi.spyOn(LuaScriptManager.prototype, 'executeScript').mockImplementation(function (this: LuaScriptManager, script, call?: ScriptCall) {
      ops += call?.keys?.length ?? 0;
      return original.call(this, script, call);
    });
    const controller = new AbortController();
    try {
      await holder.acquire('x', { ttlMs: 1_500 });
      const granted: Lock[] = [];
      const waiting = Array.from({ length: 50 }, () =>
        waiters.acquire('x', { waitMs: 60_000, signal: controller.signal }).then((lock) => granted.push(lock)),
      );
      // Each waiter tried twice (acquire, then wait once subscribed) and sleeps.
      await waitFor(() => ops === 1 + 50 * 2, { timeoutMs: 10_000 });
      const before = ops;
      await waitFor(() => granted.length === 1, { timeoutMs: 10_000 });
      // The lease ended: the head retried and got it. Without the fix, all 50 retried at once.
      expect(ops - before).toBeLessThanOrEqual(2);
      controller.abort(new Error('done'));
      await Promise.allSettled(waiting);
      expect(granted).toHaveLength(1);
    } finally {
      spy.mockRestore();
      await Promise.all([holder.close(), waiters.close()]);
      redis.disconnect();
      await server.stop();
    }
  });
});
