import { InvalidArgumentError } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import { beforeEach, describe, expect, it } from 'vitest';
import { RateLimiter, type RateLimiterOptions } from '../src/index.js';

// Discovery and read-only inspection: the registry of named limiters, usage per rule, recorded refusals.
describe.each(topologies)('RateLimiter inspection on %s', (topology) => {
  const redis = suiteClient(topology);
  // Another connection stands for another process.
  const other = suiteClient(topology);
  let prefix: string;
  const make = (options: RateLimiterOptions, client = redis) => new RateLimiter(client, { prefix, timeoutMs: 10_000, ...options });
  beforeEach(() => {
    prefix = randomPrefix();
  });
  const names = async (p = prefix) => (await RateLimiter.list(redis, { prefix: p })).map((e) => e.name).sort();

  it('list shows the named limiters used under a prefix, from any process, and never the unnamed', async () => {
    await make({ limit: 5, windowMs: 60_000, name: 'api' }).limit('x');
    await make({ limit: 5, windowMs: 60_000, name: 'login' }, other).peek('y');
    await make({ limit: 5, windowMs: 60_000 }).limit('z');
    await waitFor(async () => (await names()).length === 2, { timeoutMs: 10_000 });
    expect(await names()).toEqual(['api', 'login']);
    const [first] = await RateLimiter.list(redis, { prefix, limit: 1 });
    expect(first!.lastSeenMs).toBeGreaterThan(Date.now() - 60_000);
    expect(await RateLimiter.list(redis, { prefix, offset: 2 })).toEqual([]);
    // A limiter never used is not listed; another prefix lists nothing of this one.
    make({ limit: 5, windowMs: 60_000, name: 'idle' });
    expect(await names()).toEqual(['api', 'login']);
    expect(await names(randomPrefix())).toEqual([]);
    await redis.del(`${prefix}:registry:ratelimit`);
  });

  it.each(['sliding-window', 'gcra', 'fixed-window'] as const)('%s usage reads every rule without consuming', async (algorithm) => {
    // Long windows, so a fixed window's boundary cannot fall inside the test.
    const limiter = make({ rules: [{ limit: 10, windowMs: 3_600_000 }, { limit: 3, windowMs: 600_000 }], algorithm });
    await limiter.limit('u', { cost: 2 });
    const usage = await limiter.usage('u');
    expect(usage.rules.map(({ rule, limit, used, remaining }) => ({ rule, limit, used, remaining }))).toEqual([
      { rule: 0, limit: 10, used: 2, remaining: 8 },
      { rule: 1, limit: 3, used: 2, remaining: 1 },
    ]);
    expect(usage.rules[0]!.resetMs).toBeGreaterThan(0);
    expect(usage.rules.map((r) => r.windowMs)).toEqual(limiter.rules.map((r) => r.periodMs));
    expect(usage.next).toMatchObject({ allowed: true, remaining: 1, rule: 1 });
    // Nothing was consumed: the same reading again, and one more admission fits.
    expect((await limiter.usage('u')).rules.map((r) => r.used)).toEqual([2, 2]);
    expect((await limiter.limit('u')).allowed).toBe(true);
    expect((await limiter.usage('u')).next.allowed).toBe(false);
    const fresh = await limiter.usage('nobody');
    expect(fresh.rules.map((r) => r.used)).toEqual([0, 0]);
  });

  it('usage shows a block and a deny list entry in next', async () => {
    const limiter = make({ limit: 1, windowMs: 60_000, blockMs: 60_000, policies: true });
    await limiter.limit('b');
    await limiter.limit('b');
    const blocked = await limiter.usage('b');
    expect(blocked.rules[0]).toMatchObject({ used: 1, remaining: 0 });
    expect(blocked.next.allowed).toBe(false);
    expect(blocked.next.retryAfterMs).toBeGreaterThan(50_000);
    await limiter.denyList.add('d');
    expect((await limiter.usage('d')).next).toMatchObject({ allowed: false, listed: 'deny' });
  });

  it('recordRefusals: every process sees the ids refused most recently, capped, newest first', async () => {
    const options: RateLimiterOptions = { limit: 1, windowMs: 60_000, algorithm: 'gcra', recordRefusals: { maxEntries: 3 } };
    const a = make(options);
    const b = make(options, other);
    for (const id of ['i1', 'i2']) {
      await a.limit(id);
      await a.limit(id);
    }
    await b.limit('i3');
    await b.limit('i3');
    await waitFor(async () => (await a.recentRefusals()).length === 3, { timeoutMs: 10_000 });
    const seen = await b.recentRefusals();
    expect(seen.map((r) => r.id).sort()).toEqual(['i1', 'i2', 'i3']);
    expect(seen[0]!.refusedAtMs).toBeGreaterThanOrEqual(seen[2]!.refusedAtMs);
    // Admitted ids are never recorded; past maxEntries the oldest refusal goes.
    await a.limit('ok');
    await a.limit('i4');
    await a.limit('i4');
    await waitFor(async () => (await a.recentRefusals()).some((r) => r.id === 'i4'), { timeoutMs: 10_000 });
    const ids = (await a.recentRefusals()).map((r) => r.id);
    expect(ids).toHaveLength(3);
    expect(ids).not.toContain('ok');
    expect(await a.recentRefusals({ limit: 1, offset: 1 })).toHaveLength(1);
    await redis.del(`${prefix}:ratelimit:refused`);
  });

  it('refuses bad input', async () => {
    expect(() => make({ limit: 1, windowMs: 1000, name: '' })).toThrow(InvalidArgumentError);
    expect(() => make({ limit: 1, windowMs: 1000, name: 'x'.repeat(257) })).toThrow(InvalidArgumentError);
    expect(() => make({ limit: 1, windowMs: 1000, recordRefusals: { maxEntries: 0 } })).toThrow(InvalidArgumentError);
    expect(() => make({ limit: 1, windowMs: 1000, recordRefusals: 'yes' as never })).toThrow(InvalidArgumentError);
    const limiter = make({ limit: 1, windowMs: 1000 });
    await expect(limiter.recentRefusals()).rejects.toThrow(/recordRefusals/);
    const recording = make({ limit: 1, windowMs: 1000, recordRefusals: true });
    await expect(recording.recentRefusals({ limit: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(recording.recentRefusals({ offset: -1 })).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.list(redis, { timeoutMs: -1 })).rejects.toThrow(InvalidArgumentError);
    await expect(limiter.usage('')).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.list(redis, { prefix: 'a{b' })).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.list(redis, { limit: 5000 })).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.list(redis, { prefx: 'p' } as never)).rejects.toThrow(/did you mean "prefix"/);
    await expect(RateLimiter.list({} as never)).rejects.toThrow(InvalidArgumentError);
  });
});
