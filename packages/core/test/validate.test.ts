import { RedisServer, waitFor } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { assertNonEmptyString, assertOptions, assertRedisClient, InvalidArgumentError, KeySpace, nearestName, warnIfEvicting } from '../src/index.js';

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
