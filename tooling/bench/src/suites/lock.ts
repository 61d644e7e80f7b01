import { LockManager, type Semaphore } from '@cyredis/lock';
import { sleep } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { Mutex, MultiSemaphore, Semaphore as PeerSemaphore } from 'redis-semaphore';
import { median, throughput, type BenchCase, type BenchSuite } from '../harness.js';

// Both redlock versions ship types that NodeNext resolution cannot reach (v5: not in its exports map; v4:
// none), so they are loaded untyped and given the little surface this suite uses.
interface RedlockV5 {
  acquire(resources: string[], ttlMs: number): Promise<{ release(): Promise<unknown> }>;
}
interface RedlockV4 {
  lock(resource: string, ttlMs: number): Promise<{ unlock(): Promise<unknown> }>;
}
const load = (name: string): Promise<unknown> => import(name);
const { default: Redlock } = (await load('redlock')) as { default: new (clients: Redis[], settings: object) => RedlockV5 };
const { default: Redlock4 } = (await load('redlock4')) as { default: new (clients: Redis[], settings: object) => RedlockV4 };

const TTL_MS = 10_000;
const KEYS = 1024;
const HANDOFFS = 15;
/** Permits of every semaphore here; the counted contenders take 2 at a time. */
const PERMITS = 5;
/** Semaphores acquired and released once each for the bytes-per-idle-resource case. */
const IDLE_RESOURCES = 2_000;

interface Contender {
  name: string;
  /** One uncontended acquire + release. */
  cycle: (i: number) => Promise<unknown>;
  /** Take a lock and return its release; `wait` waits for a holder (the contender's own retry policy). */
  hold?: (resource: string, wait: boolean) => Promise<() => Promise<unknown>>;
}

/**
 * Median time from `release()` to the waiting acquirer holding the lock: a holder takes it, a waiter starts
 * waiting, and after a random pause (so pollers are caught at any phase) the holder releases.
 */
async function handoffMs(hold: NonNullable<Contender['hold']>, round: number): Promise<number> {
  const latencies: number[] = [];
  for (let i = 0; i < HANDOFFS; i++) {
    const resource = `bench:lock:handoff:${round}:${i}`;
    const releaseHolder = await hold(resource, false);
    let acquiredAt = 0;
    const waiter = hold(resource, true).then((release) => {
      acquiredAt = performance.now();
      return release;
    });
    await sleep(20 + Math.random() * 30);
    const releasedAt = performance.now();
    await releaseHolder();
    const releaseWaiter = await waiter;
    latencies.push(acquiredAt - releasedAt);
    await releaseWaiter();
  }
  return median(latencies);
}

let close: (() => Promise<void>) | undefined;

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/**
 * Redis bytes left per resource once each of IDLE_RESOURCES fresh semaphores was acquired and released
 * (before any key could expire): what an idle resource costs until its key expires.
 */
async function idleBytes(redis: Redis, round: number, cycle: (name: string) => Promise<unknown>): Promise<number> {
  const before = await usedMemory(redis);
  for (let i = 0; i < IDLE_RESOURCES; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => cycle(`bench:idle:${round}:${i + j}`)));
  }
  return Math.max(0, (await usedMemory(redis)) - before) / IDLE_RESOURCES;
}

/** Semaphore contenders: one cycle on semaphore `i`, a holder of all permits, and a fresh-name cycle. */
interface SemaphoreContender {
  name: string;
  cycle: (i: number) => Promise<unknown>;
  hold?: (resource: string, wait: boolean) => Promise<() => Promise<unknown>>;
  idle?: (resource: string) => Promise<unknown>;
}

