import { KeySpace, LuaScriptManager, readPackageLua, type RegisteredScript } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolveOptions, type RateLimitAlgorithm, type RateLimiterOptions } from '../src/options.js';
import { decodeSeedReply, encodeOverride, encodeSeedCall, LimiterProtocol, POLICY_FIELDS, type CheckCall } from '../src/protocol.js';

const SOURCE = readPackageLua(import.meta.url, 'rate_limiter');
const T0_MS = 1_700_000_000_000;
const algorithms: RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];

// The contract between src/protocol.ts and lua/rate_limiter.lua: every call of the shipped script, encoded
// and decoded by the protocol module only, against the real script.
describe.each(topologies)('rate_limiter.lua through src/protocol.ts on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  let script: RegisteredScript;
  let prefix: string;

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript('rate_limiter', SOURCE);
  });
  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterAll(async () => {
    await redis.quit();
  });

  const protocolFor = (options: RateLimiterOptions) => {
    const resolved = resolveOptions(options);
    return new LimiterProtocol(new KeySpace('ratelimit', prefix), resolved.rules, resolved.algorithm, resolved.blockMs, resolved.policies);
  };
  const run = (keys: string[], args: readonly (string | number)[]) => scripts.executeScript(script, { keys, args });
  const check = async (protocol: LimiterProtocol, id: string, call: CheckCall) => protocol.decodeCheck(await run(protocol.checkKeys(id, call.requestId), protocol.checkArgs(call)));

  it('the seed call: capacity left for each admitted call, then 0', async () => {
    const key = `${prefix}:seed`;
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(decodeSeedReply(await run([key], encodeSeedCall({ limit: 1, windowSeconds: 60, currentTimeSeconds: T0_MS / 1000, burst: 2 }))));
    expect(replies).toEqual([
      { allowed: true, capacityLeft: 2 },
      { allowed: true, capacityLeft: 1 },
      { allowed: false, capacityLeft: 0 },
    ]);
    expect(decodeSeedReply(await run([`${prefix}:seed2`], encodeSeedCall({ limit: 5, windowSeconds: 1 })))).toEqual({ allowed: true, capacityLeft: 5 });
  });

  it.each(algorithms)('%s limit: a fresh admission decodes to the full period, as the script computes it', async (algorithm) => {
    const protocol = protocolFor({ limit: 4, windowMs: 1000, burst: 6, algorithm });
    const got = await check(protocol, 'a', { cost: 1, mode: 'limit', nowMs: T0_MS });
    // Sliding and fixed windows: period 1000 × 6 / 4 ms; GCRA: one emission interval (250 ms) per unit held.
    const resetMs = { 'sliding-window': 1500, gcra: 250, 'fixed-window': 1500 - (T0_MS % 1500) }[algorithm];
    expect(got).toEqual({ allowed: true, remaining: 5, limit: 6, resetMs, retryAfterMs: 0, windowMs: 1500, rule: 0 });
  });

  it.each(algorithms)('%s limit at server time: the compact form without a burst, the short form with one', async (algorithm) => {
    // Long windows, so a fixed window's boundary (server time) cannot fall inside the test.
    const plain = protocolFor({ limit: 2, windowMs: 3_600_000, algorithm });
    const burst = protocolFor({ limit: 2, windowMs: 3_600_000, burst: 3, algorithm });
    expect(plain.checkArgs({ cost: 1, mode: 'limit' })).toEqual(['2', '3600', algorithm]);
    expect(burst.checkArgs({ cost: 1, mode: 'limit' })).toEqual(['2', '3600', '', '3', algorithm]);
    const answers = async (protocol: LimiterProtocol, id: string) => {
      const out = [];
      for (let i = 0; i < 4; i++) out.push(await check(protocol, id, { cost: 1, mode: 'limit' }));
      return out.map((r) => [r.allowed, r.remaining, r.limit, r.windowMs]);
    };
    expect(await answers(plain, 'p')).toEqual([
      [true, 1, 2, 3_600_000],
      [true, 0, 2, 3_600_000],
      [false, 0, 2, 3_600_000],
      [false, 0, 2, 3_600_000],
    ]);
    expect((await answers(burst, 'b')).map(([allowed, remaining]) => [allowed, remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
  });

  it.each(algorithms)('%s limit, peek and refusal with cost, several rules and a block', async (algorithm) => {
    const protocol = protocolFor({ rules: [{ limit: 10, windowMs: 60_000 }, { limit: 3, windowMs: 10_000 }], algorithm, blockMs: 2000 });
    // GCRA's period is capacity × a whole-µs emission interval: 3 × 3 333 334 µs.
    const windowMs = algorithm === 'gcra' ? 10_000.002 : 10_000;
    expect(await check(protocol, 'r', { cost: 2, mode: 'limit', nowMs: T0_MS })).toMatchObject({ allowed: true, remaining: 1, rule: 1, limit: 3, windowMs });
    expect(await check(protocol, 'r', { cost: 1, mode: 'peek', nowMs: T0_MS })).toMatchObject({ allowed: true, remaining: 1, rule: 1 });
    const refused = await check(protocol, 'r', { cost: 2, mode: 'limit', nowMs: T0_MS });
    expect(refused).toMatchObject({ allowed: false, remaining: 1, rule: 1 });
    // The block (2 s) is shorter than the wait for rule 1, so the rule's retry-after stands.
    expect(refused.retryAfterMs).toBeGreaterThan(2000);
    // The refusal set the block: even a free call is refused now.
    expect(await check(protocol, 'r', { cost: 0, mode: 'peek', nowMs: T0_MS + 1 })).toMatchObject({ allowed: false });
    expect(await check(protocol, 'r', { cost: -2, mode: 'limit', nowMs: T0_MS + 2000 })).toMatchObject({ allowed: true, remaining: 3 });
  });

  it.each(algorithms)('%s with policies: override, allow and deny entries written as encoded, decoded from the reply', async (algorithm) => {
    const protocol = protocolFor({ rules: [{ limit: 2, windowMs: 60_000 }, { limit: 9, windowMs: 60_000 }], algorithm, blockMs: 1000, policies: true });
    expect(protocol.keys('p')).toEqual(['sw0', 'sw1', 'block', 'policy'].map((s) => `${prefix}:ratelimit:{p}:${algorithm === 'sliding-window' ? s : s.replace('sw', algorithm === 'gcra' ? 'gcra' : 'fw')}`));
    expect(protocol.stateKeys('p')).toEqual(protocol.keys('p').slice(0, 3));
    const override = resolveOptions({ rules: [{ limit: 4, windowMs: 60_000, burst: 5 }, { limit: 3, windowMs: 30_000 }], algorithm }).rules;
    await redis.hset(protocol.policyKey('p'), POLICY_FIELDS.rules, encodeOverride(override));
    const first = await check(protocol, 'p', { cost: 2, mode: 'limit', nowMs: T0_MS, requestId: 'r1' });
    expect(first).toMatchObject({ allowed: true, remaining: 1, rule: 1, limit: 3 });
    expect(first.listed).toBeUndefined();
    // Resent: the stored reply (with the policy fields) decodes the same.
    expect(await check(protocol, 'p', { cost: 2, mode: 'limit', nowMs: T0_MS, requestId: 'r1' })).toEqual(first);
    expect(await check(protocol, 'p', { cost: 4, mode: 'peek', nowMs: T0_MS })).toMatchObject({ allowed: false, retryAfterMs: Infinity, rule: 1 });
    await redis.hset(protocol.policyKey('p'), POLICY_FIELDS.allow, '1');
    expect(await check(protocol, 'p', { cost: 1, mode: 'limit', nowMs: T0_MS })).toMatchObject({ allowed: true, listed: 'allow', retryAfterMs: 0 });
    await redis.hset(protocol.policyKey('p'), POLICY_FIELDS.deny, '1');
    const batch = protocol.decodeBatch(await run([...protocol.keys('p'), ...protocol.keys('p')], protocol.batchArgs([1, 1])));
    expect(batch.map((r) => [r.allowed, r.listed, r.retryAfterMs])).toEqual([
      [false, 'deny', Infinity],
      [false, 'deny', Infinity],
    ]);
  });

  it.each(algorithms)('%s usage: one cost-0 peek per rule reads each rule alone, writing nothing', async (algorithm) => {
    // Long windows, so a fixed window's boundary (server time) cannot fall inside the test.
    const protocol = protocolFor({ rules: [{ limit: 10, windowMs: 3_600_000 }, { limit: 3, windowMs: 600_000 }], algorithm, blockMs: 5000 });
    await check(protocol, 'u', { cost: 2, mode: 'limit' });
    const calls = protocol.usageCalls('u');
    expect(calls.map((c) => c.keys)).toEqual([protocol.keys('u').slice(0, 1), protocol.keys('u').slice(1, 2)]);
    const before = await Promise.all(protocol.keys('u').map((k) => redis.getBuffer(k)));
    const usage = await Promise.all(calls.map(async (c, i) => protocol.decodeUsage(await run(c.keys, c.args), i)));
    expect(usage.map(({ rule, limit, used, remaining }) => ({ rule, limit, used, remaining }))).toEqual([
      { rule: 0, limit: 10, used: 2, remaining: 8 },
      { rule: 1, limit: 3, used: 2, remaining: 1 },
    ]);
    expect(usage[0]!.resetMs).toBeGreaterThan(0);
    expect(usage[0]!.resetMs).toBeLessThanOrEqual(3_600_000);
    expect(usage[1]!.windowMs).toBe(resolveOptions({ limit: 3, windowMs: 600_000, algorithm }).rules[0]!.periodMs);
    expect(await Promise.all(protocol.keys('u').map((k) => redis.getBuffer(k)))).toEqual(before);
    // An id with nothing stored: every rule full.
    const fresh = protocol.usageCalls('none');
    expect(protocol.decodeUsage(await run(fresh[1]!.keys, fresh[1]!.args), 1)).toMatchObject({ used: 0, remaining: 3 });
    const reply = await run(fresh[0]!.keys, fresh[0]!.args);
    expect(() => protocol.decodeUsage(reply, 2)).toThrow(/unexpected usage/);
  });

  it('a request id: the second call gets the first reply again, decoded the same', async () => {
    const protocol = protocolFor({ limit: 3, windowMs: 60_000 });
    const first = await check(protocol, 'q', { cost: 2, mode: 'limit', nowMs: T0_MS, requestId: 'req-1' });
    expect(first).toMatchObject({ allowed: true, remaining: 1 });
    expect(await check(protocol, 'q', { cost: 2, mode: 'limit', nowMs: T0_MS, requestId: 'req-1' })).toEqual(first);
    expect(await check(protocol, 'q', { cost: 2, mode: 'limit', nowMs: T0_MS, requestId: 'req-2' })).toMatchObject({ allowed: false, remaining: 1 });
  });

  it.each(algorithms)('%s batch: checks of one id decided in order, one decoded reply each', async (algorithm) => {
    // One id, so every key of the batch shares one hash tag (a cluster needs that; the limiter batches only on a single node).
    const protocol = protocolFor({ rules: [{ limit: 5, windowMs: 60_000 }, { limit: 20, windowMs: 60_000 }], algorithm });
    const costs = [3, 3, 2, -1];
    const keys = costs.flatMap(() => protocol.keys('b'));
    const results = protocol.decodeBatch(await run(keys, protocol.batchArgs(costs)));
    expect(results.map(({ allowed, remaining, rule }) => ({ allowed, remaining, rule }))).toEqual([
      { allowed: true, remaining: 2, rule: 0 },
      { allowed: false, remaining: 2, rule: 0 },
      { allowed: true, remaining: 0, rule: 0 },
      { allowed: true, remaining: 1, rule: 0 },
    ]);
  });

  it('reset: deleting the keys of an id forgets every rule and the block', async () => {
    const protocol = protocolFor({ rules: [{ limit: 1, windowMs: 60_000 }, { limit: 5, windowMs: 60_000 }], blockMs: 60_000 });
    await check(protocol, 'z', { cost: 1, mode: 'limit' });
    expect(await check(protocol, 'z', { cost: 1, mode: 'limit' })).toMatchObject({ allowed: false });
    const keys = protocol.keys('z');
    expect(keys).toEqual([`${prefix}:ratelimit:{z}:sw0`, `${prefix}:ratelimit:{z}:sw1`, `${prefix}:ratelimit:{z}:block`]);
    expect(await redis.del(...keys)).toBe(3);
    expect(await check(protocol, 'z', { cost: 1, mode: 'limit' })).toMatchObject({ allowed: true, remaining: 0 });
  });
});
