import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCompletedOnceOrDead, raw } from './helpers.js';

/**
 * Property test of the script when one key is lost: random pushes, pops, completions, failures, releases
 * and clock steps, with one key of the queue deleted at a random point (what an eviction does). Then the
 * queue is drained (the clock jumps past every delay, retry and lease; everything popped is completed).
 * Every job pushed must end completed exactly once or dead-lettered with a reason, never in no state, and
 * no call may fail.
 */

const KEYS = ['', ':w:0', ':w:5', ':jobs', ':state', ':meta', ':delayed', ':wake', 'processing', 'failed', 'dead'];

type Step =
  | { kind: 'push'; priority: number; retries: number; delayMs: number }
  | { kind: 'pop'; count: number }
  | { kind: 'settle'; action: 'COMPLETE' | 'FAIL' | 'RELEASE'; pick: number }
  | { kind: 'tick'; ms: number }
  | { kind: 'lose' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), priority: fc.constantFrom(0, 0, 5), retries: fc.integer({ min: 0, max: 2 }), delayMs: fc.constantFrom(0, 0, 500) }),
  fc.record({ kind: fc.constant('pop' as const), count: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('settle' as const), action: fc.constantFrom('COMPLETE' as const, 'FAIL' as const, 'RELEASE' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.constantFrom(100, 1000, 3000) }),
);

describe.each(topologies)('job_queue.lua with one key lost, on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  it('ends every job completed once or dead with a reason, whichever key is lost when', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 40 }), fc.constantFrom(...KEYS), fc.nat(), async (steps, lost, at) => {
        const prefix = randomPrefix();
        prefixes.push(prefix);
        const keys = ['queue', 'processing', 'failed', 'dead'].map((k) => `${prefix}{p}:${k}`);
        const call = (...args: (string | number)[]) => raw(redis, keys, ...args);
        const lostKey = lost === 'processing' ? keys[1]! : lost === 'failed' ? keys[2]! : lost === 'dead' ? keys[3]! : `${keys[0]}${lost}`;
        const plan: Step[] = [...steps];
        plan.splice(at % (plan.length + 1), 0, { kind: 'lose' });
        let now = 1_000_000;
        let pushes = 0;
        const pushed: string[] = [];
        const completed = new Map<string, number>();
        let held: [string, string][] = [];
        const complete = async (id: string, token: string) => {
          if ((await call('COMPLETE', now / 1000, id, token)) === 1) completed.set(id, (completed.get(id) ?? 0) + 1);
        };
        const pop = async (count: number) => {
          const reply = (await call('POP', now / 1000, count, 1000, '1')) as unknown[];
          for (let i = 3; i < reply.length; i += 2) held.push([reply[i] as string, String(reply[1])]);
        };
        for (const s of plan) {
          if (s.kind === 'push') {
            const id = `j${++pushes}`;
            expect(await call('PUSH', now / 1000, id, 'x', s.priority, s.retries, s.delayMs / 1000)).toBe(1);
            pushed.push(id);
          } else if (s.kind === 'pop') {
            await pop(s.count);
          } else if (s.kind === 'settle' && held.length > 0) {
            const [id, token] = held.splice(s.pick % held.length, 1)[0]!;
            if (s.action === 'COMPLETE') await complete(id, token);
            else if (s.action === 'FAIL') await call('FAIL', now / 1000, id, 'boom', token);
            else await call('RELEASE', now / 1000, id, token);
          } else if (s.kind === 'tick') {
            now += s.ms;
          } else if (s.kind === 'lose') {
            await redis.del(lostKey);
          }
        }
        // Drain: past every delay, retry and lease; complete whatever comes.
        for (let round = 0; round < 30; round++) {
          now += 120_000;
          for (const [id, token] of held) await complete(id, token);
          held = [];
          await pop(1000);
          const stats = (await call('STATS', now / 1000)) as (string | number)[];
          for (let i = 1; i < stats.length; i += 2) expect(stats[i], String(stats[i - 1])).toBeGreaterThanOrEqual(0);
          if (held.length === 0 && stats[1] === 0 && stats[3] === 0 && stats[5] === 0 && stats[7] === 0) break;
        }
        const dead = (await call('DEAD', now / 1000, 1000)) as unknown[];
        const reasons = new Map<string, string>();
        for (let i = 0; i < dead.length; i += 5) reasons.set(dead[i] as string, dead[i + 3] as string);
        expectCompletedOnceOrDead(pushed, completed, reasons, lost || 'the index');
      }),
      { numRuns: topology === 'single' ? 60 : 20 },
    );
  });
});
