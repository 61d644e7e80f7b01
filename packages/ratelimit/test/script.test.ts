import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LuaScriptManager, ScriptError, type RegisteredScript } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeWindowLog } from '../src/protocol.js';

const require = createRequire(import.meta.url);
const SOURCE = readFileSync(require.resolve('@cyredis/ratelimit/lua/rate_limiter.lua'), 'utf8');
const NOW = 1_700_000_000;

describe.each(topologies)('rate_limiter.lua called raw (the seed contract) on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  let script: RegisteredScript;
  let key: string;
  const call = (args: (string | number)[], keys = [key]) => scripts.executeScript(script, { keys, args });

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript('rate_limiter', SOURCE);
  });
  beforeEach(() => {
    key = `${randomPrefix()}:user:123:requests`;
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('ships in the package and its SHA is what SCRIPT LOAD returns', async () => {
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) expect(await node.script('LOAD', SOURCE)).toBe(script.sha);
    expect(await redis.evalsha(script.sha, 1, key, 100, 3600, NOW, 200)).toBe(200);
  });

  it('answers the capacity left for each call, then 0 once limited, and stores no refusal', async () => {
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await call([3, 60, NOW]));
    expect(replies).toEqual([3, 2, 1, 0]);
    // Identical timestamps still give three entries.
    expect(decodeWindowLog((await redis.getBuffer(key))!).entries).toEqual([0, 1, 2].map(() => ({ timeUs: NOW * 1e6, cost: 1 })));
    expect(await call([3, 60, NOW + 59.999999])).toBe(0);
    expect(await call([3, 60, NOW + 60])).toBe(3);
  });

  it('burst raises the short-term allowance: burst in any window × burst / limit', async () => {
    const replies = [];
    for (let i = 0; i < 201; i++) replies.push(await call([100, 3600, NOW, 200]));
    expect(replies.filter((r) => r !== 0)).toHaveLength(200);
    // One window later the burst is still being paid back (period 7200 s); after it, all of it is back.
    expect(await call([100, 3600, NOW + 3600, 200])).toBe(0);
    expect(await call([100, 3600, NOW + 7200, 200])).toBe(200);
  });

  it('uses the server clock when current_time is empty, and sets an expiry of one window', async () => {
    expect(await call([2, 5, ''])).toBe(2);
    expect(await call([2, 5, '', ''])).toBe(1);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5000);
    const [first] = decodeWindowLog((await redis.getBuffer(key))!).entries;
    const [seconds] = await redis.time();
    expect(Math.abs(first!.timeUs / 1e6 - Number(seconds))).toBeLessThan(5);
  });

  it('limit 1000 full stays under 16 KB, and a long steady run keeps the key that small', async () => {
    for (let i = 0; i < 1000; i++) expect(await call([1000, 60, NOW + i * 0.001])).toBe(1000 - i);
    expect(await call([1000, 60, NOW + 1])).toBe(0);
    expect(await redis.memory('USAGE', key)).toBeLessThanOrEqual(16_384);
    // One call every 60 ms for three windows: the window always holds about 1000 entries, old ones go.
    for (let i = 0; i < 3000; i++) expect(await call([1000, 60, NOW + 60 + i * 0.06])).toBeGreaterThan(0);
    const log = decodeWindowLog((await redis.getBuffer(key))!);
    expect(log.used).toBe(1000);
    expect(log.entries).toHaveLength(1000);
    expect(await redis.memory('USAGE', key)).toBeLessThanOrEqual(16_384);
  });

  it('a key in the old layout (a sorted set) keeps its window: converted on the first write, never a fresh window', async () => {
    // As the previous release stored 2 calls, one of 1 unit and one of 3: member = length-prefixed first unit's number.
    await redis.zadd(key, NOW * 1e6, 'a0', NOW * 1e6 + 5, 'a1:3');
    await redis.pexpire(key, 60_000);
    // A refusal writes nothing: the sorted set stays as it was.
    expect(await call([4, 60, NOW + 1])).toBe(0);
    expect(await redis.type(key)).toBe('zset');
    expect(await call([5, 60, NOW + 1])).toBe(1);
    expect(await redis.type(key)).toBe('string');
    expect(decodeWindowLog((await redis.getBuffer(key))!).entries).toEqual([
      { timeUs: NOW * 1e6, cost: 1 },
      { timeUs: NOW * 1e6 + 5, cost: 3 },
      { timeUs: (NOW + 1) * 1e6, cost: 1 },
    ]);
    expect(await call([5, 60, NOW + 1])).toBe(0);
    // The old entries leave the window on time.
    expect(await call([5, 60, NOW + 60.000005])).toBe(4);
  });

  it('an old-layout key read twice in one call (a batch) is the same window both times', async () => {
    await redis.zadd(key, NOW * 1e6, 'a0:4');
    await redis.pexpire(key, 60_000);
    // Both refused (capacity 4, all used): the conversion stays in the call, nothing is written.
    const refused = (await call([4, 60, NOW + 1, '', 'sliding-window', 2, 'batch', 0, '', '', 1, 1], [key, key])) as number[][];
    expect(refused.map((r) => [r[0], r[1]])).toEqual([
      [0, 0],
      [0, 0],
    ]);
    expect(await redis.type(key)).toBe('zset');
    // A refund then an admission in one batch: converted by the first write, read back by the second.
    const mixed = (await call([4, 60, NOW + 1, '', 'sliding-window', 2, 'batch', 0, '', '', -2, 1], [key, key])) as number[][];
    expect(mixed.map((r) => [r[0], r[1]])).toEqual([
      [1, 2],
      [1, 1],
    ]);
    expect(decodeWindowLog((await redis.getBuffer(key))!).entries).toEqual([
      { timeUs: NOW * 1e6, cost: 2 },
      { timeUs: (NOW + 1) * 1e6, cost: 1 },
    ]);
  });

  it.each(['sliding-window', 'gcra', 'fixed-window'])('%s: a batch of cost-1 checks (fast path) answers as the general path one by one', async (algorithm) => {
    // One hash tag, so the batch's keys share a slot on a cluster; the singles run on their own copies, with
    // the cost written '01' so the fast path (which takes only '1') leaves them to the general path.
    const [a, b, soloA, soloB] = ['a', 'b', 'solo-a', 'solo-b'].map((k) => `{${key}}:${k}`) as [string, string, string, string];
    const order = [a, b, a, a, b, a, a];
    const batch = (await call([3, 60, NOW + 1, '', algorithm, order.length, 'batch', 0, '', '', ...order.map(() => 1)], order)) as number[][];
    const singles = [];
    for (const k of order) singles.push(await call([3, 60, NOW + 1, '', algorithm, '01', 'limit', 0, '', ''], [k === a ? soloA : soloB]));
    expect(batch).toEqual(singles);
    expect(batch.map((r) => r[0])).toEqual([1, 1, 1, 1, 1, 0, 0]);
  });

  it('a batch that meets an old-layout key after a write goes on from that check, at the same time', async () => {
    const [fresh, old] = [`{${key}}:fresh`, `{${key}}:old`];
    await redis.zadd(old, NOW * 1e6, 'a0:2');
    await redis.pexpire(old, 60_000);
    const replies = (await call([4, 60, NOW + 1, '', 'sliding-window', 3, 'batch', 0, '', '', 1, 1, 1], [fresh, old, fresh])) as number[][];
    expect(replies.map((r) => [r[0], r[1]])).toEqual([
      [1, 3],
      [1, 1],
      [1, 2],
    ]);
    expect(decodeWindowLog((await redis.getBuffer(old))!).entries).toEqual([
      { timeUs: NOW * 1e6, cost: 2 },
      { timeUs: (NOW + 1) * 1e6, cost: 1 },
    ]);
    expect(decodeWindowLog((await redis.getBuffer(fresh))!).entries).toEqual([0, 1].map(() => ({ timeUs: (NOW + 1) * 1e6, cost: 1 })));
  });

  it('a key of another type or another format: an ERR reply that changes nothing', async () => {
    await redis.rpush(key, 'x');
    await expect(call([5, 60, NOW])).rejects.toThrow(/ERR rate_limiter: the key holds something other than a rate limit/);
    await redis.del(key);
    await redis.set(key, 'hello');
    await expect(call([5, 60, NOW])).rejects.toThrow(/ERR rate_limiter: the key holds something other than a rate limit/);
    expect(await redis.get(key)).toBe('hello');
  });

  it('time running backwards never admits more', async () => {
    expect(await call([1, 10, NOW + 100])).toBe(1);
    expect(await call([1, 10, NOW])).toBe(0);
    expect(await call([1, 10, NOW + 109])).toBe(0);
    expect(await call([1, 10, NOW + 110])).toBe(1);
  });

  it.each([
    ['limit 0', [0, 60, NOW]],
    ['negative limit', [-1, 60, NOW]],
    ['fractional limit', [1.5, 60, NOW]],
    ['infinite limit', ['inf', 60, NOW]],
    ['NaN limit', ['nan', 60, NOW]],
    ['text limit', ['ten', 60, NOW]],
    ['window 0', [10, 0, NOW]],
    ['negative window', [10, -1, NOW]],
    ['infinite window', [10, 'inf', NOW]],
    ['negative time', [10, 60, -1]],
    ['text time', [10, 60, 'now']],
    ['burst below limit', [10, 60, NOW, 9]],
    ['fractional burst', [10, 60, NOW, 10.5]],
    ['too few arguments', [10, 60]],
    ['unknown algorithm', [10, 60, NOW, '', 'leaky', 1, 'limit', 0, '', '']],
    ['cost above capacity', [10, 60, NOW, '', 'sliding-window', 11, 'limit', 0, '', '']],
    ['refund above capacity', [10, 60, NOW, '', 'sliding-window', -11, 'limit', 0, '', '']],
    ['fractional cost', [10, 60, NOW, '', 'gcra', 1.5, 'limit', 0, '', '']],
    ['unknown mode', [10, 60, NOW, '', 'gcra', 1, 'take', 0, '', '']],
    ['negative block', [10, 60, NOW, '', 'gcra', 1, 'limit', -1, '', '']],
    ['missing rule arguments', [10, 60, NOW, '', 'fixed-window', 1, 'limit', 0, '', '', 5]],
    ['empty batch', [10, 60, NOW, '', 'sliding-window', 0, 'batch', 0, '', '']],
    ['batch with a request id', [10, 60, NOW, '', 'sliding-window', 1, 'batch', 0, 'r', '', 1]],
    ['batch cost above capacity', [10, 60, NOW, '', 'sliding-window', 1, 'batch', 0, '', '', 11]],
    ['batch missing a cost', [10, 60, NOW, '', 'sliding-window', 2, 'batch', 0, '', '', 1]],
    ['unknown policy flag', [10, 60, NOW, '', 'gcra', 1, 'limit', 0, '', 'yes'], /policy must be/],
    ['short form with an unknown algorithm', [10, 60, NOW, '', 'leaky'], /unknown algorithm/],
    ['short form with a bad limit', [0, 60, NOW, '', 'gcra'], /limit must be/],
    ['missing policy flag', [10, 60, NOW, '', 'gcra', 1, 'limit', 0, ''], /policy must be/],
  ] as const)('%s: an ERR reply that writes nothing', async (_, args, message?: RegExp) => {
    const err = await call([...args]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScriptError);
    expect((err as ScriptError).code).toBe('ERR');
    if (message) expect(String(err)).toMatch(message);
    expect(await redis.exists(key)).toBe(0);
  });

  it('an empty or over-long key: an ERR reply that writes nothing', async () => {
    const empty = await redis.eval(SOURCE, 1, '', 10, 60, NOW).catch((e: unknown) => e);
    expect(String(empty)).toMatch(/ERR rate_limiter: keys must be/);
    expect(await redis.exists('')).toBe(0);
    const long = `{t}${'k'.repeat(65_537)}`;
    const err = await redis.eval(SOURCE, 1, long, 10, 60, NOW).catch((e: unknown) => e);
    expect(String(err)).toMatch(/ERR rate_limiter: keys must be/);
    expect(await redis.exists(long)).toBe(0);
  });

  it('the short form (ARGV[1..5]) answers as the full form, and takes one key only', async () => {
    for (const algorithm of ['sliding-window', 'gcra', 'fixed-window']) {
      const full = [];
      const short = [];
      for (let i = 0; i < 4; i++) {
        full.push(await call([3, 60, NOW + i, '', algorithm, 1, 'limit', 0, '', ''], [`${key}:${algorithm}:full`]));
        short.push(await call([3, 60, NOW + i, '', algorithm], [`${key}:${algorithm}:short`]));
      }
      expect(short).toEqual(full);
      expect((full[3] as number[])[0]).toBe(0);
    }
    await expect(call([3, 60, NOW, '', 'gcra'], [`{${key}}a`, `{${key}}b`])).rejects.toThrow(/wrong number of keys/);
  });

  it.each(['gcra', 'fixed-window'])('%s: the fast path sets the expiry the general path sets, rounded up to whole ms', async (algorithm) => {
    // A 1.0005 s rule of limit 1: GCRA's tolerance and the fixed window's period are both 1,000,500 µs, so
    // the key lives 1001 ms from the write. The general path gets the check through a cost written '01'. One
    // transaction, so the server's clock moves little between the writes and the readings around them.
    const [fast, general] = [`{${key}}:fast`, `{${key}}:general`];
    // Compiled beforehand, so compiling it does not take a millisecond inside the transaction.
    await scripts.loadAll();
    const tx = redis.multi().time();
    scripts.queueScript(tx, script, { keys: [fast], args: [1, 1.0005, '', '', algorithm] });
    scripts.queueScript(tx, script, { keys: [general], args: [1, 1.0005, '', '', algorithm, '01', 'limit', 0, '', ''] });
    const replies = (await tx.pexpiretime(fast).pexpiretime(general).time().exec())!.map(([err, value]) => {
      expect(err).toBeNull();
      return value;
    });
    const ms = (time: unknown) => Number((time as string[])[0]) * 1000 + Math.floor(Number((time as string[])[1]) / 1000);
    const [before, after] = [ms(replies[0]), ms(replies[5])];
    expect((replies[1] as number[])[0]).toBe(1);
    expect((replies[2] as number[])[0]).toBe(1);
    for (const expiresAt of [replies[3], replies[4]] as number[]) {
      expect(expiresAt - before).toBeGreaterThanOrEqual(1001);
      expect(expiresAt - after).toBeLessThanOrEqual(1001);
    }
  });

  it('the compact form (limit, window, algorithm) answers as the short form at server time, in one string, and takes one key only', async () => {
    for (const algorithm of ['sliding-window', 'gcra', 'fixed-window']) {
      const compact: string[] = [];
      const short: number[][] = [];
      // An hour's window, so a fixed window's boundary (server time) cannot fall inside the test.
      for (let i = 0; i < 4; i++) {
        short.push((await call([3, 3600, '', '', algorithm], [`${key}:${algorithm}:short`])) as number[]);
        compact.push((await call([3, 3600, algorithm], [`${key}:${algorithm}:compact`])) as string);
      }
      // 'allowed remaining reset', plus ' retry-after' when refused.
      const parsed = compact.map((reply) => {
        expect(reply).toMatch(/^(1 \d+ \d+|0 \d+ \d+ \d+)$/);
        return reply.split(' ').map(Number);
      });
      // Allowed and remaining; reset and retry-after move with the server's clock.
      expect(parsed.map(([allowed, remaining]) => [allowed, remaining])).toEqual(short.map(([allowed, remaining]) => [allowed, remaining]));
      expect(parsed.map(([allowed, remaining]) => [allowed, remaining])).toEqual([[1, 2], [1, 1], [1, 0], [0, 0]]);
      expect(parsed.every((r) => r[2]! > 0 && r[2]! <= 3600e6)).toBe(true);
      // Refused: a retry-after within the period (GCRA: one interval of 1200 s).
      expect(parsed[3]![3]! > 0 && parsed[3]![3]! <= 3600e6).toBe(true);
    }
    // Bad input reaches the general path, which says what is wrong.
    await expect(call([0, 60, 'gcra'])).rejects.toThrow(/limit must be an integer/);
    await expect(call([3, 60, 'gcra'], [`{${key}}a`, `{${key}}b`])).rejects.toThrow(/wrong number of keys/);
    // A seed call's current_time is still a time: not a number, it is refused.
    await expect(call([3, 60, 'soon'])).rejects.toThrow(/current_time must be seconds/);
  });

  it('the compact form on an old-layout key: the general path converts it at the server time', async () => {
    const [seconds, micros] = await redis.time();
    const nowUs = Number(seconds) * 1e6 + Number(micros);
    await redis.zadd(key, nowUs - 1000, 'a0', nowUs - 500, 'a1:3');
    await redis.pexpire(key, 60_000);
    expect((await call([5, 60, 'sliding-window'])) as string).toMatch(/^1 0 \d+$/);
    expect(await redis.type(key)).toBe('string');
    expect(decodeWindowLog((await redis.getBuffer(key))!).used).toBe(5);
    expect((await call([5, 60, 'sliding-window'])) as string).toMatch(/^0 0 \d+ \d+$/);
  });

  it('a second key in the seed call is refused', async () => {
    const err = await call([10, 60, NOW], [`{${key}}a`, `{${key}}b`]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScriptError);
  });
});
