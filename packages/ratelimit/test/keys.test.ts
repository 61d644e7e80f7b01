import { KeySpace, readPackageLua } from '@cyredis/core';
import { randomPrefix, traceKeys } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions, type RateLimitAlgorithm, type RateLimiterOptions } from '../src/options.js';
import { encodeOverride, encodeSeedCall, LimiterProtocol, POLICY_FIELDS, type CheckCall } from '../src/protocol.js';

const SOURCE = readPackageLua(import.meta.url, 'rate_limiter');
const T0_MS = 1_700_000_000_000;
const algorithms: RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
/**
 * Keys rate_limiter.lua may touch without being given them in KEYS: none. Adding one here needs a line in
 * the script's header and the README's compatibility section.
 */
const UNDECLARED_KEYS: string[] = [];

describe.each(topologies)('rate_limiter.lua touches only the keys it is given, on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefix = randomPrefix();

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });

  /** Runs every call in `calls` traced and returns every undeclared key seen, and the replies. */
  async function traceAll(calls: [string[], readonly (string | number)[]][]): Promise<{ undeclared: string[]; replies: unknown[] }> {
    const undeclared: string[] = [];
    const replies: unknown[] = [];
    for (const [keys, args] of calls) {
      const trace = await traceKeys(redis, SOURCE, keys, args);
      expect(trace.reply).not.toBeInstanceOf(Error);
      undeclared.push(...trace.undeclared);
      replies.push(trace.reply);
    }
    return { undeclared, replies };
  }

  it('the seed call', async () => {
    const key = `${prefix}:seed`;
    const { undeclared, replies } = await traceAll([
      [[key], encodeSeedCall({ limit: 1, windowSeconds: 60 })],
      [[key], encodeSeedCall({ limit: 1, windowSeconds: 60 })],
    ]);
    expect(replies).toEqual([1, 0]);
    expect(undeclared).toEqual(UNDECLARED_KEYS);
  });

  it.each(['gcra', 'fixed-window'] as const)('%s: one rule, cost 1 (the fast path), admitted and refused', async (algorithm) => {
    const resolved = resolveOptions({ limit: 1, windowMs: 60_000, algorithm });
    const protocol = new LimiterProtocol(new KeySpace('ratelimit', `${prefix}:fast`), resolved.rules, resolved.algorithm, resolved.blockMs);
    const call: [string[], readonly (string | number)[]] = [protocol.checkKeys(algorithm), protocol.checkArgs({ cost: 1, mode: 'limit' })];
    const { undeclared, replies } = await traceAll([call, call]);
    expect(replies.map((r) => protocol.decodeCheck(r).allowed)).toEqual([true, false]);
    expect(undeclared).toEqual(UNDECLARED_KEYS);
  });

  it.each(algorithms)('%s with policies: override, allow list, deny list, batch', async (algorithm) => {
    const resolved = resolveOptions({ rules: [{ limit: 2, windowMs: 60_000 }, { limit: 3, windowMs: 60_000 }], algorithm, blockMs: 1000, policies: true });
    const protocol = new LimiterProtocol(new KeySpace('ratelimit', `${prefix}:p:${algorithm}`), resolved.rules, resolved.algorithm, resolved.blockMs, true);
    const check = (id: string, call: CheckCall): [string[], readonly (string | number)[]] => [protocol.checkKeys(id, call.requestId), protocol.checkArgs(call)];
    await redis.hset(protocol.policyKey('o'), POLICY_FIELDS.rules, encodeOverride(resolved.rules));
    await redis.hset(protocol.policyKey('a'), POLICY_FIELDS.allow, '1');
    await redis.hset(protocol.policyKey('d'), POLICY_FIELDS.deny, '1');
    const { undeclared, replies } = await traceAll([
      check('o', { cost: 2, mode: 'limit', nowMs: T0_MS }),
      check('o', { cost: 1, mode: 'limit', nowMs: T0_MS, requestId: 'r' }),
      check('a', { cost: 1, mode: 'limit' }),
      check('d', { cost: 1, mode: 'peek' }),
      [[...protocol.keys('o'), ...protocol.keys('o')], protocol.batchArgs([1, -1])],
    ]);
    expect(replies.slice(0, 4).map((r) => (r as number[])[0])).toEqual([1, 0, 1, 0]);
    expect(undeclared).toEqual(UNDECLARED_KEYS);
  });

  it.each(algorithms)('%s: limit, refusal, block, refund, peek, request id and batch', async (algorithm) => {
    const options: RateLimiterOptions = { rules: [{ limit: 2, windowMs: 60_000 }, { limit: 3, windowMs: 60_000 }], algorithm, blockMs: 1000 };
    const resolved = resolveOptions(options);
    const protocol = new LimiterProtocol(new KeySpace('ratelimit', `${prefix}:${algorithm}`), resolved.rules, resolved.algorithm, resolved.blockMs);
    const check = (id: string, call: CheckCall): [string[], readonly (string | number)[]] => [protocol.checkKeys(id, call.requestId), protocol.checkArgs(call)];
    const { undeclared, replies } = await traceAll([
      check('a', { cost: 2, mode: 'limit', nowMs: T0_MS }),
      // Refused: reads past the oldest entries for the retry-after, and sets the block.
      check('a', { cost: 1, mode: 'limit', nowMs: T0_MS }),
      check('a', { cost: -1, mode: 'limit', nowMs: T0_MS + 2000 }),
      check('a', { cost: 1, mode: 'peek', nowMs: T0_MS + 2000 }),
      check('b', { cost: 1, mode: 'limit', requestId: 'r1' }),
      check('b', { cost: 1, mode: 'limit', requestId: 'r1' }),
      [[...protocol.keys('c'), ...protocol.keys('c')], protocol.batchArgs([2, 1])],
      // Entries older than the period are dropped when a later call finds them.
      check('a', { cost: 1, mode: 'limit', nowMs: T0_MS + 200_000 }),
    ]);
    expect(replies.slice(0, 2).map((r) => (r as number[])[0])).toEqual([1, 0]);
    expect(undeclared).toEqual(UNDECLARED_KEYS);
  });
});
