import { defaultCodec, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, type JobState } from '../src/index.js';
import * as protocol from '../src/protocol.js';

/**
 * Model-based test of the inspection and control operations (issue 15): random push / pop / complete /
 * fail / remove / promote / retryJob / pause / clean / time steps through the API's encoders, with time
 * driven by the test. After every step, `getJob` of every id and `getJobs` of every state agree with the
 * model, and the events the step wrote are exactly the ones its changes call for, in order.
 */

const LEASE_MS = 1000;
const BACKOFF_MS = 1000;
const KEEP = 3;
const IDS = ['a', 'b', 'c', 'd', 'e'];
const codec = defaultCodec;

interface MJob {
  id: string;
  priority: number;
  maxRetries: number;
  attempts: number;
  state: JobState;
  /** failed (waiting for a retry) is shown as delayed; kept apart to order `getJobs('delayed')`. */
  retry: boolean;
  /** waiting: place in its priority; delayed: ready time; active: lease deadline; completed/dead: when. */
  score: number;
  token: string;
  failedReason: string | undefined;
}

class Model {
  jobs = new Map<string, MJob>();
  now = 0;
  lease = 0;
  seq = 0;
  front = 0;
  paused = false;
  events: string[] = [];

  /** In each state's `getJobs` order. */
  inState(state: JobState): MJob[] {
    const all = [...this.jobs.values()].filter((j) => j.state === state);
    const byScore = (a: MJob, b: MJob) => a.score - b.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    if (state === 'waiting') return all.sort((a, b) => b.priority - a.priority || a.score - b.score);
    if (state === 'delayed') return [...all.filter((j) => !j.retry).sort(byScore), ...all.filter((j) => j.retry).sort(byScore)];
    if (state === 'active') return all.sort(byScore);
    return all.sort((a, b) => -byScore(a, b));
  }

  sorted(state: JobState, retry?: boolean): MJob[] {
    const byScore = (a: MJob, b: MJob) => a.score - b.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    return [...this.jobs.values()].filter((j) => j.state === state && (retry === undefined || j.retry === retry)).sort(byScore);
  }

  emit(name: string, id: string): void {
    this.events.push(`${name}:${id}`);
  }

  enqueue(job: MJob, front = false): void {
    job.state = 'waiting';
    job.retry = false;
    job.score = front ? --this.front : ++this.seq;
  }

  die(job: MJob, reason: string): void {
    job.state = 'dead';
    job.retry = false;
    job.score = this.now;
    job.failedReason = reason;
    this.emit('dead', job.id);
    this.trim('dead');
  }

  /** Retention: the oldest past KEEP go (by finish time, then id), without an event. */
  trim(state: 'completed' | 'dead'): void {
    const kept = this.sorted(state);
    for (const job of kept.slice(0, Math.max(0, kept.length - KEEP))) this.jobs.delete(job.id);
  }

  pop(count: number): void {
    for (const job of this.sorted('active').filter((j) => j.score <= this.now)) {
      this.emit('stalled', job.id);
      if (job.attempts > job.maxRetries) this.die(job, 'lease expired');
      else {
        job.failedReason = 'lease expired';
        this.enqueue(job, true);
      }
    }
    for (const retry of [false, true]) {
      for (const job of this.sorted('delayed', retry).filter((j) => j.score <= this.now)) {
        this.enqueue(job);
        this.emit('waiting', job.id);
      }
    }
    if (this.paused) return;
    const batch = this.inState('waiting').slice(0, count);
    if (batch.length === 0) return;
    const token = (this.lease = Math.max(this.lease + 1, this.now * 1000));
    for (const job of batch) {
      job.attempts++;
      job.state = 'active';
      job.score = this.now + LEASE_MS;
      job.token = String(token);
      this.emit('active', job.id);
    }
    if (this.inState('waiting').length === 0) this.events.push('drained:');
  }
}

interface Real {
  run: (args: ScriptArg[], m: Model) => Promise<unknown>;
  events: () => Promise<string[]>;
}

const pick = (m: Model, id: string) => m.jobs.get(id);

type Step = fc.AsyncCommand<Model, Real>;
const step = (name: string, run: (m: Model, r: Real) => Promise<void>): Step => ({ check: () => true, run, toString: () => name });

