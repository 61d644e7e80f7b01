import { RedisServer, waitFor } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  assertByteLength,
  assertNonEmptyString,
  assertOptions,
  assertRedisClient,
  assertTimeoutMs,
  durationMs,
  InvalidArgumentError,
  KeySpace,
  MAX_TIMEOUT_MS,
  nearestName,
  optionalMs,
  scriptName,
  warnIfEvicting,
} from '../src/index.js';

describe('well-formed ids', () => {
  it.each([['user\uD800'], ['user\uDBFF'], ['\uDC00me'], ['😀'.slice(0, 1)]])('refuses %j, which ioredis would send as U+FFFD', (id) => {
    expect(() => assertNonEmptyString('id', id)).toThrow(InvalidArgumentError);
    expect(() => new KeySpace('x').key(id, 's')).toThrow(/well-formed Unicode/);
  });

  it('accepts every well-formed string, astral characters included', () => {
    for (const id of ['😀', 'a\uD83D\uDE00b', 'ü', '中文']) expect(() => assertNonEmptyString('id', id)).not.toThrow();
  });
});

describe('assertRedisClient', () => {
  it.each([
    [null, /got null/],
    [undefined, /got undefined/],
    ['redis://127.0.0.1:6379', /not the URL/],
    [{ sendCommand: () => undefined }, /got a Object/],
    [{ evalsha: () => undefined }, /ioredis Redis or Cluster/],
  ])('refuses %j with InvalidArgumentError', (value, message) => {
    expect(() => assertRedisClient('redis', value)).toThrow(InvalidArgumentError);
    expect(() => assertRedisClient('redis', value)).toThrow(message);
  });

  it.each(topologies)('accepts an ioredis client (%s)', async (topology) => {
    const client = connect(topology, { lazyConnect: true });
    expect(() => assertRedisClient('redis', client)).not.toThrow();
    client.disconnect();
    await Promise.resolve();
  });
});

describe('assertOptions', () => {
  it('refuses an unknown key, naming it and the nearest valid one', () => {
    expect(() => assertOptions('options', { limit: 1, onError: 'allow' }, ['limit', 'onRedisError', 'windowMs'])).toThrow(
      'options.onError: is not an option (did you mean "onRedisError"?); valid: limit, onRedisError, windowMs',
    );
    expect(nearestName('timeout', ['timeoutMs', 'ttlMs'])).toBe('timeoutMs');
  });

  it('accepts known keys and undefined; refuses non-objects', () => {
    expect(() => assertOptions('options', { limit: 1 }, ['limit'])).not.toThrow();
    expect(() => assertOptions('options', undefined, ['limit'])).not.toThrow();
    expect(() => assertOptions('options', undefined, ['limit'], false)).toThrow('options: must be an object, got undefined');
    expect(() => assertOptions('options', 5, ['limit'])).toThrow(InvalidArgumentError);
    expect(() => assertOptions('options', [], ['limit'])).toThrow(InvalidArgumentError);
  });
});

describe('warnIfEvicting', () => {
  async function warningsFor(policy: string): Promise<string[]> {
    const server = await RedisServer.start({ args: ['--maxmemory-policy', policy] });
    const client = new Redis(server.port, server.host);
    const seen: string[] = [];
    const listener = (w: Error & { code?: string }) => {
      if (w.code === 'CYREDIS_EVICTION') seen.push(w.message);
    };
    process.on('warning', listener);
    try {
      warnIfEvicting(client, '@cyredis/test', 'jobs can vanish');
      warnIfEvicting(client, '@cyredis/test', 'jobs can vanish');
      // The check is one CONFIG GET; once a later command on the same connection has answered, so has it,
      // and the warning (emitted on the next tick) is out after one more turn of the event loop.
      await client.ping();
      await new Promise(setImmediate);
      if (policy !== 'noeviction') await waitFor(() => seen.length > 0, { timeoutMs: 5_000 });
      return seen;
    } finally {
      process.off('warning', listener);
      await client.quit();
      await server.stop();
    }
  }

  it('warns once, naming the policy and the risk, unless the policy is noeviction', async () => {
    const seen = await warningsFor('allkeys-lru');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/allkeys-lru.*jobs can vanish/);
    expect(await warningsFor('noeviction')).toEqual([]);
  });
});

