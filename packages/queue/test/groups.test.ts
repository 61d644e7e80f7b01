import { defaultCodec, InvalidArgumentError, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, JobQueue, Worker, type Job } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { snapshot } from './helpers.js';

interface Order {
  group: string;
  n: number;
}

// Issue 16: groups, FIFO inside, at most `concurrency` leased per group, served round-robin.
describe.each(topologies)('groups on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<Order>;
  const workers: Worker<Order, unknown>[] = [];

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<Order>(redis, 'orders', { prefix, removeOnComplete: true });
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.close({ timeoutMs: 0 })));
    await deleteByPrefix(redis, prefix);
  });

  /** The group state the script keeps: the groups hash, the ready and limited sets, the group lists. */
  async function groupKeys(): Promise<{ fields: Record<string, string>; ready: number; limited: number; lists: string[] }> {
    const base = queue.keys[0]!;
    const node = redis as Redis;
    return {
      fields: await node.hgetall(`${base}:groups`),
      ready: await node.zcard(`${base}:gready`),
      limited: await node.zcard(`${base}:glimited`),
      lists: Object.keys(await snapshot(redis, prefix)).filter((k) => k.startsWith(`${base}:g:`)),
    };
  }

  it('fairness: group A with 5,000 waiting and group B with 10 pushed after: B finishes within the first 40', async () => {
    await queue.setGroupOptions('A', { concurrency: 2 });
    for (let start = 0; start < 5000; start += 1000) {
      await queue.pushBulk(Array.from({ length: 1000 }, (_, i) => ({ data: { group: 'A', n: start + i }, group: 'A' })));
    }
    await queue.pushBulk(Array.from({ length: 10 }, (_, n) => ({ data: { group: 'B', n }, group: 'B' })));
    const order: Order[] = [];
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    const seen = new Map<string, number>();
    workers.push(
      new Worker(
        queue,
        async (job: Job<Order>) => {
          const g = job.data.group;
          running.set(g, (running.get(g) ?? 0) + 1);
          most.set(g, Math.max(most.get(g) ?? 0, running.get(g)!));
          // FIFO inside the group: each job is the group's next.
          expect(job.data.n).toBe(seen.get(g) ?? 0);
          seen.set(g, job.data.n + 1);
          await new Promise((resolve) => setTimeout(resolve, 2));
          running.set(g, running.get(g)! - 1);
          order.push(job.data);
        },
        { concurrency: 8 },
      ),
    );
    await waitFor(() => (order.length >= 40 ? true : undefined), { timeoutMs: 30_000 });
    const firstForty = order.slice(0, 40);
    expect(firstForty.filter((o) => o.group === 'B')).toHaveLength(10);
    expect(most.get('A')).toBeLessThanOrEqual(2);
    expect(most.get('B')).toBe(1);
  });

  it('a group is FIFO whatever the priority, and ungrouped jobs are served first', async () => {
    await queue.push({ group: 'g', n: 0 }, { group: 'g', priority: -5 });
    await queue.push({ group: 'g', n: 1 }, { group: 'g', priority: 9 });
    await queue.push({ group: '-', n: 2 }, { priority: 1 });
    expect((await queue.stats()).waiting).toBe(3);
    const first = await queue.pop(10);
    // Concurrency 1: one job of g at a time.
    expect(first.map((j) => j.data.n)).toEqual([2, 0]);
    expect(await queue.pop(10)).toEqual([]);
    expect(await queue.complete(first[1]!)).toBe(true);
    expect((await queue.pop(10)).map((j) => j.data.n)).toEqual([1]);
  });

  it('a failed, released or expired lease gives the group its slot back; a released job goes first again', async () => {
    await queue.pushBulk([0, 1, 2].map((n) => ({ data: { group: 'g', n }, group: 'g', maxRetries: 5, backoff: { baseMs: 1, maxMs: 1 } })));
    const [a] = await queue.pop(5);
    expect(await queue.release(a!)).toBe(true);
    const [again] = await queue.pop(5);
    expect(again!.data.n).toBe(0);
    expect(await queue.fail(again!, new Error('boom'))).toBe('retry');
    // The retry waits 1 ms; then the next job and the retried one (appended) follow in order.
    const next = await waitFor(async () => {
      const got = await queue.pop(5);
      return got.length > 0 ? got : undefined;
    });
    expect(next.map((j) => j.data.n)).toEqual([1]);
    await queue.complete(next[0]!);
    const [short] = await queue.pop(5, { leaseMs: 30 });
    expect(await queue.pop(5)).toEqual([]);
    // The lease runs out: the job comes back first in its group, the slot is free again.
    const back = await waitFor(async () => {
      const got = await queue.pop(5);
      return got.length > 0 ? got : undefined;
    });
    expect(back[0]!.id).toBe(short!.id);
    expect(back[0]!.attempts).toBe(short!.attempts + 1);
  });

  it('pauseGroup holds one group back while the others run; resumeGroup lets it go', async () => {
    await queue.pushBulk([{ data: { group: 'a', n: 0 }, group: 'a' }, { data: { group: 'b', n: 0 }, group: 'b' }]);
    await queue.pauseGroup('a');
    await queue.pauseGroup('a');
    const got = await queue.pop(10);
    expect(got.map((j) => j.data.group)).toEqual(['b']);
    await queue.push({ group: 'a', n: 1 }, { group: 'a' });
    expect(await queue.pop(10)).toEqual([]);
    await queue.resumeGroup('a');
    expect((await queue.pop(10)).map((j) => j.data)).toEqual([{ group: 'a', n: 0 }]);
  });

  it('a group rate limit spreads its leases; other groups are not held', async () => {
    await queue.setGroupOptions('slow', { concurrency: 100, rateLimit: { limit: 2, windowMs: 60_000 } });
    await queue.pushBulk(Array.from({ length: 5 }, (_, n) => ({ data: { group: 'slow', n }, group: 'slow' })));
    await queue.pushBulk(Array.from({ length: 3 }, (_, n) => ({ data: { group: 'fast', n }, group: 'fast' })));
    const leased: Order[] = [];
    for (let i = 0; i < 10; i++) {
      const fetched = await queue.fetch(10);
      leased.push(...fetched.jobs.map((j) => j.data));
      for (const job of fetched.jobs) await queue.complete(job);
    }
    // One slot of 30 s each: a single lease of `slow` in the first half minute; `fast` all done.
    expect(leased.filter((o) => o.group === 'slow')).toEqual([{ group: 'slow', n: 0 }]);
    expect(leased.filter((o) => o.group === 'fast').map((o) => o.n)).toEqual([0, 1, 2]);
    const { limited } = await groupKeys();
    expect(limited).toBe(1);
    const wait = await queue.fetch(10);
    expect(wait.jobs).toEqual([]);
    expect(wait.waitMs).toBeGreaterThan(25_000);
  });

  it('memory: a group with nothing waiting or leased leaves nothing but the options it was given', async () => {
    await queue.setGroupOptions('kept', { concurrency: 3 });
    await queue.pushBulk(['kept', 'x', 'y', 'y'].map((group, n) => ({ data: { group, n }, group })));
    workers.push(new Worker(queue, () => undefined, { concurrency: 4 }));
    await waitFor(async () => ((await queue.stats()).completed === 4 ? true : undefined), { timeoutMs: 20_000 });
    await waitFor(async () => {
      const state = await groupKeys();
      return Object.keys(state.fields).length === 1 ? state : undefined;
    });
    expect(await groupKeys()).toEqual({ fields: { 'o:kept': '3,0,0' }, ready: 0, limited: 0, lists: [] });
  });

  it('remove, drain and obliterate reach jobs waiting in groups', async () => {
    const ids = await queue.pushBulk([0, 1, 2, 3].map((n) => ({ data: { group: n < 2 ? 'a' : 'b', n }, group: n < 2 ? 'a' : 'b' })));
    expect(await queue.getJob(ids[1]!)).toMatchObject({ state: 'waiting', data: { group: 'a', n: 1 } });
    expect(await queue.remove(ids[0]!)).toBe(true);
    expect((await queue.stats()).waiting).toBe(3);
    expect(await queue.drain()).toBe(3);
    expect(await queue.stats()).toMatchObject({ waiting: 0 });
    expect(await groupKeys()).toEqual({ fields: {}, ready: 0, limited: 0, lists: [] });
    await queue.pushBulk([{ data: { group: 'c', n: 0 }, group: 'c' }, { data: { group: 'c', n: 1 }, group: 'c' }]);
    await queue.setGroupOptions('c', { concurrency: 2 });
    expect(await queue.obliterate()).toBe(true);
    expect(await snapshot(redis, prefix)).toEqual({});
  });

  it('refuses bad group input by name; the raw script answers ERR and writes nothing', async () => {
    await expect(queue.push({ group: '', n: 0 }, { group: '' })).rejects.toThrow(InvalidArgumentError);
    await expect(queue.push({ group: 'x', n: 0 }, { group: 'x'.repeat(257) })).rejects.toThrow('options.group');
    await expect(queue.setGroupOptions('g', { concurrency: 0 })).rejects.toThrow('options.concurrency');
    await expect(queue.setGroupOptions('g', { concurrency: 1.5 })).rejects.toThrow(InvalidArgumentError);
    await expect(queue.setGroupOptions('g', { rateLimit: { limit: 0, windowMs: 1 } })).rejects.toThrow('options.rateLimit.limit');
    await expect(queue.setGroupOptions('g', { burst: 1 } as never)).rejects.toThrow(InvalidArgumentError);
    await expect(queue.setGroupOptions('', {})).rejects.toThrow('group');
    await expect(queue.pauseGroup('')).rejects.toThrow('group');
    await expect(queue.resumeGroup('y'.repeat(300))).rejects.toThrow('group');

    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const keys = protocol.declaredKeys(queue.keys).keys;
    const run = (args: ScriptArg[]) => scripts.executeScript(script, { keys, args });
    const before = await snapshot(redis, prefix);
    const calls: ScriptArg[][] = [
      ['PUSHN', '*', 1, 1, 0, '1', 0, 4, '', 'x'],
      ['PUSHN', '*', 1, 1, 0, '1', 0, 4, 'g'.repeat(257), 'x'],
      ['PUSHN', '*', 1, 1, 0, '1', 0, 8, 'g', 'x'],
      ['GROUPOPTS', '*', 'g', 0, 0, 0],
      ['GROUPOPTS', '*', 'g', 1, 5, 0],
      ['GROUPOPTS', '*', 'g', 1, -1, 10],
      ['GROUPOPTS', '*', '', 1, 0, 0],
      ['GROUPOPTS', '*', 'g', 1, 0, 0, 'extra'],
      ['GROUPPAUSE', '*', 'g', 2],
      ['GROUPPAUSE', '*', '', 1],
    ];
    for (const args of calls) await expect(run(args), JSON.stringify(args)).rejects.toThrow(/ERR job_queue: /);
    expect(await snapshot(redis, prefix)).toEqual(before);
  });

  it('the contract: PUSHN with groups, GROUPOPTS, GROUPPAUSE', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const keys = protocol.declaredKeys(queue.keys).keys;
    const run = (args: ScriptArg[]) => scripts.executeScript(script, { keys, args });
    const spec = (n: number, group?: string): protocol.PushSpec => ({ id: undefined, text: defaultCodec.encode(n), priority: 0, policy: '0', delaySeconds: 0, group });
    const jobs = [spec(1, 'a'), spec(2, 'a'), spec(3), spec(4, 'b')];
    const pushed = protocol.decodePushMany(jobs, await run(protocol.encodePushMany(jobs)));
    expect(pushed.every((r) => r.added)).toBe(true);
    expect(await run(protocol.encodeGroupOptions('a', { concurrency: 2, rateLimit: 0, rateWindowMs: 0 }))).toBe(1);
    expect(protocol.decodeHeld(await run(protocol.encodeGroupPause('b', true)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodeGroupPause('b', true)))).toBe(false);
    const fetched = protocol.decodeFetch(await run(protocol.encodeFetch(10, 30_000, undefined)), defaultCodec);
    expect(fetched.jobs.map((j) => j.data)).toEqual([3, 1, 2]);
    expect(protocol.decodeHeld(await run(protocol.encodeGroupPause('b', false)))).toBe(true);
    expect(protocol.decodeFetch(await run(protocol.encodeFetch(10, 30_000, undefined)), defaultCodec).jobs.map((j) => j.data)).toEqual([4]);
  });
});
