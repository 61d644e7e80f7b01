import { InvalidArgumentError, LuaScriptManager } from '@cyredis/core';
import { randomPrefix, RedisServer } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { RateLimiter, type RateLimiterOptions } from '../src/index.js';

// waitMs, overrides, allow and deny lists (in Redis), and the in-process insurance.
describe.each(topologies)('RateLimiter features on %s', (topology) => {
  let redis: Redis | Cluster;
  let other: Redis | Cluster;
  let prefix: string;
  const make = (options: RateLimiterOptions, client: Redis | Cluster = redis) => new RateLimiter(client, { prefix, timeoutMs: 10_000, ...options });

  beforeAll(() => {
    redis = connect(topology);
    // Another connection stands for another process.
    other = connect(topology);
  });
  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await redis.quit();
    await other.quit();
  });

  describe('waitMs', () => {
    it('sleeps to the retry-after and is admitted, with one more call and no polling', async () => {
      const limiter = make({ limit: 1, windowMs: 1000, algorithm: 'gcra' });
      const before = performance.now();
      expect((await limiter.limit('w')).allowed).toBe(true);
      expect((await limiter.limit('w')).allowed).toBe(false);
      const calls = vi.spyOn(LuaScriptManager.prototype, 'executeScript');
      const r = await limiter.limit('w', { waitMs: 10_000 });
      expect(r.allowed).toBe(true);
      // One refused call, a sleep to its retry-after, then the call that is admitted (a timer that fires a
      // moment early costs a short sleep more, never a loop of polls over the second it waits).
      expect(calls.mock.calls.length).toBeGreaterThanOrEqual(2);
      expect(calls.mock.calls.length).toBeLessThanOrEqual(4);
      // Admitted no earlier than one interval after the first admission (same machine's clock, 10 ms slack).
      expect(performance.now() - before).toBeGreaterThanOrEqual(990);
    });

    it('answers the refusal at once when its retry-after is beyond waitMs', async () => {
      const limiter = make({ limit: 1, windowMs: 60_000 });
      await limiter.limit('w');
      const calls = vi.spyOn(LuaScriptManager.prototype, 'executeScript');
      const r = await limiter.limit('w', { waitMs: 1000 });
      expect(r).toMatchObject({ allowed: false });
      expect(r.retryAfterMs).toBeGreaterThan(1000);
      expect(calls).toHaveBeenCalledTimes(1);
    });

    it.each([
      ['negative', -1],
      ['NaN', Number.NaN],
      ['infinite', Infinity],
      ['a string', '10'],
    ])('refuses a %s waitMs with InvalidArgumentError naming it', async (_, waitMs) => {
      const limiter = make({ limit: 1, windowMs: 1000 });
      // A string arrives through untyped callers.
      const err = await limiter.limit('w', { waitMs: waitMs as number }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument).toBe('options.waitMs');
    });

    it('refuses waitMs with requestId or nowMs (their retries would get the same answer)', async () => {
      const limiter = make({ limit: 1, windowMs: 1000 });
      await expect(limiter.limit('w', { waitMs: 10, requestId: 'r' })).rejects.toThrow(/options\.waitMs: cannot be combined/);
      await expect(limiter.limit('w', { waitMs: 10, nowMs: Date.now() })).rejects.toThrow(/options\.waitMs: cannot be combined/);
    });
  });

  describe('overrides', () => {
    it.each(['sliding-window', 'gcra', 'fixed-window'] as const)('%s: an override set by one process applies to every process, until removed', async (algorithm) => {
      const a = make({ limit: 2, windowMs: 60_000, algorithm, policies: true });
      const b = make({ limit: 2, windowMs: 60_000, algorithm, policies: true }, other);
      await a.setOverride('user:vip', { limit: 5 });
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await b.limit('user:vip'));
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false]);
      expect(results[0]).toMatchObject({ limit: 5, remaining: 4 });
      // Others keep the limiter's own rule.
      expect(await b.limit('user:plain')).toMatchObject({ allowed: true, limit: 2, remaining: 1 });
      await a.removeOverride('user:vip');
      // Back on limit 2 with 5 consumed: refused, and the answer describes the limiter's rule.
      expect(await b.limit('user:vip')).toMatchObject({ allowed: false, limit: 2 });
    });

    it('a multi-rule limiter takes one rule per rule; a cost above the override is refused for good', async () => {
      const limiter = make({ rules: [{ limit: 10, windowMs: 1000 }, { limit: 100, windowMs: 60_000 }], policies: true });
      await limiter.setOverride('u', { rules: [{ limit: 5, windowMs: 1000 }, { limit: 3, windowMs: 60_000 }] });
      expect(await limiter.limit('u', { cost: 2 })).toMatchObject({ allowed: true, rule: 1, remaining: 1, limit: 3 });
      const tooBig = await limiter.limit('u', { cost: 4 });
      expect(tooBig).toMatchObject({ allowed: false, retryAfterMs: Infinity, rule: 1 });
      // waitMs does not wait for what never comes.
      const calls = vi.spyOn(LuaScriptManager.prototype, 'executeScript');
      expect(await limiter.limit('u', { cost: 4, waitMs: 5000 })).toMatchObject({ allowed: false, retryAfterMs: Infinity });
      expect(calls).toHaveBeenCalledTimes(1);
    });

    it("an override above the limiter's capacity admits costs the limiter alone would refuse", async () => {
      const limiter = make({ limit: 2, windowMs: 60_000, policies: true });
      await limiter.setOverride('big', { limit: 10 });
      expect(await limiter.limit('big', { cost: 8 })).toMatchObject({ allowed: true, remaining: 2, limit: 10 });
      expect(await limiter.limit('small', { cost: 8 })).toMatchObject({ allowed: false, retryAfterMs: Infinity, limit: 2 });
      await expect(limiter.limit('big', { cost: 2 ** 41 })).rejects.toThrow(/options\.cost/);
    });

    it('reset forgets what was consumed, not the override', async () => {
      const limiter = make({ limit: 1, windowMs: 60_000, policies: true });
      await limiter.setOverride('u', { limit: 3, burst: 4 });
      expect(await limiter.limit('u')).toMatchObject({ allowed: true, limit: 4, remaining: 3, windowMs: 80_000 });
      await limiter.reset('u');
      expect(await limiter.peek('u')).toMatchObject({ allowed: true, limit: 4, remaining: 4 });
    });

    it('refuses bad overrides with InvalidArgumentError naming the argument', async () => {
      const limiter = make({ limit: 2, windowMs: 1000, policies: true });
      const multi = make({ rules: [{ limit: 2, windowMs: 1000 }, { limit: 5, windowMs: 9000 }], policies: true });
      const cases: [Promise<unknown>, string][] = [
        [limiter.setOverride('', { limit: 5 }), 'id'],
        [limiter.removeOverride(''), 'id'],
        [limiter.setOverride('u', { limit: 0 }), 'override.limit'],
        [limiter.setOverride('u', { limit: 1.5 }), 'override.limit'],
        [limiter.setOverride('u', { limit: 5, burst: 4 }), 'override.burst'],
        [limiter.setOverride('u', { limit: 5, windowMs: -1 }), 'override.windowMs'],
        // @ts-expect-error -- not an option
        [limiter.setOverride('u', { limit: 5, window: 10 }), 'override.window'],
        [multi.setOverride('u', { limit: 5 }), 'override'],
        [multi.setOverride('u', { rules: [{ limit: 5, windowMs: 1000 }] }), 'override.rules'],
        [multi.setOverride('u', { rules: [{ limit: 5, windowMs: 1000 }, { limit: 0, windowMs: 1000 }] }), 'override.rules[1].limit'],
        [make({ limit: 2, windowMs: 1000 }).setOverride('u', { limit: 5 }), 'options.policies'],
      ];
      for (const [call, argument] of cases) {
        const err = await call.catch((e: unknown) => e);
        expect(err, argument).toBeInstanceOf(InvalidArgumentError);
        expect((err as InvalidArgumentError).argument).toBe(argument);
      }
    });
  });

  describe('allow and deny lists', () => {
    it('an allowed id passes without consuming; a denied one is refused for good; deny wins', async () => {
      const a = make({ limit: 1, windowMs: 60_000, policies: true, blockMs: 60_000 });
      const b = make({ limit: 1, windowMs: 60_000, policies: true, blockMs: 60_000 }, other);
      await a.allowList.add('ops', 'monitor');
      await a.denyList.add('abuser');
      expect(await b.allowList.has('ops')).toBe(true);
      expect(await b.denyList.has('ops')).toBe(false);
      for (let i = 0; i < 3; i++) expect(await b.limit('ops')).toMatchObject({ allowed: true, listed: 'allow', remaining: 1 });
      const denied = await b.limit('abuser');
      expect(denied).toMatchObject({ allowed: false, listed: 'deny', retryAfterMs: Infinity });
      expect(await b.peek('abuser')).toMatchObject({ allowed: false, listed: 'deny' });
      await a.denyList.add('ops');
      expect(await b.limit('ops')).toMatchObject({ allowed: false, listed: 'deny' });
      await a.denyList.remove('ops', 'abuser');
      await a.allowList.remove('ops');
      // Off the lists: the ordinary rule, with nothing consumed while listed.
      expect(await b.limit('ops')).toMatchObject({ allowed: true, remaining: 0 });
      expect(await b.limit('abuser')).toMatchObject({ allowed: true, remaining: 0 });
      expect((await b.limit('ops')).listed).toBeUndefined();
    });

    it('batched checks (single node) and the refusal cache honour the lists', async () => {
      const limiter = make({ limit: 2, windowMs: 60_000, policies: true, cacheRefusals: true });
      await limiter.denyList.add('d');
      await limiter.allowList.add('a');
      const results = await Promise.all(['a', 'a', 'a', 'd', 'n', 'n', 'n'].map((id) => limiter.limit(id)));
      expect(results.map((r) => [r.allowed, r.listed])).toEqual([
        [true, 'allow'],
        [true, 'allow'],
        [true, 'allow'],
        [false, 'deny'],
        [true, undefined],
        [true, undefined],
        [false, undefined],
      ]);
      // A denial is never cached in the process: taking the id off the list takes effect at once.
      await limiter.denyList.remove('d');
      expect(await limiter.limit('d')).toMatchObject({ allowed: true });
    });

    it('refuses entries that are not non-empty strings, naming them, and lists without policies', async () => {
      const limiter = make({ limit: 2, windowMs: 1000, policies: true });
      const cases: [() => Promise<unknown>, string][] = [
        // @ts-expect-error -- a number on purpose
        [() => limiter.allowList.add(7), 'ids[0]'],
        // @ts-expect-error -- null on purpose
        [() => limiter.denyList.add('ok', null), 'ids[1]'],
        [() => limiter.denyList.remove(''), 'ids[0]'],
        // @ts-expect-error -- an object on purpose
        [() => limiter.allowList.has({}), 'ids[0]'],
        [() => make({ limit: 2, windowMs: 1000 }).allowList.add('x'), 'options.policies'],
      ];
      for (const [call, argument] of cases) {
        const err = await call().catch((e: unknown) => e);
        expect(err, argument).toBeInstanceOf(InvalidArgumentError);
        expect((err as InvalidArgumentError).argument).toBe(argument);
      }
      expect(await limiter.allowList.has('ok')).toBe(false);
    });
  });
});

