import { randomPrefix } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RateLimiter, type RateLimitAlgorithm, type RateLimitRule } from '../src/index.js';
import { LimiterModel, toUs } from './model.js';

// Explicit times far from the real clock; windows of ≥ 1 s so no key expires in real time during a run.
const T0 = 1_700_000_000_000;

const ruleArb = fc
  .record({ limit: fc.integer({ min: 1, max: 6 }), windowMs: fc.integer({ min: 1, max: 20 }).map((s) => s * 1000), extra: fc.integer({ min: 0, max: 4 }), burst: fc.boolean() })
  .map(({ limit, windowMs, extra, burst }): RateLimitRule => (burst ? { limit, windowMs, burst: limit + extra } : { limit, windowMs }));

// Gaps of 0 (same µs), sub-ms, whole seconds and a µs short of them, so arrivals cluster and land on and
// next to window edges.
const stepArb = fc.record({
  gapUs: fc.oneof(
    fc.constant(0),
    fc.integer({ min: 1, max: 999 }),
    fc.integer({ min: 1, max: 12 }).map((s) => s * 1_000_000 - 1),
    fc.integer({ min: 1, max: 12 }).map((s) => s * 1_000_000),
    fc.integer({ min: 1, max: 25_000_000 }),
  ),
  cost: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 3, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: -1 }) }),
  peek: fc.boolean(),
});

function maxWindowSum(admitted: { t: number; c: number }[], spanUs: number): number {
  let worst = 0;
  for (const end of admitted) {
    const sum = admitted.filter((e) => e.t > end.t - spanUs && e.t <= end.t).reduce((s, e) => s + e.c, 0);
    worst = Math.max(worst, sum);
  }
  return worst;
}

describe.each(topologies)('rate_limiter.lua against a brute-force model on %s', (topology) => {
  const prefix = randomPrefix();

  const redis = suiteClient(topology, prefix);

  let run = 0;
  /** Drives `steps` through a limiter and the model, comparing every answer; checks the window bounds after. */
  async function compare(algorithm: RateLimitAlgorithm, rules: RateLimitRule[], steps: { gapUs: number; cost: number; peek: boolean }[], policies = false): Promise<void> {
    const limiter = new RateLimiter(redis, { rules, algorithm, prefix, policies });
    const model = new LimiterModel(algorithm, rules);
    const id = `model-${run++}`;
    const minCapacity = Math.min(...rules.map((r) => r.burst ?? r.limit));
    let nowUs = 0;
    const admitted: { t: number; c: number }[] = [];
    for (const step of steps) {
      nowUs += step.gapUs;
      const nowMs = T0 + nowUs / 1000;
      const cost = Math.max(Math.min(step.cost, minCapacity), -minCapacity);
      const got = step.peek ? await limiter.peek(id, { cost, nowMs }) : await limiter.limit(id, { cost, nowMs });
      const want = model.decide(nowMs, cost, step.peek);
      expect({ ...got, limit: undefined, windowMs: undefined }).toEqual({ ...want, limit: undefined, windowMs: undefined });
      if (!step.peek && got.allowed && cost > 0) admitted.push({ t: toUs(nowMs), c: cost });
      if (!got.allowed) {
        // Honest retry-after: the same call, that much later, is admitted.
        expect((await limiter.peek(id, { cost, nowMs: nowMs + got.retryAfterMs })).allowed).toBe(true);
      }
    }
    if (algorithm === 'sliding-window' && !steps.some((s) => s.cost < 0)) {
      for (const r of rules) {
        const capacity = r.burst ?? r.limit;
        const windowUs = toUs(r.windowMs);
        expect(maxWindowSum(admitted, Math.ceil((windowUs * capacity) / r.limit))).toBeLessThanOrEqual(capacity);
        expect(maxWindowSum(admitted, windowUs)).toBeLessThanOrEqual(capacity);
        if (r.burst === undefined) expect(maxWindowSum(admitted, windowUs)).toBeLessThanOrEqual(r.limit);
      }
    }
  }

  const algorithms: RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
  it.each(algorithms)('%s: every decision, remaining, reset and retry-after match the model', async (algorithm) => {
    await fc.assert(
      // With policies on (and no policy stored) every answer is the same: the policy path reads and falls through.
      fc.asyncProperty(fc.array(ruleArb, { minLength: 1, maxLength: 2 }), fc.array(stepArb, { minLength: 1, maxLength: 40 }), fc.boolean(), (rules, steps, policies) =>
        compare(algorithm, rules, steps, policies),
      ),
      { numRuns: topology === 'single' ? 60 : 25 },
    );
  });

  // Capacities in the hundreds: the packed log grows, is rewritten, and drops long runs of expired entries.
  it('sliding-window with large limits and long runs: every answer matches the model', async () => {
    const bigRule = fc
      .record({ limit: fc.integer({ min: 20, max: 300 }), windowMs: fc.integer({ min: 1, max: 5 }).map((s) => s * 1000), extra: fc.integer({ min: 0, max: 50 }) })
      .map(({ limit, windowMs, extra }): RateLimitRule => (extra === 0 ? { limit, windowMs } : { limit, windowMs, burst: limit + extra }));
    const step = fc.record({
      gapUs: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 0, max: 20 }).map((ms) => ms * 1000) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 4_000_000 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((s) => s * 1_000_000) },
      ),
      cost: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, { weight: 2, arbitrary: fc.integer({ min: 2, max: 9 }) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 0 }) }),
      peek: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(bigRule, { minLength: 1, maxLength: 2 }), fc.array(step, { minLength: 200, maxLength: 600 }), (rules, steps) => compare('sliding-window', rules, steps)),
      { numRuns: topology === 'single' ? 6 : 3 },
    );
  });

  it('concurrent checks (batched on a single node) decide as the same checks made one by one', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'c'), cost: fc.integer({ min: -3, max: 6 }) }), { minLength: 1, maxLength: 40 }),
        async (calls) => {
          // A one-hour window: nothing expires during the run, so server time does not matter.
          const limiter = new RateLimiter(redis, { limit: 6, windowMs: 3_600_000, prefix: `${prefix}:batch${run++}` });
          const results = await Promise.all(calls.map(({ id, cost }) => limiter.limit(id, { cost })));
          const used = new Map<string, number>();
          const expected = calls.map(({ id, cost }) => {
            const before = used.get(id) ?? 0;
            const allowed = cost <= 0 || before + cost <= 6;
            const after = allowed ? Math.max(before + cost, 0) : before;
            used.set(id, after);
            return [allowed, 6 - after];
          });
          expect(results.map((r) => [r.allowed, r.remaining])).toEqual(expected);
        },
      ),
      { numRuns: topology === 'single' ? 40 : 15 },
    );
  });
});
