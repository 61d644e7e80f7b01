import type { RedisClient } from '@cyredis/core';
import { LockManager, LockUnavailableError, type Lock } from '@cyredis/lock';
import { RedisServer } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { underLoad } from '../src/scenario.js';
import { workloads, type Workload } from '../src/workloads.js';

// Keys lost: a DEL of one key is what an allkeys-* eviction does, FLUSHALL what a restart without
// persistence does. The lock may then have two holders (documented); it must never repeat a fencing token,
// let one go backwards, hang, or throw an untyped error.
let server: RedisServer;
let client: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  client = server.client();
  client.on('error', () => undefined);
});
afterAll(async () => {
  client.disconnect();
  await server.stop();
});

const RESOURCES = ['res:0', 'res:1', 'res:2', 'res:3'];
const TIMEOUT_MS = 1_000;
const WAIT_MS = 200;
/** An acquire (with its wait) and a release, each bounded by timeoutMs, plus room for a loaded machine. */
const HANG_MS = 2 * TIMEOUT_MS + WAIT_MS + 2_000;

/**
 * Acquire (one attempt or a short wait), status and release on four resources. Each grant's token must be
 * new and higher than every token of that resource seen before its request went out.
 */
const fencing: Workload = {
  name: 'lock',
  isolated: workloads.find((w) => w.name === 'lock')!.isolated,
  start: (redis: RedisClient, prefix: string) => {
    const locks = new LockManager(redis, { prefix, ttlMs: 2_000, timeoutMs: TIMEOUT_MS });
    const seen = new Map(RESOURCES.map((r) => [r, new Set<bigint>()]));
    const highest = new Map(RESOURCES.map((r) => [r, 0n]));
    const violations: string[] = [];
    const take = async (resource: string, i: number): Promise<Lock | null> => {
      if (i % 3 !== 0) return locks.tryAcquire(resource);
      try {
        return await locks.acquire(resource, { waitMs: WAIT_MS });
      } catch (err) {
        if (err instanceof LockUnavailableError) return null;
        throw err;
      }
    };
    return {
      op: async (i) => {
        const resource = RESOURCES[i % RESOURCES.length]!;
        const floor = highest.get(resource)!;
        const started = performance.now();
        try {
          if (i % 7 === 6) {
            await locks.status(resource);
            return;
          }
          const held = await take(resource, i);
          if (!held) return;
          const token = held.fencingToken;
          if (seen.get(resource)!.has(token)) violations.push(`${resource}: token ${token} issued twice`);
          if (token <= floor) violations.push(`${resource}: token ${token} after ${floor} was seen`);
          seen.get(resource)!.add(token);
          if (token > highest.get(resource)!) highest.set(resource, token);
          await new Promise((resolve) => setImmediate(resolve));
          await held.release();
        } finally {
          const ms = performance.now() - started;
          if (ms > HANG_MS) violations.push(`${resource}: a call took ${Math.round(ms)} ms`);
        }
      },
      verify: async () => {
        if (violations.length > 0) throw new Error(violations.slice(0, 5).join('; '));
        // Nothing the lock wrote is kept forever.
        for (const resource of RESOURCES) {
          const pttl = await redis.pttl(locks.keyOf(resource));
          if (pttl === -1) throw new Error(`${resource}: lock key without expiry`);
        }
      },
      close: () => locks.close(),
    };
  },
};

describe('lock when the server loses keys', () => {
  it('each lock key deleted in turn, then FLUSHALL, under load: no repeated or backward token, no hang, typed errors only', async () => {
    const prefix = 'keys-lost';
    // Only for its key names: it opens no connection.
    const names = new LockManager(client, { prefix });
    const report = await underLoad(
      fencing,
      client,
      async (load) => {
        for (let round = 0; round < 3; round++) {
          for (const resource of RESOURCES) {
            await client.del(names.keyOf(resource));
            await load.resumed(20);
          }
        }
        await server.command('FLUSHALL');
        await load.resumed(50);
        await server.command('FLUSHALL');
      },
      { prefix },
    );
    expect(report.ok).toBeGreaterThan(0);
    expect(Object.keys(report.byKind).every((kind) => /Unavailable|Timeout/.test(kind))).toBe(true);
  });
});
