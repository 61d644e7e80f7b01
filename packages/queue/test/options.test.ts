import * as core from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CyRedisError,
  InvalidArgumentError,
  JobQueue,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  Worker,
} from '../src/index.js';

describe.each(topologies)('JobQueue options and surface on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('refuses ids, names and lanes that are not well-formed Unicode (lone surrogates)', async () => {
    const queue = new JobQueue<number>(redis, 'ids', { prefix });
    for (const id of ['a\uD800', 'a\uDBFF', '\uDC00b']) {
      await expect(queue.push(1, { id })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'options.id' });
    }
    await expect(queue.pushBulk([{ data: 1, id: '😀'.slice(0, 1) }])).rejects.toMatchObject({ argument: 'jobs[0].id' });
    await expect(queue.fetch(1, { request: { lane: 'l\uD800', seq: 0 } })).rejects.toMatchObject({ argument: 'options.request.lane' });
    const job = { id: 'x\uD800', data: 1, priority: 0, attempts: 1, maxRetries: 0, leaseToken: '1' };
    await expect(queue.ack([job])).rejects.toMatchObject({ argument: 'jobs[0].id' });
    expect(() => new JobQueue(redis, 'q\uDBFF', { prefix })).toThrow(InvalidArgumentError);
    // Every length limit is in UTF-8 bytes: a queue name of 256 bytes is the longest.
    expect(() => new JobQueue(redis, 'é'.repeat(129), { prefix })).toThrow(/name: must be at most 256 UTF-8 bytes/);
    expect(new JobQueue(redis, 'é'.repeat(128), { prefix }).name).toHaveLength(128);
    await expect(queue.push(1, { id: 'é'.repeat(513) })).rejects.toMatchObject({ argument: 'options.id' });
    // Well-formed ones stay distinct: before, both lone surrogates became U+FFFD and the second push was dropped.
    expect(await queue.addBulk([{ data: 1, id: 'a\uD83D\uDE00' }, { data: 2, id: 'a\uD83D\uDE01' }])).toEqual([
      { id: 'a😀', added: true },
      { id: 'a😁', added: true },
    ]);
  });

  it('refuses a client that is not ioredis, and unknown or bad options, naming the nearest valid one', async () => {
    for (const client of [null, undefined, 'redis://localhost:6379', {}, { evalsha: () => 1 }]) {
      expect(() => new JobQueue(client as unknown as Redis, 'q')).toThrow(/^redis: must be an ioredis Redis or Cluster client/);
    }
    const queue = new JobQueue<number>(redis, 'opts', { prefix });
    const err = (() => {
      try {
        new JobQueue(redis, 'q', { maxRetry: 1 } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ argument: 'options.maxRetry' });
    expect(String(err)).toContain('"maxRetries"');
    expect(() => new JobQueue(redis, 'q', { backoff: { base: 1 } } as never)).toThrow(/options\.backoff\.base/);
    expect(() => new JobQueue(redis, 'q', { timeoutMs: 0 })).toThrow(InvalidArgumentError);
    // Past 2^31 - 1 ms Node fires a timer at once: every call would time out on the spot.
    expect(() => new JobQueue(redis, 'q', { timeoutMs: 2 ** 31 })).toThrow(/options\.timeoutMs/);
    expect(() => new Worker(queue, () => undefined, { timeoutMs: 2 ** 31 })).toThrow(/options\.timeoutMs/);
    expect(() => new JobQueue(redis, 'q', null as never)).toThrow(InvalidArgumentError);
    await expect(queue.push(1, { delay: 5 } as never)).rejects.toMatchObject({ argument: 'options.delay' });
    await expect(queue.pushBulk([{ data: 1, ttl: 5 } as never])).rejects.toMatchObject({ argument: 'jobs[0].ttl' });
    await expect(queue.pop(1, { lease: 5 } as never)).rejects.toMatchObject({ argument: 'options.lease' });
    await expect(queue.ack([], { fetched: 1 } as never)).rejects.toMatchObject({ argument: 'options.fetched' });
    expect(() => new Worker(queue, () => undefined, { concurency: 2 } as never)).toThrow(/options\.concurency.*"concurrency"/);
    expect(() => new Worker({} as never, () => undefined)).toThrow(InvalidArgumentError);
  });

  it('checks every push option as before whatever path it takes: names per job, null refused, long ids by bytes', async () => {
    const queue = new JobQueue<number>(redis, 'push-checks', { prefix });
    const refusals: [() => Promise<unknown>, string][] = [
      [() => queue.push(1, { priority: null as never }), 'options.priority'],
      [() => queue.push(1, { priority: -1001 }), 'options.priority'],
      [() => queue.push(1, { delayMs: Number.NaN }), 'options.delayMs'],
      [() => queue.push(1, { delayMs: Infinity }), 'options.delayMs'],
      [() => queue.push(1, { group: '' }), 'options.group'],
      [() => queue.push(1, { id: '' }), 'options.id'],
      [() => queue.push(1, null as never), 'options'],
      [() => queue.push(1, [] as never), 'options'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2 }, { data: 3, group: 'é'.repeat(129) }]), 'jobs[2].group'],
      [() => queue.pushBulk([{ data: 1, delayMs: -1 }]), 'jobs[0].delayMs'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2, id: 'x'.repeat(1025) }]), 'jobs[1].id'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2, priority: 0.5 }]), 'jobs[1].priority'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2, maxRetries: -1 }]), 'jobs[1].maxRetries'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2, dedup: { key: 'k', ttlMs: 0, mode: 'throttle' } }]), 'jobs[1].dedup.ttlMs'],
      [() => queue.pushBulk([{ data: 1 }, { data: (() => 1) as never }]), 'jobs[1].data'],
      [() => queue.pushBulk([{ data: 1 }, { data: 2, traceContext: { a: 1 } as never }]), 'jobs[1].traceContext.a'],
      [() => queue.pushBulk([{ data: 1 }, { data: 1, extra: 1 } as never]), 'jobs[1].extra'],
      [() => queue.push((() => 1) as never), 'data'],
    ];
    for (const [call, argument] of refusals) await expect(call()).rejects.toMatchObject({ name: 'InvalidArgumentError', argument });
    expect(await queue.stats()).toMatchObject({ waiting: 0, delayed: 0 });
    // Accepted at the limits: an ASCII id of 1024 bytes, a group of 256, null delay (none), priority ±1000.
    const accepted = await queue.addBulk([
      { data: 1, id: 'x'.repeat(1024), priority: 1000, delayMs: null as never },
      { data: 2, group: 'g'.repeat(256), priority: -1000 },
      { data: 3, id: 'é'.repeat(512) },
    ]);
    expect(accepted.map((r) => r.added)).toEqual([true, true, true]);
    expect(await queue.stats()).toMatchObject({ waiting: 3, delayed: 0 });
  });

  it('re-exports the core error classes it throws, identical to core’s', () => {
    expect(CyRedisError).toBe(core.CyRedisError);
    expect(InvalidArgumentError).toBe(core.InvalidArgumentError);
    expect(RedisUnavailableError).toBe(core.RedisUnavailableError);
    expect(RedisTimeoutError).toBe(core.RedisTimeoutError);
    expect(ScriptError).toBe(core.ScriptError);
  });
});
