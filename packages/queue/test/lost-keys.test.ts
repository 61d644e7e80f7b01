import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobQueue, Worker, type Job } from '../src/index.js';
import { masters } from './helpers.js';

interface Item {
  n: number;
}

type Place = 'waiting' | 'processing' | 'delayed' | 'failed' | 'dead';

/**
 * Where each job id is: every list and set of the queue, read straight from Redis. A job in none of them
 * is in no state (completed jobs are deleted, so the caller says which ids it completed).
 */
async function places(queue: JobQueue<Item>): Promise<Map<string, Place[]>> {
  const [waiting, processing, failed, dead] = queue.keys as [string, string, string, string];
  const out = new Map<string, Place[]>();
  const add = (id: string, place: Place) => out.set(id, [...(out.get(id) ?? []), place]);
  // Every node: on a cluster the queue lives on one, and `keys` finds its lists wherever they are.
  for (const n of masters(queue.redis)) {
    for (const list of await n.keys(`${waiting}:w:*`)) for (const id of await n.lrange(list, 0, -1)) add(id, 'waiting');
  }
  const sets: [string, Place][] = [
    [processing, 'processing'],
    [`${waiting}:delayed`, 'delayed'],
    [failed, 'failed'],
    [dead, 'dead'],
  ];
  for (const [key, place] of sets) for (const id of await (queue.redis as Redis).zrange(key, '0', '-1')) add(id, place);
  return out;
}

/** Asserts every id is in exactly one place, or was completed (and is then in none). */
async function expectOnePlaceEach(queue: JobQueue<Item>, ids: readonly string[], completed: ReadonlySet<string>): Promise<void> {
  const found = await places(queue);
  for (const id of ids) {
    if (completed.has(id)) expect(found.get(id), `completed ${id}`).toBeUndefined();
    else expect(found.get(id), `job ${id}`).toHaveLength(1);
  }
}

