import { defaultCodec, LuaScriptManager } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, JobQueue } from '../src/index.js';
import * as protocol from '../src/protocol.js';

// Inspection and control across many groups (issue 16): waiting pages list grouped jobs after the ungrouped
// ones, group by group by name, in calls bounded to 1000 groups; drain removes them all in bounded calls.
describe.each(topologies)('waiting pages and drain across many groups on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<number>;
  let grouped: string[];
  let ungrouped: string[];

  beforeEach(async () => {
    prefix = randomPrefix();
    queue = new JobQueue<number>(redis, 'pages', { prefix });
    // 1200 groups of one job (names padded so that their byte order is their number order), one of two,
    // and three ungrouped jobs pushed after them, two at a higher priority.
    grouped = await queue.pushBulk(Array.from({ length: 1200 }, (_, n) => ({ data: n, group: `g${String(n).padStart(4, '0')}` })));
    grouped.push(await queue.push(1200, { group: 'g1199' }));
    ungrouped = [await queue.push(-1), ...(await queue.pushBulk([{ data: -2, priority: 5 }, { data: -3, priority: 5 }]))];
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  const expected = (): string[] => [ungrouped[1]!, ungrouped[2]!, ungrouped[0]!, ...grouped];

  it('pages through the ungrouped jobs and then every group in name order, past the bound on groups per call', async () => {
    const order = expected();
    expect(await queue.stats()).toMatchObject({ waiting: order.length });
    const ids = async (offset: number, limit: number) => (await queue.getJobs('waiting', { offset, limit })).map((j) => j.id);
    expect(await ids(0, 5)).toEqual(order.slice(0, 5));
    // Crossing from the first 1000 groups into the rest, and a page deep in the second call's groups.
    expect(await ids(990, 30)).toEqual(order.slice(990, 1020));
    expect(await ids(1190, 1000)).toEqual(order.slice(1190));
    expect(await ids(order.length, 10)).toEqual([]);
    let all: string[] = [];
    for (let offset = 0; offset < order.length; offset += 1000) all = all.concat(await ids(offset, 1000));
    expect(all).toEqual(order);
    const first = (await queue.getJobs('waiting', { offset: 3, limit: 1 }))[0];
    expect(first).toMatchObject({ id: grouped[0], state: 'waiting', data: 0 });
  });

  it('one script call passes at most 1000 groups and says where to go on', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const keys = protocol.declaredKeys(queue.keys.slice(0, 4)).keys;
    const call = (...args: Parameters<typeof protocol.encodeGetJobs>) => scripts.executeScript(script, { keys, args: protocol.encodeGetJobs(...args) });
    const ids = (reply: unknown) => protocol.decodeGetJobs(reply, defaultCodec, defaultCodec).map((j) => j.id);
    const order = expected();
    // A page that ends within the first 1000 groups is complete.
    const whole = await call('waiting', 0, 1000);
    expect(ids(whole)).toEqual(order.slice(0, 1000));
    expect(protocol.decodeGetJobsNext(whole)).toBeUndefined();
    // Past them: the three ungrouped and 997 grouped skipped, three taken, then where to go on.
    const part = await call('waiting', 1000, 10);
    expect(ids(part)).toEqual(order.slice(1000, 1003));
    expect(protocol.decodeGetJobsNext(part)).toEqual({ offset: 0, afterGroup: 'g0999' });
    expect(ids(await call('waiting', 0, 7, 'g0999'))).toEqual(order.slice(1003, 1010));
    // after_group belongs to waiting pages only, and names a group.
    await expect(call('delayed', 0, 7, 'g0999')).rejects.toThrow(/after_group/);
    await expect(call('waiting', 0, 7, '')).rejects.toThrow(/after_group/);
  });

  it('drains every grouped job in calls of at most 1000, and leaves no group key behind', async () => {
    expect(await queue.drain()).toBe(expected().length);
    expect(await queue.stats()).toMatchObject({ waiting: 0 });
    expect(await queue.getJobs('waiting')).toEqual([]);
    const node = redis as Redis;
    expect(await node.zcard(`${queue.keys[0]!}:gwait`)).toBe(0);
    expect(await node.zcard(`${queue.keys[0]!}:gready`)).toBe(0);
    expect(await node.hlen(`${queue.keys[0]!}:groups`)).toBe(0);
    expect(await node.exists(`${queue.keys[0]!}:g:g0000`, `${queue.keys[0]!}:g:g1199`)).toBe(0);
  });
});
