import { defaultCodec, type ScriptArg } from '@cyredis/core';
import { randomPrefix, traceKeys } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, type RequestId } from '../src/index.js';
import * as protocol from '../src/protocol.js';

/**
 * The one documented exception (lua/job_queue.lua header, UNDECLARED; README "Keys and compatibility"):
 * the per-priority waiting lists `<queue>:w:<priority>`, chosen inside the script.
 */
const PRIORITY_LIST = /:w:(-?\d+)$/;

// Every operation, run with the keys the API passes, through a prologue that records each key touched
// that is not in KEYS: the list must hold only the per-priority lists, so no new undeclared key slips in.
describe.each(topologies)('keys job_queue.lua touches on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let seedKeys: string[];
  let keys: string[];
  let list: (priority: number) => string;

  /** Runs one call traced; returns its reply and the undeclared keys it touched. */
  async function traced(args: ScriptArg[], callKeys: readonly string[] = keys): Promise<{ reply: unknown; undeclared: string[] }> {
    const { reply, undeclared } = await traceKeys(redis, JOB_QUEUE_LUA, callKeys, args as (string | number)[]);
    if (reply instanceof Error) throw reply;
    return { reply, undeclared };
  }

  beforeEach(() => {
    prefix = randomPrefix();
    seedKeys = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{k}:${k}`);
    keys = protocol.declaredKeys(seedKeys).keys;
    list = (priority) => `${seedKeys[0]!}:w:${priority}`;
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  const job = (id: string | undefined, priority = 0) => ({ id, text: '"x"', priority, policy: '1', delaySeconds: 0 });

  it('declares every key but the priority lists, operation by operation', async () => {
    expect((await traced(protocol.encodePush({ ...job('a', 5), id: 'a' }))).undeclared).toEqual([list(5)]);
    expect((await traced(protocol.encodePushMany([job(undefined), job('b'), job('d', 0)]))).undeclared).toEqual([list(0)]);
    expect((await traced(protocol.encodePushMany([{ ...job('later'), delaySeconds: 60 }]))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeStats())).undeclared).toEqual([]);
    // Dedup keys are declared after the twelve, one per job with a dedup.
    const deduped = [{ ...job('t1'), dedup: { key: 't', ttlMs: 60_000, mode: 'throttle' as const } }, { ...job(undefined), dedup: { key: 'd', ttlMs: 60_000, mode: 'debounce' as const } }];
    const dd = await traced(protocol.encodePushMany(deduped), protocol.pushKeys(keys, deduped));
    expect(dd.undeclared).toEqual([list(0)]);
    expect(await redis.exists(`${seedKeys[0]!}:dedup:t`, `${seedKeys[0]!}:dedup:d`)).toBe(2);

    const request: RequestId = { lane: 'lane', seq: 1 };
    const pop = await traced(protocol.encodeFetch(1, 30_000, request), protocol.requestKeys(keys, request));
    expect(pop.undeclared).toEqual([list(5)]);
    const [a] = protocol.decodeFetch(pop.reply, defaultCodec).jobs;
    expect((await traced(protocol.encodeExtend([a!], 30_000))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeRelease(a!))).undeclared).toEqual([list(5)]);

    const second = await traced(protocol.encodeFetch(2, 30_000, undefined));
    expect(second.undeclared).toEqual([list(5), list(0)]);
    const [again, first] = protocol.decodeFetch(second.reply, defaultCodec).jobs;
    expect((await traced(protocol.encodeFail(again!, 'boom'))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeComplete(first!))).undeclared).toEqual([]);

    // Completes nothing, leases the last waiting job: the queue runs empty, so the script checks and repairs
    // its structures, reading every priority list (see RECOVERY). Those are the only keys not declared.
    const ackRequest: RequestId = { lane: 'ack-lane', seq: 2 };
    const ack = await traced(protocol.encodeAck([], 5, 30_000, ackRequest), protocol.requestKeys(keys, ackRequest));
    expect(ack.undeclared.length).toBeGreaterThan(0);
    for (const key of ack.undeclared) {
      expect(key.startsWith(`${seedKeys[0]!}:w:`)).toBe(true);
      expect(Math.abs(Number(PRIORITY_LIST.exec(key)?.[1]))).toBeLessThanOrEqual(1000);
    }
    const [last] = protocol.decodeAck(ack.reply, defaultCodec).jobs;
    expect((await traced(protocol.encodeFail(last!, 'fatal', true))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeDead(10))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeRetryDead(10, 0))).undeclared).toEqual([list(0)]);
  });

  it('declares every key but the priority lists for the inspection and control operations', async () => {
    const clock = protocol.policyClock({ events: true, eventsMaxLen: 100, completed: { count: 1, ageMs: 1000 }, dead: { count: 1, ageMs: 1000 } });
    const run = async (args: ScriptArg[]) => (await traced(protocol.withPolicy(args, clock))).undeclared;
    await run(protocol.encodePushMany([job('a', 3), job('b', 3), { ...job('c'), delaySeconds: 60 }]));
    expect(await run(protocol.encodeGetJob('a'))).toEqual([]);
    expect(await run(protocol.encodeGetJobs('waiting', 0, 10))).toEqual([list(3)]);
    for (const state of ['delayed', 'active', 'completed', 'dead'] as const) expect(await run(protocol.encodeGetJobs(state, 0, 10))).toEqual([]);
    expect(await run(protocol.encodePromote('c'))).toEqual([list(0)]);
    expect(await run(protocol.encodeRemove('b', false))).toEqual([list(3)]);
    expect(await run(protocol.encodePause(true))).toEqual([]);
    expect(await run(protocol.encodePaused())).toEqual([]);
    expect(await run(protocol.encodePause(false))).toEqual([]);
    const { reply } = await traced(protocol.withPolicy(protocol.encodeFetch(1, 30_000, undefined), clock));
    const [a] = protocol.decodeFetch(reply, defaultCodec).jobs;
    expect(await run(protocol.encodeProgress(a!, '10'))).toEqual([]);
    expect(await run(protocol.encodeLog('a', 'line'))).toEqual([]);
    expect(await run(protocol.encodeLogs('a', 0, 10))).toEqual([]);
    expect(await run(protocol.encodeFail(a!, 'x', true))).toEqual([]);
    expect(await run(protocol.encodeRetryJob('a'))).toEqual([list(3)]);
    expect(await run(protocol.encodeClean('dead', 0, 10))).toEqual([]);
    expect(await run(protocol.encodeDrain(true, 10))).toEqual([list(3), list(0)]);
    const obliterated = await run(protocol.encodeObliterate(true));
    for (const key of obliterated) expect(PRIORITY_LIST.test(key)).toBe(true);
  });

  it('declares every key but the per-group lists for grouped jobs and the group operations', async () => {
    const groupList = (g: string) => `${seedKeys[0]!}:g:${g}`;
    const grouped = [{ ...job(undefined), group: 'a' }, { ...job('b1'), group: 'b' }];
    expect((await traced(protocol.encodePushMany(grouped))).undeclared.sort()).toEqual([groupList('a'), groupList('b')]);
    expect((await traced(protocol.encodeGroupOptions('a', { concurrency: 2, rateLimit: 5, rateWindowMs: 1000 }))).undeclared).toEqual([groupList('a')]);
    expect((await traced(protocol.encodeGroupPause('b', true))).undeclared).toEqual([groupList('b')]);
    const pop = await traced(protocol.encodeFetch(5, 30_000, undefined));
    // Group b is paused: with no group ready after a's job, the pop re-places the waiting groups (the sweep
    // of RECOVERY, once per 60 s), which reads b's list.
    expect(pop.undeclared.sort()).toEqual([groupList('a'), groupList('b')]);
    const leased = protocol.decodeFetch(pop.reply, defaultCodec).jobs;
    const ack = await traced(protocol.encodeAck(leased, 5, 30_000, undefined));
    for (const key of ack.undeclared) expect(key === groupList('a') || key === groupList('b') || PRIORITY_LIST.test(key)).toBe(true);
    expect((await traced(protocol.encodeDrain(true, 100))).undeclared.every((k) => k.startsWith(`${seedKeys[0]!}:`))).toBe(true);
  });

  it('declares every key for the scheduler operations (a grouped template: its group list)', async () => {
    const far = Date.now() + 3_600_000;
    const template = { ...job(undefined), group: 'sg' };
    expect((await traced(protocol.encodeSchedule('s', far, '{"everyMs":1000}', template))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeScheduler('s'))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeSchedulers('0'))).undeclared).toEqual([]);
    // A tick due now: its job waits in its group at once.
    expect((await traced(protocol.encodeScheduleNext('s', far, far + 1))).undeclared).toEqual([]);
    expect((await traced(protocol.encodeSchedule('now', 0, '{"everyMs":1000}', template))).undeclared).toEqual([`${seedKeys[0]!}:g:sg`]);
    expect((await traced(protocol.encodeUnschedule('s'))).undeclared).toEqual([]);
  });

  it('with only the seed four keys, touches exactly the keys the header says it derives', async () => {
    const derived = ['delayed', 'jobs', 'state', 'meta', 'wake', 'completed', 'events', 'info', 'groups', 'gready', 'glimited', 'schedulers', 'gwait'].map((s) => `${seedKeys[0]!}:${s}`);
    const [, , , meta, wake] = derived;
    const pushed = await traced(protocol.encodePush({ ...job('a', 2), id: 'a' }), seedKeys);
    expect(pushed.undeclared.sort()).toEqual([derived[1]!, meta!, list(2), wake!].sort());
    const popped = await traced(protocol.encodeSeedPop(1, 30_000), seedKeys);
    for (const key of popped.undeclared) expect(derived.includes(key) || PRIORITY_LIST.test(key)).toBe(true);
    expect(popped.undeclared).toContain(derived[2]!);
  });
});