describe.each(topologies)('lost keys on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<Item>;
  let key: (suffix: string) => string;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<Item>(redis, 'm', { prefix, backoff: { baseMs: 10, maxMs: 20 } });
    key = (suffix) => `${queue.keys[0]}${suffix}`;
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  /** Pops until `want` jobs came (recovery may take a pop that returns none). */
  async function popAll(want: number, leaseMs = 30_000): Promise<Job<Item>[]> {
    const got: Job<Item>[] = [];
    await waitFor(async () => {
      got.push(...(await queue.pop(100, { leaseMs })));
      return got.length >= want ? true : undefined;
    });
    return got;
  }

  it('dead-letters a job whose record was deleted ("record lost") and serves the rest (the issue sequence)', async () => {
    const a = await queue.push({ n: 1 });
    await redis.del(key(':jobs'));
    const b = await queue.push({ n: 2 });
    // Before: a TypeError after the lease was written, then a ScriptError after its sweep, then B was gone.
    const first = await queue.pop(2, { leaseMs: 50 });
    expect(first.map((j) => j.id)).toEqual([b]);
    expect(await queue.deadJobs()).toEqual([{ id: a, data: undefined, attempts: 0, error: 'record lost', diedAt: expect.any(Number) }]);
    // B's lease runs out and it comes back, record intact.
    const [again] = await popAll(1);
    expect(again).toMatchObject({ id: b, data: { n: 2 }, attempts: 2 });
    expect(await queue.complete(again!)).toBe(true);
    expect(await queue.stats()).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 1, completed: 1 });
    await expectOnePlaceEach(queue, [a, b], new Set([b]));
  });

  it('dead-letters leased, delayed and failed jobs whose records were deleted where each call meets them', async () => {
    const leased = await queue.push({ n: 1 });
    const failing = await queue.push({ n: 2 });
    const delayed = await queue.push({ n: 3 }, { delayMs: 20 });
    const [l, f] = await queue.pop(2, { leaseMs: 30 });
    expect(await queue.fail(f!, new Error('boom'))).toBe('retry');
    await redis.del(key(':jobs'));
    // The failed job's retry, the delayed job and the expired lease all meet their lost records.
    await waitFor(async () => {
      await queue.pop(1);
      return (await queue.stats()).dead === 3 ? true : undefined;
    });
    const dead = await queue.deadJobs();
    expect(dead.map((d) => d.id).sort()).toEqual([leased, failing, delayed].sort());
    for (const d of dead) expect(d).toMatchObject({ data: undefined, error: 'record lost' });
    // A late completion or failure of the lost lease changes nothing.
    expect(await queue.complete(l!)).toBe(false);
    expect(await queue.retryDead()).toBe(0);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 0, failed: 0, dead: 3 });
  });

  it('fails a leased job whose record was deleted to the dead letters, and releases one there', async () => {
    await queue.pushBulk([{ data: { n: 1 } }, { data: { n: 2 } }]);
    const [x, y] = await queue.pop(2);
    await redis.del(key(':jobs'));
    expect(await queue.fail(x!, new Error('boom'))).toBe('dead');
    expect(await queue.release(y!)).toBe(true);
    const dead = await queue.deadJobs();
    expect(dead.map((d) => d.error)).toEqual(['record lost', 'record lost']);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 0, dead: 2 });
  });

  it('serves the jobs of a deleted per-priority list, and `waiting` agrees again', async () => {
    const ids = await queue.pushBulk(Array.from({ length: 10 }, (_, n) => ({ data: { n }, priority: 3 })));
    await queue.push({ n: 99 }, { priority: 1 });
    await redis.del(key(':w:3'));
    const jobs = await popAll(11);
    expect(jobs.map((j) => j.id)).toEqual(expect.arrayContaining(ids));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(11);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 11 });
  });

  it('serves the jobs of lists whose priority index was deleted', async () => {
    const ids = await queue.pushBulk(Array.from({ length: 5 }, (_, n) => ({ data: { n }, priority: n - 2 })));
    await redis.del(queue.keys[0]!);
    const jobs = await popAll(5);
    // Still highest priority first once found.
    expect(jobs.map((j) => j.id)).toEqual([...ids].reverse());
  });

  it('indexes again a list whose priority entry was deleted while other priorities kept theirs', async () => {
    const ids = await queue.pushBulk([5, 5, 0, 0, -7, -7].map((priority, n) => ({ data: { n }, priority })));
    await redis.zrem(queue.keys[0]!, '0');
    const jobs = await popAll(6);
    // The indexed priorities first; the lists they leave empty show the count is off, and the repair finds
    // priority 0 again among lists that exist.
    expect(jobs.map((j) => j.id)).toEqual([ids[0], ids[1], ids[4], ids[5], ids[2], ids[3]]);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 6 });
  });

  it('serves each waiting job once after its priority index and `meta` were both deleted', async () => {
    const ids = await queue.pushBulk(Array.from({ length: 3 }, (_, n) => ({ data: { n } })));
    await redis.del(queue.keys[0]!, key(':meta'));
    const jobs = await popAll(3);
    expect(jobs.map((j) => j.id)).toEqual(ids);
    expect(await queue.pop(10)).toEqual([]);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 3 });
  });

  it('reclaims the leases of a deleted processing set: the holder can still complete, a dead holder’s jobs come back', async () => {
    const ids = await queue.pushBulk([{ data: { n: 1 } }, { data: { n: 2 } }, { data: { n: 3 } }]);
    const held = await queue.pop(3, { leaseMs: 60_000 });
    await redis.del(queue.keys[1]!);
    expect(await queue.stats()).toMatchObject({ processing: 0 });
    // The next pop finds records in no place and leases them again under their holder's token, for its lease.
    expect(await queue.pop(1, { leaseMs: 50 })).toEqual([]);
    expect(await queue.stats()).toMatchObject({ processing: 3 });
    expect(await queue.complete(held[0]!)).toBe(true);
    // The other two holders "died": their jobs come back after the new lease.
    const back = await popAll(2);
    expect(back.map((j) => j.id).sort()).toEqual(ids.slice(1).sort());
    for (const job of back) expect(await queue.complete(job)).toBe(true);
    expect(await queue.stats()).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0, completed: 3 });
  });

  it('never reads a negative `waiting` after `meta` was deleted, and lease tokens keep increasing', async () => {
    await queue.pushBulk(Array.from({ length: 10 }, (_, n) => ({ data: { n } })));
    const [before] = await queue.pop(1);
    await redis.del(key(':meta'));
    expect((await queue.stats()).waiting).toBe(0);
    const next = await queue.pop(4);
    // Rebuilt from the lists at once: 5 still wait.
    expect(await queue.stats()).toMatchObject({ waiting: 5, processing: 5 });
    expect(BigInt(next[0]!.leaseToken)).toBeGreaterThan(BigInt(before!.leaseToken));
    // The old lease still fences: its holder completes, a made-up token of the new lease does not.
    expect(await queue.complete(before!)).toBe(true);
    const rest = await popAll(5);
    expect(rest).toHaveLength(5);
    expect(await queue.stats()).toMatchObject({ waiting: 0, processing: 9 });
  });

  it('puts the kept completed jobs of a deleted completed set back as completed, not to run again', async () => {
    await queue.pushBulk([{ data: { n: 1 }, id: 'c1' }, { data: { n: 2 }, id: 'c2' }, { data: { n: 3 }, id: 'w' }]);
    for (const job of await queue.pop(2)) expect(await queue.complete(job)).toBe(true);
    await redis.del(key(':completed'));
    // The pop that empties the queue finds records in no set and audits them.
    expect((await popAll(1)).map((j) => j.id)).toEqual(['w']);
    await waitFor(async () => ((await queue.getJobs('completed')).length === 2 ? true : undefined));
    expect((await queue.getJobs('completed')).map((j) => j.id).sort()).toEqual(['c1', 'c2']);
    expect(await queue.pop(5)).toEqual([]);
  });

  it('puts jobs of a deleted delayed or failed set back to wait, and dead jobs of a deleted dead set back to dead', async () => {
    const later = await queue.push({ n: 1 }, { delayMs: 3_600_000 });
    const retry = await queue.push({ n: 2 }, { backoff: { baseMs: 3_600_000 } });
    const doomed = await queue.push({ n: 3 }, { maxRetries: 0 });
    const jobs = await queue.pop(2);
    for (const job of jobs) expect(await queue.fail(job, new Error(`e${job.data.n}`))).toBe(job.id === doomed ? 'dead' : 'retry');
    await redis.del(key(':delayed'), queue.keys[2]!, queue.keys[3]!);
    // Recovered on the next pop that empties the queue; the lost delay and retry time run early.
    const back = await popAll(2);
    expect(back.map((j) => j.id).sort()).toEqual([later, retry].sort());
    expect(back.find((j) => j.id === retry)).toMatchObject({ attempts: 2 });
    expect(await queue.deadJobs()).toEqual([expect.objectContaining({ id: doomed, error: 'e3', attempts: 1 })]);
    await expectOnePlaceEach(queue, [later, retry, doomed], new Set());
  });

  it('still names a reason for a dead job whose state was deleted', async () => {
    await queue.push({ n: 1 }, { id: 'd', maxRetries: 0 });
    const [job] = await queue.pop(1);
    expect(await queue.fail(job!, new Error('boom'))).toBe('dead');
    await redis.del(key(':state'));
    expect(await queue.deadJobs()).toEqual([{ id: 'd', data: { n: 1 }, attempts: 0, error: 'reason lost', diedAt: expect.any(Number) }]);
  });

  it('keeps a worker running through a deleted record hash: every job pushed afterwards is processed', async () => {
    const done = new Set<number>();
    const errors: unknown[] = [];
    const worker = new Worker(queue, (job: Job<Item>) => void done.add(job.data.n), { concurrency: 4, leaseMs: 300 });
    worker.on('error', (err) => errors.push(err));
    try {
      await queue.pushBulk(Array.from({ length: 20 }, (_, n) => ({ data: { n } })));
      await waitFor(() => (done.size === 20 ? true : undefined));
      await queue.pushBulk(Array.from({ length: 5 }, (_, n) => ({ data: { n: 100 + n } })));
      await redis.del(key(':jobs'));
      const after = await queue.pushBulk(Array.from({ length: 5 }, (_, n) => ({ data: { n: 200 + n } })));
      expect(after).toHaveLength(5);
      await waitFor(() => ([200, 201, 202, 203, 204].every((n) => done.has(n)) ? true : undefined));
      // The five whose records went are dead-lettered with the reason (unless the worker had them already).
      await waitFor(async () => {
        const s = await queue.stats();
        return s.waiting + s.processing === 0 ? true : undefined;
      });
      const lost = await queue.deadJobs();
      for (const d of lost) expect(d.error).toBe('record lost');
      expect(lost.length + [100, 101, 102, 103, 104].filter((n) => done.has(n)).length).toBe(5);
      expect(errors).toEqual([]);
    } finally {
      await worker.close({ timeoutMs: 0 });
    }
  });
});