function semaphoreContenders(redis: Redis, locks: LockManager, keys: string[]): SemaphoreContender[] {
  const peerOptions = { lockTimeout: TTL_MS, refreshInterval: 0, acquireAttemptsLimit: 1 };
  const ours = new Map<string, Semaphore>();
  const sem = (name: string): Semaphore => {
    let s = ours.get(name);
    if (!s) ours.set(name, (s = locks.semaphore(name, { permits: PERMITS })));
    return s;
  };
  const peerCycle = async (s: { acquire(): Promise<unknown>; release(): Promise<unknown> }) => {
    await s.acquire();
    await s.release();
  };
  return [
    {
      name: 'redis-semaphore Semaphore',
      cycle: (i) => peerCycle(new PeerSemaphore(redis, keys[i & (KEYS - 1)]!, PERMITS, peerOptions)),
      hold: async (resource, wait) => {
        const s = new PeerSemaphore(redis, resource, 1, { ...peerOptions, acquireTimeout: 10_000, acquireAttemptsLimit: wait ? Number.POSITIVE_INFINITY : 1 });
        await s.acquire();
        return () => s.release();
      },
      idle: (resource) => peerCycle(new PeerSemaphore(redis, resource, PERMITS, peerOptions)),
    },
    {
      name: 'redis-semaphore MultiSemaphore (2 permits)',
      cycle: (i) => peerCycle(new MultiSemaphore(redis, keys[i & (KEYS - 1)]!, PERMITS, 2, peerOptions)),
    },
    {
      name: '@cyredis/lock semaphore',
      cycle: async (i) => (await sem(keys[i & (KEYS - 1)]!).acquire()).release(),
      hold: async (resource, wait) => {
        const permit = await locks.semaphore(resource, { permits: 1 }).acquire({ waitMs: wait ? 10_000 : 0 });
        return () => permit.release();
      },
      idle: async (resource) => (await locks.semaphore(resource, { permits: PERMITS }).acquire()).release(),
    },
    {
      name: '@cyredis/lock semaphore (2 permits)',
      cycle: async (i) => (await sem(keys[i & (KEYS - 1)]!).acquire({ count: 2 })).release(),
    },
  ];
}