describe('insurance: the in-process fallback while Redis is unreachable', () => {
  let server: RedisServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await RedisServer.start();
    redis = server.client();
    redis.on('error', () => undefined);
  });
  afterAll(async () => {
    redis.disconnect();
    await server.kill().catch(() => undefined);
  });

  it('decides by its own limit during the outage, with the cause in error, and Redis decides again after', async () => {
    const limiter = new RateLimiter(redis, { prefix: randomPrefix(), limit: 100, windowMs: 60_000, timeoutMs: 300, insurance: { limit: 2 } });
    expect(await limiter.limit('i')).toMatchObject({ allowed: true, remaining: 99 });
    await server.kill();
    // A peek answers from the insurance too, consuming nothing.
    expect(await limiter.peek('i')).toMatchObject({ allowed: true, remaining: 2, limit: 2 });
    const during = [await limiter.limit('i'), await limiter.limit('i'), await limiter.limit('i'), await limiter.limit('other')];
    expect(during.map((r) => r.allowed)).toEqual([true, true, false, true]);
    expect(during.every((r) => r.error !== undefined)).toBe(true);
    expect(during[2]).toMatchObject({ limit: 2, remaining: 0 });
    expect(during[2]!.retryAfterMs).toBeGreaterThan(20_000);
  });

  it('refuses insurance with onRedisError, and bad insurance options, naming them', () => {
    const bad: [RateLimiterOptions, string][] = [
      [{ limit: 5, windowMs: 1000, onRedisError: 'allow', insurance: { limit: 2 } }, 'options.insurance'],
      [{ limit: 5, windowMs: 1000, insurance: { limit: 0 } }, 'options.insurance.limit'],
      [{ limit: 5, windowMs: 1000, insurance: { limit: 2, maxIds: 0 } }, 'options.insurance.maxIds'],
      // @ts-expect-error -- not an option
      [{ limit: 5, windowMs: 1000, insurance: { limit: 2, ids: 5 } }, 'options.insurance.ids'],
      // @ts-expect-error -- not a boolean
      [{ limit: 5, windowMs: 1000, policies: 'yes' }, 'options.policies'],
    ];
    for (const [options, argument] of bad) {
      let err: unknown;
      try {
        new RateLimiter(redis, options);
      } catch (e) {
        err = e;
      }
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument).toBe(argument);
    }
  });
});
