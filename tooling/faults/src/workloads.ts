import type { RedisClient } from '@cyredis/core';
import { SmartCache } from '@cyredis/cache';
import { LockManager, type Lock } from '@cyredis/lock';
import { JobQueue, Worker } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { waitFor } from '@cyredis/testing';

/**
 * One package under steady traffic: `op` is one call of its public API; `verify` checks, once the fault has
 * healed, the promise the package makes about repeated and ambiguous calls.
 */
export interface WorkloadRun {
  op: (i: number) => Promise<void>;
  verify: (outcome: FaultOutcome) => Promise<void>;
  close: () => Promise<void>;
}

export interface FaultOutcome {
  /** Calls that ended in an error: their outcome is unknown (they may have run). */
  failed: number;
  /**
   * The fault could drop writes Redis had already acknowledged (a killed primary with asynchronous
   * replication): only the promises that survive such a loss are checked.
   */
  lossy: boolean;
}

export interface Workload {
  name: 'ratelimit' | 'lock' | 'cache' | 'queue';
  start: (client: RedisClient, prefix: string, options?: { replicas?: number }) => WorkloadRun;
  /** Throws when state written for id `a` is visible through id `b` (a key collision). */
  isolated: (client: RedisClient, prefix: string, a: string, b: string) => Promise<void>;
}

class Violation extends Error {}

/**
 * Every admitted call is counted once: what the limiter consumed never exceeds the admitted calls plus the
 * calls with an unknown outcome (each call carries a request id, so a resend after a lost reply is not
 * counted again).
 */
const ratelimit: Workload = {
  name: 'ratelimit',
  start: (client, prefix) => {
    const limit = 1_000_000;
    const limiter = new RateLimiter(client, { limit, windowMs: 600_000, prefix });
    const ids = Array.from({ length: 8 }, (_, i) => `user:${i}`);
    let admitted = 0;
    return {
      op: async (i) => {
        const r = await limiter.limit(ids[i % ids.length]!, { requestId: `req-${i}` });
        if (!r.allowed) throw new Violation(`refused under a huge limit: ${JSON.stringify(r)}`);
        admitted++;
      },
      verify: async ({ failed, lossy }) => {
        let consumed = 0;
        for (const id of ids) consumed += limit - (await limiter.peek(id)).remaining;
        if ((!lossy && consumed < admitted) || consumed > admitted + failed) {
          throw new Violation(`consumed ${consumed}, admitted ${admitted}, unknown outcomes ${failed}`);
        }
      },
      close: () => Promise.resolve(),
    };
  },
  isolated: async (client, prefix, a, b) => {
    const limiter = new RateLimiter(client, { limit: 1, windowMs: 60_000, prefix });
    if (!(await limiter.limit(a)).allowed || !(await limiter.limit(b)).allowed) throw new Violation('ids share a limit');
  },
};

/**
 * Never two holders at once: every critical section is recorded; a new holder must find no other holder
 * still inside its lease, and fencing tokens of one resource strictly increase.
 */
const lock: Workload = {
  name: 'lock',
  start: (client, prefix, options = {}) => {
    const locks = new LockManager(client, {
      ttlMs: 2_000,
      prefix,
      ...(options.replicas ? { waitForReplicas: { replicas: options.replicas, timeoutMs: 500 } } : {}),
    });
    const holders = new Map<string, Lock>();
    const lastToken = new Map<string, bigint>();
    const violations: string[] = [];
    return {
      op: async (i) => {
        const resource = `res:${i % 4}`;
        const held = await locks.tryAcquire(resource);
        if (!held) return;
        const other = holders.get(resource);
        if (other && other.remainingMs > 0) violations.push(`${resource}: granted while ${other.owner} held it`);
        const last = lastToken.get(resource) ?? -1n;
        if (held.fencingToken <= last) violations.push(`${resource}: token ${held.fencingToken} after ${last}`);
        lastToken.set(resource, held.fencingToken);
        holders.set(resource, held);
        await new Promise((r) => setImmediate(r));
        if (holders.get(resource) === held) holders.delete(resource);
        await held.release();
      },
      verify: async () => {
        if (violations.length > 0) throw new Violation(violations.slice(0, 5).join('; '));
        await Promise.resolve();
      },
      close: () => locks.close(),
    };
  },
  isolated: async (client, prefix, a, b) => {
    const locks = new LockManager(client, { ttlMs: 10_000, prefix });
    try {
      const first = await locks.tryAcquire(a);
      const second = await locks.tryAcquire(b);
      if (!first || !second) throw new Violation('ids share a lock');
      if ((await locks.status(a)).owner !== first.owner) throw new Violation('status of one id shows another');
    } finally {
      await locks.close();
    }
  },
};

