import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, Lock, LockLostError, LockManager, LockUnavailableError, type FairLock } from '../src/index.js';

const SOURCE = readFileSync(new URL('../lua/fair_lock.lua', import.meta.url), 'utf8');

describe.each(topologies)('FairLock on %s', (topology) => {
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
  /** The lock as seen from a manager of its own: another process, as far as Redis can tell. */
  const fairLock = (name: string): FairLock => {
    const m = new LockManager(redis, { prefix, ttlMs: 30_000 });
    managers.push(m);
    return m.fair(name);
  };
  const inLine = async (lock: FairLock, n: number) => waitFor(async () => ((await lock.status()).waiting === n ? true : undefined));

  it('acquires, refuses, extends, releases, force-unlocks and reports status', async () => {
    const [a, b] = [fairLock('f'), fairLock('f')];
    const held = await a.acquire({ ttlMs: 10_000 });
    expect(held).toBeInstanceOf(Lock);
    expect(await b.tryAcquire()).toBeNull();
    expect(await b.acquire({ waitMs: 30 }).catch((e: unknown) => e)).toBeInstanceOf(LockUnavailableError);
    expect(await a.status()).toMatchObject({ locked: true, owner: held.owner, fencingToken: held.fencingToken });
    await held.extend(20_000);
    expect(held.remainingMs).toBeGreaterThan(10_000);
    expect(await held.release()).toBe(true);
    expect(await held.release()).toBe(true);
    await expect(held.extend()).rejects.toBeInstanceOf(LockLostError);
    const next = await b.acquire();
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    expect(await a.forceUnlock()).toBe(true);
    expect(await a.forceUnlock()).toBe(false);
    expect(await next.release()).toBe(false);
    expect(await a.status()).toMatchObject({ locked: false, waiting: 0 });
  });

  it('serves waiters in arrival order across processes, each woken by the release before it', async () => {
    const holderLock = fairLock('line');
    const holder = await holderLock.acquire({ ttlMs: 120_000 });
    const order: number[] = [];
    const waiters: Promise<void>[] = [];
    for (let i = 0; i < 4; i++) {
      const lock = fairLock('line');
      // waitMs far below every lease: each hand-off is a release message, never a lease end.
      waiters.push(
        lock.acquire({ waitMs: 60_000, ttlMs: 120_000 }).then(async (l) => {
          order.push(i);
          await l.release();
        }),
      );
      await inLine(holderLock, i + 1);
    }
    // Nobody jumps the line, not even when the lock is free for a moment.
    expect(await fairLock('line').tryAcquire()).toBeNull();
    await holder.release();
    await Promise.all(waiters);
    expect(order).toEqual([0, 1, 2, 3]);
    expect(await holderLock.status()).toMatchObject({ locked: false, waiting: 0 });
  });

  it('a waiter that gives up holds the ones behind it back no longer than its own lease', async () => {
    const [a, b, c] = [fairLock('gone'), fairLock('gone'), fairLock('gone')];
    const holder = await a.acquire({ ttlMs: 120_000 });
    const controller = new AbortController();
    const quitter = b.acquire({ waitMs: 60_000, ttlMs: 500, signal: controller.signal });
    await inLine(a, 1);
    const patient = c.acquire({ waitMs: 60_000, ttlMs: 30_000 });
    await inLine(a, 2);
    controller.abort(new Error('gave up'));
    await expect(quitter).rejects.toThrow('gave up');
    // The release names the quitter, whom nobody wakes; the patient one retries when its place ends.
    await holder.release();
    const lock = await patient;
    expect(lock.fencingToken).toBeGreaterThan(holder.fencingToken);
    await lock.release();
  });

  it('a waiter that died in line (never left) holds the ones behind it back no longer than its own lease', async () => {
    const [a, b] = [fairLock('dead'), fairLock('dead')];
    const holder = await a.acquire({ ttlMs: 120_000 });
    // A place taken by a process that then died: nobody renews it, nobody leaves.
    await redis.eval(SOURCE, 1, a.key, 'dead-waiter', 500, 'wait');
    const patient = b.acquire({ waitMs: 60_000, ttlMs: 120_000 });
    await inLine(a, 2);
    await holder.release();
    const lock = await patient;
    expect(lock.fencingToken).toBeGreaterThan(holder.fencingToken);
    await lock.release();
  });

  it('keeps tokens increasing when Redis loses the key', async () => {
    const f = fairLock('lost');
    const first = await f.acquire({ ttlMs: 300_000 });
    await redis.del(f.key);
    const second = await f.acquire({ owner: 'other' });
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await first.release()).toBe(false);
    await second.release();
    const pttl = await redis.pttl(f.key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  it('refuses bad input with InvalidArgumentError naming it', async () => {
    const f = fairLock('bad');
    const refused = async (argument: string, run: () => unknown) => {
      const err = await Promise.resolve()
        .then(run)
        .catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
    };
    await refused('name', () => managers[0]!.fair(''));
    await refused('options.ttlMs', () => f.acquire({ ttlMs: 1 }));
    await refused('options.waitMs', () => f.acquire({ waitMs: -1 }));
    await refused('options.owner', () => f.acquire({ owner: '' }));
    await refused('options.count', () => f.acquire({ count: 1 } as never));
    expect(await redis.exists(f.key)).toBe(0);
  });
});

describe('a fair-lock holder paused past its lease', () => {
  it('loses the lock to the next in line; its extend and release fail and its token is lower', async () => {
    const prefix = randomPrefix();
    const child = spawn('node', [new URL('./fixtures/holder.mjs', import.meta.url).pathname, redisUrl(), prefix, 'f', '3000', 'fair'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const redis = new Redis(redisUrl());
    const locks = new LockManager(redis, { prefix });
    try {
      const first = JSON.parse(String((await lines.next()).value)) as { token: string };
      child.kill('SIGSTOP');
      const second = await locks.fair('f').acquire({ ttlMs: 30_000, waitMs: 20_000 });
      child.kill('SIGCONT');
      child.stdin.write('go\n');
      const after = JSON.parse(String((await lines.next()).value)) as { extend: string; release: boolean };
      expect(after).toEqual({ extend: 'LockLostError', release: false });
      expect(second.fencingToken).toBeGreaterThan(BigInt(first.token));
      await second.release();
    } finally {
      child.kill('SIGKILL');
      await locks.close();
      await redis.quit();
    }
  });
});

describe('fair_lock.lua, raw', () => {
  it('answers bad input with ERR and writes nothing', async () => {
    const redis = new Redis(redisUrl());
    const key = `${randomPrefix()}{raw}:f`;
    try {
      for (const args of [
        ['a', 0, 'acquire'],
        ['a', 1.5, 'wait'],
        ['', 1_000, 'acquire'],
        ['a', 1_000, 'take'],
      ]) {
        await expect(redis.eval(SOURCE, 1, key, ...args), JSON.stringify(args)).rejects.toThrow(/^ERR fair_lock: /);
      }
      expect(await redis.exists(key)).toBe(0);
      await redis.hset(key, 'f', 'not a token');
      await expect(redis.eval(SOURCE, 1, key, 'a', 1_000, 'acquire')).rejects.toThrow(/does not hold a fair lock/);
      expect(await redis.hgetall(key)).toEqual({ f: 'not a token' });
    } finally {
      await redis.del(key);
      await redis.quit();
    }
  });
});

describe('FairLock on Redlock', () => {
  it('is refused: fair locks need one Redis', async () => {
    const servers = await Promise.all([RedisServer.start(), RedisServer.start(), RedisServer.start()]);
    const clients = servers.map((s) => s.client());
    const locks = new LockManager(clients);
    try {
      expect(() => locks.fair('x')).toThrow(InvalidArgumentError);
    } finally {
      await locks.close();
      for (const client of clients) client.disconnect();
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});

describe.each(topologies)('FairLock against a reference model on %s', (topology) => {
  const prefix = randomPrefix();
  const redis = suiteClient(topology, prefix);

  it('grants in arrival order, whatever the order and mix of managers the waiters come from', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 6 }), async (vias) => {
        const managers = [0, 1, 2].map(() => new LockManager(redis, { prefix: `${prefix}${run}` }));
        run++;
        try {
          const locks = managers.map((m) => m.fair('model'));
          const holder = await locks[0]!.acquire({ ttlMs: 120_000 });
          const granted: number[] = [];
          let last = holder.fencingToken;
          const waiters: Promise<void>[] = [];
          for (const [i, via] of vias.entries()) {
            waiters.push(
              locks[via]!.acquire({ waitMs: 60_000, ttlMs: 120_000 }).then(async (lock) => {
                granted.push(i);
                expect(lock.fencingToken).toBeGreaterThan(last);
                last = lock.fencingToken;
                await lock.release();
              }),
            );
            await waitFor(async () => ((await locks[0]!.status()).waiting === i + 1 ? true : undefined));
          }
          await holder.release();
          await Promise.all(waiters);
          expect(granted).toEqual(vias.map((_, i) => i));
        } finally {
          await Promise.all(managers.map((m) => m.close()));
        }
      }),
      { numRuns: 8 },
    );
  });
});
