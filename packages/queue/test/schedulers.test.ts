import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { defaultCodec, InvalidArgumentError, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { clusterSeeds, deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, JobQueue, Worker, type Job } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { nextRunAt, repeatJob } from '../src/schedule.js';
import { snapshot } from './helpers.js';

const SCHEDULER_WORKER = fileURLToPath(new URL('./fixtures/scheduler-worker.mjs', import.meta.url));

describe('next occurrences (croner, computed in TypeScript)', () => {
  const iso = (repeat: { cron: string; tz?: string }, from: string, n: number): string[] => {
    const out: string[] = [];
    let at = Date.parse(from);
    for (let i = 0; i < n; i++) out.push(new Date((at = nextRunAt(repeat, at)!)).toISOString());
    return out;
  };

  it('follows the time zone across the spring DST change: 03:00 Paris is 02:00Z, then 01:00Z', () => {
    expect(iso({ cron: '0 3 * * *', tz: 'Europe/Paris' }, '2026-03-27T12:00:00Z', 3)).toEqual([
      '2026-03-28T02:00:00.000Z',
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T01:00:00.000Z',
    ]);
    // 02:30 does not exist on 29 March in Paris: that day's job runs at 03:00 (01:00Z), once.
    expect(iso({ cron: '30 2 * * *', tz: 'Europe/Paris' }, '2026-03-27T12:00:00Z', 3)).toEqual([
      '2026-03-28T01:30:00.000Z',
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
  });

  it('runs once across the autumn DST change, when 02:30 Paris happens twice', () => {
    expect(iso({ cron: '30 2 * * *', tz: 'Europe/Paris' }, '2026-10-24T12:00:00Z', 3)).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
      '2026-10-27T01:30:00.000Z',
    ]);
    // Hourly: one job per real hour through the repeated hour.
    expect(iso({ cron: '0 * * * *', tz: 'Europe/Paris' }, '2026-10-24T23:30:00Z', 4)).toEqual([
      '2026-10-25T00:00:00.000Z',
      '2026-10-25T01:00:00.000Z',
      '2026-10-25T02:00:00.000Z',
      '2026-10-25T03:00:00.000Z',
    ]);
  });

  it('everyMs ticks at multiples of everyMs since the epoch, strictly after the time given', () => {
    expect(nextRunAt({ everyMs: 1000 }, 5000)).toBe(6000);
    expect(nextRunAt({ everyMs: 1000 }, 5001)).toBe(6000);
    expect(repeatJob('repeat:a:b:6000')).toEqual({ id: 'a:b', runMs: 6000 });
    expect(repeatJob('other')).toBeUndefined();
  });
});

describe.each(topologies)('schedulers on %s', (topology) => {
  const redis = suiteClient(topology);
  const target = () => (topology === 'cluster' ? JSON.stringify(clusterSeeds()) : redisUrl());
  const children = new Set<ChildProcess>();
  const workers: Worker<{ kind: string }, unknown>[] = [];
  let prefix: string;
  let queue: JobQueue<{ kind: string }>;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<{ kind: string }>(redis, 'sched', { prefix });
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.close({ timeoutMs: 0 })));
    for (const child of children) child.kill('SIGKILL');
    await waitFor(() => (children.size === 0 ? true : undefined));
    await deleteByPrefix(redis, prefix);
  });

  /** Runs a worker that records the tick of each job it runs. */
  function work(): number[] {
    const ticks: number[] = [];
    workers.push(new Worker(queue, (job: Job<{ kind: string }>) => void ticks.push(repeatJob(job.id)!.runMs), { concurrency: 4 }));
    return ticks;
  }

  it('upsert is idempotent, lists, changes and removes a scheduler with its pending job', async () => {
    const first = await queue.upsertScheduler('nightly-report', { cron: '0 3 * * *', tz: 'Europe/Paris' }, { data: { kind: 'daily' }, priority: 5 });
    const again = await Promise.all([1, 2, 3].map(() => queue.upsertScheduler('nightly-report', { cron: '0 3 * * *', tz: 'Europe/Paris' }, { data: { kind: 'daily' }, priority: 5 })));
    expect(again.map((r) => r.nextRunAt)).toEqual([first.nextRunAt, first.nextRunAt, first.nextRunAt]);
    expect(first.nextRunAt).toBe(nextRunAt({ cron: '0 3 * * *', tz: 'Europe/Paris' }, Date.now()));
    await queue.upsertScheduler('heartbeat', { everyMs: 10_000 }, { data: { kind: 'beat' }, group: 'beats', maxRetries: 1, backoff: { baseMs: 5, maxMs: 10 } });
    expect(await queue.getSchedulers()).toEqual([
      { id: 'heartbeat', everyMs: 10_000, nextRunAt: expect.any(Number), template: { data: { kind: 'beat' }, priority: 0, maxRetries: 1, backoff: { baseMs: 5, maxMs: 10 }, group: 'beats' } },
      { id: 'nightly-report', cron: '0 3 * * *', tz: 'Europe/Paris', nextRunAt: first.nextRunAt, template: { data: { kind: 'daily' }, priority: 5, maxRetries: 3 } },
    ]);
    const delayed = await queue.getJobs('delayed');
    expect(delayed.map((j) => j.id).sort()).toEqual([`repeat:heartbeat:${(await queue.getSchedulers())[0]!.nextRunAt}`, `repeat:nightly-report:${first.nextRunAt}`]);
    // A changed rule replaces the pending job.
    // Patterns croner takes: seconds, nicknames, names and ranges.
    for (const cron of ['*/5 * * * * *', '@daily', '0 9 * * MON-FRI', '0 0 L * *', '0 0 * * 5#2']) {
      expect((await queue.upsertScheduler(`other-${cron}`, { cron }, { data: { kind: 'x' } })).nextRunAt, cron).toBeGreaterThan(Date.now() - 1000);
      expect(await queue.removeScheduler(`other-${cron}`)).toBe(true);
    }
    const changed = await queue.upsertScheduler('nightly-report', { cron: '0 4 * * *', tz: 'Europe/Paris' }, { data: { kind: 'daily' }, priority: 5 });
    expect(changed.nextRunAt).not.toBe(first.nextRunAt);
    expect((await queue.getJobs('delayed')).map((j) => j.id)).toContain(`repeat:nightly-report:${changed.nextRunAt}`);
    expect(await queue.getJob(`repeat:nightly-report:${first.nextRunAt}`)).toBeUndefined();
    expect(await queue.removeScheduler('heartbeat')).toBe(true);
    expect(await queue.removeScheduler('heartbeat')).toBe(false);
    expect((await queue.getSchedulers()).map((s) => s.id)).toEqual(['nightly-report']);
    expect((await queue.stats()).delayed).toBe(1);
  });

  it('runs one job per tick; a scheduler removed mid-run makes no further job', async () => {
    await queue.upsertScheduler('hb', { everyMs: 100 }, { data: { kind: 'beat' } });
    const ticks = work();
    await waitFor(() => (ticks.length >= 4 ? true : undefined), { timeoutMs: 20_000 });
    expect(await queue.removeScheduler('hb')).toBe(true);
    const removedAt = Date.now();
    const count = ticks.length;
    // Five more ticks pass: at most the job already due when it was removed runs.
    await waitFor(() => (Date.now() - removedAt >= 500 ? true : undefined), { timeoutMs: 5000 });
    expect(ticks.length).toBeLessThanOrEqual(count + 1);
    const sorted = [...ticks].sort((a, b) => a - b);
    expect(new Set(sorted).size).toBe(sorted.length);
    expect(await queue.stats()).toMatchObject({ waiting: 0, delayed: 0 });
  });

  it('catch-up: after a gap of 10 ticks with nothing running, one job, then the next future tick', async () => {
    const { nextRunAt: first } = await queue.upsertScheduler('gap', { everyMs: 100 }, { data: { kind: 'late' } });
    await waitFor(() => (Date.now() >= first + 1000 ? true : undefined), { timeoutMs: 5000 });
    const started = Date.now();
    const ticks = work();
    await waitFor(() => (ticks.length >= 2 ? true : undefined), { timeoutMs: 20_000 });
    expect(ticks[0]).toBe(first);
    // The second job is a tick after the worker started: the ten missed ticks made no job.
    expect(ticks[1]!).toBeGreaterThan(started - 100);
    expect(ticks[1]! - ticks[0]!).toBeGreaterThanOrEqual(1000);
  });

  it('4 processes upserting the same scheduler and working for 30 ticks: exactly one job per tick', async () => {
    // Long enough that a loaded machine leases each tick before the next (a later lease is a catch-up, by design).
    const everyMs = 400;
    const outputs = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, [SCHEDULER_WORKER, target(), prefix, 'sched', String(everyMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.add(child);
      child.once('exit', () => children.delete(child));
      const lines: string[] = [];
      createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
      return lines;
    });
    await waitFor(() => (outputs.every((lines) => lines.includes('ready')) ? true : undefined), { timeoutMs: 30_000 });
    // The work counts from when every process is up: a tick due while they were still starting (seconds on a
    // loaded machine) is leased late, which is a catch-up by design.
    const readyAt = Date.now();
    const ticks = () =>
      outputs
        .flat()
        .filter((line) => line !== 'ready')
        .map((id) => repeatJob(id)!.runMs)
        .sort((a, b) => a - b);
    await waitFor(() => (ticks().filter((t) => t > readyAt).length >= 31 ? true : undefined), { timeoutMs: 60_000 });
    // No tick twice, and 30 consecutive ticks with no gap.
    const all = ticks();
    expect(new Set(all).size).toBe(all.length);
    const thirty = all.filter((t) => t > readyAt).slice(0, 30);
    thirty.forEach((tick, i) => expect(tick, `tick ${i}`).toBe(thirty[0]! + i * everyMs));
    expect((await queue.getSchedulers()).map((s) => s.id)).toEqual(['tick']);
  });

  it('refuses bad input by name; the raw script answers ERR and writes nothing', async () => {
    const bad: [unknown, unknown, string][] = [
      [{ cron: 'not a cron' }, { data: 1 }, 'repeat.cron'],
      [{ cron: '61 * * * *' }, { data: 1 }, 'repeat.cron'],
      [{ cron: '0 3 * * *', tz: 'Mars/Base' }, { data: 1 }, 'repeat.tz'],
      [{ everyMs: 0 }, { data: 1 }, 'repeat.everyMs'],
      [{ everyMs: -5 }, { data: 1 }, 'repeat.everyMs'],
      [{ everyMs: 1.5 }, { data: 1 }, 'repeat.everyMs'],
      [{ everyMs: 10, tz: 'UTC' }, { data: 1 }, 'repeat.tz'],
      [{ everyMs: 10, cron: '* * * * *' }, { data: 1 }, 'repeat'],
      [{}, { data: 1 }, 'repeat'],
      [{ everyMs: 10, every: 1 }, { data: 1 }, 'repeat'],
      [{ everyMs: 10 }, { data: 1, delayMs: 5 }, 'template'],
      [{ everyMs: 10 }, { data: 1, group: '' }, 'template.group'],
      [{ everyMs: 10 }, { priority: 1 }, 'template'],
    ];
    for (const [repeat, template, name] of bad) {
      const call = () => queue.upsertScheduler('s', repeat as never, template as never);
      await expect(call(), JSON.stringify(repeat)).rejects.toThrow(InvalidArgumentError);
      await expect(call(), JSON.stringify(repeat)).rejects.toThrow(name);
    }
    await expect(queue.upsertScheduler('', { everyMs: 10 }, { data: { kind: 'x' } })).rejects.toThrow('id');
    await expect(queue.removeScheduler('x'.repeat(300))).rejects.toThrow('id');

    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const keys = protocol.declaredKeys(queue.keys).keys;
    const run = (args: ScriptArg[]) => scripts.executeScript(script, { keys, args });
    await queue.upsertScheduler('s', { everyMs: 60_000 }, { data: { kind: 'x' } });
    const before = await snapshot(redis, prefix);
    const every = '{"everyMs":1000}';
    const calls: ScriptArg[][] = [
      ['SCHEDULE', '*', '', 1000, every, 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', -1, every, 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, 'not json', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"everyMs":0}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"everyMs":-5}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"everyMs":10,"tz":"UTC"}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"cron":"not a cron"}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"cron":"* * * * * * * *"}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, '{"cron":"0 3 * * *","tz":"Mars Base!"}', 0, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, every, 5000, '3', 'x'],
      ['SCHEDULE', '*', 's2', 1000, every, 0, 'many', 'x'],
      ['SCHEDULE', '*', 's2', 1000, every, 0, '3'],
      ['SCHEDULE', '*', 's2', 1000, every, 0, '3', 'x', ''],
      ['SCHEDULE', '*', 's2', 1000, every, 0, '3', 'x', 'g', 'extra'],
      ['SCHEDNEXT', '*', 's', 1000, 1000],
      ['SCHEDNEXT', '*', 's', 'soon', 2000],
      ['SCHEDNEXT', '*', '', 1000, 2000],
      ['SCHEDGET', '*', ''],
      ['SCHEDULERS', '*', 'x'],
      ['UNSCHEDULE', '*', 'y'.repeat(257)],
    ];
    for (const args of calls) await expect(run(args), JSON.stringify(args)).rejects.toThrow(/ERR job_queue: /);
    expect(await snapshot(redis, prefix)).toEqual(before);
  });

  it('the contract: SCHEDULE, SCHEDGET, SCHEDNEXT, SCHEDULERS, UNSCHEDULE', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const keys = protocol.declaredKeys(queue.keys).keys;
    const run = (args: ScriptArg[]) => scripts.executeScript(script, { keys, args });
    const job: protocol.PushSpec = { id: undefined, text: defaultCodec.encode('d'), priority: 2, policy: '1,5,9', delaySeconds: 0, group: 'g|1' };
    const far = Date.now() + 3_600_000;
    expect(protocol.decodeSchedule(await run(protocol.encodeSchedule('a|b', far, '{"everyMs":1}', job)))).toEqual({ changed: true, nextRunAt: far });
    expect(protocol.decodeSchedule(await run(protocol.encodeSchedule('a|b', far + 5, '{"everyMs":1}', job)))).toEqual({ changed: false, nextRunAt: far });
    const stored = { id: 'a|b', nextRunAt: far, group: 'g|1', spec: '{"everyMs":1}', priority: 2, policy: '1,5,9', text: job.text };
    expect(protocol.decodeScheduler('a|b', await run(protocol.encodeScheduler('a|b')))).toEqual(stored);
    expect(protocol.decodeScheduler('zz', await run(protocol.encodeScheduler('zz')))).toBeUndefined();
    expect(protocol.decodeHeld(await run(protocol.encodeScheduleNext('a|b', far - 1, far + 10)))).toBe(false);
    expect(protocol.decodeHeld(await run(protocol.encodeScheduleNext('a|b', far, far + 10)))).toBe(true);
    expect(protocol.decodeSchedulers(await run(protocol.encodeSchedulers('0')))).toEqual({ cursor: '0', schedulers: [{ ...stored, nextRunAt: far + 10 }] });
    expect((await queue.getJobs('delayed')).map((j) => j.id).sort()).toEqual([`repeat:a|b:${far + 10}`, `repeat:a|b:${far}`].sort());
    expect(protocol.decodeHeld(await run(protocol.encodeUnschedule('a|b')))).toBe(true);
    expect((await queue.getJobs('delayed')).map((j) => j.id)).toEqual([`repeat:a|b:${far}`]);
  });
});
