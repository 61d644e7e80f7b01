import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { RateLimiter, type RateLimitAlgorithm } from '@cyredis/ratelimit';
import { randomPrefix } from '@cyredis/testing';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { throughput, type BenchCase, type BenchGroup, type BenchSuite } from '../harness.js';

const require = createRequire(import.meta.url);
const SOURCE = readFileSync(require.resolve('@cyredis/ratelimit/lua/rate_limiter.lua'), 'utf8');
const LIMIT = 100;
const WINDOW_MS = 1000;
const KEYS = 10_000;
const ALGORITHMS: RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];

/**
 * `RateLimiter.limit` against rate-limiter-flexible's `RateLimiterRedis.consume` and a raw `EVALSHA` of the
 * same script with the same arguments (the ceiling), 100 per 1 s: one hot key (mostly refused) and 10k keys
 * (mostly admitted); on the hot key also with the in-process cache of refused ids. Then `MEMORY USAGE` of one
 * key per algorithm after a full window at limits 10, 100, 1,000 and 10,000.
 */
const suite: BenchSuite = {
  name: 'ratelimit',
  groups: async ({ client, durationMs }) => {
    const redis = client();
    const prefix = randomPrefix('bench');
    const flexible = new RateLimiterRedis({ storeClient: redis, points: LIMIT, duration: WINDOW_MS / 1000, keyPrefix: `${prefix}:rlf` });
    const limiters = Object.fromEntries(
      ALGORITHMS.map((algorithm) => [algorithm, new RateLimiter(redis, { limit: LIMIT, windowMs: WINDOW_MS, algorithm, prefix })]),
    ) as Record<RateLimitAlgorithm, RateLimiter>;
    const cached = new RateLimiter(redis, { limit: LIMIT, windowMs: WINDOW_MS, prefix: `${prefix}c`, cacheRefusals: true });
    const sha = (await redis.script('LOAD', SOURCE)) as string;
    const ids = Array.from({ length: KEYS }, (_, i) => `user:${i}`);
    const rawKeys = ids.map((id) => `${prefix}:raw:{${id}}:sw0`);

    const groups: BenchGroup[] = [];
    for (const [concurrency, spread] of [
      [1, 1],
      [64, 1],
      [1, KEYS],
      [64, KEYS],
    ] as const) {
      const pick = spread === 1 ? () => 0 : (i: number) => i % KEYS;
      const cases: BenchCase[] = [
        {
          name: 'rate-limiter-flexible RateLimiterRedis',
          unit: 'checks/s',
          higherIsBetter: true,
          sample: () => throughput((i) => flexible.consume(ids[pick(i)]!).catch(() => undefined), concurrency, durationMs),
        },
        {
          name: 'raw EVALSHA rate_limiter.lua (ceiling)',
          unit: 'checks/s',
          higherIsBetter: true,
          sample: () =>
            throughput(
              (i) => redis.evalsha(sha, 1, rawKeys[pick(i)]!, LIMIT, WINDOW_MS / 1000, '', LIMIT, 'sliding-window', 1, 'limit', 0, '', ''),
              concurrency,
              durationMs,
            ),
        },
        ...ALGORITHMS.map((algorithm) => ({
          name: `RateLimiter ${algorithm}`,
          unit: 'checks/s',
          higherIsBetter: true,
          sample: () => throughput((i) => limiters[algorithm].limit(ids[pick(i)]!), concurrency, durationMs),
        })),
      ];
      if (spread === 1) {
        cases.push({
          name: 'RateLimiter sliding-window, cacheRefusals',
          unit: 'checks/s',
          higherIsBetter: true,
          sample: () => throughput(() => cached.limit(ids[0]!), concurrency, durationMs),
        });
      }
      groups.push({ title: `${concurrency} in flight, ${spread === 1 ? 'one hot key' : '10k keys'}, ${LIMIT} per ${WINDOW_MS} ms (checks/s)`, cases });
    }

    // `fill` calls of `check`, 50 at a time (so 10,000 of them take a fraction of a second).
    const fillUp = async (fill: number, check: () => Promise<unknown>) => {
      for (let i = 0; i < fill; i += 50) await Promise.all(Array.from({ length: Math.min(50, fill - i) }, check));
    };
    // Bytes of one key after `fill` admitted checks (a full window for the sliding window).
    const memory = (fill: number): BenchCase[] => {
      const usage = async (key: string) => Number(await redis.memory('USAGE', key, 'SAMPLES', 0));
      const flex = new RateLimiterRedis({ storeClient: redis, points: fill, duration: 60, keyPrefix: `${prefix}:mem` });
      return [
        {
          name: 'rate-limiter-flexible RateLimiterRedis',
          unit: 'bytes/key',
          higherIsBetter: false,
          sample: async () => {
            await fillUp(fill, () => flex.consume(`m${fill}`));
            return usage(`${prefix}:mem:m${fill}`);
          },
        },
        ...ALGORITHMS.map((algorithm) => ({
          name: `RateLimiter ${algorithm}`,
          unit: 'bytes/key',
          higherIsBetter: false,
          sample: async () => {
            const limiter = new RateLimiter(redis, { limit: fill, windowMs: 60_000, algorithm, prefix: `${prefix}m` });
            const id = `m${fill}`;
            await limiter.reset(id);
            await fillUp(fill, () => limiter.limit(id));
            return usage(`${prefix}m:ratelimit:{${id}}:${algorithm === 'gcra' ? 'gcra' : algorithm === 'sliding-window' ? 'sw' : 'fw'}0`);
          },
        })),
      ];
    };
    for (const fill of [10, 100, 1000, 10_000]) {
      groups.push({
        title: `MEMORY USAGE of one key after ${fill} checks within the window (limit ${fill}, bytes)`,
        cases: memory(fill),
        afterRound: async () => {
          await redis.del(`${prefix}:mem:m${fill}`);
        },
      });
    }
    return groups;
  },
};

export default suite;
