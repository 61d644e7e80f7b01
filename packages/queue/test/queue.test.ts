import { CyRedisError, InvalidArgumentError } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobQueue, LIMITS, type Job } from '../src/index.js';
import { masters, snapshot } from './helpers.js';

interface Email {
  to: string;
}

async function serverMs(redis: Redis | Cluster): Promise<number> {
  const [s, us] = await masters(redis)[0]!.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Pops one job, retrying until one is ready (a delay, backoff or lease to wait out). */
function popSoon(queue: JobQueue<Email>): Promise<Job<Email>[]> {
  return waitFor(async () => {
    const got = await queue.pop(1);
    return got.length > 0 ? got : undefined;
  });
}

describe.each(topologies)('JobQueue on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<Email>;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<Email>(redis, 'emails', { prefix, maxRetries: 3, backoff: { baseMs: 50, maxMs: 200 } });
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('pushes, pops, completes and counts (the issue example)', async () => {
    const id = await queue.push({ to: 'a@x' }, { id: 'job_123', priority: 5, delayMs: 0, maxRetries: 3 });
    expect(id).toBe('job_123');
    const ids = await queue.pushBulk([{ data: { to: 'b@x' } }, { data: { to: 'c@x' }, priority: 9 }]);
    expect(ids).toHaveLength(2);
    const jobs = await queue.pop(10, { leaseMs: 30_000 });
    expect(jobs.map((j) => j.data.to)).toEqual(['c@x', 'a@x', 'b@x']);
    expect(jobs[1]).toMatchObject({ id: 'job_123', data: { to: 'a@x' }, priority: 5, attempts: 1, maxRetries: 3 });
    expect(typeof jobs[1]!.leaseToken).toBe('string');
    expect(await queue.complete(jobs[0]!)).toBe(true);
    expect(await queue.complete(jobs[0]!)).toBe(false);
    expect(await queue.fail(jobs[1]!, new Error('smtp down'))).toBe('retry');
    expect(await queue.stats()).toEqual({ waiting: 0, delayed: 0, processing: 1, failed: 1, dead: 0, completed: 1 });
  });

  it('keeps every key of a queue under its name hash tag', async () => {
    await queue.push({ to: 'x' }, { delayMs: 60_000 });
    await queue.push({ to: 'y' });
    await queue.pop(1);
    const written = Object.keys(await snapshot(redis, prefix));
    expect(written.length).toBeGreaterThanOrEqual(5);
    for (const key of written) expect(key).toContain(':{emails}:');
  });

  it('says whether a push was new; a duplicate id writes nothing', async () => {
    expect(await queue.add({ to: 'a' }, { id: 'same' })).toEqual({ id: 'same', added: true });
    expect(await queue.add({ to: 'b' }, { id: 'same', priority: 9 })).toEqual({ id: 'same', added: false });
    expect(await queue.addBulk([{ data: { to: 'c' }, id: 'same' }, { data: { to: 'd' }, id: 'new' }])).toEqual([
      { id: 'same', added: false },
      { id: 'new', added: true },
    ]);
    const jobs = await queue.pop(5);
    expect(jobs.map((j) => [j.id, j.data.to])).toEqual([
      ['same', 'a'],
      ['new', 'd'],
    ]);
  });

  it('sends pushes made in the same tick in one script call, each with its own result', async () => {
    // A first call records the queue's name in the registry (a command of its own): make it before counting.
    await queue.stats();
    const send = vi.spyOn(redis, 'sendCommand');
    const results = await Promise.all([
      queue.add({ to: 'a' }, { id: 'x' }),
      queue.add({ to: 'b' }, { priority: 2 }),
      queue.add({ to: 'c' }, { id: 'x' }),
      queue.push({ to: 'd' }, { delayMs: 60_000 }),
    ]);
    const calls = send.mock.calls.length;
    send.mockRestore();
    expect(calls).toBe(1);
    expect(results.map((r) => (typeof r === 'string' ? r : r.added))).toEqual([true, true, false, expect.any(String)]);
    expect((await queue.pop(5)).map((j) => j.data.to)).toEqual(['b', 'a']);
    expect(await queue.stats()).toMatchObject({ delayed: 1, processing: 2 });
  });

  it('generates short ids that skip ids in use', async () => {
    await queue.push({ to: 'mine' }, { id: '1' });
    expect(await queue.push({ to: 'auto' })).toBe('2');
    expect(await queue.pushBulk([{ data: { to: 'x' } }, { data: { to: 'y' }, id: '4' }, { data: { to: 'z' } }])).toEqual(['3', '4', '5']);
  });

  it('generates consecutive decimal ids in a bulk across tens and hundreds, each naming its own job', async () => {
    for (let n = 1; n <= 7; n++) expect(await queue.push({ to: `single ${n}` })).toBe(String(n));
    const ids = await queue.pushBulk(Array.from({ length: 105 }, (_, n) => ({ data: { to: `bulk ${n}` } })));
    expect(ids).toEqual(Array.from({ length: 105 }, (_, n) => String(8 + n)));
    const jobs = await queue.pop(200);
    expect(jobs.map((j) => [j.id, j.data.to])).toEqual([
      ...Array.from({ length: 7 }, (_, n) => [String(n + 1), `single ${n + 1}`]),
      ...Array.from({ length: 105 }, (_, n) => [String(8 + n), `bulk ${n}`]),
    ]);
  });

  it('pushes a bulk of mixed options, own and generated ids in one call, with one result each in order', async () => {
    await queue.stats();
    const send = vi.spyOn(redis, 'sendCommand');
    const results = await queue.addBulk([
      { data: { to: 'a' } },
      { data: { to: 'b' }, id: 'own' },
      { data: { to: 'c' } },
      { data: { to: 'd' }, priority: 5 },
      { data: { to: 'e' }, priority: 5, delayMs: 60_000 },
      { data: { to: 'f' }, id: 'own', priority: 5 },
      { data: { to: 'g' }, maxRetries: 0 },
    ]);
    const calls = send.mock.calls.length;
    send.mockRestore();
    expect(calls).toBe(1);
    expect(results.map((r) => r.added)).toEqual([true, true, true, true, true, false, true]);
    expect(results[1]!.id).toBe('own');
    expect(results[5]!.id).toBe('own');
    expect(new Set(results.map((r) => r.id)).size).toBe(6);
    const jobs = await queue.pop(10);
    expect(jobs.map((j) => [j.data.to, j.priority, j.maxRetries])).toEqual([
      ['d', 5, 3],
      ['a', 0, 3],
      ['b', 0, 3],
      ['c', 0, 3],
      ['g', 0, 0],
    ]);
    expect(await queue.stats()).toMatchObject({ delayed: 1, processing: 5 });
  });

  it('acks jobs of several fetches (several lease tokens) in one call, refusing a wrong token', async () => {
    await queue.pushBulk(Array.from({ length: 4 }, (_, i) => ({ data: { to: `u${i}` } })));
    const [a0, a1] = await queue.pop(2);
    const [b0, b1] = await queue.pop(2);
    expect(a0!.leaseToken).toBe(a1!.leaseToken);
    expect(a0!.leaseToken).not.toBe(b0!.leaseToken);
    const result = await queue.ack([a0!, b0!, { ...a1!, leaseToken: b1!.leaseToken }, a1!, b1!]);
    expect(result.completed).toEqual([true, true, false, true, true]);
    expect(await queue.stats()).toMatchObject({ completed: 4, processing: 0 });
  });

  it('pushes bulks larger than one script call, in order', async () => {
    const data = Array.from({ length: 2500 }, (_, i) => ({ data: { to: `u${i}` } }));
    const ids = await queue.pushBulk(data);
    expect(new Set(ids).size).toBe(2500);
    const seen: string[] = [];
    for (;;) {
      const jobs = await queue.pop(1000);
      if (jobs.length === 0) break;
      seen.push(...jobs.map((j) => j.data.to));
    }
    expect(seen).toEqual(data.map((d) => d.data.to));
  });

  it('serves a delayed job at its ready time (server clock)', async () => {
    const pushedAt = await serverMs(redis);
    await queue.push({ to: 'later' }, { delayMs: 300 });
    expect(await queue.stats()).toMatchObject({ delayed: 1, waiting: 0 });
    const { jobs, waitMs } = await queue.fetch(1);
    expect(jobs).toEqual([]);
    expect(waitMs).toBeGreaterThan(0);
    expect(waitMs).toBeLessThanOrEqual(300);
    const [job] = await popSoon(queue);
    expect(job!.data.to).toBe('later');
    expect(await serverMs(redis)).toBeGreaterThanOrEqual(pushedAt + 300);
  });

  it('retries with backoff, then dead-letters after maxRetries + 1 runs, and retryDead revives', async () => {
    await queue.push({ to: 'x' }, { id: 'flaky', maxRetries: 2 });
    const outcomes: string[] = [];
    for (let run = 1; run <= 3; run++) {
      const failedAt = await serverMs(redis);
      const [job] = await popSoon(queue);
      if (run > 1) expect(await serverMs(redis)).toBeGreaterThanOrEqual(failedAt + 25 * 2 ** (run - 2));
      expect(job!.attempts).toBe(run);
      outcomes.push(await queue.fail(job!, new Error(`boom ${run}`)));
    }
    expect(outcomes).toEqual(['retry', 'retry', 'dead']);
    expect(await queue.stats()).toMatchObject({ dead: 1, failed: 0, waiting: 0, processing: 0 });
    const [dead] = await queue.deadJobs();
    expect(dead).toMatchObject({ id: 'flaky', data: { to: 'x' }, attempts: 3, error: 'boom 3' });
    expect(await queue.retryDead()).toBe(1);
    const [again] = await queue.pop(1);
    expect(again).toMatchObject({ id: 'flaky', attempts: 1 });
  });

  it('cuts error text to the documented length', async () => {
    await queue.push({ to: 'x' }, { maxRetries: 0 });
    const [job] = await queue.pop(1);
    expect(await queue.fail(job!, new Error('é'.repeat(5000)))).toBe('dead');
    const [dead] = await queue.deadJobs(1);
    expect(Buffer.byteLength(dead!.error)).toBeLessThanOrEqual(LIMITS.maxErrorBytes);
    expect(dead!.error.startsWith('éé')).toBe(true);
  });

  it('fences a consumer whose lease expired and was handed to another', async () => {
    await queue.push({ to: 'x' }, { id: 'slow' });
    const [first] = await queue.pop(1, { leaseMs: 50 });
    const [second] = await popSoon(queue);
    expect(second).toMatchObject({ id: 'slow', attempts: 2 });
    expect(second!.leaseToken).not.toBe(first!.leaseToken);
    expect(await queue.complete(first!)).toBe(false);
    expect(await queue.fail(first!, 'late')).toBe('lost');
    expect(await queue.extend([first!])).toEqual([false]);
    expect(await queue.release(first!)).toBe(false);
    expect(await queue.complete(second!)).toBe(true);
    expect(await queue.stats()).toMatchObject({ completed: 1, processing: 0, waiting: 0 });
  });

  it('extends leases and releases without counting the attempt', async () => {
    await queue.push({ to: 'x' });
    const [job] = await queue.pop(1, { leaseMs: 1000 });
    expect(await queue.extend([job!], 60_000)).toEqual([true]);
    expect(await queue.release(job!)).toBe(true);
    const [again] = await queue.pop(1);
    expect(again!.attempts).toBe(1);
  });

  it('acks a batch and fetches the next in one call', async () => {
    await queue.pushBulk(Array.from({ length: 5 }, (_, i) => ({ data: { to: `u${i}` } })));
    const first = await queue.pop(2);
    const result = await queue.ack([...first, first[0]!], { fetch: 2 });
    expect(result.completed).toEqual([true, true, false]);
    expect(result.jobs.map((j) => j.data.to)).toEqual(['u2', 'u3']);
    expect(result.waitMs).toBe(0);
    expect(await queue.stats()).toMatchObject({ completed: 2, processing: 2, waiting: 1 });
  });

  it('answers a repeated ack or fetch with the same request as the first run did, writing nothing', async () => {
    await queue.pushBulk(Array.from({ length: 6 }, (_, i) => ({ data: { to: `u${i}` } })));
    const first = await queue.fetch(2, { request: { lane: 'f', seq: 1 } });
    expect(await queue.fetch(2, { request: { lane: 'f', seq: 1 } })).toEqual(first);
    const acked = await queue.ack(first.jobs, { fetch: 2, request: { lane: 'a', seq: 2 } });
    expect(acked.completed).toEqual([true, true]);
    const before = await snapshot(redis, prefix);
    // A resend after a lost reply: the completions stand and the same jobs come back, none leased twice.
    expect(await queue.ack(first.jobs, { fetch: 2, request: { lane: 'a', seq: 2 } })).toEqual(acked);
    expect(await snapshot(redis, prefix)).toEqual(before);
    expect(await queue.stats()).toMatchObject({ completed: 2, processing: 2, waiting: 2 });
    // A job of the first run that is no longer leased to it is not handed out again.
    expect(await queue.release(acked.jobs[0]!)).toBe(true);
    expect((await queue.ack(first.jobs, { fetch: 2, request: { lane: 'a', seq: 2 } })).jobs).toEqual([acked.jobs[1]]);
    // Without a request a repeat is a new call.
    expect((await queue.ack(first.jobs)).completed).toEqual([false, false]);
  });

  it('keeps one memo per request lane: the next call on a lane replaces it', async () => {
    await queue.pushBulk(Array.from({ length: 6 }, (_, i) => ({ data: { to: `u${i}` } })));
    const lane = 'worker-1:0';
    let jobs = (await queue.fetch(1, { request: { lane, seq: 0 } })).jobs;
    for (let seq = 1; seq <= 5; seq++) ({ jobs } = await queue.ack(jobs, { fetch: 1, request: { lane, seq } }));
    const memos = Object.keys(await snapshot(redis, prefix)).filter((key) => key.includes(':req:'));
    expect(memos).toEqual([`${queue.keys[0]}:req:${lane}`]);
    // The lane holds the latest call: its repeat answers as it did; an older call on the lane runs anew.
    expect((await queue.ack([], { fetch: 1, request: { lane, seq: 5 } })).jobs).toEqual(jobs);
    expect((await queue.ack([], { fetch: 1, request: { lane, seq: 4 } })).jobs).toEqual([]);
    expect(await queue.stats()).toMatchObject({ completed: 5, processing: 1, waiting: 0 });
  });

  it('keeps each lane its own memo key across many lanes (more than a queue keeps key lists for)', async () => {
    await queue.pushBulk(Array.from({ length: 70 }, (_, i) => ({ data: { to: `u${i}` } })));
    const leased: Job<Email>[][] = [];
    for (let i = 0; i < 70; i++) leased.push((await queue.fetch(1, { request: { lane: `many:${i}`, seq: i } })).jobs);
    // The first lanes' lists were dropped and are built again: each repeat still finds its own memo.
    for (const i of [0, 1, 69]) expect((await queue.fetch(1, { request: { lane: `many:${i}`, seq: i } })).jobs).toEqual(leased[i]);
    const memos = Object.keys(await snapshot(redis, prefix)).filter((key) => key.includes(':req:'));
    expect(memos).toHaveLength(70);
    expect(await queue.stats()).toMatchObject({ processing: 70, waiting: 0 });
  });

  it('survives SCRIPT FLUSH in the middle of a run', async () => {
    await queue.pushBulk(Array.from({ length: 200 }, (_, i) => ({ data: { to: `u${i}` } })));
    let done = 0;
    for (let round = 0; round < 20; round++) {
      await Promise.all(masters(redis).map((node) => node.script('FLUSH')));
      const jobs = await queue.pop(10);
      const { completed } = await queue.ack(jobs);
      done += completed.filter(Boolean).length;
    }
    expect(done).toBe(200);
    expect(await queue.stats()).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0, completed: 200 });
  });

  it('refuses bad input with InvalidArgumentError before any round trip', async () => {
    const send = vi.spyOn(redis, 'sendCommand');
    const job = { id: 'j', data: { to: 'x' }, priority: 0, attempts: 1, maxRetries: 0, leaseToken: '1' };
    const cases: [() => Promise<unknown>, string][] = [
      [() => queue.push({ to: 'x' }, { id: '' }), 'options.id'],
      [() => queue.push({ to: 'x' }, { priority: 1.5 }), 'options.priority'],
      [() => queue.push({ to: 'x' }, { priority: 1001 }), 'options.priority'],
      [() => queue.push({ to: 'x' }, { priority: 'high' as unknown as number }), 'options.priority'],
      [() => queue.push({ to: 'x' }, { maxRetries: -1 }), 'options.maxRetries'],
      [() => queue.push({ to: 'x' }, { maxRetries: Number.NaN }), 'options.maxRetries'],
      [() => queue.push({ to: 'x' }, { delayMs: -1 }), 'options.delayMs'],
      [() => queue.push({ to: 'x' }, { delayMs: '5' as unknown as number }), 'options.delayMs'],
      [() => queue.push({ to: 'x'.repeat(LIMITS.maxDataBytes) }), 'data'],
      [() => queue.push(undefined as unknown as Email), 'data'],
      [() => queue.pushBulk([{ data: { to: 'a' } }, { data: { to: 'b' }, priority: -2000 }]), 'jobs[1].priority'],
      [() => queue.pop(0), 'count'],
      [() => queue.pop(1001), 'count'],
      [() => queue.pop(1, { leaseMs: 0 }), 'options.leaseMs'],
      [() => queue.fetch(1, { request: { lane: '', seq: 0 } }), 'options.request.lane'],
      [() => queue.ack([], { request: { lane: 'é'.repeat(LIMITS.maxIdBytes), seq: 0 } }), 'options.request.lane'],
      [() => queue.ack([], { request: { lane: 'l', seq: -1 } }), 'options.request.seq'],
      [() => queue.fetch(1, { request: { lane: 'l', seq: 1.5 } }), 'options.request.seq'],
      [() => queue.complete({ ...job, id: '' }), 'job.id'],
      [() => queue.complete({ ...job, leaseToken: '' }), 'job.leaseToken'],
      [() => queue.fail(null as unknown as Job<Email>, 'x'), 'job'],
      [() => queue.extend([]), 'jobs.length'],
      [() => queue.deadJobs(0), 'limit'],
    ];
    for (const [run, argument] of cases) {
      const err = await run().catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect(err).toMatchObject({ argument });
    }
    expect(() => new JobQueue(redis, '')).toThrow(InvalidArgumentError);
    expect(() => new JobQueue(redis, 'q', { backoff: { baseMs: 100, maxMs: 10 } })).toThrow(InvalidArgumentError);
    expect(() => new JobQueue(redis, 'q', { maxRetries: 1001 })).toThrow(InvalidArgumentError);
    expect(send).not.toHaveBeenCalled();
    send.mockRestore();
    // Completing an unknown job is a result, not an error.
    expect(await queue.complete(job)).toBe(false);
    expect(await queue.fail(job, 'x')).toBe('lost');
    expect(new InvalidArgumentError('a', 'b')).toBeInstanceOf(CyRedisError);
  });
});

describe('JobQueue memory (single node)', () => {
  it('keeps a waiting job within its payload + 150 bytes', async () => {
    const redis = connect('single') as Redis;
    const prefix = randomPrefix();
    try {
      const queue = new JobQueue<{ body: string }>(redis, 'mem', { prefix });
      const body = 'x'.repeat(100);
      const payload = JSON.stringify({ body }).length;
      const n = 2000;
      await queue.pushBulk(Array.from({ length: n }, () => ({ data: { body } })));
      let bytes = 0;
      for (const key of Object.keys(await snapshot(redis, prefix))) bytes += (await redis.memory('USAGE', key, 'SAMPLES', 0)) ?? 0;
      const perJob = bytes / n;
      console.log(`memory: ${perJob.toFixed(1)} bytes per waiting job with a ${payload}-byte payload`);
      expect(perJob).toBeLessThanOrEqual(payload + 150);
    } finally {
      await deleteByPrefix(redis, prefix);
      await redis.quit();
    }
  });
});
