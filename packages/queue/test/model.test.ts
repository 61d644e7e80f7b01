import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA } from '../src/index.js';
import { declaredKeys } from '../src/protocol.js';
import { raw } from './helpers.js';

/**
 * Model-based test of the script against a reference model that follows the documented rules exactly:
 * reclaim expired leases, promote due delayed then due retries, pop by (priority, FIFO). The only thing the
 * model takes from Redis is the jittered retry time, which it checks against its bounds.
 */

type State = 'waiting' | 'delayed' | 'processing' | 'failed' | 'dead';
const STATES: State[] = ['waiting', 'delayed', 'processing', 'failed', 'dead'];
const LEASE_MS = 1000;
/** The script's default backoff, and the one some jobs store instead (see Push). */
const BASE_MS = 1000;
const MAX_MS = 60_000;
const OWN_BACKOFF = { baseMs: 200, maxMs: 800 };

interface MJob {
  id: string;
  data: string;
  priority: number;
  maxRetries: number;
  /** The retry policy as stored: "maxRetries" or "maxRetries,baseMs,maxMs". */
  policy: string;
  /** When it was pushed (ms): the record keeps it after the policy ("@"). */
  created: number;
  baseMs: number;
  maxMs: number;
  attempts: number;
  state: State;
  /** waiting: place within its priority; delayed/failed: ready time; processing: lease deadline; dead: death time. */
  score: number;
  token: string;
}

class Model {
  jobs = new Map<string, MJob>();
  seq = 0;
  front = 0;
  /** The last lease token: each lease call's is above it and at least the time in µs. */
  lease = 0;
  completed = 0;
  now = 0;
  pushes = 0;
  /** The last request seq of the ACKs (one lane). */
  requests = 0;

  /** In serving order: waiting by priority then place; the sorted sets by score then id. */
  inState(state: State): MJob[] {
    const byId = (a: MJob, b: MJob) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    return [...this.jobs.values()]
      .filter((j) => j.state === state)
      .sort((a, b) => (state === 'waiting' ? b.priority - a.priority : 0) || a.score - b.score || byId(a, b));
  }

  enqueue(job: MJob): void {
    job.state = 'waiting';
    job.score = ++this.seq;
  }

  /** Expired or released: first within its priority. */
  requeue(job: MJob): void {
    job.state = 'waiting';
    job.score = --this.front;
  }

  /** POP's reply; `completing`: jobs an ACK completes, whose expired leases are not reclaimed. */
  pop(count: number, completing: ReadonlySet<string> = new Set()): (string | number)[] {
    for (const job of this.inState('processing').filter((j) => j.score <= this.now && !completing.has(j.id))) {
      job.token = '0';
      if (job.attempts > job.maxRetries) {
        job.state = 'dead';
        job.score = this.now;
      } else {
        this.requeue(job);
      }
    }
    for (const state of ['delayed', 'failed'] as const) {
      for (const job of this.inState(state).filter((j) => j.score <= this.now)) this.enqueue(job);
    }
    const out: string[] = [];
    const batch = this.inState('waiting').slice(0, count);
    // One token for the jobs of one call.
    const token = batch.length > 0 ? (this.lease = Math.max(this.lease + 1, this.now * 1000)) : 0;
    for (const job of batch) {
      job.attempts++;
      job.token = String(token);
      job.state = 'processing';
      job.score = this.now + LEASE_MS;
      out.push(job.id, `${job.priority}:${job.policy}@${job.created}:${job.data}`);
    }
    // A full batch answers 0 ("ask again") without looking further.
    return [batch.length === count ? 0 : this.waitMs(), token, batch.map((j) => j.attempts).join(','), ...out];
  }

  waitMs(): number {
    if (this.inState('waiting').length > 0) return 0;
    const next = (['delayed', 'failed', 'processing'] as const).flatMap((s) => this.inState(s).slice(0, 1).map((j) => Math.max(0, j.score - this.now)));
    return next.length ? Math.min(...next) : -1;
  }

  leased(id: string, token: string): MJob | undefined {
    const job = this.jobs.get(id);
    return job?.state === 'processing' && job.token === token ? job : undefined;
  }
}

interface Real {
  redis: Redis | Cluster;
  keys: string[];
  call: (...args: (string | number)[]) => Promise<unknown>;
  /** A call with every declared key and the memo key of request lane "w" (KEYS[18]), as a worker's ACK. */
  callWithRequest: (...args: (string | number)[]) => Promise<unknown>;
}