const push = (id: string, priority: number, delayMs: number, maxRetries: number) =>
  step(`push(${id}, p${priority}, +${delayMs}, r${maxRetries})`, async (m, r) => {
    const spec = { id, text: codec.encode(id), priority, policy: `${maxRetries},${BACKOFF_MS},${BACKOFF_MS}`, delaySeconds: delayMs / 1000 };
    const [result] = protocol.decodePushMany([spec], await r.run(protocol.encodePushMany([spec]), m));
    expect(result!.added).toBe(!m.jobs.has(id));
    if (!result!.added) return;
    const job: MJob = { id, priority, maxRetries, attempts: 0, state: 'delayed', retry: false, score: m.now + delayMs, token: '', failedReason: undefined };
    m.jobs.set(id, job);
    if (delayMs === 0) {
      m.enqueue(job);
      m.emit('added', id);
    } else {
      m.emit('delayed', id);
    }
  });

const pop = (count: number) =>
  step(`pop(${count})`, async (m, r) => {
    const got = protocol.decodeFetch(await r.run(protocol.encodeFetch(count, LEASE_MS, undefined), m), codec);
    m.pop(count);
    expect(got.jobs.map((j) => j.id)).toEqual(m.events.filter((e) => e.startsWith('active:')).map((e) => e.slice(7)));
  });

const settle = (action: 'complete' | 'fail', id: string, stale: boolean) =>
  step(`${action}(${id}${stale ? ', stale' : ''})`, async (m, r) => {
    const job = pick(m, id);
    const token = job?.token && !stale ? job.token : '12345';
    const held = job?.state === 'active' && job.token === token ? job : undefined;
    if (action === 'complete') {
      expect(protocol.decodeHeld(await r.run(protocol.encodeComplete({ id, leaseToken: token }, codec.encode(`done ${id}`)), m))).toBe(held !== undefined);
      if (!held) return;
      held.state = 'completed';
      held.score = m.now;
      held.failedReason = undefined; // a completion clears the last attempt's error
      m.emit('completed', id);
      m.trim('completed');
      return;
    }
    const { outcome } = protocol.decodeFail(await r.run(protocol.encodeFail({ id, leaseToken: token }, 'boom'), m));
    if (!held) return expect(outcome).toBe('lost');
    if (held.attempts > held.maxRetries) {
      expect(outcome).toBe('dead');
      m.die(held, 'boom');
    } else {
      expect(outcome).toBe('retry');
      // Jitter: the retry time is between half the backoff and all of it; learn it from getJob.
      held.state = 'delayed';
      held.retry = true;
      held.failedReason = 'boom';
      const info = protocol.decodeGetJob(await r.run(protocol.encodeGetJob(id), m), codec, codec).job!;
      expect(info.readyAt! - m.now).toBeGreaterThanOrEqual(BACKOFF_MS / 2);
      expect(info.readyAt! - m.now).toBeLessThanOrEqual(BACKOFF_MS);
      held.score = info.readyAt!;
      m.emit('retrying', id);
    }
  });

const remove = (id: string, force: boolean) =>
  step(`remove(${id}${force ? ', force' : ''})`, async (m, r) => {
    const job = pick(m, id);
    const ok = job !== undefined && (job.state !== 'active' || force);
    expect(protocol.decodeHeld(await r.run(protocol.encodeRemove(id, force), m))).toBe(ok);
    if (!ok) return;
    m.jobs.delete(id);
    m.emit('removed', id);
  });

const promote = (id: string) =>
  step(`promote(${id})`, async (m, r) => {
    const job = pick(m, id);
    const ok = job?.state === 'delayed';
    expect(protocol.decodeHeld(await r.run(protocol.encodePromote(id), m))).toBe(ok);
    if (!ok) return;
    m.enqueue(job);
    m.emit('waiting', id);
  });

const retryJob = (id: string) =>
  step(`retryJob(${id})`, async (m, r) => {
    const job = pick(m, id);
    const ok = job?.state === 'dead';
    expect(protocol.decodeHeld(await r.run(protocol.encodeRetryJob(id), m))).toBe(ok);
    if (!ok) return;
    job.attempts = 0;
    job.failedReason = undefined;
    m.enqueue(job);
    m.emit('waiting', id);
  });

