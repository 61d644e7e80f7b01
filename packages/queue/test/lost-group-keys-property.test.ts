import { defaultCodec, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, type Job } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { expectCompletedOnceOrDead } from './helpers.js';

/**
 * Property test of groups when one key is lost (issue 16, what an allkeys-* eviction does): random grouped
 * and ungrouped pushes, pops, completions, failures, releases, group options and clock steps, with one key
 * deleted at a random point, group keys included. Then the queue is drained (the clock jumps past every
 * delay, retry, lease and rate slot; everything popped is completed). Every job must end completed exactly
 * once or dead-lettered with a reason, and no group may be left holding jobs that never run.
 */

const LOSABLE = [':g:x', ':g:y', ':groups', ':gready', ':glimited', ':gwait', ':meta', ':jobs', ':state', ':w:0', '', 'processing'];

type Step =
  | { kind: 'push'; group: string | undefined; retries: number; delayMs: number }
  | { kind: 'pop'; count: number }
  | { kind: 'settle'; action: 'complete' | 'fail' | 'release'; pick: number }
  | { kind: 'options'; group: string; concurrency: number; rate: number }
  | { kind: 'tick'; ms: number }
  | { kind: 'lose' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('push' as const),
    group: fc.constantFrom(undefined, 'x', 'x', 'y', 'y'),
    retries: fc.integer({ min: 0, max: 2 }),
    delayMs: fc.constantFrom(0, 0, 0, 500),
  }),
  fc.record({ kind: fc.constant('pop' as const), count: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('settle' as const), action: fc.constantFrom('complete' as const, 'fail' as const, 'release' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('options' as const), group: fc.constantFrom('x', 'y'), concurrency: fc.integer({ min: 1, max: 2 }), rate: fc.constantFrom(0, 0, 2) }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.constantFrom(100, 1000, 3000) }),
);

describe.each(topologies)('groups with one key lost, on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  it('ends every job completed once or dead with a reason, whichever group key is lost when', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 40 }), fc.constantFrom(...LOSABLE), fc.nat(), async (steps, lost, at) => {
        const prefix = randomPrefix();
        prefixes.push(prefix);
        const seed = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{lg}:${k}`);
        const keys = protocol.declaredKeys(seed).keys;
        const policy = { events: false, eventsMaxLen: 100, completed: { count: 0, ageMs: -1 }, dead: { count: -1, ageMs: -1 } };
        let now = 1_000_000_000_000;
        const call = (args: ScriptArg[]) => scripts.executeScript(script, { keys, args: protocol.withPolicy(args, protocol.policyClock(policy, now / 1000)) });
        const lostKey = lost === 'processing' ? seed[1]! : `${seed[0]!}${lost}`;
        const plan: Step[] = [...steps];
        plan.splice(at % (plan.length + 1), 0, { kind: 'lose' });
        let pushes = 0;
        const pushed: string[] = [];
        const completed = new Map<string, number>();
        let held: Job<unknown>[] = [];
        const complete = async (job: Job<unknown>) => {
          if (protocol.decodeHeld(await call(protocol.encodeComplete(job)))) completed.set(job.id, (completed.get(job.id) ?? 0) + 1);
        };
        const pop = async (count: number) => {
          held.push(...protocol.decodeFetch(await call(protocol.encodeFetch(count, 1000, undefined)), defaultCodec).jobs);
        };
        for (const s of plan) {
          if (s.kind === 'push') {
            const id = `j${++pushes}`;
            const spec: protocol.PushSpec = { id, text: defaultCodec.encode(id), priority: 0, policy: String(s.retries), delaySeconds: s.delayMs / 1000, group: s.group };
            const [result] = protocol.decodePushMany([spec], await call(protocol.encodePushMany([spec])));
            expect(result!.added).toBe(true);
            pushed.push(id);
          } else if (s.kind === 'pop') {
            await pop(s.count);
          } else if (s.kind === 'settle' && held.length > 0) {
            const job = held.splice(s.pick % held.length, 1)[0]!;
            if (s.action === 'complete') await complete(job);
            else if (s.action === 'fail') await call(protocol.encodeFail(job, 'boom'));
            else await call(protocol.encodeRelease(job));
          } else if (s.kind === 'options') {
            await call(protocol.encodeGroupOptions(s.group, { concurrency: s.concurrency, rateLimit: s.rate, rateWindowMs: s.rate > 0 ? 1000 : 0 }));
          } else if (s.kind === 'tick') {
            now += s.ms;
          } else if (s.kind === 'lose') {
            await redis.del(lostKey);
          }
        }
        // Drain: past every delay, retry, lease and rate slot; complete whatever comes.
        let stats = protocol.decodeStats(await call(protocol.encodeStats()));
        for (let round = 0; round < 80; round++) {
          now += 120_000;
          for (const job of held) await complete(job);
          held = [];
          await pop(1000);
          stats = protocol.decodeStats(await call(protocol.encodeStats()));
          if (held.length === 0 && stats.waiting + stats.delayed + stats.processing + stats.failed === 0) break;
        }
        expect(held, 'leased after the drain').toEqual([]);
        expect(stats, 'left after the drain').toMatchObject({ waiting: 0, delayed: 0, processing: 0, failed: 0 });
        // Nothing waits in a group any more (a lost counter or index would leave jobs behind there).
        for (const g of ['x', 'y']) expect(await redis.llen(`${seed[0]!}:g:${g}`), `group ${g}`).toBe(0);
        const reasons = new Map(protocol.decodeDead(await call(protocol.encodeDead(1000)), defaultCodec).map((d) => [d.id, d.error]));
        expectCompletedOnceOrDead(pushed, completed, reasons, lost || 'the index');
      }),
      { numRuns: topology === 'single' ? 60 : 20 },
    );
  });
});
