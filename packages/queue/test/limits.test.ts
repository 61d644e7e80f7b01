import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { defaultCodec, InvalidArgumentError, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { clusterSeeds, deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JOB_QUEUE_LUA, JobQueue, RateLimitedError, Worker, type Job, type JobQueueOptions } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { snapshot } from './helpers.js';

const LIMIT_WORKER = fileURLToPath(new URL('./fixtures/limit-worker.mjs', import.meta.url));

/** Most handlers running at once, from start and end times (an end at the same ms as a start comes first). */
function mostRunning(events: { at: number; delta: number }[]): number {
  const sorted = [...events].sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let most = 0;
  for (const e of sorted) {
    running += e.delta;
    most = Math.max(most, running);
  }
  return most;
}

/** Most start times in any half-open window [t, t + windowMs). */
function mostInWindow(starts: number[], windowMs: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

// Issue 16: queue-wide rate limit and concurrency, enforced by the script that leases, across processes.
describe.each(topologies)('queue-wide limits on %s', (topology) => {
  const redis = suiteClient(topology);
  const target = () => (topology === 'cluster' ? JSON.stringify(clusterSeeds()) : redisUrl());
  const children = new Set<ChildProcess>();
  const workers: Worker<unknown, unknown>[] = [];
  let prefix: string;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.close({ timeoutMs: 0 })));
    for (const child of children) child.kill('SIGKILL');
    await waitFor(() => (children.size === 0 ? true : undefined));
    await deleteByPrefix(redis, prefix);
  });

  /** Starts a worker process; its lines are collected. */
  function startProcess(options: JobQueueOptions<number>, concurrency: number, handlerMs: number): string[] {
    const child = spawn(process.execPath, [LIMIT_WORKER, target(), prefix, 'limited', JSON.stringify(options), String(concurrency), String(handlerMs)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
    return lines;
  }

  async function runProcesses(options: JobQueueOptions<number>, jobs: number, handlerMs: number): Promise<string[]> {
    const queue = new JobQueue<number>(redis, 'limited', { prefix, ...options });
    const outputs = Array.from({ length: 4 }, () => startProcess(options, 10, handlerMs));
    await waitFor(() => (outputs.every((lines) => lines.includes('ready')) ? true : undefined), { timeoutMs: 30_000 });
    await queue.pushBulk(Array.from({ length: jobs }, (_, n) => ({ data: n })));
    await waitFor(async () => ((await queue.stats()).completed === jobs ? true : undefined), { timeoutMs: 60_000 });
    return outputs.flat();
  }

  it('globalConcurrency 5 across 4 worker processes of concurrency 10: never more than 5 handlers at once', async () => {
    const lines = await runProcesses({ globalConcurrency: 5 }, 120, 20);
    const events = lines.filter((l) => l !== 'ready').map((l) => ({ at: Number(l.split(' ')[1]), delta: l.startsWith('start') ? 1 : -1 }));
    expect(events.filter((e) => e.delta === 1)).toHaveLength(120);
    expect(mostRunning(events)).toBeLessThanOrEqual(5);
    // The limit is used, not just respected.
    expect(mostRunning(events)).toBeGreaterThan(1);
  });

  it('rateLimit 50/s across 4 worker processes: never more than 50 handler starts in any 1 s', async () => {
    const lines = await runProcesses({ rateLimit: { limit: 50, windowMs: 1000 } }, 120, 1);
    const starts = lines.filter((l) => l.startsWith('start')).map((l) => Number(l.split(' ')[1]));
    expect(starts).toHaveLength(120);
    expect(mostInWindow(starts, 1000)).toBeLessThanOrEqual(50);
    // 120 starts at 50/s cannot take less than 119 spacings of 20 ms.
    expect(Math.max(...starts) - Math.min(...starts)).toBeGreaterThanOrEqual(119 * 20 - 50);
  });

  it('a RateLimitedError gives the job back uncounted and stops every worker leasing for its delay', async () => {
    const queue = new JobQueue<number>(redis, 'limited', { prefix });
    const starts: { at: number; n: number; attempts: number }[] = [];
    let thrownAt = 0;
    const handler = (job: Job<number>) => {
      starts.push({ at: Date.now(), n: job.data, attempts: job.attempts });
      if (job.data === 0 && thrownAt === 0) {
        thrownAt = Date.now();
        throw new RateLimitedError(400);
      }
      return undefined;
    };
    const events = new JobQueue<number>(redis, 'limited', { prefix });
    workers.push(new Worker(queue, handler, { concurrency: 1 }) as Worker<unknown, unknown>);
    workers.push(new Worker(events, handler, { concurrency: 1 }) as Worker<unknown, unknown>);
    await queue.push(0);
    await waitFor(() => (thrownAt > 0 ? true : undefined), { timeoutMs: 20_000 });
    await queue.pushBulk([{ data: 1 }, { data: 2 }]);
    await waitFor(async () => ((await queue.stats()).completed === 3 ? true : undefined), { timeoutMs: 20_000 });
    const after = starts.filter((s) => s.at > thrownAt || s.n !== 0 || s.attempts !== 1);
    expect(after).toHaveLength(3);
    for (const s of after) expect(s.at).toBeGreaterThanOrEqual(thrownAt + 400);
    // The job that was rate limited ran again as its first attempt.
    expect(after.find((s) => s.n === 0)!.attempts).toBe(1);
  });

  it('a worker held back by the concurrency limit blocks instead of polling, and wakes when a slot frees', async () => {
    const first = new JobQueue<number>(redis, 'limited', { prefix, globalConcurrency: 1 });
    const second = new JobQueue<number>(redis, 'limited', { prefix, globalConcurrency: 1 });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const done: number[] = [];
    await first.pushBulk([{ data: 1 }, { data: 2 }]);
    workers.push(new Worker(first, async (job) => { await gate; done.push(job.data); }, { concurrency: 1 }) as Worker<unknown, unknown>);
    await waitFor(async () => ((await first.stats()).processing === 1 ? true : undefined), { timeoutMs: 20_000 });
    const fetches = vi.spyOn(second, 'fetch');
    workers.push(new Worker(second, (job) => { done.push(job.data); }, { concurrency: 5, blockMs: 5000 }) as Worker<unknown, unknown>);
    const heldFrom = Date.now();
    await waitFor(() => (Date.now() - heldFrom >= 1000 ? true : undefined), { timeoutMs: 5000 });
    // One fetch that found the slot taken, then a blocking wait (no poll).
    expect(fetches.mock.calls.length).toBeLessThanOrEqual(2);
    expect(done).toEqual([]);
    release();
    await waitFor(() => (done.length === 2 ? true : undefined), { timeoutMs: 20_000 });
    expect(await first.stats()).toMatchObject({ waiting: 0, processing: 0, completed: 2 });
  });

  it('a worker of a paused queue with waiting jobs blocks instead of polling, and runs them once resumed', async () => {
    const queue = new JobQueue<number>(redis, 'limited', { prefix });
    await queue.pause();
    await queue.pushBulk([{ data: 1 }, { data: 2 }]);
    const done: number[] = [];
    const fetches = vi.spyOn(queue, 'fetch');
    workers.push(new Worker(queue, (job) => { done.push(job.data); }, { concurrency: 2, blockMs: 5000 }) as Worker<unknown, unknown>);
    const from = Date.now();
    await waitFor(() => (Date.now() - from >= 1000 ? true : undefined), { timeoutMs: 5000 });
    // The push's wake-up, then a blocking wait: no fetch loop while paused.
    expect(fetches.mock.calls.length).toBeLessThanOrEqual(2);
    expect(done).toEqual([]);
    await queue.resume();
    await waitFor(() => (done.length === 2 ? true : undefined), { timeoutMs: 20_000 });
  });

  it('refuses bad limits by name; the raw script answers ERR and writes nothing', async () => {
    const bad: [JobQueueOptions, string][] = [
      [{ globalConcurrency: 0 }, 'options.globalConcurrency'],
      [{ globalConcurrency: 1.5 }, 'options.globalConcurrency'],
      [{ rateLimit: { limit: 0, windowMs: 1000 } }, 'options.rateLimit.limit'],
      [{ rateLimit: { limit: 10, windowMs: 0 } }, 'options.rateLimit.windowMs'],
      [{ rateLimit: { limit: 10 } } as never, 'options.rateLimit.windowMs'],
      [{ rateLimit: { limit: 10, windowMs: 10, burst: 1 } } as never, 'options.rateLimit'],
    ];
    for (const [options, name] of bad) {
      expect(() => new JobQueue(redis, 'limited', { prefix, ...options })).toThrow(InvalidArgumentError);
      expect(() => new JobQueue(redis, 'limited', { prefix, ...options })).toThrow(name);
    }
    expect(() => new RateLimitedError(0)).toThrow(InvalidArgumentError);
    expect(() => new RateLimitedError(Number.NaN)).toThrow(InvalidArgumentError);
    expect(new RateLimitedError(1.2).delayMs).toBe(2);
    const queue = new JobQueue<number>(redis, 'limited', { prefix });
    await queue.push(1);
    const [job] = await queue.pop(1);
    await expect(queue.release(job!, { pauseMs: 0 })).rejects.toThrow('options.pauseMs');

    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const run = (args: ScriptArg[]) => scripts.executeScript(script, { keys: queue.keys, args });
    const before = await snapshot(redis, prefix);
    const calls: ScriptArg[][] = [
      ['POP', '*1,100,0,-1,0,-1,5', 1, 1000, '1'],
      ['POP', '*1,100,0,-1,0,-1,5,1000', 1, 1000, '1'],
      ['POP', '*1,100,0,-1,0,-1,5,0,0', 1, 1000, '1'],
      ['POP', '*1,100,0,-1,0,-1,2000000,1000,0', 1, 1000, '1'],
      ['POP', '*1,100,0,-1,0,-1,0,0,-1', 1, 1000, '1'],
      ['RELEASE', '*', job!.id, job!.leaseToken, 0],
      ['RELEASE', '*', job!.id, job!.leaseToken, 'soon'],
      ['RELEASE', '*', job!.id, job!.leaseToken, 10, 'extra'],
    ];
    for (const args of calls) await expect(run(args), JSON.stringify(args)).rejects.toThrow(/ERR job_queue: /);
    expect(await snapshot(redis, prefix)).toEqual(before);
  });

  it('the contract: a fetch under the limits leases what they allow and says how long to wait', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const seed = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{c}:${k}`);
    const keys = protocol.declaredKeys(seed).keys;
    const policy = { events: true, eventsMaxLen: 100, completed: { count: 10, ageMs: -1 }, dead: { count: 10, ageMs: -1 } };
    const run = (args: ScriptArg[], clock: string) => scripts.executeScript(script, { keys, args: protocol.withPolicy(args, clock) });
    const text = (n: number) => ({ id: undefined, text: defaultCodec.encode(n), priority: 0, policy: '0', delaySeconds: 0 });
    await run(protocol.encodePushMany([1, 2, 3, 4].map(text)), protocol.policyClock(policy));

    const twoAtOnce = protocol.policyClock({ ...policy, globalConcurrency: 2 });
    // A full batch with a slot left: ask again (0); the batch that takes the last slot: wait until woken (-1).
    const one = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, undefined), twoAtOnce), defaultCodec);
    expect(one).toMatchObject({ jobs: [expect.objectContaining({ data: 1 })], waitMs: 0 });
    const two = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined), twoAtOnce), defaultCodec);
    expect(two).toMatchObject({ jobs: [expect.objectContaining({ data: 2 })], waitMs: -1 });
    const first = { jobs: [...one.jobs, ...two.jobs] };
    const held = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined), twoAtOnce), defaultCodec);
    expect(held).toMatchObject({ jobs: [], waitMs: -1 });
    // An ACK's own completions free their slots for its fetch.
    const acked = protocol.decodeAck(await run(protocol.encodeAck(first.jobs, 5, 30_000, undefined), twoAtOnce), defaultCodec);
    expect(acked.completed).toEqual([true, true]);
    expect(acked.jobs.map((j) => j.data)).toEqual([3, 4]);

    await run(protocol.encodePushMany([5, 6].map(text)), protocol.policyClock(policy));
    const slow = protocol.policyClock({ ...policy, rateLimit: { limit: 1, windowMs: 60_000 } });
    const single = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined), slow), defaultCodec);
    expect(single.jobs.map((j) => j.data)).toEqual([5]);
    expect(single.waitMs).toBeGreaterThan(59_000);
    const none = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined), slow), defaultCodec);
    expect(none.jobs).toEqual([]);
    expect(none.waitMs).toBeGreaterThan(59_000);

    // RELEASE with a pause holds back every fetch, limits or not.
    expect(protocol.decodeHeld(await run(protocol.encodeRelease(acked.jobs[0]!, 60_000), protocol.policyClock(policy)))).toBe(true);
    const paused = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined), protocol.policyClock(policy)), defaultCodec);
    expect(paused.jobs).toEqual([]);
    expect(paused.waitMs).toBeGreaterThan(59_000);
  });
});
