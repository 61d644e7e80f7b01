import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { ExpressAdapter } from '@bull-board/express';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { JobQueue, Worker } from '@cyredis/queue';
import express from 'express';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CyredisAdapter } from '../src/bull-board.js';

interface BoardQueue {
  name: string;
  counts: Record<string, number>;
  isPaused: boolean;
  jobs: { id: string; data: unknown; failedReason?: string; attempts: number; isFailed: boolean }[];
}

// Issue 18: a cyredis queue in a real bull-board (@bull-board/api and its Express server adapter).
describe.each(topologies)('the bull-board adapter on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let server: Server;
  let base: string;
  const closers: (() => Promise<unknown>)[] = [];

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await deleteByPrefix(redis, prefix);
  });

  const board = async (queue: JobQueue, options: ConstructorParameters<typeof CyredisAdapter>[1] = {}): Promise<void> => {
    const serverAdapter = new ExpressAdapter();
    serverAdapter.setBasePath('/board');
    createBullBoard({ queues: [new CyredisAdapter(queue, options)], serverAdapter });
    const app = express();
    app.use('/board', serverAdapter.getRouter() as express.Router);
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/board/api`;
  };
  const queues = async (query = ''): Promise<BoardQueue[]> => ((await (await fetch(`${base}/queues${query}`)).json()) as { queues: BoardQueue[] }).queues;
  const put = (path: string) => fetch(`${base}${path}`, { method: 'PUT' });

  it('lists the queue with its counts and jobs, and retries a dead job from the board', async () => {
    const queue = new JobQueue<{ to: string }>(redis, 'mail', { prefix });
    await board(queue);
    let runs = 0;
    const worker = new Worker(queue, () => {
      runs++;
      if (runs === 1) throw new Error('bounced');
      return Promise.resolve();
    }, { blockMs: 100 });
    closers.push(() => worker.close());
    await queue.push({ to: 'a' }, { id: 'a', maxRetries: 0 });
    await waitFor(async () => (await queue.getJob('a'))?.state === 'dead');
    await queue.push({ to: 'b' }, { id: 'b', delayMs: 600_000 });

    const [listed] = await queues('?activeQueue=mail&status=failed&page=1&jobsPerPage=10');
    expect(listed).toMatchObject({ name: 'mail', isPaused: false, counts: { failed: 1, delayed: 1, waiting: 0, active: 0, completed: 0 } });
    expect(listed!.jobs).toMatchObject([{ id: 'a', data: { to: 'a' }, failedReason: 'bounced', attempts: 1, isFailed: true }]);
    const job = (await (await fetch(`${base}/queues/mail/a`)).json()) as { job: { id: string }; status: string };
    expect(job).toMatchObject({ job: { id: 'a' }, status: 'failed' });

    expect((await put('/queues/mail/a/retry')).ok).toBe(true);
    await waitFor(async () => (await queue.getJob('a'))?.state === 'completed', { message: 'the retried job completes' });
    expect((await put('/queues/mail/b/promote')).ok).toBe(true);
    await waitFor(async () => (await queue.getJob('b'))?.state === 'completed', { message: 'the promoted job runs' });
    const [after] = await queues('?activeQueue=mail&status=completed&page=1&jobsPerPage=10');
    expect(after!.counts).toMatchObject({ failed: 0, delayed: 0, completed: 2 });
    expect(after!.jobs.map((j) => j.id).sort()).toEqual(['a', 'b']);
  });

  it('pauses, resumes, cleans, empties and shows logs through the board', async () => {
    const queue = new JobQueue<{ n: number }>(redis, 'mail', { prefix });
    await board(queue);
    expect((await put('/queues/mail/pause')).ok).toBe(true);
    expect(await queue.isPaused()).toBe(true);
    expect((await queues())[0]!.isPaused).toBe(true);
    expect((await put('/queues/mail/resume')).ok).toBe(true);
    expect(await queue.isPaused()).toBe(false);

    await queue.push({ n: 1 }, { id: 'done' });
    const [leased] = await queue.pop(1);
    await queue.log('done', 'step one');
    await queue.complete(leased!);
    expect(await (await fetch(`${base}/queues/mail/done/logs`)).json()).toEqual(['step one']);
    // The board cleans with a 5 s grace: the fresh job stays, and goes once it is older than that.
    expect((await put('/queues/mail/clean/completed')).ok).toBe(true);
    expect(await queue.getJob('done')).toBeDefined();
    await waitFor(async () => (await put('/queues/mail/clean/completed')).ok && (await queue.getJob('done')) === undefined, {
      timeoutMs: 20_000,
      intervalMs: 500,
      message: 'clean removes the completed job past the grace time',
    });

    await queue.push({ n: 2 }, { id: 'w' });
    await queue.push({ n: 3 }, { id: 'd', delayMs: 600_000 });
    expect((await put('/queues/mail/empty')).ok).toBe(true);
    expect(await queue.stats()).toMatchObject({ waiting: 0, delayed: 0 });
  });

  it('adds a job from the board', async () => {
    const queue = new JobQueue<{ n: number }>(redis, 'mail', { prefix });
    await board(queue);
    const res = await fetch(`${base}/queues/mail/add`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x', data: { n: 7 }, options: { attempts: 2 } }),
    });
    expect(res.status).toBe(200);
    const [waiting] = await queue.getJobs('waiting');
    expect(waiting).toMatchObject({ data: { n: 7 }, maxRetries: 1 });
  });

  it('refuses changes when the adapter is read-only', async () => {
    const queue = new JobQueue<{ n: number }>(redis, 'mail', { prefix });
    await board(queue, { readOnlyMode: true });
    expect((await put('/queues/mail/pause')).status).toBe(405);
    expect(await queue.isPaused()).toBe(false);
  });
});
