import { SmartCache } from '@cyredis/cache';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { LockManager } from '@cyredis/lock';
import { JobQueue, Worker } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDashboard, InvalidArgumentError, serveDashboard, type DashboardOptions, type DashboardServer } from '../src/index.js';
import { act } from './helpers.js';

interface JobPage {
  job: { id: string; state: string; data: unknown; attempts: number; maxRetries: number; progress: unknown; failedReason?: string; createdAt: number; finishedAt?: number };
  logs: string[];
}

// Issue 18: what the dashboard's API answers and does, through the packages' public calls, on a real Redis.
describe.each(topologies)('the dashboard API on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let server: DashboardServer | undefined;
  const closers: (() => Promise<unknown>)[] = [];

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await server?.close();
    server = undefined;
    await deleteByPrefix(redis, prefix);
  });

  const start = async (options: Partial<DashboardOptions> = {}): Promise<string> => {
    server = await serveDashboard({ redis, prefix, queues: ['mail'], port: 0, ...options });
    return server.url;
  };
  const getJson = async <T>(url: string, path: string): Promise<T> => (await fetch(new URL(path, url))).json() as Promise<T>;
  const open = () => new JobQueue<unknown, unknown>(redis, 'mail', { prefix, backoff: { baseMs: 60_000 } });

  it('shows a job with its data, progress, logs, error, attempts and times', async () => {
    const url = await start();
    const queue = open();
    await queue.push({ to: 'x', big: 12n }, { id: 'j1', maxRetries: 0 });
    const worker = new Worker(queue, async (job) => {
      await job.updateProgress(60);
      await job.log('rendered');
      throw new Error('smtp <refused>');
    }, { blockMs: 100 });
    closers.push(() => worker.close());
    await waitFor(async () => (await queue.getJob('j1'))?.state === 'dead');
    const page = await getJson<JobPage>(url, 'api/queues/mail/jobs/j1');
    expect(page.job).toMatchObject({ id: 'j1', state: 'dead', data: { to: 'x', big: '12' }, attempts: 1, maxRetries: 0, progress: 60, failedReason: 'smtp <refused>' });
    expect(page.job.createdAt).toBeGreaterThan(0);
    expect(page.job.finishedAt).toBeGreaterThanOrEqual(page.job.createdAt);
    expect(page.logs).toEqual(['rendered']);
    expect((await fetch(new URL('api/queues/mail/jobs/nope', url))).status).toBe(404);
  });

  it('lists jobs per state in pages', async () => {
    const url = await start();
    const queue = open();
    for (let i = 0; i < 7; i++) await queue.push({ n: i }, { id: `w${i}` });
    const first = await getJson<{ jobs: { id: string }[]; counts: { waiting: number } }>(url, 'api/queues/mail/jobs?state=waiting&limit=5');
    expect(first.jobs.map((j) => j.id)).toEqual(['w0', 'w1', 'w2', 'w3', 'w4']);
    expect(first.counts.waiting).toBe(7);
    const second = await getJson<{ jobs: { id: string }[] }>(url, 'api/queues/mail/jobs?state=waiting&offset=5&limit=5');
    expect(second.jobs.map((j) => j.id)).toEqual(['w5', 'w6']);
    expect((await fetch(new URL('api/queues/mail/jobs?state=lost', url))).status).toBe(400);
    expect((await fetch(new URL('api/queues/mail/jobs?limit=-1', url))).status).toBe(400);
    expect((await fetch(new URL('api/queues/other/jobs', url))).status).toBe(404);
  });

  it('retries, promotes, removes and cleans jobs', async () => {
    const url = await start();
    const queue = open();
    await queue.push({}, { id: 'late', delayMs: 600_000 });
    await queue.push({}, { id: 'gone' });
    await queue.push({}, { id: 'dies', maxRetries: 0 });
    const [leased] = await queue.pop(1);
    expect(leased!.id).toBe('gone');
    expect(await (await act(new URL('api/queues/mail/jobs/gone/remove', url).href)).json()).toEqual({ done: false });
    await queue.complete(leased!);
    const [dying] = await queue.pop(1);
    await queue.fail(dying!, new Error('boom'));

    expect(await (await act(new URL('api/queues/mail/jobs/dies/retry', url).href)).json()).toEqual({ done: true });
    expect((await queue.getJob('dies'))!.state).toBe('waiting');
    expect(await (await act(new URL('api/queues/mail/jobs/late/promote', url).href)).json()).toEqual({ done: true });
    expect((await queue.getJob('late'))!.state).toBe('waiting');
    expect(await (await act(new URL('api/queues/mail/jobs/late/remove', url).href)).json()).toEqual({ done: true });
    expect(await queue.getJob('late')).toBeUndefined();
    expect(await (await act(new URL('api/queues/mail/clean?state=completed&olderThanMs=0', url).href)).json()).toEqual({ done: 1 });
    expect(await queue.getJob('gone')).toBeUndefined();
    expect((await act(new URL('api/queues/mail/clean?state=waiting', url).href)).status).toBe(400);
  });

  it('refuses every change in read-only mode', async () => {
    const url = await start({ readOnly: true });
    const queue = open();
    await queue.push({}, { id: 'a', delayMs: 600_000 });
    expect(await getJson(url, 'api/config')).toMatchObject({ readOnly: true });
    for (const path of ['api/queues/mail/pause', 'api/queues/mail/jobs/a/promote', 'api/queues/mail/jobs/a/remove', 'api/queues/mail/clean?state=dead']) {
      const res = await act(new URL(path, url).href);
      expect(res.status).toBe(403);
    }
    expect(await queue.isPaused()).toBe(false);
    expect((await queue.getJob('a'))!.state).toBe('delayed');
    expect((await fetch(new URL('api/queues/mail/jobs/a', url))).status).toBe(200);
  });

  it('asks the auth hook about every request', async () => {
    const seen: string[] = [];
    const url = await start({
      auth: (req) => {
        seen.push(req.url!);
        return Promise.resolve(req.headers.authorization === 'Bearer let-me-in');
      },
    });
    for (const path of ['', 'assets/app.js', 'api/queues', 'api/events']) expect((await fetch(new URL(path, url))).status).toBe(401);
    expect((await act(new URL('api/queues/mail/pause', url).href)).status).toBe(401);
    expect(await open().isPaused()).toBe(false);
    const allowed = await fetch(new URL('api/queues', url), { headers: { authorization: 'Bearer let-me-in' } });
    expect(allowed.status).toBe(200);
    expect(seen).toContain('/api/queues');
  });

  it('shows cache statistics with the hit rate', async () => {
    const cache = new SmartCache<string>(redis, { name: 'pages', maxSize: 100, prefix });
    closers.push(() => cache.close());
    await cache.set('a', 'x');
    await cache.get('a');
    await cache.get('a');
    await cache.get('b');
    const url = await start();
    // Hits and misses are counted in the background: wait for them, not only for the listing.
    await waitFor(async () => (await getJson<{ hits: number; misses: number }[]>(url, 'api/caches')).some((c) => c.hits + c.misses === 3), { message: 'the cache is listed with its counts' });
    expect(await getJson(url, 'api/caches')).toEqual([{ name: 'pages', hits: 2, misses: 1, sets: 1, evictions: 0, size: 1, hitRate: expect.closeTo(2 / 3, 3) }]);
  });

  it('looks up a rate limiter by id and lists its refused ids', async () => {
    const limiter = new RateLimiter(redis, { name: 'api', limit: 2, windowMs: 60_000, prefix, recordRefusals: true });
    const plain = new RateLimiter(redis, { name: 'plain', limit: 2, windowMs: 60_000, prefix });
    for (let i = 0; i < 3; i++) await limiter.limit('user-1');
    const url = await start({ limiters: [limiter, plain] });
    expect(await getJson(url, 'api/config')).toMatchObject({ limiters: ['api', 'plain'] });
    const usage = await getJson<{ rules: { used: number; remaining: number; limit: number }[]; next: { allowed: boolean } }>(url, 'api/limiters/api/usage?id=user-1');
    expect(usage.rules).toMatchObject([{ used: 2, remaining: 0, limit: 2 }]);
    expect(usage.next.allowed).toBe(false);
    await waitFor(async () => (await getJson<{ id: string }[]>(url, 'api/limiters/api/refusals')).some((r) => r.id === 'user-1'));
    expect(await getJson(url, 'api/limiters/plain/refusals')).toBeNull();
    expect((await fetch(new URL('api/limiters/api/usage', url))).status).toBe(400);
    expect((await fetch(new URL('api/limiters/none/usage?id=a', url))).status).toBe(404);
  });

  it('without limiters, lists the named limiters used under the prefix and looks them up by their stored definitions', async () => {
    const limiter = new RateLimiter(redis, { name: 'login', rules: [{ limit: 2, windowMs: 60_000 }, { limit: 5, windowMs: 3_600_000 }], prefix, recordRefusals: true });
    const plain = new RateLimiter(redis, { name: 'search', limit: 9, windowMs: 1000, prefix });
    for (let i = 0; i < 3; i++) await limiter.limit('ann');
    await plain.limit('bob');
    const url = await start();
    await waitFor(async () => (await getJson<{ limiters: string[] }>(url, 'api/config')).limiters.length === 2, { message: 'both limiters listed' });
    expect(await getJson(url, 'api/config')).toMatchObject({ limiters: ['login', 'search'] });
    await waitFor(async () => (await fetch(new URL('api/limiters/login/usage?id=ann', url))).ok, { message: 'the definition is stored' });
    const usage = await getJson<{ rules: { used: number; limit: number }[]; next: { allowed: boolean } }>(url, 'api/limiters/login/usage?id=ann');
    expect(usage.rules.map((r) => [r.limit, r.used])).toEqual([[2, 2], [5, 2]]);
    expect(usage.next.allowed).toBe(false);
    await waitFor(async () => (await getJson<{ id: string }[]>(url, 'api/limiters/login/refusals')).some((r) => r.id === 'ann'));
    await waitFor(async () => (await fetch(new URL('api/limiters/search/refusals', url))).ok, { message: 'the definition is stored' });
    expect(await getJson(url, 'api/limiters/search/refusals')).toBeNull();
    const unknown = await fetch(new URL('api/limiters/none/usage?id=a', url));
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/no limiter "none" was used under this prefix/);
    // Looking up records nothing: the unknown name is not listed.
    expect((await RateLimiter.list(redis, { prefix })).map((e) => e.name).sort()).toEqual(['login', 'search']);
  });

  it('lists the queues used under the prefix when none are named', async () => {
    await new JobQueue(redis, 'billing', { prefix }).push({ n: 1 });
    await new JobQueue(redis, 'emails', { prefix }).push({ n: 2 });
    await waitFor(async () => (await JobQueue.list(redis, { prefix })).length === 2, { message: 'both queues recorded' });
    const url = await start({ queues: undefined });
    const listed = await getJson<{ name: string; counts: { waiting: number } }[]>(url, 'api/queues');
    expect(listed.map((q) => [q.name, q.counts.waiting])).toEqual([['billing', 1], ['emails', 1]]);
    // A name nobody used is not shown, and asking for it does not record it.
    expect((await fetch(new URL('api/queues/nobody/jobs', url))).status).toBe(404);
    expect((await JobQueue.list(redis, { prefix })).map((e) => e.name).sort()).toEqual(['billing', 'emails']);
  });

  it('lists held locks with owner, TTL and fencing token', async () => {
    const locks = new LockManager(redis, { prefix });
    closers.push(() => locks.close());
    const held = await locks.acquire('orders:1', { ttlMs: 30_000 });
    await locks.acquire('users:7', { ttlMs: 30_000 });
    const url = await start();
    const page = await getJson<{ locks: { resource: string; kind: string; owner: string; ttlMs: number; fencingToken: string }[] }>(url, 'api/locks');
    expect(page.locks.map((l) => l.resource).sort()).toEqual(['orders:1', 'users:7']);
    const orders = page.locks.find((l) => l.resource === 'orders:1')!;
    expect(orders).toMatchObject({ kind: 'mutex', owner: held.owner, fencingToken: String(held.fencingToken) });
    expect(orders.ttlMs).toBeGreaterThan(0);
    expect(orders.ttlMs).toBeLessThanOrEqual(30_000);
    const matched = await getJson<{ locks: { resource: string }[] }>(url, 'api/locks?match=orders:*');
    expect(matched.locks.map((l) => l.resource)).toEqual(['orders:1']);
    await held.release();
    expect((await getJson<{ locks: { resource: string }[] }>(url, 'api/locks')).locks.map((l) => l.resource)).toEqual(['users:7']);
  });

  it('refuses unknown and malformed options', () => {
    expect(() => createDashboard({ redis, queue: ['mail'] } as unknown as DashboardOptions)).toThrow(InvalidArgumentError);
    expect(() => createDashboard({ redis, basePath: '/ops/' })).toThrow(/basePath/);
    expect(() => createDashboard({ redis, readOnly: 'yes' as unknown as boolean })).toThrow(/readOnly/);
    expect(() => createDashboard({ redis, queues: [''] })).toThrow(/queues/);
    expect(() => createDashboard({ redis, limiters: [new RateLimiter(redis, { limit: 1, windowMs: 1000, prefix })] })).toThrow(/limiters/);
  });
});
