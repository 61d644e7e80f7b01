import { defaultCodec, LuaScriptManager, ScriptError, type Codec, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, type Job, type RequestId } from '../src/index.js';
import * as protocol from '../src/protocol.js';

const codec: Codec<unknown> = defaultCodec;
const spec = (id: string | undefined, data: unknown, extra: Partial<protocol.PushSpec> = {}): protocol.PushSpec => ({
  id,
  text: codec.encode(data),
  priority: 0,
  policy: '3',
  delaySeconds: 0,
  ...extra,
});

// Every operation of the shipped script, sent by the encoders and read by the decoders the API uses.
describe.each(topologies)('job_queue.lua protocol on %s', (topology) => {
  const redis = suiteClient(topology);
  const scripts = new LuaScriptManager(redis);
  const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
  let prefix: string;
  let seedKeys: string[];
  let keys: string[];
  const run = (args: ScriptArg[], callKeys: readonly string[] = keys) => scripts.executeScript(script, { keys: callKeys, args });

  beforeEach(() => {
    prefix = randomPrefix();
    seedKeys = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{p}:${k}`);
    keys = protocol.declaredKeys(seedKeys).keys;
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('PUSH and seed POP: the seed forms, with the four keys or all nine', async () => {
    expect(protocol.decodePush(await run(protocol.encodePush({ ...spec('a', 'x'), id: 'a' }), seedKeys))).toBe(true);
    expect(protocol.decodePush(await run(protocol.encodePush({ ...spec('a', 'y'), id: 'a' })))).toBe(false);
    expect(protocol.decodePush(await run(protocol.encodePush({ ...spec('b', 'z', { priority: 5 }), id: 'b' })))).toBe(true);
    expect(protocol.decodeSeedPop(await run(protocol.encodeSeedPop(5, 30_000), seedKeys))).toEqual([
      { id: 'b', text: codec.encode('z') },
      { id: 'a', text: codec.encode('x') },
    ]);
  });

  it('PUSHN, POP (full), COMPLETE, STATS', async () => {
    const jobs = [spec(undefined, 1), spec(undefined, 2), spec('n', 3, { priority: 9, policy: '0,10,20' }), spec('n', 4)];
    const pushed = protocol.decodePushMany(jobs, await run(protocol.encodePushMany(jobs)));
    expect(pushed).toEqual([
      { id: expect.any(String), added: true },
      { id: expect.any(String), added: true },
      { id: 'n', added: true },
      { id: 'n', added: false },
    ]);
    const fetched = protocol.decodeFetch(await run(protocol.encodeFetch(2, 30_000, undefined)), codec);
    expect(fetched.waitMs).toBe(0);
    expect(fetched.undecodable).toBeUndefined();
    expect(fetched.jobs.map(({ id, data, priority, attempts, maxRetries }) => ({ id, data, priority, attempts, maxRetries }))).toEqual([
      { id: 'n', data: 3, priority: 9, attempts: 1, maxRetries: 0 },
      { id: pushed[0]!.id, data: 1, priority: 0, attempts: 1, maxRetries: 3 },
    ]);
    expect(protocol.decodeHeld(await run(protocol.encodeComplete(fetched.jobs[0]!)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodeComplete(fetched.jobs[0]!)))).toBe(false);
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toEqual({ waiting: 1, delayed: 0, processing: 1, failed: 0, dead: 0, completed: 1 });
  });

  it('PUSHN with dedups: throttle and debounce under their declared keys', async () => {
    const throttle = { key: 't', ttlMs: 60_000, mode: 'throttle' as const };
    const debounce = { key: 'd', ttlMs: 60_000, mode: 'debounce' as const };
    const jobs = [spec('a', 1, { dedup: throttle }), spec('b', 2, { dedup: throttle }), spec(undefined, 3, { dedup: debounce }), spec(undefined, 4, { dedup: debounce })];
    const pushed = protocol.decodePushMany(jobs, await run(protocol.encodePushMany(jobs), protocol.pushKeys(keys, jobs)));
    expect(pushed).toEqual([
      { id: 'a', added: true },
      { id: 'a', added: false },
      { id: expect.any(String), added: true },
      { id: pushed[2]!.id, added: false },
    ]);
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toMatchObject({ waiting: 1, delayed: 1 });
  });

  it('ACK with a request: completes, leases more, and a repeat answers as the first run', async () => {
    const jobs = [spec('a', 'a'), spec('b', 'b'), spec('c', 'c')];
    await run(protocol.encodePushMany(jobs));
    const first = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, undefined)), codec).jobs;
    const second = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, undefined)), codec).jobs;
    const request: RequestId = { lane: 'lane-1', seq: 7 };
    // Two lease tokens: two groups; a job given under the wrong token is not completed.
    const acked = [first[0]!, second[0]!, { id: 'c', leaseToken: first[0]!.leaseToken }];
    const args = protocol.encodeAck(acked, 5, 30_000, request);
    const reply = protocol.decodeAck(await run(args, protocol.requestKeys(keys, request)), codec);
    expect(reply.completed).toEqual([true, true, false]);
    expect(reply.jobs.map((j) => j.id)).toEqual(['c']);
    // Not a full batch and nothing waits: the time to the next lease deadline.
    expect(reply.waitMs).toBeGreaterThan(0);
    expect(reply.waitMs).toBeLessThanOrEqual(30_000);
    const again = protocol.decodeAck(await run(args, protocol.requestKeys(keys, request)), codec);
    expect(again.completed).toEqual(reply.completed);
    expect(again.jobs).toEqual(reply.jobs);
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toMatchObject({ processing: 1, completed: 2 });
  });

  it('POP (full) with a request replays its leases', async () => {
    await run(protocol.encodePushMany([spec('a', 'a'), spec('b', 'b')]));
    const request: RequestId = { lane: 'pop-lane', seq: 0 };
    const callKeys = protocol.requestKeys(keys, request);
    const first = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, request), callKeys), codec);
    const repeat = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, request), callKeys), codec);
    expect(repeat.jobs).toEqual(first.jobs);
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toMatchObject({ waiting: 1, processing: 1 });
  });

  it('FAIL (retry, then final), EXTEND, RELEASE, DEAD, RETRYDEAD', async () => {
    await run(protocol.encodePushMany([spec('f', { n: 1 }), spec('r', 'r')]));
    const [f, r] = protocol.decodeFetch(await run(protocol.encodeFetch(2, 30_000, undefined)), codec).jobs as [Job<unknown>, Job<unknown>];
    expect(protocol.decodeExtend(await run(protocol.encodeExtend([f, { id: 'r', leaseToken: '1' }], 60_000)))).toEqual([true, false]);
    expect(protocol.decodeHeld(await run(protocol.encodeRelease(r)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodeRelease(r)))).toBe(false);
    const retry = protocol.decodeFail(await run(protocol.encodeFail(f, 'boom')));
    expect(retry).toEqual({ outcome: 'retry', atMs: expect.any(Number) });
    expect(protocol.decodeFail(await run(protocol.encodeFail(f, 'boom')))).toEqual({ outcome: 'lost', atMs: 0 });
    const again = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, undefined)), codec).jobs[0]!;
    expect(again.id).toBe('r');
    const dead = protocol.decodeFail(await run(protocol.encodeFail(again, 'fatal', true)));
    expect(dead.outcome).toBe('dead');
    expect(protocol.decodeDead(await run(protocol.encodeDead(10)), codec)).toEqual([{ id: 'r', data: 'r', attempts: 1, error: 'fatal', diedAt: dead.atMs }]);
    expect(protocol.decodeRetryDead(await run(protocol.encodeRetryDead(1000, 0)))).toEqual({ moved: 1, seen: 1 });
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toEqual({ waiting: 1, delayed: 0, processing: 0, failed: 1, dead: 0, completed: 0 });
  });

  it('PUSHN: the fast path (one run of generated ids) writes and answers exactly as the general section', async () => {
    // Two queues get the same pushes at the same caller time, with events on. The second spells the run's
    // size with a leading zero: the general section reads it as the same number, the fast path passes it on.
    const general = protocol.declaredKeys(['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{g}:${k}`)).keys;
    const clock = protocol.policyClock({ events: true, eventsMaxLen: 1000, completed: { count: 0, ageMs: -1 }, dead: { count: 10, ageMs: -1 } }, 1733561234.567);
    const push = async (jobs: protocol.PushSpec[], force = false) => {
      const args = protocol.withPolicy(protocol.encodePushMany(jobs), clock);
      const replies = [await run(args)];
      if (force) args[3] = `0${String(args[3])}`;
      replies.push(await run(args, general));
      return replies;
    };
    const steps: protocol.PushSpec[][] = [
      [spec(undefined, 1)],
      [spec(undefined, 2, { priority: 5 }), spec(undefined, 3, { priority: 5 })],
      Array.from({ length: 25 }, (_, i) => spec(undefined, { i }, { priority: -1000, policy: '0' })),
      [spec(undefined, 'top', { priority: 1000, policy: '9' })],
      // Not the fast path's: a named job, a policy of two digits, a delay.
      [spec('31', 'mine')],
      [spec(undefined, 'p', { policy: '12' })],
      [spec(undefined, 'later', { delaySeconds: 5 })],
      // The next generated ids are 33 to 35, and the job pushed as "33" holds one: the general section takes
      // the fast path's block and replaces that id as it would have (with the next free one, 36).
      [spec('33', 'taken')],
      [spec(undefined, 'a'), spec(undefined, 'b'), spec(undefined, 'c')],
      [spec(undefined, 'after')],
    ];
    const replies = [];
    for (const [i, jobs] of steps.entries()) {
      const [fast, slow] = await push(jobs, i !== 4 && i !== 7);
      expect(fast).toEqual(slow);
      replies.push(fast);
    }
    // Ids 1 to 29 on the fast path, 30 and 32 (31 is a named job's) on the general one.
    expect(replies.slice(0, 4).flat(1)).toEqual(Array.from({ length: 29 }, (_, i) => String(i + 1)));
    expect(replies.slice(5, 7)).toEqual([['30'], ['32']]);
    expect(replies.slice(8)).toEqual([['36', '34', '35'], ['37']]);
    const state = async (callKeys: readonly string[]) => {
      const [waiting, , , , delayed, jobs, , meta, wake, , events] = callKeys as string[];
      const lists: Record<string, string[]> = {};
      for (const p of ['-1000', '0', '5', '1000']) lists[p] = await redis.lrange(`${waiting}:w:${p}`, 0, -1);
      return {
        index: await redis.zrange(waiting!, '0', '-1', 'WITHSCORES'),
        lists,
        delayed: await redis.zrange(delayed!, '0', '-1', 'WITHSCORES'),
        jobs: await redis.hgetall(jobs!),
        meta: await redis.hgetall(meta!),
        wake: await redis.lrange(wake!, 0, -1),
        events: (await redis.xrange(events!, '-', '+')).map(([, fields]) => fields),
      };
    };
    const fastState = await state(keys);
    expect(fastState).toEqual(await state(general));
    expect(fastState.meta).toEqual({ ids: '37', waiting: '36' });
    expect(Object.keys(fastState.jobs)).toHaveLength(37);
    expect(fastState.jobs['35']).toBe('0:3@1733561234567:"c"');
    expect(fastState.lists['0']!.slice(-5)).toEqual(['31', '33', '36', '34', '35', '37'].slice(1));
    expect(fastState.index).toEqual(['1000', '-1000', '5', '-5', '0', '0', '-1000', '1000']);
    // One stream entry per call, its events as field pairs: every job added but the delayed one.
    expect(fastState.events).toHaveLength(10);
    expect(fastState.events.flat().filter((field, i) => i % 2 === 0 && field === 'added')).toHaveLength(36);
  });

  it('ACK: the fast path (a worker\'s usual call) writes and answers exactly as the general section', async () => {
    // Three queues get the same calls at the same caller time, with events and retention on: the shipped
    // script; the shipped script with `fetch` spelled with a leading zero, which the general section reads
    // as the same number and the fast path leaves to it; and a copy whose fast path marks its replies, which
    // shows the steps the fast path took.
    const fastReturn = '        flush_events()\n        return out\n';
    expect(JOB_QUEUE_LUA.split(fastReturn)).toHaveLength(2);
    const marked = scripts.registerScript('cyredis:queue:job_queue-marked', JOB_QUEUE_LUA.replace(fastReturn, "        flush_events()\n        out[#out + 1] = 'fast'\n        return out\n"));
    const queues = ['p', 'g', 'm'].map((tag) => protocol.declaredKeys(['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{${tag}}:${k}`)).keys);
    const policy = { events: true, eventsMaxLen: 1000, completed: { count: 3, ageMs: 60_000 }, dead: { count: 10, ageMs: -1 } };
    let seconds = 1733561234.5;
    let seq = 0;
    // One call on the three queues; returns the shipped script's reply and whether the marked copy went fast.
    const call = async (args: ScriptArg[], request?: RequestId) => {
      const clock = protocol.policyClock(policy, seconds);
      const replies: unknown[] = [];
      for (const [i, queue] of queues.entries()) {
        const sent = protocol.withPolicy([...args], clock);
        if (i === 1 && sent[0] === 'ACK') sent[3] = `0${String(sent[3])}`;
        const callKeys = protocol.requestKeys(queue, request);
        replies.push(await scripts.executeScript(i === 2 ? marked : script, { keys: callKeys, args: sent }));
      }
      const [shipped, general, mark] = replies as unknown[][];
      const fast = Array.isArray(mark) && mark[mark.length - 1] === 'fast';
      if (fast) mark.pop();
      expect(general).toEqual(shipped);
      expect(mark).toEqual(shipped);
      return { reply: shipped, fast };
    };
    const ack = async (jobs: protocol.LeaseRef[], fetch: number, values?: (string | undefined)[], request: RequestId = { lane: 'w', seq: seq++ }) => {
      const { reply, fast } = await call(protocol.encodeAck(jobs, fetch, 30_000, request, values), request);
      return { ...protocol.decodeAck(reply, codec), fast, reply };
    };
    await call(protocol.encodePushMany([...Array.from({ length: 8 }, (_, i) => spec(undefined, i, { policy: '2' })), spec(undefined, 'high', { priority: 5 }), spec(undefined, 'high2', { priority: 5 })]));

    // A fetch alone (no completion) and the first completions with a return value go the fast way once
    // the high list is spent; a repeat of a request replays it.
    const first = await ack([], 2);
    expect(first.fast).toBe(false);
    expect(first.jobs.map((j) => j.id)).toEqual(['9', '10']);
    seconds += 1;
    // Jobs left behind wake the next worker: each queue's wake list (KEYS[9]) is emptied first.
    for (const queue of queues) await redis.del(queue[8]!);
    const second = await ack(first.jobs, 2, ['"nine"', undefined]);
    expect(second).toMatchObject({ fast: true, completed: [true, true] });
    for (const queue of queues) expect(await redis.lrange(queue[8]!, 0, -1)).toEqual(['1']);
    expect(second.jobs.map((j) => [j.id, j.attempts])).toEqual([['1', 1], ['2', 1]]);
    const repeat = await ack(first.jobs, 2, ['"nine"', undefined], { lane: 'w', seq: seq - 1 });
    expect(repeat).toMatchObject({ fast: false, completed: [true, true], reply: second.reply });

    // A wrong token completes nothing; a released job comes back with its attempts counted as released.
    seconds += 1;
    const [one, two] = second.jobs as [Job<unknown>, Job<unknown>];
    expect(protocol.decodeHeld((await call(protocol.encodeRelease(two))).reply)).toBe(true);
    const third = await ack([{ id: one.id, leaseToken: '123' }, one], 2);
    expect(third).toMatchObject({ fast: true, completed: [false, true] });
    expect(third.jobs.map((j) => j.id)).toEqual(['2', '3']);

    // Work that came due goes to the general section, which moves it: a retry (its backoff is at most 1 s,
    // the leases last 30 s), a delayed job, and an expired lease of a job the call does not complete.
    const [released, three] = third.jobs as [Job<unknown>, Job<unknown>];
    expect(protocol.decodeFail((await call(protocol.encodeFail(three, 'boom'))).reply).outcome).toBe('retry');
    seconds += 2;
    const fourth = await ack([released], 1);
    expect(fourth).toMatchObject({ fast: false, completed: [true] });
    await call(protocol.encodePushMany([spec(undefined, 'later', { delaySeconds: 1 }), ...Array.from({ length: 6 }, (_, i) => spec(undefined, { extra: i }))]));
    seconds += 2;
    const promoted = await ack(fourth.jobs, 1);
    expect(promoted).toMatchObject({ fast: false, completed: [true] });
    const expiring = await ack(promoted.jobs, 1);
    expect(expiring).toMatchObject({ fast: true, completed: [true] });
    seconds += 20;
    const kept = await ack([], 1);
    seconds += 11;
    const reclaiming = await ack(kept.jobs, 1);
    expect(reclaiming).toMatchObject({ fast: false, completed: [true] });
    expect(reclaiming.jobs.map((j) => j.id)).toEqual(expiring.jobs.map((j) => j.id));
    const fifth = await ack(reclaiming.jobs, 3);
    expect(fifth.fast).toBe(true);

    // A waiting job whose record is lost: the fast path puts back what it popped, the general section
    // dead-letters it. Then paused (held back), resumed, and worked to the end through both paths.
    const head = (await redis.lrange(`${queues[0]![0]!}:w:0`, 0, 0))[0]!;
    for (const queue of queues) await redis.hdel(queue[5]!, head);
    const sixth = await ack(fifth.jobs, 1);
    expect(sixth).toMatchObject({ fast: false });
    expect(sixth.jobs.map((j) => j.id)).not.toContain(head);
    await call(protocol.encodePushMany(Array.from({ length: 6 }, (_, i) => spec(undefined, { more: i }))));
    const beforePause = await ack(sixth.jobs, 1);
    expect(beforePause.jobs).toHaveLength(1);
    await call(protocol.encodePause(true));
    const held = await ack(beforePause.jobs, 1);
    expect(held).toMatchObject({ fast: false, completed: [true], waitMs: -1, jobs: [] });
    await call(protocol.encodePause(false));
    let leased: Job<unknown>[] = [];
    let fastOnes = 0;
    for (let round = 0; round < 20; round++) {
      // Each round within the 30 s lease (an expired lease leaves the call to the general section).
      seconds += 20;
      const next = await ack(leased, 1, leased.map(() => '"done"'));
      if (next.fast) fastOnes++;
      leased = next.jobs;
      if (leased.length === 0) break;
    }
    expect(leased).toEqual([]);
    expect(fastOnes).toBeGreaterThan(0);

    // A queue with group state takes the general section, which gives a completed grouped job's slot back.
    await call(protocol.encodePushMany([spec(undefined, 'grouped', { group: 'g1' })]));
    const grouped = await ack([], 1);
    expect(grouped.jobs).toHaveLength(1);
    await call(protocol.encodePushMany(Array.from({ length: 3 }, (_, i) => spec(undefined, { after: i }))));
    const ungrouped = await ack(grouped.jobs, 1);
    expect(ungrouped).toMatchObject({ fast: false, completed: [true] });

    // Every key of the three queues holds the same (stream entries compared by their fields).
    const dump = async (tag: string) => {
      const out: Record<string, unknown> = {};
      const [queue] = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{${tag}}:${k}`);
      const names = [...protocol.declaredKeys([queue!, `${prefix}{${tag}}:processing`, `${prefix}{${tag}}:failed`, `${prefix}{${tag}}:dead`]).keys];
      for (const key of [...names, `${queue!}:w:0`, `${queue!}:w:5`, `${queue!}:g:g1`, `${queue!}:req:w`]) {
        const name = key.slice(`${prefix}{${tag}}:`.length);
        const type = await redis.type(key);
        if (type === 'none') continue;
        if (type === 'string') out[name] = await redis.get(key);
        else if (type === 'hash') out[name] = await redis.hgetall(key);
        else if (type === 'zset') out[name] = await redis.zrange(key, '0', '-1', 'WITHSCORES');
        else if (type === 'list') out[name] = await redis.lrange(key, 0, -1);
        else out[name] = (await redis.xrange(key, '-', '+')).map(([, fields]) => fields);
      }
      return out;
    };
    const shipped = await dump('p');
    expect(await dump('g')).toEqual(shipped);
    expect(await dump('m')).toEqual(shipped);
    expect(shipped['waiting:completed']).not.toHaveLength(0);
    expect(shipped.dead).toEqual([head, expect.any(String)]);
  });

  it('GETJOB, GETJOBS, PROGRESS, LOG, LOGS through a job\'s life, with events and retention', async () => {
    const clock = protocol.policyClock({ events: true, eventsMaxLen: 100, completed: { count: 10, ageMs: -1 }, dead: { count: 10, ageMs: -1 } });
    const call = (args: ScriptArg[], callKeys: readonly string[] = keys) => run(protocol.withPolicy(args, clock), callKeys);
    await call(protocol.encodePushMany([spec('a', { n: 1 }, { priority: 2 }), spec('b', 'b'), spec('c', 'c', { delaySeconds: 60 })]));
    const waiting = protocol.decodeGetJobs(await call(protocol.encodeGetJobs('waiting', 0, 10)), codec, codec);
    expect(waiting.map((j) => [j.id, j.state, j.priority, j.attempts])).toEqual([['a', 'waiting', 2, 0], ['b', 'waiting', 0, 0]]);
    expect(waiting[0]).toMatchObject({ data: { n: 1 }, maxRetries: 3, progress: 0, createdAt: expect.any(Number), readyAt: undefined });
    const [delayed] = protocol.decodeGetJobs(await call(protocol.encodeGetJobs('delayed', 0, 10)), codec, codec);
    expect(delayed).toMatchObject({ id: 'c', state: 'delayed', readyAt: delayed!.createdAt! + 60_000 });
    const [a] = protocol.decodeFetch(await call(protocol.encodeFetch(1, 30_000, undefined)), codec).jobs as [Job<unknown>];
    expect(protocol.decodeHeld(await call(protocol.encodeProgress(a, '{"step":2}')))).toBe(true);
    expect(protocol.decodeHeld(await call(protocol.encodeProgress({ id: 'a', leaseToken: '7' }, '50')))).toBe(false);
    expect(protocol.decodeCount(await call(protocol.encodeLog('a', 'first')))).toBe(1);
    expect(protocol.decodeCount(await call(protocol.encodeLog('a', 'second')))).toBe(2);
    expect(protocol.decodeCount(await call(protocol.encodeLog('nobody', 'x')))).toBe(0);
    expect(protocol.decodeLogs(await call(protocol.encodeLogs('a', 1, 10)))).toEqual(['second']);
    const active = protocol.decodeGetJob(await call(protocol.encodeGetJob('a')), codec, codec);
    expect(active.job).toMatchObject({ id: 'a', state: 'active', attempts: 1, progress: { step: 2 }, processedAt: expect.any(Number) });
    const acked = protocol.decodeAck(await call(protocol.encodeAck([a], 0, 30_000, undefined, [codec.encode({ ok: true })])), codec);
    expect(acked.completed).toEqual([true]);
    const done = protocol.decodeGetJob(await call(protocol.encodeGetJob('a')), codec, codec);
    expect(done.job).toMatchObject({ state: 'completed', returnValue: { ok: true }, attempts: 1, finishedAt: expect.any(Number) });
    expect(done.lastEventId).not.toBe(active.lastEventId);
    expect(protocol.decodeGetJob(await call(protocol.encodeGetJob('zzz')), codec, codec).job).toBeUndefined();
    // The events of those calls, in order, as QueueEvents reads them.
    const entries = protocol.decodeEventEntries(await redis.xread('STREAMS', `${seedKeys[0]!}:events`, '0'));
    expect(entries.flatMap((e) => e.events.map((x) => `${x.name}:${x.jobId}`))).toEqual(['added:a', 'added:b', 'delayed:c', 'active:a', 'progress:a', 'completed:a']);
    expect(entries.at(-1)!.events[0]!.fields).toEqual({ r: codec.encode({ ok: true }) });
  });

  it('REMOVE, PROMOTE, RETRYJOB, PAUSE, PAUSED, DRAIN, CLEAN, OBLITERATE', async () => {
    const jobs = [spec('a', 'a'), spec('b', 'b'), spec('c', 'c', { delaySeconds: 60 }), spec('d', 'd', { policy: '0' })];
    await run(protocol.encodePushMany(jobs));
    expect(protocol.decodeHeld(await run(protocol.encodePromote('c')))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodePromote('c')))).toBe(false);
    expect(protocol.decodeHeld(await run(protocol.encodeRemove('b', false)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodeRemove('b', false)))).toBe(false);
    expect(protocol.decodeHeld(await run(protocol.encodePause(true)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodePaused()))).toBe(true);
    // Paused: nothing is leased, and a worker is told to block (-1).
    expect(protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined)), codec)).toMatchObject({ jobs: [], waitMs: -1 });
    expect(protocol.decodeHeld(await run(protocol.encodePause(false)))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodePaused()))).toBe(false);
    const leased = protocol.decodeFetch(await run(protocol.encodeFetch(5, 30_000, undefined)), codec).jobs;
    expect(leased.map((j) => j.id)).toEqual(['a', 'd', 'c']);
    expect(protocol.decodeHeld(await run(protocol.encodeRemove('a', false)))).toBe(false);
    expect(protocol.decodeHeld(await run(protocol.encodeRemove('a', true)))).toBe(true);
    expect(protocol.decodeFail(await run(protocol.encodeFail(leased[1]!, 'boom'))).outcome).toBe('dead');
    expect(protocol.decodeHeld(await run(protocol.encodeRetryJob('d')))).toBe(true);
    expect(protocol.decodeHeld(await run(protocol.encodeRetryJob('d')))).toBe(false);
    expect(protocol.decodeDrain(await run(protocol.encodeDrain(false, 1000)))).toEqual({ removed: 1, more: false });
    expect(protocol.decodeCount(await run(protocol.encodeClean('completed', 0, 10)))).toBe(0);
    expect(protocol.decodeObliterate(await run(protocol.encodeObliterate(false)))).toBe('refused');
    expect(protocol.decodeObliterate(await run(protocol.encodeObliterate(true)))).toBe('done');
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0, completed: 0 });
  });

  it('reports data the codec cannot decode instead of returning it', async () => {
    await run(protocol.encodePush({ ...spec('bad', 0), id: 'bad', text: 'job_data' }));
    const fetched = protocol.decodeFetch(await run(protocol.encodeFetch(1, 30_000, undefined)), codec);
    expect(fetched.jobs).toEqual([]);
    expect(fetched.undecodable).toEqual([{ id: 'bad', leaseToken: expect.any(String), error: expect.any(Error) }]);
  });

  it('refuses declared keys that are not the ones the script would derive, writing nothing', async () => {
    const push = protocol.encodePush({ ...spec('a', 'x'), id: 'a' });
    const wrong = [...keys];
    wrong[6] = `${prefix}{p}:other`;
    await expect(run(push, wrong)).rejects.toThrow(/KEYS\[5\.\.17\] must be/);
    await expect(run(push, keys.slice(0, 8))).rejects.toThrow(ScriptError);
    const request: RequestId = { lane: 'l', seq: 1 };
    await expect(run(protocol.encodeFetch(1, 1000, request), [...keys, `${keys[0]}:req:other`])).rejects.toThrow(/KEYS\[18\] must be/);
    await expect(run(protocol.encodeFetch(1, 1000, undefined), protocol.requestKeys(keys, request))).rejects.toThrow(/needs a request/);
    expect(protocol.decodeStats(await run(protocol.encodeStats()))).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0, completed: 0 });
  });
});

// The lease part of POP (full) and ACK replies, read without a server: every number is read in place.
describe('lease reply decoders', () => {
  const reply = (...jobs: [id: string, attempts: number, record: string][]): unknown[] => [
    '250',
    '1733561234567890',
    jobs.map(([, attempts]) => attempts).join(','),
    ...jobs.flatMap(([id, , record]) => [id, record]),
  ];

  it('reads priority, attempts and retries of each job, negative and multi-digit ones too, past an undecodable job', () => {
    const leased = protocol.decodeFetch(
      reply(
        ['a', 1, '0:3@1733561234567:{"x":1}'],
        ['b', 12, '-1000:1000,5,10@1733561234567:"two"'],
        ['bad', 3, '7:3@1733561234567:not json'],
        ['c', 107, '42:0:[3]'],
      ),
      codec,
    );
    expect(leased.waitMs).toBe(250);
    expect(leased.jobs.map(({ id, data, priority, attempts, maxRetries, leaseToken }) => ({ id, data, priority, attempts, maxRetries, leaseToken }))).toEqual([
      { id: 'a', data: { x: 1 }, priority: 0, attempts: 1, maxRetries: 3, leaseToken: '1733561234567890' },
      { id: 'b', data: 'two', priority: -1000, attempts: 12, maxRetries: 1000, leaseToken: '1733561234567890' },
      { id: 'c', data: [3], priority: 42, attempts: 107, maxRetries: 0, leaseToken: '1733561234567890' },
    ]);
    expect(leased.undecodable?.map(({ id, leaseToken }) => ({ id, leaseToken }))).toEqual([{ id: 'bad', leaseToken: '1733561234567890' }]);
    const acked = protocol.decodeAck(['101', ...reply(['d', 2, '5:3@1:null'])], codec);
    expect(acked.completed).toEqual([true, false, true]);
    expect(acked.jobs.map(({ id, priority, attempts, maxRetries }) => ({ id, priority, attempts, maxRetries }))).toEqual([{ id: 'd', priority: 5, attempts: 2, maxRetries: 3 }]);
    expect(protocol.decodeFetch(['-1', '1', ''], codec)).toEqual({ waitMs: -1, jobs: [], undecodable: undefined });
  });
});