/** Acquire+release cycles/s at 1 and 64 in flight, and the hand-off latency, against node-redlock and redis-semaphore. */
const suite: BenchSuite = {
  name: 'lock',
  groups: ({ client, durationMs }) => {
    const redis: Redis = client();
    const keys = Array.from({ length: KEYS }, (_, i) => `bench:lock:${i}`);

    // Peers as their users configure them for waiting: redlock retries every 200 ms (its default), the
    // Mutex every 10 ms (its default); no automatic extension for anyone.
    const redlock = new Redlock([redis], { retryCount: 0 });
    const redlockWaiting = new Redlock([redis], { retryCount: -1 });
    const redlock4 = new Redlock4([redis], { retryCount: 0 });
    const locks = new LockManager(redis, { ttlMs: TTL_MS, prefix: 'bench' });

    const contenders: Contender[] = [
      {
        name: 'redlock 5.0.0-beta.2',
        cycle: async (i) => (await redlock.acquire([keys[i & (KEYS - 1)]!], TTL_MS)).release(),
        hold: async (resource, wait) => {
          const lock = await (wait ? redlockWaiting : redlock).acquire([resource], TTL_MS);
          return () => lock.release();
        },
      },
      {
        name: 'redlock 4.2.0',
        cycle: async (i) => (await redlock4.lock(keys[i & (KEYS - 1)]!, TTL_MS)).unlock(),
      },
      {
        name: 'redis-semaphore Mutex',
        cycle: async (i) => {
          const mutex = new Mutex(redis, keys[i & (KEYS - 1)]!, { lockTimeout: TTL_MS, refreshInterval: 0, acquireAttemptsLimit: 1 });
          await mutex.acquire();
          await mutex.release();
        },
        hold: async (resource, wait) => {
          // One attempt for the holder (a 1 ms acquireTimeout can expire before the first reply on a busy machine).
          const mutex = new Mutex(redis, resource, {
            lockTimeout: TTL_MS,
            refreshInterval: 0,
            acquireTimeout: 10_000,
            acquireAttemptsLimit: wait ? Number.POSITIVE_INFINITY : 1,
          });
          await mutex.acquire();
          return () => mutex.release();
        },
      },
      {
        name: '@cyredis/lock LockManager',
        cycle: async (i) => (await locks.acquire(keys[i & (KEYS - 1)]!)).release(),
        hold: async (resource, wait) => {
          const lock = await locks.acquire(resource, { waitMs: wait ? 10_000 : 0 });
          return () => lock.release();
        },
      },
    ];

    const cycles = (concurrency: number) => ({
      title: `acquire + release, ${concurrency} in flight (cycles/s)`,
      cases: contenders.map(
        (c): BenchCase => ({ name: c.name, unit: 'cycles/s', higherIsBetter: true, sample: () => throughput(c.cycle, concurrency, durationMs) }),
      ),
    });
    let round = 0;
    const handoff = {
      title: 'hand-off: release → waiting acquirer holds the lock (median of 15, ms)',
      cases: contenders.flatMap(({ name, hold }): BenchCase[] =>
        hold ? [{ name, unit: 'ms', higherIsBetter: false, sample: () => handoffMs(hold, round++) }] : [],
      ),
    };
    const semaphores = semaphoreContenders(redis, locks, keys.map((k) => `${k}:sem`));
    const semaphoreCycles = (concurrency: number) => ({
      title: `semaphore acquire + release, ${concurrency} in flight (cycles/s)`,
      cases: semaphores.map(
        (c): BenchCase => ({ name: c.name, unit: 'cycles/s', higherIsBetter: true, sample: () => throughput(c.cycle, concurrency, durationMs) }),
      ),
    });
    const semaphoreHandoff = {
      title: 'semaphore hand-off: release → waiting acquirer holds the permit (median of 15, ms)',
      cases: semaphores.flatMap(({ name, hold }): BenchCase[] =>
        hold ? [{ name, unit: 'ms', higherIsBetter: false, sample: () => handoffMs(hold, round++) }] : [],
      ),
    };
    const semaphoreIdle = {
      title: `Redis bytes per idle semaphore, right after ${IDLE_RESOURCES} fresh ones were acquired and released`,
      cases: semaphores.flatMap(({ name, idle }): BenchCase[] =>
        idle ? [{ name, unit: 'bytes', higherIsBetter: false, sample: () => idleBytes(redis, round++, idle) }] : [],
      ),
    };
    // The rest of the family, as `hold` functions for the same hand-off measure.
    const family: [string, NonNullable<Contender['hold']>][] = [
      ['@cyredis/lock read-write (writer to writer)', async (resource, wait) => {
        const lock = await locks.readWrite(resource).write.acquire({ waitMs: wait ? 10_000 : 0 });
        return () => lock.release();
      }],
      ['@cyredis/lock fair', async (resource, wait) => {
        const lock = await locks.fair(resource).acquire({ waitMs: wait ? 10_000 : 0 });
        return () => lock.release();
      }],
      ['@cyredis/lock acquireMany (2 names)', async (resource, wait) => {
        const many = await locks.acquireMany([resource, `${resource}:b`], { waitMs: wait ? 10_000 : 0 });
        return () => many.release();
      }],
    ];
    const familyHandoff = {
      title: 'hand-off, the other primitives: release → waiting acquirer holds it (median of 15, ms)',
      cases: family.map(([name, hold]): BenchCase => ({ name, unit: 'ms', higherIsBetter: false, sample: () => handoffMs(hold, round++) })),
    };
    close = () => locks.close();
    return Promise.resolve([cycles(1), cycles(64), handoff, semaphoreCycles(1), semaphoreCycles(64), semaphoreHandoff, familyHandoff, semaphoreIdle]);
  },
  teardown: async () => close?.(),
};

export default suite;
