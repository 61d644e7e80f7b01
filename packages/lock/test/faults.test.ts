import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { randomPrefix, RedisServer, startIndependent, startReplicated, waitFor } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LockLostError, LockManager, LockUnavailableError, QuorumUnreachableError, RedisUnavailableError } from '../src/index.js';

const LUA = readFileSync(new URL('../lua/distributed_lock.lua', import.meta.url), 'utf8');
/** The lease end a lock key holds (its field e); 0 when released. */
const leaseEnd = async (redis: Redis, key: string) => Number(await redis.hget(key, 'e'));

describe('a holder paused past its lease', () => {
  it('loses the lock to a second client; its extend and release fail and its token is lower', async () => {
    const prefix = randomPrefix();
    const child = spawn('node', [new URL('./fixtures/holder.mjs', import.meta.url).pathname, redisUrl(), prefix, 'r', '3000'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const redis = new Redis(redisUrl());
    const locks = new LockManager(redis, { prefix });
    try {
      const first = JSON.parse(String((await lines.next()).value)) as { token: string; owner: string };
      child.kill('SIGSTOP');
      // Woken at the end of the paused holder's lease.
      const second = await locks.acquire('r', { ttlMs: 30_000, waitMs: 20_000 });
      child.kill('SIGCONT');
      child.stdin.write('go\n');
      const after = JSON.parse(String((await lines.next()).value)) as { extend: string; release: boolean };
      expect(after).toEqual({ extend: 'LockLostError', release: false });
      expect(second.fencingToken).toBeGreaterThan(BigInt(first.token));
      expect((await locks.status('r')).owner).toBe(second.owner);
      await second.release();
    } finally {
      child.kill('SIGKILL');
      await locks.close();
      await redis.quit();
    }
  });

  it('using aborts its signal on the local deadline when extensions get no reply, and rejects with LockLostError', async () => {
    const server = await RedisServer.start();
    const redis = server.client();
    const locks = new LockManager(redis, { prefix: randomPrefix(), timeoutMs: 500 });
    try {
      let reason: unknown;
      let returnedAt = 0;
      const outcome = locks.using(
        'r',
        async (signal, lock) => {
          const lastDeadline = lock.validUntil;
          server.pause();
          await waitFor(() => signal.aborted, { timeoutMs: 20_000 });
          // The abort came from the local deadline alone: the server is still paused.
          expect(Date.now()).toBeGreaterThanOrEqual(lastDeadline - 50);
          reason = signal.reason;
          returnedAt = performance.now();
          return 'done';
        },
        { ttlMs: 1_000 },
      );
      const err = await outcome.catch((e: unknown) => e);
      // The final release on the paused server gave up after timeoutMs; the routine's return hides nothing.
      expect(performance.now() - returnedAt).toBeLessThan(500 + 1_000);
      expect(err).toBeInstanceOf(LockLostError);
      expect(err).toBe(reason);
      expect((err as LockLostError).message).toBe('lock "r" is no longer held by this owner: its lease ran out on the local clock before an extension was confirmed');
    } finally {
      server.resume();
      await locks.close();
      redis.disconnect();
      await server.stop();
    }
  });
});

describe('Redlock on 3 independent nodes', () => {
  let servers: RedisServer[];
  let clients: Redis[];
  let locks: LockManager;
  const prefix = randomPrefix();

  beforeAll(async () => {
    servers = await startIndependent(3);
    // Without the offline queue a killed node fails at once, so timeoutMs can be generous: a live node
    // must never look dead on a loaded machine.
    clients = servers.map((s) => s.client({ lazyConnect: true, enableOfflineQueue: false }));
    for (const c of clients) c.on('error', () => undefined);
    await Promise.all(clients.map((c) => c.connect()));
    locks = new LockManager(clients, { prefix, ttlMs: 10_000, timeoutMs: 2_000 });
  });
  afterAll(async () => {
    await locks.close();
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });
  afterEach(async () => {
    for (const node of servers) await node.command('DEL', locks.keyOf('r')).catch(() => undefined);
  });

  it('needs a majority, tells contention apart, and releases every node of a failed attempt', async () => {
    expect(locks.quorum).toBe(2);
    const other = 'someone-else';
    // Another owner holds node 2 only; node 0 and 1 grant, so the lock is taken.
    await clients[2]!.eval(LUA, 1, locks.keyOf('r'), other, 30_000);
    const lock = await locks.acquire('r');
    expect((await locks.status('r')).owner).toBe(lock.owner);
    await lock.release();
    // Now the other owner holds node 1 and 2: contention, and node 0 (granted for a moment) is released.
    await clients[1]!.eval(LUA, 1, locks.keyOf('r'), other, 30_000);
    const err = await locks.acquire('r').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockUnavailableError);
    expect((err as LockUnavailableError).nodes.map((n) => n.state)).toEqual(['granted', 'refused', 'refused']);
    expect(await leaseEnd(clients[0]!, locks.keyOf('r'))).toBe(0);
  });

  it('keeps tokens increasing when nodes count differently, also with a node down', async () => {
    // Node 2's last token is far ahead of the others' (a clock ahead, or a counter raised by fence).
    const ahead = BigInt(Date.now() + 3_600_000) * 1000n;
    await clients[2]!.hset(locks.keyOf('r'), { o: 'someone', e: 0, f: ahead });
    const a = await locks.acquire('r');
    expect(a.fencingToken).toBe(ahead + 1n);
    await a.release();
    // Without node 2 the quorum (0, 1) still shares node 0 or 1 with the last one, raised to it.
    await clients[2]!.eval(LUA, 1, locks.keyOf('r'), 'blocker', 60_000);
    const b = await locks.acquire('r');
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    await b.release();
  });

  it('still acquires with one node killed, and reports QuorumUnreachableError with two down', async () => {
    await servers[0]!.kill();
    const lock = await locks.acquire('r');
    expect((await locks.status('r')).owner).toBe(lock.owner);
    await lock.extend(5_000);
    expect(await lock.release()).toBe(true);

    await servers[1]!.kill();
    const err = await locks.acquire('r').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuorumUnreachableError);
    expect((err as QuorumUnreachableError).nodes.map((n) => n.state)).toEqual(['failed', 'failed', 'granted']);
    // The one node that granted was released.
    expect(await leaseEnd(clients[2]!, locks.keyOf('r'))).toBe(0);
    const status = await locks.status('r').catch((e: unknown) => e);
    expect(status).toBeInstanceOf(QuorumUnreachableError);
    expect(status).toBeInstanceOf(RedisUnavailableError);
    expect((status as Error).message).toMatch(/fewer than 2 of 3 nodes answered usably/);
  });
});

describe('waitForReplicas', () => {
  it('acquires when a replica acknowledged, refuses and releases when none did', async () => {
    const { primary, replica, stop } = await startReplicated();
    const redis = primary.client();
    const locks = new LockManager(redis, { prefix: randomPrefix(), waitForReplicas: { replicas: 1, timeoutMs: 1_000 } });
    try {
      const lock = await locks.acquire('r');
      await lock.extend(20_000);
      expect(String(await replica.command('HGET', locks.keyOf('r'), 'o'))).toBe(lock.owner);
      await replica.kill();
      const err = await locks.acquire('other').catch((e: unknown) => e);
      // One node: its own outage error, not a quorum of one.
      expect(err).toBeInstanceOf(RedisUnavailableError);
      expect(err).not.toBeInstanceOf(QuorumUnreachableError);
      expect((err as Error).message).toMatch(/0 of 1 replica\(s\) acknowledged the lock within 1000 ms/);
      expect((await locks.status('other')).locked).toBe(false);
      await expect(lock.extend()).rejects.toBeInstanceOf(RedisUnavailableError);
      expect((await locks.status('r')).locked).toBe(false);
    } finally {
      await locks.close();
      redis.disconnect();
      await stop();
    }
  });
});

