import type { RedisClient } from '@cyredis/core';
import { RateLimiter, type RateLimitAlgorithm } from '@cyredis/ratelimit';
import { RedisServer, startCluster, type RedisClusterHandle } from '@cyredis/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mastersOf, underLoad } from '../src/scenario.js';
import type { Workload } from '../src/workloads.js';

// "Keys lost" for @cyredis/ratelimit: Redis takes keys away under allkeys-* eviction, under volatile-*
// (every limiter key has a TTL) and on a restart without persistence. A DEL of one key reproduces an
// eviction exactly, FLUSHALL the restart. The documented bound (docs/GUARANTEES.md): each loss of a rule's
// key lets that rule admit at most its capacity once more, so within one period an id is admitted at most
// min over the rules of capacity × (1 + times that rule's key was lost). Lost block and request keys only
// lift a block early and let a resend count again; neither adds to that bound.

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
const SHORT: Record<RateLimitAlgorithm, string> = { 'sliding-window': 'sw', gcra: 'gcra', 'fixed-window': 'fw' };
// Windows of days: nothing refills or expires during a run, so every admission beyond one capacity per rule
// comes from a lost key. The rules bind in turn: the first holds 10, the second 25.
const DAY_MS = 86_400_000;
const RULES = [
  { limit: 10, windowMs: 10 * DAY_MS },
  { limit: 25, windowMs: 20 * DAY_MS },
];
const IDS = ['user:1', 'user:2', 'user:3', 'user:{4}'];
/** Event-loop lag on a loaded machine, on top of the limiter's deadline. */
const SLACK_MS = 1500;

interface Tally {
  admitted: Map<string, number>;
  /** Losses of each rule's key (rule index → count); the same for every id, since each fault hits them all. */
  losses: number[];
  slowestMs: number;
}

/** Deletes every key matching `pattern` on every master; resolves with how many there were. */
async function deleteMatching(client: RedisClient, pattern: string): Promise<number> {
  let deleted = 0;
  for (const node of mastersOf(client)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      // One DEL per key: a cluster node holds many slots, and a multi-key DEL must stay in one.
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.del(key);
      for (const [err, n] of (await pipeline.exec()) ?? []) {
        if (err) throw err;
        deleted += n as number;
      }
    } while (cursor !== '0');
  }
  return deleted;
}

/** Period boundaries of a fixed window crossed during the run: each may legitimately admit a capacity more. */
function boundaries(algorithm: RateLimitAlgorithm, periodMs: number, startMs: number, endMs: number): number {
  if (algorithm !== 'fixed-window') return 0;
  return Math.floor((endMs + 1000) / periodMs) - Math.floor((startMs - 1000) / periodMs);
}

function workload(algorithm: RateLimitAlgorithm, tally: Tally): Workload {
  return {
    name: 'ratelimit',
    start: (client, prefix) => {
      const limiter = new RateLimiter(client, { prefix, rules: RULES, algorithm, blockMs: DAY_MS });
      return {
        op: async (i) => {
          const id = IDS[i % IDS.length]!;
          const start = performance.now();
          try {
            // Some calls carry a request id, so request keys exist to be lost (each id is used once).
            const r = await limiter.limit(id, i % 16 === 0 ? { requestId: `q${i}` } : {});
            if (r.allowed) tally.admitted.set(id, (tally.admitted.get(id) ?? 0) + 1);
          } finally {
            tally.slowestMs = Math.max(tally.slowestMs, performance.now() - start);
          }
        },
        verify: async () => {
          // Traffic after the last fault rebuilt the state: every id is limited again.
          for (const id of IDS) expect((await limiter.peek(id)).allowed).toBe(false);
        },
        close: () => Promise.resolve(),
      };
    },
    isolated: () => Promise.resolve(),
  };
}

describe.each(['single', 'cluster'] as const)('@cyredis/ratelimit when Redis loses its keys (%s)', (topology) => {
  let server: RedisServer | undefined;
  let cluster: RedisClusterHandle | undefined;
  let client: RedisClient;

  beforeAll(async () => {
    if (topology === 'single') {
      server = await RedisServer.start();
      client = server.client();
    } else {
      cluster = await startCluster({ masters: 3 });
      client = cluster.client();
    }
  });
  afterAll(async () => {
    client.disconnect();
    await server?.stop();
    await cluster?.stop();
  });

  it.each(ALGORITHMS)('%s: each key deleted in turn, then FLUSHALL, under load: no admission beyond the bound, no hang, only typed errors', async (algorithm) => {
    const tally: Tally = { admitted: new Map(), losses: RULES.map(() => 0), slowestMs: 0 };
    const short = SHORT[algorithm];
    // The same rules as the workload's limiter: their capacities, periods and deadline.
    const probe = new RateLimiter(client, { rules: RULES, algorithm });
    const startMs = Date.now();
    const report = await underLoad(workload(algorithm, tally), client, async (load) => {
      // Each id reaches its first rule's capacity before anything is lost.
      await load.resumed(200);
      const steps: { pattern: string; rule?: number }[] = [
        ...RULES.map((_, rule) => ({ pattern: `*:ratelimit:*:${short}${rule}`, rule })),
        { pattern: '*:ratelimit:*:block' },
        { pattern: '*:ratelimit:*:req:*' },
      ];
      for (const { pattern, rule } of steps) {
        const deleted = await deleteMatching(client, pattern);
        expect(deleted, pattern).toBeGreaterThan(0);
        if (rule !== undefined) tally.losses[rule]!++;
        await load.resumed(200);
      }
      await Promise.all(mastersOf(client).map((node) => node.flushall()));
      tally.losses = tally.losses.map((n) => n + 1);
    }, { resumeCalls: 200 });
    const endMs = Date.now();

    expect(report.failed).toBe(0);
    const resolved = probe.rules;
    const bound = Math.min(...resolved.map((r, i) => r.capacity * (1 + tally.losses[i]! + boundaries(algorithm, r.periodMs, startMs, endMs))));
    for (const id of IDS) {
      const admitted = tally.admitted.get(id) ?? 0;
      expect(admitted, id).toBeLessThanOrEqual(bound);
      // The bound is reached, not just respected: each lost first-rule key gave one capacity back.
      expect(admitted, id).toBeGreaterThanOrEqual(resolved[0]!.capacity * (1 + tally.losses[0]!));
    }
    expect(tally.slowestMs).toBeLessThan(probe.timeoutMs + SLACK_MS);
  });
});
