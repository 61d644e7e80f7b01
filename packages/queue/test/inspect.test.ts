import { InvalidArgumentError } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  JobFailedError,
  JobNotFoundError,
  JobQueue,
  LIMITS,
  QueueEvents,
  RedisTimeoutError,
  Worker,
  type JobQueueOptions,
  type QueueEventMap,
} from '../src/index.js';
import { snapshot } from './helpers.js';

interface Mail {
  to: string;
}

// Issue 15: lookup, states, progress, logs, return values, retention, pause, events, waiting for results.
describe.each(topologies)('queue inspection and control on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  const open = (options: JobQueueOptions<Mail> = {}) => new JobQueue<Mail, { sent: number }>(redis, 'mail', { prefix, ...options });
  const closers: (() => Promise<unknown>)[] = [];

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await deleteByPrefix(redis, prefix);
  });

  /** A QueueEvents from the start of the stream, closed after the test, recording every event. */
  function record(): { events: QueueEvents<{ sent: number }>; seen: string[] } {
    const events = new QueueEvents<{ sent: number }>(redis, 'mail', { prefix, lastEventId: '0', blockMs: 200 });
    closers.push(() => events.close());
    const seen: string[] = [];
    for (const name of ['added', 'delayed', 'waiting', 'active', 'progress', 'completed', 'retrying', 'dead', 'removed', 'stalled'] as const) {
      events.on(name, (e: { jobId: string }) => seen.push(`${name}:${e.jobId}`));
    }
    for (const name of ['paused', 'resumed', 'drained'] as const) events.on(name, () => seen.push(name));
    return { events, seen };
  }

  it('getJob reports every state with its times, progress, return value and reason', async () => {
    const queue = open({ backoff: { baseMs: 60_000 } });
    const before = Date.now();
    await queue.push({ to: 'a' }, { id: 'a', priority: 4 });
    await queue.push({ to: 'b' }, { id: 'b', delayMs: 60_000 });
    await queue.push({ to: 'c' }, { id: 'c', maxRetries: 0 });
    expect(await queue.getJob('a')).toMatchObject({
      id: 'a', state: 'waiting', data: { to: 'a' }, priority: 4, attempts: 0, maxRetries: 3, progress: 0,
      returnValue: undefined, failedReason: undefined, processedAt: undefined, finishedAt: undefined, readyAt: undefined,
    });
    const created = (await queue.getJob('a'))!.createdAt!;
    expect(created).toBeGreaterThanOrEqual(before - 5000);
    expect((await queue.getJob('b'))!).toMatchObject({ state: 'delayed', readyAt: (await queue.getJob('b'))!.createdAt! + 60_000 });
    const [a, c] = await queue.pop(2);
    expect(await a!.updateProgress({ step: 'render' })).toBe(true);
    expect(await queue.getJob('a')).toMatchObject({ state: 'active', attempts: 1, progress: { step: 'render' }, processedAt: expect.any(Number) });
    expect(await queue.complete(a!, { sent: 1 })).toBe(true);
    const done = (await queue.getJob('a'))!;
    expect(done).toMatchObject({ state: 'completed', returnValue: { sent: 1 }, attempts: 1, progress: { step: 'render' } });
    expect(done.finishedAt).toBeGreaterThanOrEqual(done.processedAt!);
    expect(await queue.fail(c!, new Error('bounced'))).toBe('dead');
    expect(await queue.getJob('c')).toMatchObject({ state: 'dead', failedReason: 'bounced', attempts: 1, finishedAt: expect.any(Number) });
    await queue.push({ to: 'd' }, { id: 'd' });
    const [d] = await queue.pop(1);
    expect(await queue.fail(d!, new Error('try later'))).toBe('retry');
    // Waiting for its retry is `delayed`, with the reason and the retry time.
    expect(await queue.getJob('d')).toMatchObject({ state: 'delayed', failedReason: 'try later', readyAt: expect.any(Number) });
    expect(await queue.getJob('nobody')).toBeUndefined();
  });

  it('getJobs pages each state in its documented order', async () => {
    const queue = open();
    await queue.pushBulk([
      { data: { to: 'low' }, id: 'low', priority: -1 },
      { data: { to: 'w1' }, id: 'w1' },
      { data: { to: 'high' }, id: 'high', priority: 9 },
      { data: { to: 'w2' }, id: 'w2' },
      { data: { to: 'late' }, id: 'late', delayMs: 120_000 },
      { data: { to: 'soon' }, id: 'soon', delayMs: 60_000 },
    ]);
    const ids = async (state: Parameters<typeof queue.getJobs>[0], offset = 0, limit = 50) => (await queue.getJobs(state, { offset, limit })).map((j) => j.id);
    expect(await ids('waiting')).toEqual(['high', 'w1', 'w2', 'low']);
    expect(await ids('waiting', 1, 2)).toEqual(['w1', 'w2']);
    expect(await ids('waiting', 3, 5)).toEqual(['low']);
    expect(await ids('delayed')).toEqual(['soon', 'late']);
    const [high, w1] = await queue.pop(2);
    expect(await ids('active')).toEqual(['high', 'w1']);
    await queue.complete(high!);
    await queue.complete(w1!);
    expect(await ids('completed')).toEqual(['w1', 'high']);
    expect(await ids('completed', 1, 1)).toEqual(['high']);
    expect(await ids('dead')).toEqual([]);
  });

  it('keeps completed and dead jobs by count and age, enforced by the finishing calls', async () => {
    const queue = open({ removeOnComplete: { count: 2 }, removeOnDead: true });
    await queue.pushBulk(['a', 'b', 'c', 'd'].map((id) => ({ data: { to: id }, id, maxRetries: 0 })));
    const jobs = await queue.pop(4);
    for (const job of jobs.slice(0, 3)) await queue.complete(job);
    expect((await queue.getJobs('completed')).map((j) => j.id)).toEqual(['c', 'b']);
    expect(await queue.getJob('a')).toBeUndefined();
    await queue.fail(jobs[3]!, 'x');
    expect(await queue.getJob('d')).toBeUndefined();
    expect(await queue.stats()).toMatchObject({ completed: 3, dead: 0 });

    const none = open({ removeOnComplete: true });
    await none.push({ to: 'e' }, { id: 'e' });
    await none.complete((await none.pop(1))[0]!);
    expect(await none.getJob('e')).toBeUndefined();

    const aged = open({ removeOnComplete: { ageMs: 0 } });
    await aged.push({ to: 'f' }, { id: 'f' });
    await aged.complete((await aged.pop(1))[0]!);
    expect(await aged.getJob('f')).toBeUndefined();
  });

  it('trims a count of 32 or more in batches: at most count/16 more between trims, exact at each trim', async () => {
    // count 160: a batch is 10 completions, so `completed` holds 160 to 169 once full.
    const queue = open({ removeOnComplete: { count: 160 } });
    // Completed jobs are ordered by completion time in ms, and completions in the same ms by id: ids that sort
    // in completion order keep "newest first" and "oldest trimmed first" exact however fast the loop runs.
    const ids = Array.from({ length: 230 }, (_, i) => `j${String(i).padStart(3, '0')}`);
    await queue.pushBulk(ids.map((id) => ({ data: { to: id }, id })));
    const jobs = await queue.pop(230);
    expect(jobs.map((j) => j.id)).toEqual(ids);
    const kept = async () => (await queue.getJobs('completed', { limit: 1000 })).map((j) => j.id);
    for (let i = 0; i < 200; i++) {
      await queue.complete(jobs[i]!);
      const now = await kept();
      const done = i + 1;
      // Newest first; the call that completes a batch's 10th trims to the count, the others leave it.
      expect(now[0]).toBe(ids[i]);
      expect(now.length).toBe(done <= 160 ? done : 160 + (done % 10));
      if (done % 10 === 0) expect(now).toEqual(ids.slice(Math.max(0, done - 160), done).reverse());
    }
    expect(await queue.getJob(ids[39]!)).toBeUndefined();
    expect(await queue.getJob(ids[40]!)).toMatchObject({ state: 'completed' });
    // A call completing a whole batch or more trims at once, whatever the counter was.
    await queue.complete(jobs[200]!);
    const acked = await queue.ack(jobs.slice(201, 230));
    expect(acked.completed).toEqual(Array(29).fill(true));
    expect(await kept()).toEqual(ids.slice(70, 230).reverse());
    expect((await queue.stats()).completed).toBe(230);
    for (const id of [ids[0]!, ids[69]!]) expect(await queue.getJob(id)).toBeUndefined();
  });

  it('remove, promote and retryJob act on one job and answer false when they cannot', async () => {
    const queue = open();
    await queue.pushBulk([
      { data: { to: 'a' }, id: 'a' },
      { data: { to: 'b' }, id: 'b' },
      { data: { to: 'later' }, id: 'later', delayMs: 3_600_000 },
    ]);
    expect(await queue.remove('b')).toBe(true);
    expect(await queue.remove('b')).toBe(false);
    expect(await queue.promote('later')).toBe(true);
    expect(await queue.promote('a')).toBe(false);
    expect((await queue.getJobs('waiting')).map((j) => j.id)).toEqual(['a', 'later']);
    const [a] = await queue.pop(1);
    expect(await queue.remove('a')).toBe(false);
    expect(await queue.retryJob('later')).toBe(false);
    expect(await queue.fail(a!, 'fatal')).toBe('retry');
    // Waiting for its retry counts as delayed: promote makes it ready now, behind `later`.
    expect(await queue.promote('a')).toBe(true);
    const again = await queue.pop(2);
    expect(again.map((j) => [j.id, j.attempts])).toEqual([['later', 1], ['a', 2]]);
    // Forced: the active job goes, and its worker's completion is refused.
    expect(await queue.remove('a', { force: true })).toBe(true);
    expect(await queue.complete(again[1]!)).toBe(false);
    expect(await queue.fail(again[0]!, 'fatal')).toBe('retry');
    await queue.push({ to: 'z' }, { id: 'z', maxRetries: 0 });
    await queue.fail((await queue.pop(1))[0]!, 'gone');
    expect(await queue.retryJob('z')).toBe(true);
    expect(await queue.getJob('z')).toMatchObject({ state: 'waiting', attempts: 0 });
    expect(await queue.stats()).toMatchObject({ waiting: 1, failed: 1, processing: 0, dead: 0 });
  });

  it('a handler reports progress and logs, its return value is kept, and logs go with the record', async () => {
    const queue = open();
    await queue.push({ to: 'a' }, { id: 'a' });
    const worker = new Worker(queue, async (job) => {
      await job.updateProgress(40);
      for (let i = 0; i < LIMITS.logLinesKept + 5; i++) await job.log(`line ${i}`);
      return { sent: 7 };
    });
    closers.push(() => worker.close());
    const done = await waitFor(async () => {
      const job = await queue.getJob('a');
      return job?.state === 'completed' ? job : undefined;
    });
    expect(done).toMatchObject({ progress: 40, returnValue: { sent: 7 } });
    const logs = await queue.getLogs('a', { limit: 1000 });
    expect(logs).toHaveLength(LIMITS.logLinesKept);
    expect(logs[0]).toBe('line 5');
    expect(await queue.getLogs('a', { offset: 98, limit: 10 })).toEqual(['line 103', 'line 104']);
    expect(await queue.remove('a')).toBe(true);
    expect(await queue.getLogs('a')).toEqual([]);
    expect(Object.keys(await snapshot(redis, prefix)).some((k) => k.endsWith(':info'))).toBe(false);
  });

  it('pause stops workers from fetching until resume; running jobs finish', async () => {
    const queue = open();
    const ran: string[] = [];
    const worker = new Worker(queue, (job) => void ran.push(job.id), { blockMs: 200 });
    closers.push(() => worker.close());
    await queue.push({ to: 'a' }, { id: 'a' });
    await waitFor(() => (ran.includes('a') ? true : undefined));
    await queue.pause();
    expect(await queue.isPaused()).toBe(true);
    await queue.push({ to: 'b' }, { id: 'b' });
    // Let the worker wake and look (it is told to block): the job stays waiting while paused.
    await waitFor(async () => ((await redis.llen(queue.wakeKey)) === 0 ? true : undefined));
    expect((await queue.getJob('b'))!.state).toBe('waiting');
    expect(ran).toEqual(['a']);
    await queue.resume();
    expect(await queue.isPaused()).toBe(false);
    await waitFor(() => (ran.includes('b') ? true : undefined));
  });

  it('QueueEvents receives the events of every change in order, and resumes from an id', async () => {
    const queue = open({ backoff: { baseMs: 1 } });
    const { events, seen } = record();
    await events.ready();
    await queue.push({ to: 'a' }, { id: 'a', maxRetries: 1 });
    await queue.push({ to: 'd' }, { id: 'd', delayMs: 60_000 });
    const [a] = await queue.pop(1);
    await queue.fail(a!, 'no');
    const [again] = await waitFor(async () => {
      const got = await queue.pop(1);
      return got.length > 0 ? got : undefined;
    });
    await queue.complete(again!, { sent: 1 });
    await queue.remove('d');
    await queue.pause();
    await queue.resume();
    const expected = ['added:a', 'delayed:d', 'active:a', 'drained', 'retrying:a', 'waiting:a', 'active:a', 'drained', 'completed:a', 'removed:d', 'paused', 'resumed'];
    await waitFor(() => (seen.length >= expected.length ? true : undefined));
    expect(seen).toEqual(expected);
    const completed = vi.fn<(...args: QueueEventMap<{ sent: number }>['completed']) => void>();
    const resumed = new QueueEvents<{ sent: number }>(redis, 'mail', { prefix, lastEventId: '0', blockMs: 200 });
    closers.push(() => resumed.close());
    resumed.on('completed', completed);
    await waitFor(() => (completed.mock.calls.length > 0 ? true : undefined));
    const [{ id, jobId, returnValue }] = completed.mock.calls[0]!;
    expect({ jobId, returnValue }).toEqual({ jobId: 'a', returnValue: { sent: 1 } });
    // From that event on: only what came after it.
    const later: string[] = [];
    const tail = new QueueEvents(redis, 'mail', { prefix, lastEventId: id, blockMs: 200 });
    closers.push(() => tail.close());
    tail.on('removed', (e) => later.push(`removed:${e.jobId}`));
    tail.on('completed', (e) => later.push(`completed:${e.jobId}`));
    await waitFor(() => (later.length > 0 ? true : undefined));
    expect(later).toEqual(['removed:d']);
  });

  it('keeps about eventsMaxLen events, however many events a call writes', async () => {
    const queue = open({ eventsMaxLen: 1500 });
    for (let bulk = 0; bulk < 5; bulk++) await queue.pushBulk(Array.from({ length: 1000 }, (_, i) => ({ data: { to: `${bulk}-${i}` } })));
    for (let i = 0; i < 300; i++) await queue.push({ to: `single-${i}` });
    const entries = (await redis.xrange(queue.eventsKey, '-', '+')) as [string, string[]][];
    const events = entries.reduce((n, [, fields]) => n + fields.length / 2, 0);
    expect(events).toBeGreaterThanOrEqual(300);
    expect(events).toBeLessThanOrEqual(1500 + 1000);
  });

  it('waitUntilFinished resolves with the return value, rejects when the job dies, is unknown or times out', async () => {
    const queue = open();
    await queue.push({ to: 'ok' }, { id: 'ok' });
    await queue.push({ to: 'bad' }, { id: 'bad', maxRetries: 0 });
    const ok = queue.waitUntilFinished('ok', { timeoutMs: 20_000 });
    const bad = queue.waitUntilFinished('bad', { timeoutMs: 20_000 });
    const worker = new Worker(queue, (job) => {
      if (job.data.to === 'bad') throw new Error('mailbox full');
      return { sent: 3 };
    });
    closers.push(() => worker.close());
    await expect(ok).resolves.toEqual({ sent: 3 });
    await expect(bad).rejects.toBeInstanceOf(JobFailedError);
    await expect(bad).rejects.toMatchObject({ jobId: 'bad', failedReason: 'mailbox full' });
    // Already finished: answered by the lookup.
    await expect(queue.waitUntilFinished('ok')).resolves.toEqual({ sent: 3 });
    await expect(queue.waitUntilFinished('nobody')).rejects.toBeInstanceOf(JobNotFoundError);
    await queue.push({ to: 'later' }, { id: 'later', delayMs: 3_600_000 });
    await expect(queue.waitUntilFinished('later', { timeoutMs: 100 })).rejects.toBeInstanceOf(RedisTimeoutError);
    const removed = queue.waitUntilFinished('later', { timeoutMs: 20_000 });
    await queue.remove('later');
    await expect(removed).rejects.toBeInstanceOf(JobNotFoundError);
  });

  it('drain, clean and obliterate remove in bounded calls', async () => {
    const queue = open({ removeOnComplete: false });
    await queue.pushBulk(Array.from({ length: 1500 }, (_, i) => ({ data: { to: `w${i}` } })));
    await queue.push({ to: 'later' }, { delayMs: 60_000 });
    expect(await queue.drain()).toBe(1500);
    expect(await queue.stats()).toMatchObject({ waiting: 0, delayed: 1 });
    expect(await queue.drain({ delayed: true })).toBe(1);
    await queue.pushBulk(['a', 'b', 'c'].map((id) => ({ data: { to: id }, id })));
    for (const job of await queue.pop(3)) await queue.complete(job);
    expect(await queue.clean('completed', { olderThanMs: 3_600_000 })).toBe(0);
    expect(await queue.clean('completed', { limit: 2 })).toBe(2);
    expect((await queue.getJobs('completed')).map((j) => j.id)).toEqual(['c']);
    await queue.push({ to: 'x' });
    await queue.pop(1);
    expect(await queue.obliterate()).toBe(false);
    expect(await queue.obliterate({ force: true })).toBe(true);
    expect(await snapshot(redis, prefix)).toEqual({});
  });

  it('refuses bad input with InvalidArgumentError before any round trip', async () => {
    const queue = open();
    const send = vi.spyOn(redis, 'sendCommand');
    const cases: [() => Promise<unknown>, string][] = [
      [() => queue.getJob(''), 'id'],
      [() => queue.getJobs('failed' as 'dead'), 'state'],
      [() => queue.getJobs('waiting', { offset: -1 }), 'page.offset'],
      [() => queue.getJobs('waiting', { limit: 0 }), 'page.limit'],
      [() => queue.getJobs('waiting', { limit: LIMITS.maxPage + 1 }), 'page.limit'],
      [() => queue.getJobs('waiting', { page: 2 } as never), 'page.page'],
      [() => queue.getLogs('a', { limit: 1001 }), 'page.limit'],
      [() => queue.log('a', 'x'.repeat(LIMITS.maxLogLineBytes + 1)), 'line'],
      [() => queue.log('a', 1 as never), 'line'],
      [() => queue.updateProgress({ id: 'a', leaseToken: '1' }, 101), 'progress'],
      [() => queue.updateProgress({ id: 'a', leaseToken: '1' }, -1), 'progress'],
      [() => queue.updateProgress({ id: 'a', leaseToken: '1' }, Number.NaN), 'progress'],
      [() => queue.updateProgress({ id: 'a', leaseToken: '1' }, [1] as never), 'progress'],
      [() => queue.updateProgress({ id: 'a', leaseToken: '1' }, { big: 'x'.repeat(LIMITS.maxProgressBytes) }), 'progress'],
      [() => queue.remove('a', { force: 'yes' } as never), 'options.force'],
      [() => queue.remove('a', { forced: true } as never), 'options.forced'],
      [() => queue.drain({ delayed: 1 } as never), 'options.delayed'],
      [() => queue.clean('waiting' as 'dead'), 'state'],
      [() => queue.clean('dead', { olderThanMs: -1 }), 'options.olderThanMs'],
      [() => queue.clean('dead', { limit: 1001 }), 'options.limit'],
      [() => queue.obliterate({ force: 1 } as never), 'options.force'],
      [() => queue.waitUntilFinished('a', { timeoutMs: 0 }), 'options.timeoutMs'],
      [() => queue.complete({ id: 'a', leaseToken: '1' }, (() => 1) as never), 'returnValue'],
    ];
    for (const [call, argument] of cases) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
    }
    expect(send).not.toHaveBeenCalled();
    send.mockRestore();
    expect(() => open({ removeOnComplete: { count: -1 } })).toThrow(/options.removeOnComplete.count/);
    expect(() => open({ removeOnDead: { keep: 1 } as never })).toThrow(/options.removeOnDead.keep/);
    expect(() => open({ events: 'yes' as never })).toThrow(/options.events/);
    expect(() => open({ eventsMaxLen: 0 })).toThrow(/options.eventsMaxLen/);
    expect(() => new QueueEvents(redis, 'mail', { lastEventId: 'latest' })).toThrow(/options.lastEventId/);
    expect(() => new QueueEvents(redis, 'mail', { block: 1 } as never)).toThrow(/options.block/);
  });
});
