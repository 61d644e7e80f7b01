import { CyRedisError, InvalidArgumentError, RedisUnavailableError } from '@cyredis/core';
import { Redis } from 'ioredis';
import { freePort, randomPrefix, waitFor } from '@cyredis/testing';
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

  const defsKey = () => `${prefix}:registry:ratelimit:defs`;
  /** Opens `name` once its definition has been written (the write is off the caller's path). */
  const openWhenStored = async (name: string, ruleLimit?: number) => {
    let opened: RateLimiter | undefined;
    await waitFor(
      async () => {
        opened = await RateLimiter.open(other, name, { prefix, timeoutMs: 10_000 });
        return opened !== undefined && (ruleLimit === undefined || opened.rules[0]!.limit === ruleLimit);
      },
      { timeoutMs: 10_000 },
    );
    return opened!;
  };

  it('open rebuilds a named limiter from Redis: same rules, same counts, usage, reset and refusals', async () => {
    const options: RateLimiterOptions = { rules: [{ limit: 10, windowMs: 3_600_000, burst: 12 }, { limit: 2, windowMs: 600_000 }], algorithm: 'gcra', blockMs: 30_000, recordRefusals: true, name: 'api' };
    const app = make(options);
    expect(await RateLimiter.open(other, 'api', { prefix })).toBeUndefined();
    await app.limit('u');
    await app.limit('u');
    await app.limit('u');
    const opened = await openWhenStored('api');
    expect(opened.name).toBe('api');
    expect(opened.algorithm).toBe('gcra');
    expect(opened.blockMs).toBe(30_000);
    expect(opened.rules).toEqual(app.rules);
    expect((await opened.usage('u')).rules.map((r) => r.used)).toEqual([2, 2]);
    expect((await opened.peek('u')).allowed).toBe(false);
    await waitFor(async () => (await opened.recentRefusals()).some((r) => r.id === 'u'), { timeoutMs: 10_000 });
    await opened.reset('u');
    expect((await app.limit('u')).allowed).toBe(true);
    // Reading is not using: the opened limiter does not put the name back in the registry.
    await redis.del(`${prefix}:registry:ratelimit`);
    await opened.peek('u');
    await opened.usage('u');
    expect(await names()).toEqual([]);
    await redis.del(`${prefix}:ratelimit:refused`);
    await redis.del(defsKey());
  });

  it('open answers the definition written most recently when two processes define one name differently', async () => {
    await make({ limit: 5, windowMs: 60_000, name: 'shared' }).limit('x');
    expect((await openWhenStored('shared')).rules[0]!.limit).toBe(5);
    await make({ limit: 7, windowMs: 60_000, algorithm: 'fixed-window', policies: true, name: 'shared' }, other).limit('x');
    const latest = await openWhenStored('shared', 7);
    expect(latest.algorithm).toBe('fixed-window');
    expect(latest.policies).toBe(true);
    // Another name and another prefix are not this one.
    expect(await RateLimiter.open(redis, 'other-name', { prefix })).toBeUndefined();
    expect(await RateLimiter.open(redis, 'shared', { prefix: randomPrefix() })).toBeUndefined();
    await redis.del(`${prefix}:registry:ratelimit`);
    await redis.del(defsKey());
  });

  it('open leaves out a definition older than a day and refuses one it cannot read', async () => {
    const stale = { v: 1, algorithm: 'gcra', rules: [{ limit: 1, windowMs: 1000 }], blockMs: 0, policies: false, recordRefusals: 0, atMs: Date.now() - 25 * 3_600_000 };
    await redis.hset(defsKey(), 'old', JSON.stringify(stale), 'future', JSON.stringify({ ...stale, v: 99, atMs: Date.now() }), 'junk', '{');
    expect(await RateLimiter.open(redis, 'old', { prefix })).toBeUndefined();
    await expect(RateLimiter.open(redis, 'future', { prefix })).rejects.toThrow(CyRedisError);
    await expect(RateLimiter.open(redis, 'junk', { prefix })).rejects.toThrow(/format/);
    await redis.del(defsKey());
  });

  it('open refuses bad input and reports an unreachable server', async () => {
    await expect(RateLimiter.open(redis, '')).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.open(redis, 'x'.repeat(257))).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.open(redis, 'a', { prefix: 'a{b' })).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.open(redis, 'a', { timeoutMs: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(RateLimiter.open(redis, 'a', { prefx: 'p' } as never)).rejects.toThrow(/did you mean "prefix"/);
    await expect(RateLimiter.open({} as never, 'a')).rejects.toThrow(InvalidArgumentError);
    const down = new Redis({ port: await freePort(), lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: () => 50 });
    try {
      await expect(RateLimiter.open(down, 'a', { timeoutMs: 200 })).rejects.toThrow(RedisUnavailableError);
    } finally {
      down.disconnect();
    }
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