const IDS = ['a', 'b', 'c', 'd', 'e'];
const t = (m: Model) => m.now / 1000;

class Push implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly id: string,
    readonly priority: number,
    readonly maxRetries: number,
    readonly delayMs: number,
    /** Stores OWN_BACKOFF with the job instead of the default one. */
    readonly ownBackoff: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const data = `${this.id}#${++m.pushes}`;
    const exists = m.jobs.has(this.id);
    const policy = this.ownBackoff ? `${this.maxRetries},${OWN_BACKOFF.baseMs},${OWN_BACKOFF.maxMs}` : String(this.maxRetries);
    expect(await r.call('PUSH', t(m), this.id, data, this.priority, policy, this.delayMs / 1000)).toBe(exists ? 0 : 1);
    if (exists) return;
    const { baseMs, maxMs } = this.ownBackoff ? OWN_BACKOFF : { baseMs: BASE_MS, maxMs: MAX_MS };
    const job: MJob = {
      id: this.id,
      data,
      priority: this.priority,
      maxRetries: this.maxRetries,
      policy,
      created: m.now,
      baseMs,
      maxMs,
      attempts: 0,
      state: 'delayed',
      score: m.now + this.delayMs,
      token: '',
    };
    m.jobs.set(this.id, job);
    if (this.delayMs === 0) m.enqueue(job);
  }
  toString = () => `push(${this.id}, p${this.priority}, r${this.maxRetries}${this.ownBackoff ? ' own backoff' : ''}, +${this.delayMs})`;
}

class Pop implements fc.AsyncCommand<Model, Real> {
  constructor(readonly count: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const got = (await r.call('POP', t(m), this.count, LEASE_MS, '1')) as unknown[];
    expect(got).toEqual(m.pop(this.count));
  }
  toString = () => `pop(${this.count})`;
}

/** A token for `id`: its current lease's, or (stale) one it does not hold. */
function tokenFor(m: Model, id: string, stale: boolean): string {
  // A job never leased has token '': use some token that is not held.
  const held = m.jobs.get(id)?.token;
  const current = held === undefined || held === '' ? '1' : held;
  return stale ? String(Number(current) + 7) : current;
}

/** ACKs sent in a state where the script's fast path takes them (see `fastPathApplies`). */
let fastPathCalls = 0;

/**
 * Whether an ACK (with a request, a job and `fetch` >= 1, no groups or limits: as `Ack` sends it) takes the
 * script's fast path: the top priority holds more than `fetch` waiting jobs, and no lease has expired and no
 * delay or retry is due (their moves are left to the general section).
 */
function fastPathApplies(m: Model, fetch: number): boolean {
  const waiting = m.inState('waiting');
  const top = waiting.filter((j) => j.priority === waiting[0]?.priority).length;
  const due = (['processing', 'delayed', 'failed'] as const).some((s) => m.inState(s).some((j) => j.score <= m.now));
  return top > fetch && !due;
}

/**
 * ACK with a request, as a worker sends it (so its fast path runs whenever the queue allows): completes
 * jobs by id under their current or a stale token (one group each; a repeated id completes once), then
 * leases up to `fetch` like POP, except that an expired lease of a job it completes is not reclaimed.
 */
class Ack implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pairs: readonly (readonly [string, boolean])[],
    readonly fetch: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const args: (string | number)[] = ['ACK', t(m), LEASE_MS, this.fetch, this.pairs.length];
    const done = new Set<string>();
    let results = '';
    for (const [id, stale] of this.pairs) {
      const token = tokenFor(m, id, stale);
      args.push(token, 1, 0, id);
      const held = m.leased(id, token) !== undefined && !done.has(id);
      if (held) done.add(id);
      results += held ? '1' : '0';
    }
    if (fastPathApplies(m, this.fetch)) fastPathCalls++;
    const reply = await r.callWithRequest(...args, 'w', ++m.requests);
    const leased = m.pop(this.fetch, done);
    for (const id of done) {
      m.jobs.delete(id);
      m.completed++;
    }
    // Short of `fetch`, the wait is read once the completions are gone.
    if ((leased.length - 3) / 2 < this.fetch) leased[0] = m.waitMs();
    expect(reply).toEqual([results, ...leased]);
  }
  toString = () => `ack(${this.pairs.map(([id, stale]) => `${id}${stale ? ' stale' : ''}`).join(', ')}; fetch ${this.fetch})`;
}

