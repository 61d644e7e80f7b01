import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { raw, snapshot } from './helpers.js';

describe.each(topologies)('job_queue.lua seed contract on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let keys: string[];
  const call = (...args: (string | number)[]) => raw(redis, keys, ...args);

  beforeEach(() => {
    prefix = randomPrefix();
    // The seed's four key names, under one hash tag so they meet on one cluster shard.
    keys = ['queue', 'processing', 'failed', 'dead'].map((k) => `${prefix}{q}:${k}`);
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('runs the seed calls exactly as written', async () => {
    expect(await call('PUSH', 1000, 'job_123', 'job_data', 5, 3, 0)).toBe(1);
    expect(await call('PUSH', 1000, 'job_124', 'other', 9, 3, 0)).toBe(1);
    expect(await call('PUSH', 1000, 'job_125', 'later', 9, 3, 60)).toBe(1);
    expect(await call('POP', 1001, 5)).toEqual([
      ['job_124', 'other'],
      ['job_123', 'job_data'],
    ]);
    expect(await call('COMPLETE', 1002, 'job_123')).toBe(1);
    expect(await call('FAIL', 1002, 'job_124', 'error_message')).toEqual(['retry', expect.any(Number)]);
    expect(await call('STATS', 1002)).toEqual(['waiting', 0, 'delayed', 1, 'processing', 0, 'failed', 1, 'dead', 0, 'completed', 1]);
  });

  it('says so when an id exists, and serves higher priority first, FIFO within one', async () => {
    const order = [
      ['a', 0],
      ['b', 5],
      ['c', 0],
      ['d', 5],
      ['e', -3],
      ['f', 1000],
    ] as const;
    for (const [id, priority] of order) expect(await call('PUSH', 1, id, `data-${id}`, priority, 0, 0)).toBe(1);
    expect(await call('PUSH', 1, 'a', 'again', 7, 0, 0)).toBe(0);
    const popped = (await call('POP', 2, 10)) as [string, string][];
    expect(popped.map(([id]) => id)).toEqual(['f', 'b', 'd', 'a', 'c', 'e']);
    expect(popped[3]).toEqual(['a', 'data-a']);
  });

  it('holds delayed jobs until their time', async () => {
    await call('PUSH', 100, 'd', 'x', 0, 0, 2.5);
    expect(await call('POP', 102.499, 1)).toEqual([]);
    expect(await call('POP', 102.5, 1)).toEqual([['d', 'x']]);
  });

  it('retries with capped exponential backoff, then dead-letters: max_retries n runs n + 1 times', async () => {
    await call('PUSH', 0, 'j', 'x', 0, 3, 0);
    let now = 0;
    const delays: number[] = [];
    for (let run = 1; run <= 4; run++) {
      expect(await call('POP', now, 1)).toEqual([['j', 'x']]);
      const [status, at] = (await call('FAIL', now, 'j', `boom ${run}`)) as [string, number];
      if (run <= 3) {
        expect(status).toBe('retry');
        delays.push(at - now * 1000);
        // Not served before its retry time.
        expect(await call('POP', (at - 1) / 1000, 1)).toEqual([]);
        now = at / 1000;
      } else {
        expect(status).toBe('dead');
      }
    }
    // Base 1000 ms doubling, each jittered down by at most half.
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(1000 * 2 ** i * 0.5);
      expect(d).toBeLessThanOrEqual(1000 * 2 ** i);
    });
    expect(await call('DEAD', now, 10)).toEqual(['j', 'x', 4, 'boom 4', now * 1000]);
    expect(await call('FAIL', now, 'j', 'again')).toEqual(['lost', 0]);
  });

  it('caps the backoff at backoff_max_ms, both stored with the job at push', async () => {
    // max_retries may carry the job's backoff: "<max_retries>,<backoff_base_ms>,<backoff_max_ms>".
    await call('PUSH', 0, 'j', 'x', 0, '20,100,400', 0);
    let now = 0;
    for (let run = 1; run <= 8; run++) {
      const popped = (await call('POP', now, 1, 1000, '1')) as unknown[];
      // The record: priority, the policy with the push time after "@", the data.
      expect(popped[4]).toBe('0:20,100,400@0:x');
      const [status, at] = (await call('FAIL', now, 'j', 'e', String(popped[1]))) as [string, number];
      expect(status).toBe('retry');
      const delay = at - Math.round(now * 1000);
      expect(delay).toBeLessThanOrEqual(Math.min(400, 100 * 2 ** (run - 1)));
      expect(delay).toBeGreaterThanOrEqual(Math.min(400, 100 * 2 ** (run - 1)) / 2);
      now = at / 1000;
    }
  });

  it('returns expired leases to the queue on the next POP, counting the attempt', async () => {
    await call('PUSH', 0, 'j', 'x', 0, 1, 0);
    // wait_ms, the call's lease token, the jobs' attempts, then id and record per job.
    const first = (await call('POP', 0, 1, 1000, '1')) as unknown[];
    expect(first).toEqual([0, expect.any(Number), '1', 'j', '0:1@0:x']);
    // Lease expired at 1 s: the next pop reclaims it and leases it again (attempt 2) under a new token, the
    // time in microseconds (above every earlier token).
    expect(await call('POP', 1, 1, 1000, '1')).toEqual([0, 1_000_000, '2', 'j', '0:1@0:x']);
    expect(await call('COMPLETE', 1.5, 'j', String(first[1]))).toBe(0);
    // Expired again after its last attempt: dead, with the reason.
    expect(await call('POP', 2, 1, 1000, '1')).toEqual([-1, 0, '']);
    expect(await call('DEAD', 2, 1)).toEqual(['j', 'x', 2, 'lease expired', 2000]);
  });

  it('accepts an ACK whose lease expired but was not reclaimed, and its own pop does not reclaim the job', async () => {
    await call('PUSH', 0, 'a', 'x', 0, 3, 0);
    await call('PUSH', 0, 'b', 'y', 0, 3, 0);
    const popped = (await call('POP', 0, 1, 1000, '1')) as unknown[];
    const token = popped[1] as number;
    expect(popped).toEqual([0, token, '1', 'a', '0:3@0:x']);
    // At 2 s the lease of a has expired: the ACK completes it, then leases b (next token) in the same call.
    expect(await call('ACK', 2, 1000, 1, 1, String(token), 1, 0, 'a')).toEqual(['1', 0, 2_000_000, '1', 'b', '0:3@0:y']);
    expect(await call('STATS', 2)).toEqual(['waiting', 0, 'delayed', 0, 'processing', 1, 'failed', 0, 'dead', 0, 'completed', 1]);
    expect(await call('POP', 5, 1, 1000, '1')).toEqual([0, 5_000_000, '2', 'b', '0:3@0:y']);
  });

  it('keeps the waiting count and the last lease token in meta across ACKs, and rebuilds a lost count', async () => {
    for (const id of ['a', 'b', 'c', 'd', 'e']) await call('PUSH', 0, id, id, 0, 3, 0);
    const meta = `${keys[0]}:meta`;
    const first = (await call('POP', 1, 1, 1000, '1')) as unknown[];
    const acked = (await call('ACK', 1, 1000, 2, 1, String(first[1]), 1, 0, 'a')) as unknown[];
    expect(acked).toEqual(['1', 0, 1_000_001, '1,1', 'b', '0:3@0:b', 'c', '0:3@0:c']);
    expect(await redis.hmget(meta, 'waiting', 'lease')).toEqual(['2', '1000001']);
    // A lost `meta`: the ACK's count would go below 0, so it is rebuilt from the lists, and the next token
    // is still above every earlier one (the time in microseconds).
    await redis.del(meta);
    const again = (await call('ACK', 2, 1000, 1, 2, String(acked[2]), 2, 0, 'b', 'c')) as unknown[];
    expect(again).toEqual(['11', 0, 2_000_000, '1', 'd', '0:3@0:d']);
    expect(await redis.hmget(meta, 'waiting', 'lease')).toEqual(['1', '2000000']);
    expect(await call('STATS', 2)).toEqual(['waiting', 1, 'delayed', 0, 'processing', 1, 'failed', 0, 'dead', 0, 'completed', 2]);
    // The ACK that takes the last job checks the emptied queue and leaves the count at 0.
    expect(await call('ACK', 3, 1000, 1, 1, String(again[2]), 1, 0, 'd')).toEqual(['1', 0, 3_000_000, '1', 'e', '0:3@0:e']);
    expect(await redis.hmget(meta, 'waiting', 'lease')).toEqual(['0', '3000000']);
  });

  it('answers bad input with ERR and writes nothing', async () => {
    await call('PUSH', 1, 'seeded', 'x', 0, 0, 0);
    const before = await snapshot(redis, prefix);
    const bad: (string | number)[][] = [
      ['BOGUS', 1],
      ['push', 1, 'a', 'x', 0, 0, 0],
      ['PUSH', 'soon', 'a', 'x', 0, 0, 0],
      ['PUSH', -1, 'a', 'x', 0, 0, 0],
      ['PUSH', 1, 'a', 'x'],
      ['PUSH', 1, 'a', 'x', 'high', 0, 0],
      ['PUSH', 1, 'a', 'x', 1.5, 0, 0],
      ['PUSH', 1, 'a', 'x', 1001, 0, 0],
      ['PUSH', 1, 'a', 'x', 0, 'three', 0],
      ['PUSH', 1, 'a', 'x', 0, -1, 0],
      ['PUSH', 1, 'a', 'x', 0, '3,100', 0],
      ['PUSH', 1, 'a', 'x', 0, '3,500,100', 0],
      ['PUSH', 1, 'a', 'x', 0, '3,-1,100', 0],
      ['PUSH', 1, 'a', 'x', 0, '3,1,100,7', 0],
      ['PUSH', 1, 'a', 'x', 0, 0, 'later'],
      ['PUSH', 1, 'a', 'x', 0, 0, -5],
      ['PUSH', 1, 'a', 'x', 0, 0, 'nan'],
      ['PUSH', 1, '', 'x', 0, 0, 0],
      ['PUSH', 1, 'a', 'x'.repeat(1_048_577), 0, 0, 0],
      // PUSHN groups: <k> <priority> <max_retries> <delay_seconds> <named>, then [id] data per job.
      ['PUSHN', 1, 2, 1, 0, 0, 0, 1, 'a', 'x', 1, 'bad', 0, 0, 0, 'y'],
      ['PUSHN', 1, 2, 1, 0, 0, 0, 0, 'x', 1, 0, 0, 0, 2, 'y'],
      ['PUSHN', 1, 2, 2, 0, 0, 0, 0, 'x'],
      ['PUSHN', 1, 1, 1, 0, 0, 0, 0, 'x', 'extra'],
      ['PUSHN', 1, 1, 2, 0, 0, 0, 0, 'x', 'y'],
      ['POP', 1, 0],
      ['POP', 1, 1001],
      ['POP', 1, 'ten'],
      ['POP', 1, 1, -5],
      // A request: <request_lane> <request_seq>, with full = 1.
      ['POP', 1, 1, 1000, '1', 'lane'],
      ['POP', 1, 1, 1000, '1', 'lane', 'first'],
      ['POP', 1, 1, 1000, '1', '', 1],
      ['POP', 1, 1, 1000, '0', 'lane', 1],
      ['COMPLETE', 1, ''],
      ['FAIL', 1, 'seeded'],
      ['FAIL', 1, 'seeded', 'e', '1', 'yes'],
      ['FAIL', 1, 'seeded', 'e', '1', '0', 1000],
      ['ACK', 1, 1000, 1, 1, 'seeded'],
      // ACK groups: <lease_token> <k> <valued>, then k ids (or id and return value pairs).
      ['ACK', 1, 1000, 1, 1, '1', 2, 0, 'seeded', 'other'],
      ['ACK', 1, 1000, 1, 2, '1', 1, 0, 'seeded', '', 1, 0, 'x'],
      ['ACK', 1, 1000, 1, 1, '1', 1, 2, 'seeded'],
      ['ACK', 1, 1000, 1, 1, '1', 1, 1, 'seeded'],
      ['ACK', 1, 1000, 1, 1, '1', 1, 1, 'seeded', 'x'.repeat(1_048_577)],
      ['ACK', 1, 1000, 1, 1, '1', 1, 0, 'seeded', 'lane'],
      ['ACK', 1, 1000, 1, 1, '1', 1, 0, 'seeded', 'lane', -1],
      ['ACK', 1, 1000, 1, 1, '1', 1, 0, 'seeded', 'lane', 1, 'extra'],
      ['EXTEND', 1, 1000, 1, 'seeded', ''],
      ['RETRYDEAD', 1, 0],
      ['COMPLETE', 1, 'seeded', '1', 'x'.repeat(1_048_577)],
      // The policy form of current_time: *<events>,<max_len>,<keep>,<keep_ms>,<keep_dead>,<keep_dead_ms>.
      ['STATS', '*1,100,10'],
      ['STATS', '*2,100,10,10,10,10'],
      ['STATS', '*1,0,10,10,10,10'],
      ['STATS', '*1,100,-2,10,10,10'],
      // Each value just past its range, however its digits are written (the script checks most by their text).
      ['STATS', '*0,1000001,10,10,10,10'],
      ['STATS', '*0,00,10,10,10,10'],
      ['STATS', '*0,100,1000000001,10,10,10'],
      ['STATS', '*0,100,10,10000000000001,10,10'],
      ['STATS', '*0,100,10,10,-02,10'],
      ['STATS', '*0,100,10,10,10,00010000000000001'],
      ['GETJOB', 1, ''],
      ['GETJOBS', 1, 'failed', 0, 10],
      ['GETJOBS', 1, 'waiting', -1, 10],
      ['GETJOBS', 1, 'waiting', 0, 0],
      ['GETJOBS', 1, 'waiting', 0, 1001],
      // A waiting page goes on after a group (1 to 256 bytes); other states take no group.
      ['GETJOBS', 1, 'waiting', 0, 10, ''],
      ['GETJOBS', 1, 'waiting', 0, 10, 'g'.repeat(257)],
      ['GETJOBS', 1, 'active', 0, 10, 'g'],
      ['LOGS', 1, 'seeded', 0, 1001],
      ['LOGS', 1, 'seeded', -1, 1],
      ['LOG', 1, 'seeded', 'x'.repeat(1025)],
      ['LOG', 1, 'seeded'],
      ['LOG', 1, 'seeded', 'a', 'b'],
      ['PROGRESS', 1, 'seeded', '1', '101'],
      ['PROGRESS', 1, 'seeded', '1', '-1'],
      ['PROGRESS', 1, 'seeded', '1', 'half'],
      ['PROGRESS', 1, 'seeded', '1', '{"a":'],
      ['PROGRESS', 1, 'seeded', '1', `{"a":"${'x'.repeat(1024)}"}`],
      ['REMOVE', 1, 'seeded', 'yes'],
      ['PROMOTE', 1, ''],
      ['RETRYJOB', 1, ''],
      ['PAUSE', 1, 'on'],
      ['DRAIN', 1, 2, 10],
      ['DRAIN', 1, 1, 0],
      ['CLEAN', 1, 'waiting', 0, 10],
      ['CLEAN', 1, 'dead', -1, 10],
      ['CLEAN', 1, 'dead', 0, 1001],
      ['OBLITERATE', 1, 'yes'],
    ];
    for (const args of bad) {
      await expect(call(...args), JSON.stringify(args).slice(0, 80)).rejects.toThrow(/^ERR job_queue: /);
    }
    expect(await snapshot(redis, prefix)).toEqual(before);
    // Completing an unknown job is a documented 0, not an error.
    expect(await call('COMPLETE', 1, 'nobody')).toBe(0);
    expect(await call('FAIL', 1, 'nobody', 'x')).toEqual(['lost', 0]);
    // So are the inspection calls on an unknown job: nothing found, nothing written.
    expect(await call('GETJOB', 1, 'nobody')).toEqual(['0-0']);
    expect(await call('LOG', 1, 'nobody', 'line')).toBe(0);
    expect(await call('LOGS', 1, 'nobody', 0, 10)).toEqual([0]);
    expect(await call('PROGRESS', 1, 'nobody', '1', '50')).toBe(0);
    for (const op of ['PROMOTE', 'RETRYJOB']) expect(await call(op, 1, 'nobody')).toBe(0);
    expect(await call('REMOVE', 1, 'nobody', 1)).toBe(0);
    expect(await snapshot(redis, prefix)).toEqual(before);
  });

  it('takes every policy value in its range, however its digits are written', async () => {
    for (const policy of ['*0,1000000,1000000000,10000000000000,-1,-01', '*0,0001,0,-0,0009,0', '*1,1,-1,-1,1000000000,10000000000000']) {
      expect(await call('STATS', policy), policy).toEqual(['waiting', 0, 'delayed', 0, 'processing', 0, 'failed', 0, 'dead', 0, 'completed', 0]);
    }
    // A value written with leading zeros is the number it spells: keep "0002" keeps two completed jobs.
    const policy = '*0,100,0002,-1,10,10';
    for (const id of ['a', 'b', 'c']) expect(await call('PUSH', policy, id, 'x', 0, 3, 0)).toBe(1);
    const popped = (await call('POP', policy, 3)) as [string, string][];
    expect(popped).toHaveLength(3);
    for (const [id] of popped) expect(await call('COMPLETE', policy, id)).toBe(1);
    expect(await redis.zcard(`${keys[0]}:completed`)).toBe(2);
  });

  it('keeps every extra key under the first key hash tag', async () => {
    await call('PUSH', 1, 'a', 'x', 0, 0, 0);
    await call('PUSH', 1, 'b', 'x', 0, 0, 10);
    const written = Object.keys(await snapshot(redis, prefix));
    expect(written.sort()).toEqual(
      ['queue', 'queue:delayed', 'queue:jobs', 'queue:meta', 'queue:w:0', 'queue:wake'].map((k) => `${prefix}{q}:${k}`),
    );
  });
});
