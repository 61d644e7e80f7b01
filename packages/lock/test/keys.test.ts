import { readFileSync } from 'node:fs';
import { randomPrefix, traceKeys } from '@cyredis/testing';
import { escapeId, InvalidArgumentError } from '@cyredis/core';
import { connect, deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  encodeArgs,
  encodeBatch,
  encodeFairArgs,
  encodeSemaphoreArgs,
  encodeSemaphoreBatch,
  type BatchableRequest,
  type FairRequest,
  type LockRequest,
  type SemaphoreRequest,
} from '../src/protocol.js';
import { LockManager } from '../src/index.js';
import { hashTagOf, LockKeys, parseLockKey } from '../src/keys.js';

const SOURCE = readFileSync(new URL('../lua/distributed_lock.lua', import.meta.url), 'utf8');
const SEMAPHORE = readFileSync(new URL('../lua/semaphore.lua', import.meta.url), 'utf8');
const FAIR = readFileSync(new URL('../lua/fair_lock.lua', import.meta.url), 'utf8');

/**
 * Keys the script may touch without being given them in KEYS. None: every call names its lock key(s), and
 * the release message goes to a channel, not a key. A new entry needs a line in the Lua header and in the
 * README's "Declared keys".
 */
const UNDECLARED: readonly string[] = [];