describe('durations', () => {
  it('durationMs: > 0 by default, within bounds, fractions rounded up (or refused with integer)', () => {
    expect(durationMs('ttlMs', 1.2)).toBe(2);
    expect(durationMs('ttlMs', 10, { min: 10, max: 20 })).toBe(10);
    expect(durationMs('graceMs', 0, { min: 0 })).toBe(0);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5', undefined, null]) {
      expect(() => durationMs('ttlMs', bad), String(bad)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', argument: 'ttlMs' }));
    }
    expect(() => durationMs('ttlMs', 9.5, { min: 10 })).toThrow(/≥ 10/);
    expect(() => durationMs('ttlMs', 21, { max: 20 })).toThrow(/≤ 20/);
    expect(() => durationMs('leaseMs', 1.5, { integer: true })).toThrow(/integer/);
    expect(() => durationMs('leaseMs', 0, { integer: true })).toThrow(/> 0/);
    expect(durationMs('leaseMs', 7, { integer: true, max: 7 })).toBe(7);
  });

  it('optionalMs: the fallback for undefined, else checked like durationMs', () => {
    expect(optionalMs('graceMs', undefined, 42)).toBe(42);
    expect(optionalMs('graceMs', 0.1, 42, { min: 0 })).toBe(1);
    expect(() => optionalMs('graceMs', null, 42)).toThrow(expect.objectContaining({ argument: 'graceMs' }));
    expect(() => optionalMs('graceMs', 5, 42, { max: 4 })).toThrow(/≤ 4/);
  });

  it('assertTimeoutMs: 1 to 2^31-1 ms, since setTimeout fires at once above it', () => {
    expect(() => assertTimeoutMs('timeoutMs', MAX_TIMEOUT_MS)).not.toThrow();
    expect(() => assertTimeoutMs('timeoutMs', 0.5)).not.toThrow();
    expect(MAX_TIMEOUT_MS).toBe(2 ** 31 - 1);
    for (const bad of [0, -5, MAX_TIMEOUT_MS + 1, Number.NaN, '100']) {
      expect(() => assertTimeoutMs('timeoutMs', bad), String(bad)).toThrow(expect.objectContaining({ argument: 'timeoutMs' }));
    }
  });
});

describe('assertByteLength', () => {
  it('caps strings in UTF-8 bytes, not UTF-16 units', () => {
    expect(() => assertByteLength('id', 'x'.repeat(8), 8)).not.toThrow();
    expect(() => assertByteLength('id', 'é'.repeat(4), 8)).not.toThrow();
    expect(() => assertByteLength('id', 'é'.repeat(5), 8)).toThrow(/id: must be at most 8 UTF-8 bytes, got 10/);
    expect(() => assertByteLength('id', '😀😀😀', 8)).toThrow(/got 12/);
    // A short string never reaches the byte count, but still every other check.
    expect(() => assertByteLength('id', '', 8)).toThrow(/non-empty/);
    expect(() => assertByteLength('id', 'x'.repeat(9), 8)).toThrow(/at most 8/);
    expect(() => assertByteLength('id', 'a\uD800', 8)).toThrow(/well-formed/);
    expect(() => assertByteLength('id', 42, 8)).toThrow(InvalidArgumentError);
  });
});

describe('scriptName', () => {
  it('names a shipped script cyredis:<package>:<file>', () => {
    expect(scriptName('queue', 'job_queue')).toBe('cyredis:queue:job_queue');
    expect(scriptName('ratelimit', 'rate_limiter')).toBe('cyredis:ratelimit:rate_limiter');
  });

  it.each([['', 'x'], ['Queue', 'x'], ['queue', 'job queue'], ['queue', 'a:b'], ['queue', 'job_queue.lua']])('refuses %j / %j', (pkg, file) => {
    expect(() => scriptName(pkg, file)).toThrow(InvalidArgumentError);
  });
});
