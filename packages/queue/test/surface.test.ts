import * as core from '@cyredis/core';
import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CyRedisError,
  InvalidArgumentError,
  JobQueue,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  Worker,
  type Codec,
  type Job,
} from '../src/index.js';
import { raw } from './helpers.js';

describe.each(topologies)('JobQueue surface on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('round-trips what JSON loses through the lossless codec (Date, BigInt, Map, Set, Buffer, -0, NaN)', async () => {
    interface Rich {
      at: Date;
      big: bigint;
      map: Map<string, number>;
      set: Set<string>;
      buf: Buffer;
      nums: number[];
    }
    const queue = new JobQueue<Rich>(redis, 'rich', { prefix, maxRetries: 0 });
    const data: Rich = { at: new Date(1_767_225_600_123), big: 2n ** 70n, map: new Map([['a', 1]]), set: new Set(['x']), buf: Buffer.from([0, 255]), nums: [-0, Number.NaN, Infinity] };
    await queue.push(data);
    const [job] = await queue.pop(1);
    expect(job!.data).toEqual(data);
    expect(job!.data.at).toBeInstanceOf(Date);
    expect(Object.is(job!.data.nums[0], -0)).toBe(true);
    expect(await queue.fail(job!, 'x')).toBe('dead');
    expect((await queue.deadJobs())[0]!.data).toEqual(data);
  });

  it('refuses what the codec cannot encode with InvalidArgumentError, before any round trip', async () => {
    const queue = new JobQueue<unknown>(redis, 'bad', { prefix });
    const send = vi.spyOn(redis, 'sendCommand');
    for (const data of [() => 1, Symbol('s'), undefined, { f: () => 1 }]) {
      await expect(queue.push(data)).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'data' });
    }
    await expect(queue.push({ f: () => 1 })).rejects.toThrow('data: cannot be encoded: the codec cannot encode a function (at "f")');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(queue.pushBulk([{ data: 1 }, { data: cyclic }])).rejects.toMatchObject({ argument: 'jobs[1].data' });
    expect(send).not.toHaveBeenCalled();
    send.mockRestore();
  });

  it('decodes plain JSON pushed raw with the seed format, and dead-letters data the codec cannot read', async () => {
    const queue = new JobQueue<{ a: number }>(redis, 'seed', { prefix });
    await raw(redis, queue.keys, 'PUSH', '*', 'json', '{"a":1}', 0, 3, 0);
    await raw(redis, queue.keys, 'PUSH', '*', 'text', 'job_data', 0, 3, 0);
    const jobs = await queue.pop(10);
    expect(jobs.map((j) => [j.id, j.data])).toEqual([['json', { a: 1 }]]);
    const [dead] = await queue.deadJobs();
    expect(dead).toMatchObject({ id: 'text', data: undefined, attempts: 1 });
    expect(dead!.error).toMatch(/^data cannot be decoded: /);
  });

  it('uses a custom codec given as an option', async () => {
    const upper: Codec<string> = { encode: (v) => v.toUpperCase(), decode: (t) => `decoded:${t}` };
    const queue = new JobQueue<string>(redis, 'codec', { prefix, codec: upper });
    await queue.push('hello');
    expect((await queue.pop(1))[0]!.data).toBe('decoded:HELLO');
    expect(() => new JobQueue(redis, 'q', { codec: {} as Codec })).toThrow(InvalidArgumentError);
  });

  it('runs a job by the retry policy it was pushed with, whatever the instance that fails it says', async () => {
    // The producer allows 1 retry after ~10 ms; the consumer's own defaults say no retry, or an hour.
    const producer = new JobQueue<number>(redis, 'policy', { prefix, maxRetries: 1, backoff: { baseMs: 10, maxMs: 10 } });
    const consumer = new JobQueue<number>(redis, 'policy', { prefix, maxRetries: 0, backoff: { baseMs: 3_600_000 } });
    const runs: number[] = [];
    const dead: number[] = [];
    const worker = new Worker(consumer, (job: Job<number>) => {
      runs.push(job.data);
      throw new Error('always');
    });
    worker.on('dead', (job) => dead.push(job.data));
    try {
      await producer.push(1);
      // A job pushed by the consumer runs once: its own maxRetries 0.
      await consumer.push(2);
      // Per-job options override the pushing instance's defaults.
      await producer.push(3, { maxRetries: 0 });
      await waitFor(() => (dead.length === 3 ? true : undefined));
      expect(runs.filter((n) => n === 1)).toHaveLength(2);
      expect(runs.filter((n) => n === 2)).toHaveLength(1);
      expect(runs.filter((n) => n === 3)).toHaveLength(1);
    } finally {
      await worker.close({ timeoutMs: 0 });
    }
    // And the other way round: a producer's hour-long backoff holds even when the consumer's would retry at once.
    const slow = new JobQueue<number>(redis, 'policy2', { prefix, backoff: { baseMs: 3_600_000, maxMs: 3_600_000 } });
    const quick = new JobQueue<number>(redis, 'policy2', { prefix, backoff: { baseMs: 0, maxMs: 0 } });
    await slow.push(4);
    const [job] = await quick.pop(1);
    expect(job!.maxRetries).toBe(3);
    expect(await quick.fail(job!, 'x')).toBe('retry');
    expect(await quick.pop(1)).toEqual([]);
    expect(await quick.stats()).toMatchObject({ failed: 1 });
  });

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

  it('re-exports the core error classes it throws, identical to core’s', () => {
    expect(CyRedisError).toBe(core.CyRedisError);
    expect(InvalidArgumentError).toBe(core.InvalidArgumentError);
    expect(RedisUnavailableError).toBe(core.RedisUnavailableError);
    expect(RedisTimeoutError).toBe(core.RedisTimeoutError);
    expect(ScriptError).toBe(core.ScriptError);
  });
});