/** No stale value pinned: after the fault, a write through one cache is what another cache (with L1) reads. */
const cache: Workload = {
  name: 'cache',
  start: (client, prefix) => {
    // A 5 s deadline, like the other packages' callers that wait for Redis: a restart on a loaded machine can
    // take longer than the 1 s default, and this suite tests what a fault does, not the deadline (outage.test.ts).
    const options = { name: 'faults', maxSize: 1_000, defaultTtlMs: 60_000, prefix, l1: { maxEntries: 100 }, timeoutMs: 5_000 };
    const writer = new SmartCache<{ v: number }>(client, options);
    const reader = new SmartCache<{ v: number }>(client, options);
    const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
    return {
      op: async (i) => {
        const key = keys[i % keys.length]!;
        if (i % 3 === 0) await writer.set(key, { v: i });
        else await reader.get(key);
      },
      verify: async () => {
        for (const [n, key] of keys.entries()) {
          await reader.get(key);
          await writer.set(key, { v: -n - 1 });
          await waitFor(async () => (await reader.get(key))?.v === -n - 1, { timeoutMs: 10_000, message: `stale value of ${key}` });
        }
      },
      close: async () => {
        await Promise.all([writer.close(), reader.close()]);
      },
    };
  },
  isolated: async (client, prefix, a, b) => {
    const one = new SmartCache<string>(client, { name: a, maxSize: 10, defaultTtlMs: 60_000, prefix });
    const two = new SmartCache<string>(client, { name: b, maxSize: 10, defaultTtlMs: 60_000, prefix });
    try {
      await one.set(a, 'A');
      await one.set(b, 'B');
      if ((await one.get(a)) !== 'A' || (await one.get(b)) !== 'B') throw new Violation('keys of one cache collide');
      if ((await two.get(a)) !== undefined || (await two.stats()).size !== 0) throw new Violation('caches share entries');
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  },
};

/**
 * No job lost, none completed twice: every job whose push succeeded completes exactly once (a handler may run
 * again after a lost lease; the completion is fenced by the lease token).
 */
const queue: Workload = {
  name: 'queue',
  start: (client, prefix) => {
    const q = new JobQueue<{ i: number }>(client, 'faults', { prefix, maxRetries: 20, backoff: { baseMs: 10, maxMs: 200 } });
    const pushed = new Set<string>();
    const completed = new Map<string, number>();
    const worker = new Worker(q, () => Promise.resolve(), { concurrency: 4, leaseMs: 2_000 });
    worker.on('completed', (job) => completed.set(job.id, (completed.get(job.id) ?? 0) + 1));
    worker.on('error', () => undefined);
    return {
      op: async (i) => {
        pushed.add(await q.push({ i }, { id: `job-${i}` }));
      },
      verify: async ({ lossy }) => {
        if (!lossy) await waitFor(() => [...pushed].every((id) => completed.has(id)), {
          timeoutMs: 30_000,
          message: `jobs not completed: ${[...pushed].filter((id) => !completed.has(id)).slice(0, 5).join(', ')}`,
        });
        const twice = [...completed].filter(([, n]) => n > 1);
        if (twice.length > 0) throw new Violation(`completed more than once: ${JSON.stringify(twice.slice(0, 5))}`);
      },
      close: () => worker.close(),
    };
  },
  isolated: async (client, prefix, a, b) => {
    // Queue names are capped at 256 characters; longer look-alikes are tested as job ids only.
    const names = a.length <= 256 && b.length <= 256 ? [a, b] : ['one', 'two'];
    const one = new JobQueue<string>(client, names[0]!, { prefix });
    const two = new JobQueue<string>(client, names[1]!, { prefix });
    await one.push('job', { id: a });
    if ((await one.push('job', { id: b })) !== b) throw new Violation('job ids collide');
    if ((await two.stats()).waiting !== 0 || (await one.stats()).waiting !== 2) throw new Violation('queues share jobs');
  },
};

export const workloads: readonly Workload[] = [ratelimit, lock, cache, queue];