/** Completes, fails, extends or releases a job by id, with its current token or a stale one. */
class Settle implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly action: 'complete' | 'fail' | 'extend' | 'release',
    readonly id: string,
    readonly stale: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const token = tokenFor(m, this.id, this.stale);
    const job = m.leased(this.id, token);
    if (this.action === 'complete') {
      expect(await r.call('COMPLETE', t(m), this.id, token)).toBe(job ? 1 : 0);
      if (job) {
        m.jobs.delete(this.id);
        m.completed++;
      }
    } else if (this.action === 'extend') {
      expect(await r.call('EXTEND', t(m), LEASE_MS * 2, 1, this.id, token)).toEqual([job ? 1 : 0]);
      if (job) job.score = m.now + LEASE_MS * 2;
    } else if (this.action === 'release') {
      expect(await r.call('RELEASE', t(m), this.id, token)).toBe(job ? 1 : 0);
      if (job) {
        job.attempts--;
        job.token = '0';
        m.requeue(job);
      }
    } else {
      // The backoff comes from the job, not from the call.
      const reply = (await r.call('FAIL', t(m), this.id, 'err', token)) as [string, number];
      if (!job) {
        expect(reply).toEqual(['lost', 0]);
      } else if (job.attempts > job.maxRetries) {
        expect(reply).toEqual(['dead', m.now]);
        job.state = 'dead';
        job.score = m.now;
        job.token = '0';
      } else {
        const delay = Math.min(job.maxMs, job.baseMs * 2 ** (job.attempts - 1));
        expect(reply[0]).toBe('retry');
        expect(reply[1] - m.now).toBeGreaterThanOrEqual(delay / 2);
        expect(reply[1] - m.now).toBeLessThanOrEqual(delay);
        job.state = 'failed';
        job.score = reply[1];
        job.token = '0';
      }
    }
  }
  toString = () => `${this.action}(${this.id}${this.stale ? ', stale' : ''})`;
}

class Tick implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model): Promise<void> {
    m.now += this.ms;
    return Promise.resolve();
  }
  toString = () => `tick(${this.ms})`;
}

class RetryDead implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const dead = m.inState('dead');
    expect(await r.call('RETRYDEAD', t(m), 1000)).toEqual([dead.length, dead.length]);
    for (const job of dead) {
      job.attempts = 0;
      job.token = '';
      m.enqueue(job);
    }
  }
  toString = () => 'retryDead()';
}

/** Every job is in exactly one state, matching the model; nothing lost or duplicated; stats agree. */
async function checkInvariants(m: Model, r: Real): Promise<void> {
  const [waiting, processing, failed, dead] = r.keys;
  const keyOf: Record<State, string> = { waiting: waiting!, delayed: `${waiting}:delayed`, processing: processing!, failed: failed!, dead: dead! };
  const seen = new Map<string, State>();
  const redis = r.redis as Redis;
  for (const state of STATES) {
    let ids: string[];
    const model = m.inState(state);
    if (state === 'waiting') {
      // The priority index, highest first, then each priority's list in serving order.
      ids = [];
      for (const priority of await redis.zrange(waiting!, '0', '-1')) ids.push(...(await redis.lrange(`${waiting}:w:${priority}`, 0, -1)));
    } else {
      const real = await redis.zrange(keyOf[state], '0', '-1', 'WITHSCORES');
      ids = real.filter((_, i) => i % 2 === 0);
      expect(real.filter((_, i) => i % 2 === 1).map(Number), `${state} scores`).toEqual(model.map((j) => j.score));
    }
    for (const id of ids) {
      expect(seen.has(id), `${id} is in ${seen.get(id)} and ${state}`).toBe(false);
      seen.set(id, state);
    }
    expect(ids, state).toEqual(model.map((j) => j.id));
  }
  expect([...seen.keys()].sort()).toEqual([...m.jobs.keys()].sort());
  expect(await r.call('STATS', t(m))).toEqual([
    ...STATES.flatMap((s) => [s, m.inState(s).length]),
    'completed',
    m.completed,
  ]);
}

