import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, topologies, suiteClient } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as core from '@cyredis/core';
import {
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  ScriptError,
  LockManager,
  MIN_TTL_MS,
  QuorumUnreachableError,
  RedisUnavailableError,
} from '../src/index.js';

// What a caller can get wrong: arguments and options are refused with InvalidArgumentError naming them,
// before any round trip; unknown options name the nearest valid one.

describe.each(topologies)('LockManager input on %s', (topology) => {
  let prefix: string;
  let locks: LockManager;

  const redis = suiteClient(topology);
  beforeEach(() => {
    prefix = randomPrefix();
    locks = new LockManager(redis, { prefix, ttlMs: 10_000 });
  });
  afterEach(async () => {
    await locks.close();
    await deleteByPrefix(redis, prefix);
  });

  it('refuses bad input with InvalidArgumentError before any round trip', async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ['options.ttlMs', () => locks.acquire('r', { ttlMs: 0 })],
      ['options.ttlMs', () => locks.acquire('r', { ttlMs: -1 })],
      ['options.ttlMs', () => locks.acquire('r', { ttlMs: Number.NaN })],
      ['options.ttlMs', () => locks.acquire('r', { ttlMs: Number.POSITIVE_INFINITY })],
      ['options.owner', () => locks.acquire('r', { owner: '' })],
      ['resource', () => locks.acquire('')],
      ['resource', () => locks.status('')],
      ['resource', () => locks.forceUnlock('')],
      ['options.waitMs', () => locks.acquire('r', { waitMs: -1 })],
      ['options.ttlMs', () => locks.tryAcquire('r', { ttlMs: 0 })],
      ['options.ttlMs', () => locks.using('r', () => 1, { ttlMs: -5 })],
    ];
    for (const [argument, run] of cases) {
      const err = await run().catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument).toBe(argument);
    }
    expect(() => new LockManager(redis, { ttlMs: 0 })).toThrow(InvalidArgumentError);
    expect(() => new LockManager([])).toThrow(InvalidArgumentError);
    const lock = await locks.acquire('r');
    await expect(lock.extend(0)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(lock.extend(Number.NaN)).rejects.toBeInstanceOf(InvalidArgumentError);
    await lock.release();
    expect(await redis.exists(locks.keyOf('r'))).toBe(1);
    expect(QuorumUnreachableError.prototype).toBeInstanceOf(RedisUnavailableError);
    // The core errors the lock throws come from @cyredis/lock itself, as the very classes core throws.
    expect([CyRedisError, InvalidArgumentError, RedisUnavailableError, RedisTimeoutError, ScriptError]).toEqual([
      core.CyRedisError,
      core.InvalidArgumentError,
      core.RedisUnavailableError,
      core.RedisTimeoutError,
      core.ScriptError,
    ]);
  });

  it('refuses leases too short to work, lone surrogates, unknown options and clients that are not ioredis', async () => {
    const refused = async (argument: string, run: () => unknown) => {
      const err = await Promise.resolve()
        .then(run)
        .catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
      return (err as InvalidArgumentError).message;
    };
    // A 2 ms lease is all drift: it could never be granted.
    expect(await refused('options.ttlMs', () => locks.acquire('r', { ttlMs: 2 }))).toContain(`≥ ${MIN_TTL_MS}`);
    await refused('options.ttlMs', () => locks.acquire('r', { ttlMs: MIN_TTL_MS - 0.5 }));
    await refused('options.ttlMs', () => new LockManager(redis, { ttlMs: 9 }));
    // The shortest lease is accepted and can be granted. It is valid for 8 ms (10 minus 2 ms of drift), which
    // a round trip on a loaded machine can outlast ("the reply came after …"): try until one fits.
    const shortest = await waitFor(() =>
      locks.acquire('short', { ttlMs: MIN_TTL_MS }).catch((err: unknown) => {
        if (err instanceof RedisUnavailableError && err.message.includes('(minus drift) had run out')) return undefined;
        throw err;
      }),
    );
    await shortest.release();
    // 'me\uD800' and 'me\uDC00' reach the server as the same bytes (U+FFFD): both are refused.
    await refused('options.owner', () => locks.acquire('r', { owner: 'me\uD800' }));
    await refused('options.owner', () => locks.acquire('r', { owner: 'me\uDC00' }));
    await refused('resource', () => locks.acquire('😀'.slice(0, 1)));
    await refused('resource', () => locks.status('x\uDBFF'));
    await refused('resource', () => locks.forceUnlock('x\uDFFF'));
    await refused('resource', () => locks.using('x\uD800', () => 1));
    expect(await locks.status('r')).toMatchObject({ locked: false });
    // Unknown option keys name the nearest valid one.
    expect(await refused('options.ttl', () => locks.acquire('r', { ttl: 5 } as never))).toContain('"ttlMs"');
    expect(await refused('options.nodeTimeoutMs', () => new LockManager(redis, { nodeTimeoutMs: 5 } as never))).toContain('"timeoutMs"');
    await refused('options.onError', () => new LockManager(redis, { onError: 'x' } as never));
    await refused('options.waitForReplicas.timeoutMs', () => new LockManager(redis, { waitForReplicas: { replicas: 1 } } as never));
    await refused('options.waitForReplicas.replica', () => new LockManager(redis, { waitForReplicas: { replica: 1, timeoutMs: 5 } } as never));
    await refused('options', () => new LockManager(redis, null as never));
    await refused('options.timeoutMs', () => new LockManager(redis, { timeoutMs: 0 }));
    // Anything but an ioredis client, before a byte is sent.
    await refused('redis', () => new LockManager(null as never));
    await refused('redis', () => new LockManager(undefined as never));
    await refused('redis', () => new LockManager('redis://127.0.0.1:6379' as never));
    await refused('redis', () => new LockManager({ sendCommand: () => undefined } as never));
    await refused('redis[1]', () => new LockManager([redis, {}] as never));
  });
});