describe.each(topologies)('distributed_lock.lua touches only the keys it is given, on %s', (topology) => {
  let redis: Redis | Cluster;
  let prefix: string;
  let key: string;
  const touched: string[] = [];

  /** Runs one call with every key it touches traced; it must succeed (not an error reply). */
  const trace = async (keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> => {
    const { reply, undeclared } = await traceKeys(redis, SOURCE, keys, args);
    expect(reply, JSON.stringify(args)).not.toBeInstanceOf(Error);
    expect(reply, JSON.stringify(args)).not.toHaveProperty('err');
    touched.push(...undeclared);
    return reply;
  };
  const traceRequest = (request: LockRequest) => trace([request.key], encodeArgs(request).map(String));

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    // One hash tag, so the batch below stays in one slot on the cluster.
    key = `${prefix}{keys}:a`;
    touched.length = 0;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('every call the client sends, with a waiter so releases publish', async () => {
    await traceRequest({ operation: 'acquire', key, owner: 'x', ttlMs: 5_000 });
    await traceRequest({ operation: 'wait', key, owner: 'y', ttlMs: 5_000 });
    await traceRequest({ operation: 'extend', key, owner: 'x', ttlMs: 6_000 });
    const [, , , token] = (await traceRequest({ operation: 'status', key })) as [number, string, number, number];
    await traceRequest({ operation: 'fence', key, owner: 'x', floor: BigInt(token) + 5n });
    await traceRequest({ operation: 'release', key, owner: 'x' });
    await traceRequest({ operation: 'acquire', key, owner: 'y', ttlMs: 5_000 });
    await traceRequest({ operation: 'force', key });
    const b = `${prefix}{keys}:b`;
    const batch: BatchableRequest[] = [
      { operation: 'acquire', key, owner: 'x', ttlMs: 5_000 },
      { operation: 'wait', key, owner: 'y', ttlMs: 5_000 },
      { operation: 'acquire', key: b, owner: 'y', ttlMs: 5_000 },
      { operation: 'extend', key: b, owner: 'y', ttlMs: 5_000 },
      { operation: 'status', key },
      { operation: 'release', key, owner: 'x' },
      { operation: 'force', key: b },
    ];
    const { keys, args } = encodeBatch(batch);
    expect(await trace(keys, args.map(String))).toHaveLength(batch.length);
    expect(touched).toEqual(UNDECLARED);
  });

  it("the seed's calls and the public full-reply modes", async () => {
    expect(await trace([key], ['x', 30_000])).toEqual([1, 'x', 30_000, expect.any(Number)]);
    await trace([key], ['y', 30_000, 'wait']);
    await trace([key], ['x', 30_000, 'extend']);
    await trace([key], ['', 0, 'status']);
    await trace([key], ['x', 0, 'release']);
    await trace([key], ['x', 30_000]);
    await trace([key], ['', 0, '', 'force']);
    expect(touched).toEqual(UNDECLARED);
  });
});

describe.each(topologies)('semaphore.lua touches only the key it is given, on %s', (topology) => {
  let redis: Redis | Cluster;
  let prefix: string;
  let key: string;

  const trace = async (request: SemaphoreRequest): Promise<unknown> => {
    const { reply, undeclared } = await traceKeys(redis, SEMAPHORE, [request.key], encodeSemaphoreArgs(request).map(String));
    expect(reply, request.operation).not.toBeInstanceOf(Error);
    expect(reply, request.operation).not.toHaveProperty('err');
    expect(undeclared, request.operation).toEqual([]);
    return reply;
  };

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    key = `${prefix}{keys}:s`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('every call the client sends, with a waiter so releases publish and an ended lease to drop', async () => {
    await trace({ operation: 'acquire', key, owner: 'x', ttlMs: 5_000, count: 1, permits: 2 });
    await trace({ operation: 'acquire', key, owner: 'short', ttlMs: 1, count: 1, permits: 2 });
    await trace({ operation: 'wait', key, owner: 'y', ttlMs: 5_000, count: 2, permits: 2 });
    await trace({ operation: 'extend', key, owner: 'x', ttlMs: 6_000 });
    await trace({ operation: 'status', key, permits: 2 });
    await trace({ operation: 'resize', key, permits: 3 });
    await trace({ operation: 'release', key, owner: 'x' });
    // The read-write form: a writer that waits, a reader it holds back.
    await trace({ operation: 'wait', key, owner: 'w', ttlMs: 5_000, count: 3, permits: 3, writerPreference: true });
    await trace({ operation: 'acquire', key, owner: 'r', ttlMs: 5_000, count: 1, permits: 3, writerPreference: true });
    // The batch form (keys of one slot).
    const { keys, args } = encodeSemaphoreBatch([
      { operation: 'acquire', key: `${prefix}{keys}:t`, owner: 'b', ttlMs: 5_000, count: 1, permits: 2 },
      { operation: 'release', key, owner: 'r' },
    ]);
    const { reply, undeclared } = await traceKeys(redis, SEMAPHORE, keys, args.map(String));
    expect(reply).toHaveLength(2);
    expect(undeclared).toEqual([]);
  });
});

describe.each(topologies)('fair_lock.lua touches only the key it is given, on %s', (topology) => {
  let redis: Redis | Cluster;
  let prefix: string;
  let key: string;

  const trace = async (request: FairRequest): Promise<unknown> => {
    const { reply, undeclared } = await traceKeys(redis, FAIR, [request.key], encodeFairArgs(request).map(String));
    expect(reply, request.operation).not.toBeInstanceOf(Error);
    expect(reply, request.operation).not.toHaveProperty('err');
    expect(undeclared, request.operation).toEqual([]);
    return reply;
  };

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    key = `${prefix}{keys}:f`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('every call the client sends, with a line of waiters and a place that ended', async () => {
    await trace({ operation: 'acquire', key, owner: 'x', ttlMs: 5_000 });
    await trace({ operation: 'wait', key, owner: 'short', ttlMs: 1 });
    await trace({ operation: 'wait', key, owner: 'y', ttlMs: 5_000 });
    await trace({ operation: 'wait', key, owner: 'z', ttlMs: 5_000 });
    await trace({ operation: 'leave', key, owner: 'z' });
    await trace({ operation: 'extend', key, owner: 'x', ttlMs: 6_000 });
    await trace({ operation: 'status', key });
    await trace({ operation: 'release', key, owner: 'x' });
    await trace({ operation: 'wait', key, owner: 'y', ttlMs: 5_000 });
    await trace({ operation: 'force', key });
  });
});

describe('lock key names', () => {
  // Few characters, many braces: every tag shape turns up.
  const names = fc.string({ unit: fc.constantFrom('{', '}', '%', 'a', 'b', ':', '*'), minLength: 1, maxLength: 12 });

  it('a name hashes on its own tag when it has one, else on all of it; every key reads back to its name', () => {
    const keys = new LockKeys('p');
    fc.assert(
      fc.property(names, (name) => {
        const key = keys.key(name, 'lock', 'name');
        expect(hashTagOf(key)).toBe(hashTagOf(name) ?? escapeId(name));
        expect(parseLockKey(key.slice('p:lock:'.length))).toEqual({ name, suffix: 'lock' });
      }),
      { numRuns: 2_000 },
    );
  });

  it('two names never share a key', () => {
    const keys = new LockKeys('p');
    fc.assert(
      fc.property(names, names, (a, b) => {
        if (a !== b) expect(keys.key(a, 'lock', 'name')).not.toBe(keys.key(b, 'lock', 'name'));
      }),
      { numRuns: 2_000 },
    );
  });

  it('keeps the key of a name without a tag as it always was; follows Redis on what a tag is', () => {
    const keys = new LockKeys('p');
    for (const name of ['invoice:42', 'a}b', '{}x', '}{x', 'a{b', '100%']) {
      expect(keys.key(name, 'lock', 'name')).toBe(`p:lock:{${escapeId(name)}}:lock`);
    }
    expect(keys.key('{acct}:1', 'semaphore', 'name')).toBe('p:lock:{acct}:{%7Bacct%7D:1}:semaphore');
    expect(keys.key('x{{a}}', 'rw', 'name')).toBe('p:lock:{{a}:{x%7B%7Ba%7D%7D}:rw');
    expect(parseLockKey('{acct}:{%7Bother%7D:1}:lock')).toBeUndefined();
    expect(parseLockKey('x:{y}:lock')).toBeUndefined();
    expect(parseLockKey('{}:lock')).toBeUndefined();
  });

  it('refuses a bad name as before, naming the argument', () => {
    const keys = new LockKeys('p');
    const refusal = (run: () => unknown): unknown => {
      try {
        run();
      } catch (err) {
        return err;
      }
      return undefined;
    };
    for (const [name, argument] of [['', 'resource'], [7, 'name'], ['a\uD800{b}', 'name']] as const) {
      const err = refusal(() => keys.key(name as string, 'lock', argument));
      expect(err, String(name)).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument).toBe(argument);
    }
  });
});

describe('lock names with a hash tag on the cluster', () => {
  const redis = suiteClient('cluster') as Cluster;

  it('share their tag’s slot with each other and with the application’s keys of that tag, in every kind', async () => {
    const prefix = randomPrefix();
    const locks = new LockManager(redis, { prefix });
    try {
      const slot = (key: string) => redis.cluster('KEYSLOT', key);
      const expected = await slot('{acct}:balance');
      const names = new LockKeys(prefix);
      const keys = [locks.keyOf('{acct}:1'), locks.keyOf('x{acct}'), ...['semaphore', 'rw', 'fair'].map((s) => names.key('{acct}:2', s, 'name'))];
      for (const key of keys) expect(await slot(key), key).toBe(expected);
      expect(await slot(locks.keyOf('acct:1'))).not.toBe(expected);
    } finally {
      await locks.close();
    }
  });
});