const commands = [
  fc
    .tuple(fc.constantFrom(...IDS), fc.constantFrom(-1, 0, 0, 3), fc.integer({ min: 0, max: 2 }), fc.constantFrom(0, 0, 500, 2000), fc.boolean())
    .map(([id, p, retries, delay, own]) => new Push(id, p, retries, delay, own)),
  fc.integer({ min: 1, max: 3 }).map((n) => new Pop(n)),
  fc
    .tuple(
      fc.constantFrom<'complete' | 'fail' | 'extend' | 'release'>('complete', 'fail', 'fail', 'extend', 'release'),
      fc.constantFrom(...IDS),
      fc.constantFrom(false, false, true),
    )
    .map(([a, id, stale]) => new Settle(a, id, stale)),
  fc
    .tuple(fc.array(fc.tuple(fc.constantFrom(...IDS), fc.constantFrom(false, false, true)), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 3 }))
    .map(([pairs, fetch]) => new Ack(pairs, fetch)),
  fc.constantFrom(0, 100, 500, 1000, 3000).map((ms) => new Tick(ms)),
  fc.constant(new RetryDead()),
];

// A mix that keeps several jobs waiting at one priority, so that many ACKs take the script's fast path.
const MANY = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
const ackCommands = [
  fc
    .tuple(fc.constantFrom(...MANY), fc.constantFrom(0, 0, 0, 3), fc.integer({ min: 0, max: 2 }), fc.constantFrom(0, 0, 0, 500), fc.boolean())
    .map(([id, p, retries, delay, own]) => new Push(id, p, retries, delay, own)),
  fc.integer({ min: 1, max: 2 }).map((n) => new Pop(n)),
  fc
    .tuple(fc.array(fc.tuple(fc.constantFrom(...MANY), fc.constantFrom(false, false, false, true)), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 2 }))
    .map(([pairs, fetch]) => new Ack(pairs, fetch)),
  fc
    .tuple(fc.constantFrom<'fail' | 'release'>('fail', 'release'), fc.constantFrom(...MANY), fc.constant(false))
    .map(([a, id, stale]) => new Settle(a, id, stale)),
  fc.constantFrom(0, 0, 100, 500, 1500).map((ms) => new Tick(ms)),
];

describe.each(topologies)('job_queue.lua against a model on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  // Runs random command sequences against the model, checking the invariants after every step.
  const runModel = (mix: fc.Arbitrary<fc.AsyncCommand<Model, Real>>[], numRuns: number, first: fc.AsyncCommand<Model, Real>[] = []) =>
    fc.assert(
      fc.asyncProperty(fc.commands(mix, { maxCommands: 80, size: 'max' }), async (cmds) => {
        const prefix = randomPrefix();
        prefixes.push(prefix);
        const keys = ['queue', 'processing', 'failed', 'dead'].map((k) => `${prefix}{m}:${k}`);
        const requestKeys = [...declaredKeys(keys).keys, `${keys[0]!}:req:w`];
        const real: Real = {
          redis,
          keys,
          call: (...args) => raw(redis, keys, ...args),
          callWithRequest: (...args) => (redis as Redis).eval(JOB_QUEUE_LUA, requestKeys.length, ...requestKeys, ...args),
        };
        const model = new Model();
        const wrapped = [...first, ...cmds].map((cmd) => ({
          check: () => true,
          run: async (m: Model, r: Real) => {
            await cmd.run(m, r);
            await checkInvariants(m, r);
          },
          toString: () => cmd.toString(),
        }));
        await fc.asyncModelRun(() => ({ model, real }), wrapped);
      }),
      { numRuns },
    );

  it('keeps every job in exactly one state, never lost or duplicated', async () => {
    await runModel(commands, topology === 'single' ? 40 : 15);
  });

  it('ACK with a request agrees with the model, its fast path included', async () => {
    fastPathCalls = 0;
    // Every run opens with an ACK the fast path takes (two jobs left waiting at the top priority, nothing
    // due), then goes on at random.
    const opening = [new Push('a', 0, 1, 0, false), new Push('b', 0, 1, 0, false), new Push('c', 0, 1, 0, false), new Pop(1), new Ack([['a', false]], 1)];
    const runs = topology === 'single' ? 30 : 10;
    await runModel(ackCommands, runs, opening);
    expect(fastPathCalls).toBeGreaterThanOrEqual(runs);
  });
});