const pause = (paused: boolean) =>
  step(paused ? 'pause' : 'resume', async (m, r) => {
    const changed = m.paused !== paused;
    expect(protocol.decodeHeld(await r.run(protocol.encodePause(paused), m))).toBe(changed);
    m.paused = paused;
    if (changed) m.events.push(paused ? 'paused:' : 'resumed:');
  });

const clean = (state: 'completed' | 'dead') =>
  step(`clean(${state})`, async (m, r) => {
    const gone = m.sorted(state).slice(0, 2);
    expect(protocol.decodeCount(await r.run(protocol.encodeClean(state, 0, 2), m))).toBe(gone.length);
    for (const job of gone) {
      m.jobs.delete(job.id);
      m.emit('removed', job.id);
    }
  });

const tick = (ms: number) =>
  step(`tick(${ms})`, (m) => {
    m.now += ms;
    return Promise.resolve();
  });

async function check(m: Model, r: Real): Promise<void> {
  expect(await r.events(), 'events').toEqual(m.events);
  m.events = [];
  for (const state of ['waiting', 'delayed', 'active', 'completed', 'dead'] as const) {
    const page = protocol.decodeGetJobs(await r.run(protocol.encodeGetJobs(state, 0, 100), m), codec, codec);
    expect(page.map((j) => j.id), state).toEqual(m.inState(state).map((j) => j.id));
  }
  for (const id of IDS) {
    const job = m.jobs.get(id);
    const info = protocol.decodeGetJob(await r.run(protocol.encodeGetJob(id), m), codec, codec).job;
    if (!job) {
      expect(info, id).toBeUndefined();
      continue;
    }
    expect(info, id).toMatchObject({ id, state: job.state, attempts: job.attempts, priority: job.priority, data: id, failedReason: job.failedReason });
    if (job.state === 'completed') expect(info!.returnValue).toBe(`done ${id}`);
    if (job.state === 'completed' || job.state === 'dead') expect(info!.finishedAt).toBe(job.score);
    if (job.state === 'delayed') expect(info!.readyAt).toBe(job.score);
  }
}

const commands = [
  fc
    .tuple(fc.constantFrom(...IDS), fc.constantFrom(-1, 0, 0, 3), fc.constantFrom(0, 0, 0, 1500), fc.integer({ min: 0, max: 1 }))
    .map(([id, p, delay, retries]) => push(id, p, delay, retries)),
  fc.integer({ min: 1, max: 3 }).map(pop),
  fc.tuple(fc.constantFrom<'complete' | 'fail'>('complete', 'fail'), fc.constantFrom(...IDS), fc.constantFrom(false, false, true)).map(([a, id, s]) => settle(a, id, s)),
  fc.tuple(fc.constantFrom(...IDS), fc.boolean()).map(([id, force]) => remove(id, force)),
  fc.constantFrom(...IDS).map(promote),
  fc.constantFrom(...IDS).map(retryJob),
  fc.boolean().map(pause),
  fc.constantFrom<'completed' | 'dead'>('completed', 'dead').map(clean),
  fc.constantFrom(0, 500, 1000, 2000).map(tick),
];

describe.each(topologies)('inspection and control against a model on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  it('getJob, getJobs and the events agree with the model at every step', async () => {
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const policy: protocol.CallPolicy = { events: true, eventsMaxLen: 10_000, completed: { count: KEEP, ageMs: -1 }, dead: { count: KEEP, ageMs: -1 } };
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'max' }), async (cmds) => {
        const prefix = randomPrefix();
        prefixes.push(prefix);
        const { keys, eventsKey } = protocol.declaredKeys(['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{i}:${k}`));
        let last = '0';
        const real: Real = {
          run: (args, m) => scripts.executeScript(script, { keys, args: protocol.withPolicy(args, protocol.policyClock(policy, m.now / 1000)) }),
          events: async () => {
            const entries = protocol.decodeEventEntries(await (redis as Redis).xread('STREAMS', eventsKey, last));
            if (entries.length > 0) last = entries.at(-1)!.entryId;
            return entries.flatMap((e) => e.events.map((x) => `${x.name}:${x.jobId}`));
          },
        };
        const wrapped = [...cmds].map((cmd) =>
          step(cmd.toString(), async (m, r) => {
            await cmd.run(m, r);
            await check(m, r);
          }),
        );
        await fc.asyncModelRun(() => ({ model: new Model(), real }), wrapped);
      }),
      { numRuns: topology === 'single' ? 30 : 10 },
    );
  });
});