describe('JobQueue against an unreachable or evicting server', () => {
  it('settles every call within timeoutMs (default 2000) with a typed outage while Redis is stopped', async () => {
    const server = await RedisServer.start();
    const redis = new Redis(server.port, server.host);
    redis.on('error', () => undefined);
    const queue = new JobQueue<number>(redis, 'down', { timeoutMs: 300 });
    expect(new JobQueue(redis, 'x').timeoutMs).toBe(2000);
    const errors: unknown[] = [];
    const worker = new Worker(queue, () => undefined, { blockMs: 100 });
    worker.on('error', (err) => errors.push(err));
    try {
      await queue.push(1);
      await server.stop();
      const calls: [string, () => Promise<unknown>][] = [
        ['push', () => queue.push(2)],
        ['pop', () => queue.pop(1)],
        ['stats', () => queue.stats()],
        ['deadJobs', () => queue.deadJobs()],
      ];
      for (const [name, call] of calls) {
        const started = Date.now();
        const err = await call().catch((e: unknown) => e);
        expect(err, name).toBeInstanceOf(RedisUnavailableError);
        expect(Date.now() - started, name).toBeLessThan(300 + 1000);
      }
      // The worker keeps trying and says so, once per distinct error, each an outage.
      await waitFor(() => (errors.length > 0 ? true : undefined));
      for (const err of errors) expect(err).toBeInstanceOf(RedisUnavailableError);
      expect(new Set(errors.map(String)).size).toBe(errors.length);
    } finally {
      await worker.close({ timeoutMs: 0 });
      redis.disconnect();
      await server.stop();
    }
  });

  it('warns once at first use when the server may evict keys', async () => {
    const server = await RedisServer.start({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    const redis = new Redis(server.port, server.host);
    const seen: string[] = [];
    const listener = (w: Error & { code?: string }) => {
      if (w.code === 'CYREDIS_EVICTION') seen.push(w.message);
    };
    process.on('warning', listener);
    try {
      const queue = new JobQueue<number>(redis, 'evict');
      await queue.push(1);
      await queue.pop(1);
      await waitFor(() => (seen.length > 0 ? true : undefined), { timeoutMs: 5000 });
      expect(seen).toHaveLength(1);
      expect(seen[0]).toContain('@cyredis/queue');
      expect(seen[0]).toContain('record lost');
    } finally {
      process.off('warning', listener);
      await redis.quit();
      await server.stop();
    }
  });
});
