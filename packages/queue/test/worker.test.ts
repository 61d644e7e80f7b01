import { randomPrefix, sleep, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobQueue, JobTimeoutError, ScriptError, Worker, WorkerClosedError, type Job } from '../src/index.js';

interface Task {
  n: number;
}

describe.each(topologies)('Worker on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<Task>;
  const workers: Worker<Task>[] = [];

  function worker(handler: (job: Job<Task>, signal: AbortSignal) => unknown, options = {}): Worker<Task> {
    const w = new Worker(queue, handler, options);
    workers.push(w);
    return w;
  }

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<Task>(redis, 'tasks', { prefix, backoff: { baseMs: 10, maxMs: 20 } });
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.close({ timeoutMs: 0 })));
    await deleteByPrefix(redis, prefix);
  });

  it('runs every job once with at most `concurrency` at a time, two workers sharing a queue', async () => {
    await queue.pushBulk(Array.from({ length: 300 }, (_, n) => ({ data: { n } })));
    let active = 0;
    let peak = 0;
    const seen: number[] = [];
    const handler = async (job: Job<Task>) => {
      active++;
      peak = Math.max(peak, active);
      await sleep(job.data.n % 3);
      active--;
    };
    const a = worker(handler, { concurrency: 8 });
    const b = worker(handler, { concurrency: 8 });
    for (const w of [a, b]) w.on('completed', (job) => seen.push(job.data.n));
    await waitFor(() => seen.length === 300, { timeoutMs: 30_000 });
    expect(new Set(seen).size).toBe(300);
    expect(peak).toBeLessThanOrEqual(16);
    expect(await queue.stats()).toMatchObject({ completed: 300, waiting: 0, processing: 0 });
  });

  it('emits failed while retries remain, then dead', async () => {
    await queue.push({ n: 1 }, { maxRetries: 2 });
    const events: string[] = [];
    const w = worker(() => {
      throw new Error('nope');
    });
    w.on('failed', (job, err) => events.push(`failed ${job.attempts} ${(err as Error).message}`));
    w.on('dead', (job) => events.push(`dead ${job.attempts}`));
    await waitFor(() => events.length === 3, { timeoutMs: 20_000 });
    expect(events).toEqual(['failed 1 nope', 'failed 2 nope', 'dead 3']);
    expect((await queue.deadJobs())[0]).toMatchObject({ attempts: 3, error: 'nope' });
  });

  it('renews the lease of a job that runs longer than the lease', async () => {
    await queue.push({ n: 1 });
    const lost = vi.fn();
    const done: Job<Task>[] = [];
    const w = worker(() => sleep(400), { leaseMs: 90 });
    w.on('lost', lost);
    w.on('completed', (job) => done.push(job));
    await waitFor(() => done.length === 1, { timeoutMs: 20_000 });
    expect(done[0]!.attempts).toBe(1);
    expect(lost).not.toHaveBeenCalled();
    expect(await queue.stats()).toMatchObject({ completed: 1, processing: 0, waiting: 0 });
  });

  it('fences a worker slower than its lease: its late completion is refused', async () => {
    await queue.push({ n: 1 }, { id: 'slow' });
    const thief = new JobQueue<Task>(redis, 'tasks', { prefix });
    let stolen: Job<Task>[] = [];
    let aborted: unknown;
    const w = worker(
      async (_job, signal) => {
        // Blocks the event loop past the lease, so no renewal can run; the next pop reclaims the job.
        const until = Date.now() + 250;
        while (Date.now() < until);
        stolen = await thief.pop(1, { leaseMs: 30_000 });
        signal.addEventListener('abort', () => {
          aborted = signal.reason as unknown;
        });
      },
      { leaseMs: 60 },
    );
    const lost = vi.fn();
    const completed = vi.fn();
    w.on('lost', lost);
    w.on('completed', completed);
    await waitFor(() => lost.mock.calls.length > 0, { timeoutMs: 20_000 });
    expect(stolen.map((j) => [j.id, j.attempts])).toEqual([['slow', 2]]);
    expect(completed).not.toHaveBeenCalled();
    expect(aborted === undefined || aborted instanceof Error).toBe(true);
    expect(await thief.complete(stolen[0]!)).toBe(true);
    expect(await queue.stats()).toMatchObject({ completed: 1, processing: 0 });
  });

  it("takes a handler's answer however it comes: at once, as a promise or a foreign thenable; a throw, a rejection or a throwing then fails the job", async () => {
    const kept = new JobQueue<Task, string>(redis, 'answers', { prefix, backoff: { baseMs: 10, maxMs: 20 } });
    const ids = await kept.pushBulk(Array.from({ length: 6 }, (_, n) => ({ data: { n }, maxRetries: 0 })));
    const answers: ((n: number) => unknown)[] = [
      (n) => `sync ${n}`,
      (n) => Promise.resolve(`async ${n}`),
      // Not a Promise: `await` would adopt it, and so does the worker.
      (n) => ({ then: (resolve: (v: string) => void) => resolve(`thenable ${n}`) }),
      () => {
        throw new Error('thrown');
      },
      () => Promise.reject(new Error('rejected')),
      () => ({
        get then(): never {
          throw new Error('then threw');
        },
      }),
    ];
    const w = new Worker(kept, (job) => answers[job.data.n]!(job.data.n) as string, { concurrency: 6 });
    workers.push(w as unknown as Worker<Task>);
    const done = new Map<number, string>();
    w.on('completed', (job) => done.set(job.data.n, 'completed'));
    w.on('dead', (job, err) => done.set(job.data.n, (err as Error).message));
    await waitFor(() => done.size === 6, { timeoutMs: 20_000 });
    expect([...done].sort((x, y) => x[0] - y[0]).map(([, outcome]) => outcome)).toEqual(['completed', 'completed', 'completed', 'thrown', 'rejected', 'then threw']);
    const values = await Promise.all(ids.slice(0, 3).map(async (id) => (await kept.getJob(id))?.returnValue));
    expect(values).toEqual(['sync 0', 'async 1', 'thenable 2']);
  });

  it('aborts the signal and fails the job after timeoutMs', async () => {
    await queue.push({ n: 1 }, { maxRetries: 0 });
    let reason: unknown;
    const w = worker(
      (_job, signal) =>
        new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve();
          }),
        ),
      { timeoutMs: 100 },
    );
    const dead = vi.fn();
    w.on('dead', dead);
    await waitFor(() => dead.mock.calls.length === 1, { timeoutMs: 20_000 });
    expect(reason).toBeInstanceOf(JobTimeoutError);
    expect((await queue.deadJobs())[0]!.error).toMatch(/timed out/);
  });

  it('gives every run a signal of its own, unaborted at its start, also after other runs were aborted', async () => {
    // Signals are made ahead of time while calls are in flight: none may be shared or handed out aborted.
    await queue.pushBulk(Array.from({ length: 60 }, (_, n) => ({ data: { n }, maxRetries: 0 })));
    const signals: AbortSignal[] = [];
    const abortedAtStart: number[] = [];
    const w = worker(
      (job, signal) => {
        signals.push(signal);
        if (signal.aborted) abortedAtStart.push(job.data.n);
        // Every third job outlives the timeout, so its signal is aborted while others are leased and started.
        return job.data.n % 3 === 0 ? new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve())) : undefined;
      },
      { concurrency: 8, timeoutMs: 50 },
    );
    let finished = 0;
    for (const event of ['completed', 'dead'] as const) w.on(event, () => finished++);
    await waitFor(() => finished === 60, { timeoutMs: 30_000 });
    expect(signals).toHaveLength(60);
    expect(new Set(signals).size).toBe(60);
    expect(abortedAtStart).toEqual([]);
    expect(signals.filter((s) => s.aborted)).toHaveLength(20);
  });

  it('blocks while idle instead of polling, and wakes for a push and for a delayed job at its time', async () => {
    const done: number[] = [];
    const fetch = vi.spyOn(queue, 'fetch');
    const w = worker(() => undefined, { blockMs: 120_000 });
    w.on('completed', (job) => done.push(job.data.n));
    await waitFor(() => fetch.mock.calls.length >= 1);
    await sleep(500);
    // One fetch found nothing; the worker then waits on BLPOP (a second fetch may race the first block).
    expect(fetch.mock.calls.length).toBeLessThanOrEqual(2);
    await queue.push({ n: 1 });
    await waitFor(() => done.length === 1, { timeoutMs: 20_000 });
    // Far sooner than blockMs: the delayed job is served at its ready time, not at the next wake-up.
    await queue.push({ n: 2 }, { delayMs: 300 });
    await waitFor(() => done.length === 2, { timeoutMs: 20_000 });
    expect(done).toEqual([1, 2]);
  });

  it('reports a throwing listener as an error event, never as an unhandled rejection', async () => {
    await queue.pushBulk([{ data: { n: 1 } }, { data: { n: 2 } }]);
    const errors: unknown[] = [];
    const w = worker(() => undefined);
    w.on('completed', () => {
      throw new Error('listener bug');
    });
    w.on('error', (err) => errors.push(err));
    await waitFor(() => errors.length === 2);
    expect((errors[0] as Error).message).toBe('listener bug');
    expect(await queue.stats()).toMatchObject({ completed: 2 });
  });

  it('surfaces a call that fails the same way twice once, skips it, and runs every job pushed afterwards', async () => {
    const poison = new ScriptError('cyredis:queue:job_queue', 'ERR poisoned batch');
    const realAck = queue.ack.bind(queue);
    const realFetch = queue.fetch.bind(queue);
    // The completion of any first attempt fails for good, as a poisoned batch would; the first fetch fails twice.
    let refusedAcks = 0;
    vi.spyOn(queue, 'ack').mockImplementation((jobs, options) => {
      if (!jobs.some((j) => (j as Job<number>).attempts === 1)) return realAck(jobs, options);
      refusedAcks++;
      return Promise.reject(poison);
    });
    let fetches = 0;
    vi.spyOn(queue, 'fetch').mockImplementation((count, options) =>
      ++fetches <= 2 ? Promise.reject(new TypeError('unreadable reply')) : realFetch(count, options),
    );
    await queue.pushBulk([{ data: { n: 1 } }, { data: { n: 2 } }]);
    const errors: unknown[] = [];
    const lost: number[] = [];
    const done: number[] = [];
    const w = worker(() => undefined, { concurrency: 2, leaseMs: 200 });
    w.on('error', (err) => errors.push(err));
    w.on('lost', (job) => lost.push(job.data.n));
    w.on('completed', (job) => done.push(job.data.n));
    // Skipped, the first completions count as lost; the jobs come back after their lease and complete then.
    await waitFor(() => done.length === 2, { timeoutMs: 20_000 });
    expect(lost.sort()).toEqual([1, 2]);
    await queue.pushBulk([3, 4, 5].map((n) => ({ data: { n }, maxRetries: 5 })));
    // Jobs pushed afterwards run; their first completions are poisoned too, so they come back once each.
    await waitFor(() => done.length === 5, { timeoutMs: 20_000 });
    expect(done.sort()).toEqual([1, 2, 3, 4, 5]);
    // Each poisoned call was tried exactly twice, never replayed on; each was reported at most once.
    expect(fetches).toBeGreaterThan(2);
    expect(refusedAcks % 2).toBe(0);
    expect(errors[0]).toBeInstanceOf(TypeError);
    const refused = errors.slice(1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeLessThanOrEqual(refusedAcks / 2);
    for (const err of refused) expect(err).toBe(poison);
  });

  it('close() lets running jobs finish', async () => {
    await queue.push({ n: 1 });
    let started = false;
    const w = worker(async () => {
      started = true;
      await sleep(200);
    });
    const completed = vi.fn();
    w.on('completed', completed);
    await waitFor(() => started);
    await w.close();
    expect(completed).toHaveBeenCalledTimes(1);
    expect(await queue.stats()).toMatchObject({ completed: 1, processing: 0, waiting: 0 });
  });

  it('close() releases what it cannot finish, without counting the attempt', async () => {
    await queue.push({ n: 1 });
    let started = false;
    let reason: unknown;
    const w = worker(
      (_job, signal) =>
        new Promise<void>((resolve) => {
          started = true;
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve();
          });
        }),
    );
    await waitFor(() => started);
    await w.close({ timeoutMs: 50 });
    expect(reason).toBeInstanceOf(WorkerClosedError);
    expect(await queue.stats()).toMatchObject({ waiting: 1, processing: 0 });
    const [job] = await queue.pop(1);
    expect(job!.attempts).toBe(1);
  });
});
