import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, JobQueue, Worker, type Codec, type Job } from '../src/index.js';
import { raw } from './helpers.js';

describe.each(topologies)('JobQueue codec on %s', (topology) => {
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
});
