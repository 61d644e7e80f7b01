import { defaultCodec, LuaScriptManager, ScriptError, type Codec, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, type Job, type RequestId } from '../src/index.js';
import {
  decodeAck,
  decodeDead,
  decodeExtend,
  decodeFail,
  decodeFetch,
  decodeHeld,
  decodePush,
  decodePushMany,
  decodeRetryDead,
  decodeSeedPop,
  decodeStats,
  declaredKeys,
  encodeAck,
  encodeComplete,
  encodeDead,
  encodeExtend,
  encodeFail,
  encodeFetch,
  encodePush,
  encodePushMany,
  encodeRelease,
  encodeRetryDead,
  encodeSeedPop,
  encodeStats,
  requestKeys,
  type PushSpec,
} from '../src/protocol.js';

const codec: Codec<unknown> = defaultCodec;
const spec = (id: string | undefined, data: unknown, extra: Partial<PushSpec> = {}): PushSpec => ({
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
    keys = declaredKeys(seedKeys).keys;
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('PUSH and seed POP: the seed forms, with the four keys or all nine', async () => {
    expect(decodePush(await run(encodePush({ ...spec('a', 'x'), id: 'a' }), seedKeys))).toBe(true);
    expect(decodePush(await run(encodePush({ ...spec('a', 'y'), id: 'a' })))).toBe(false);
    expect(decodePush(await run(encodePush({ ...spec('b', 'z', { priority: 5 }), id: 'b' })))).toBe(true);
    expect(decodeSeedPop(await run(encodeSeedPop(5, 30_000), seedKeys))).toEqual([
      { id: 'b', text: codec.encode('z') },
      { id: 'a', text: codec.encode('x') },
    ]);
  });

  it('PUSHN, POP (full), COMPLETE, STATS', async () => {
    const jobs = [spec(undefined, 1), spec(undefined, 2), spec('n', 3, { priority: 9, policy: '0,10,20' }), spec('n', 4)];
    const pushed = decodePushMany(jobs, await run(encodePushMany(jobs)));
    expect(pushed).toEqual([
      { id: expect.any(String), added: true },
      { id: expect.any(String), added: true },
      { id: 'n', added: true },
      { id: 'n', added: false },
    ]);
    const fetched = decodeFetch(await run(encodeFetch(2, 30_000, undefined)), codec);
    expect(fetched.waitMs).toBe(0);
    expect(fetched.undecodable).toBeUndefined();
    expect(fetched.jobs.map(({ id, data, priority, attempts, maxRetries }) => ({ id, data, priority, attempts, maxRetries }))).toEqual([
      { id: 'n', data: 3, priority: 9, attempts: 1, maxRetries: 0 },
      { id: pushed[0]!.id, data: 1, priority: 0, attempts: 1, maxRetries: 3 },
    ]);
    expect(decodeHeld(await run(encodeComplete(fetched.jobs[0]!)))).toBe(true);
    expect(decodeHeld(await run(encodeComplete(fetched.jobs[0]!)))).toBe(false);
    expect(decodeStats(await run(encodeStats()))).toEqual({ waiting: 1, delayed: 0, processing: 1, failed: 0, dead: 0, completed: 1 });
  });

  it('ACK with a request: completes, leases more, and a repeat answers as the first run', async () => {
    const jobs = [spec('a', 'a'), spec('b', 'b'), spec('c', 'c')];
    await run(encodePushMany(jobs));
    const first = decodeFetch(await run(encodeFetch(1, 30_000, undefined)), codec).jobs;
    const second = decodeFetch(await run(encodeFetch(1, 30_000, undefined)), codec).jobs;
    const request: RequestId = { lane: 'lane-1', seq: 7 };
    // Two lease tokens: two groups; a job given under the wrong token is not completed.
    const acked = [first[0]!, second[0]!, { id: 'c', leaseToken: first[0]!.leaseToken }];
    const args = encodeAck(acked, 5, 30_000, request);
    const reply = decodeAck(await run(args, requestKeys(keys, request)), codec);
    expect(reply.completed).toEqual([true, true, false]);
    expect(reply.jobs.map((j) => j.id)).toEqual(['c']);
    // Not a full batch and nothing waits: the time to the next lease deadline.
    expect(reply.waitMs).toBeGreaterThan(0);
    expect(reply.waitMs).toBeLessThanOrEqual(30_000);
    const again = decodeAck(await run(args, requestKeys(keys, request)), codec);
    expect(again.completed).toEqual(reply.completed);
    expect(again.jobs).toEqual(reply.jobs);
    expect(decodeStats(await run(encodeStats()))).toMatchObject({ processing: 1, completed: 2 });
  });

  it('POP (full) with a request replays its leases', async () => {
    await run(encodePushMany([spec('a', 'a'), spec('b', 'b')]));
    const request: RequestId = { lane: 'pop-lane', seq: 0 };
    const callKeys = requestKeys(keys, request);
    const first = decodeFetch(await run(encodeFetch(1, 30_000, request), callKeys), codec);
    const repeat = decodeFetch(await run(encodeFetch(1, 30_000, request), callKeys), codec);
    expect(repeat.jobs).toEqual(first.jobs);
    expect(decodeStats(await run(encodeStats()))).toMatchObject({ waiting: 1, processing: 1 });
  });

  it('FAIL (retry, then final), EXTEND, RELEASE, DEAD, RETRYDEAD', async () => {
    await run(encodePushMany([spec('f', { n: 1 }), spec('r', 'r')]));
    const [f, r] = decodeFetch(await run(encodeFetch(2, 30_000, undefined)), codec).jobs as [Job<unknown>, Job<unknown>];
    expect(decodeExtend(await run(encodeExtend([f, { id: 'r', leaseToken: '1' }], 60_000)))).toEqual([true, false]);
    expect(decodeHeld(await run(encodeRelease(r)))).toBe(true);
    expect(decodeHeld(await run(encodeRelease(r)))).toBe(false);
    const retry = decodeFail(await run(encodeFail(f, 'boom')));
    expect(retry).toEqual({ outcome: 'retry', atMs: expect.any(Number) });
    expect(decodeFail(await run(encodeFail(f, 'boom')))).toEqual({ outcome: 'lost', atMs: 0 });
    const again = decodeFetch(await run(encodeFetch(1, 30_000, undefined)), codec).jobs[0]!;
    expect(again.id).toBe('r');
    const dead = decodeFail(await run(encodeFail(again, 'fatal', true)));
    expect(dead.outcome).toBe('dead');
    expect(decodeDead(await run(encodeDead(10)), codec)).toEqual([{ id: 'r', data: 'r', attempts: 1, error: 'fatal', diedAt: dead.atMs }]);
    expect(decodeRetryDead(await run(encodeRetryDead(1000, 0)))).toEqual({ moved: 1, seen: 1 });
    expect(decodeStats(await run(encodeStats()))).toEqual({ waiting: 1, delayed: 0, processing: 0, failed: 1, dead: 0, completed: 0 });
  });

  it('reports data the codec cannot decode instead of returning it', async () => {
    await run(encodePush({ ...spec('bad', 0), id: 'bad', text: 'job_data' }));
    const fetched = decodeFetch(await run(encodeFetch(1, 30_000, undefined)), codec);
    expect(fetched.jobs).toEqual([]);
    expect(fetched.undecodable).toEqual([{ id: 'bad', leaseToken: expect.any(String), error: expect.any(Error) }]);
  });

  it('refuses declared keys that are not the ones the script would derive, writing nothing', async () => {
    const push = encodePush({ ...spec('a', 'x'), id: 'a' });
    const wrong = [...keys];
    wrong[6] = `${prefix}{p}:other`;
    await expect(run(push, wrong)).rejects.toThrow(/KEYS\[5\.\.9\] must be/);
    await expect(run(push, keys.slice(0, 8))).rejects.toThrow(ScriptError);
    const request: RequestId = { lane: 'l', seq: 1 };
    await expect(run(encodeFetch(1, 1000, request), [...keys, `${keys[0]}:req:other`])).rejects.toThrow(/KEYS\[10\] must be/);
    await expect(run(encodeFetch(1, 1000, undefined), requestKeys(keys, request))).rejects.toThrow(/needs a request/);
    expect(decodeStats(await run(encodeStats()))).toEqual({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0, completed: 0 });
  });
});
