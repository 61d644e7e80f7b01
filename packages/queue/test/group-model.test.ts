import { defaultCodec, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA } from '../src/index.js';
import * as protocol from '../src/protocol.js';

/**
 * Model-based test of groups, pauses and limits (issue 16) against a reference model of the documented
 * rules: ungrouped jobs first by (priority, FIFO), then the groups round-robin, FIFO inside a group, at most
 * its concurrency leased, its rate limit's slots (one lease per window / limit, on a clock the test drives),
 * a paused group or queue leasing nothing, a released job first again, and never more than the queue-wide
 * limit leased at once.
 */

interface MJob {
  id: string;
  group: string | undefined;
  priority: number;
  leased: boolean;
  token: string;
}

interface MGroup {
  list: string[];
  active: number;
  concurrency: number;
  paused: boolean;
  /** Its place in the round robin; undefined when it cannot lease now. */
  turn: number | undefined;
  /** Its rate limit (0: none) per `window` ms, and the time of its next slot (tat). */
  limit: number;
  window: number;
  tat: number;
  /** When it waits for its next slot (in `glimited`): that time; else undefined. */
  limitedUntil: number | undefined;
}

const GLOBAL = 4;
const IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
const GROUPS = ['x', 'y', 'z'];

class Model {
  jobs = new Map<string, MJob>();
  /** Ungrouped waiting ids per priority, in serving order. */
  lists = new Map<number, string[]>();
  groups = new Map<string, MGroup>();
  turns = 0;
  paused = false;
  /** The clock the calls pass (ms). */
  now = 1_000_000_000_000;

  group(name: string): MGroup {
    let g = this.groups.get(name);
    if (!g) this.groups.set(name, (g = { list: [], active: 0, concurrency: 1, paused: false, turn: undefined, limit: 0, window: 0, tat: 0, limitedUntil: undefined }));
    return g;
  }

  place(g: MGroup, back: boolean): void {
    if (g.list.length === 0 || g.paused || g.active >= g.concurrency) {
      g.turn = undefined;
      g.limitedUntil = undefined;
    } else if (g.limit > 0 && g.tat > this.now) {
      g.turn = undefined;
      g.limitedUntil = g.tat;
    } else {
      g.limitedUntil = undefined;
      if (back || g.turn === undefined) g.turn = ++this.turns;
    }
  }

  /** Names in the order of the sorted set the script keeps: by score, then name. */
  order(score: (g: MGroup) => number | undefined): string[] {
    return [...this.groups.entries()]
      .filter(([, g]) => score(g) !== undefined)
      .sort((a, b) => score(a[1])! - score(b[1])! || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([name]) => name);
  }

  enqueue(job: MJob, front: boolean): void {
    if (job.group === undefined) {
      const list = this.lists.get(job.priority) ?? [];
      if (front) list.unshift(job.id);
      else list.push(job.id);
      this.lists.set(job.priority, list);
      return;
    }
    const g = this.group(job.group);
    if (front) g.list.unshift(job.id);
    else g.list.push(job.id);
    this.place(g, false);
  }

  endLease(job: MJob): void {
    job.leased = false;
    if (job.group === undefined) return;
    const g = this.group(job.group);
    g.active--;
    this.place(g, false);
  }

  pop(count: number): string[] {
    if (this.paused) return [];
    const leased = [...this.jobs.values()].filter((j) => j.leased).length;
    const room = Math.min(count, GLOBAL - leased);
    const out: string[] = [];
    for (const priority of [...this.lists.keys()].sort((a, b) => b - a)) {
      const list = this.lists.get(priority)!;
      while (out.length < room && list.length > 0) out.push(list.shift()!);
    }
    // Groups whose next slot came are ready again (only when the ungrouped jobs did not fill the call).
    if (out.length < room) {
      for (const name of this.order((g) => (g.limitedUntil !== undefined && g.limitedUntil <= this.now ? g.limitedUntil : undefined))) {
        this.place(this.groups.get(name)!, true);
      }
    }
    while (out.length < room) {
      const name = this.order((g) => g.turn)[0];
      if (name === undefined) break;
      const g = this.groups.get(name)!;
      out.push(g.list.shift()!);
      g.active++;
      if (g.limit > 0) g.tat = Math.max(g.tat, this.now) + g.window / g.limit;
      this.place(g, true);
    }
    for (const id of out) this.jobs.get(id)!.leased = true;
    return out;
  }

  waiting(): number {
    return this.waitingOrder().length;
  }

  /**
   * The documented order of `getJobs('waiting')`: ungrouped jobs by priority (highest first), FIFO within
   * one; then the groups with jobs waiting by name (bytewise), FIFO within a group.
   */
  waitingOrder(): string[] {
    const ungrouped = [...this.lists.keys()].sort((a, b) => b - a).flatMap((p) => this.lists.get(p)!);
    const grouped = [...this.groups.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))).flatMap((name) => this.groups.get(name)!.list);
    return [...ungrouped, ...grouped];
  }

  /** DRAIN of `limit`: the first `limit` jobs of the waiting order go; their groups are placed again. */
  drain(limit: number): string[] {
    const gone = this.waitingOrder().slice(0, limit);
    for (const id of gone) {
      const job = this.jobs.get(id)!;
      this.jobs.delete(id);
      if (job.group === undefined) {
        const list = this.lists.get(job.priority)!;
        list.splice(list.indexOf(id), 1);
      } else {
        const g = this.group(job.group);
        g.list.splice(g.list.indexOf(id), 1);
        this.place(g, false);
      }
    }
    return gone;
  }
}

interface Real {
  redis: Redis | Cluster;
  run: (args: ScriptArg[]) => Promise<unknown>;
}

type Cmd = fc.AsyncCommand<Model, Real>;

const push = (id: string, group: string | undefined, priority: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    const spec: protocol.PushSpec = { id, text: defaultCodec.encode(id), priority, policy: '3', delaySeconds: 0, group };
    const [result] = protocol.decodePushMany([spec], await r.run(protocol.encodePushMany([spec])));
    expect(result!.added).toBe(!m.jobs.has(id));
    if (m.jobs.has(id)) return;
    const job: MJob = { id, group, priority, leased: false, token: '' };
    m.jobs.set(id, job);
    m.enqueue(job, false);
  },
  toString: () => `push(${id}, ${group ?? '-'}, p${priority})`,
});

const pop = (count: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    const got = protocol.decodeFetch(await r.run(protocol.encodeFetch(count, 600_000, undefined)), defaultCodec);
    expect(got.jobs.map((j) => j.id)).toEqual(m.pop(count));
    for (const job of got.jobs) m.jobs.get(job.id)!.token = job.leaseToken;
  },
  toString: () => `pop(${count})`,
});

const settle = (action: 'complete' | 'release' | 'fail', id: string): Cmd => ({
  check: () => true,
  async run(m, r) {
    const job = m.jobs.get(id);
    const ref = { id, leaseToken: job === undefined || job.token === '' ? '1' : job.token };
    const held = job?.leased === true;
    if (action === 'complete') {
      expect(protocol.decodeHeld(await r.run(protocol.encodeComplete(ref)))).toBe(held);
      if (held) {
        m.endLease(job);
        m.jobs.delete(id);
      }
    } else if (action === 'release') {
      expect(protocol.decodeHeld(await r.run(protocol.encodeRelease(ref)))).toBe(held);
      if (held) {
        m.enqueue(job, true);
        m.endLease(job);
      }
    } else {
      // final: dead at once, out of the model's places.
      expect(protocol.decodeFail(await r.run(protocol.encodeFail(ref, 'x', true))).outcome).toBe(held ? 'dead' : 'lost');
      if (held) {
        m.endLease(job);
        m.jobs.delete(id);
      }
    }
  },
  toString: () => `${action}(${id})`,
});

const groupPause = (name: string, paused: boolean): Cmd => ({
  check: () => true,
  async run(m, r) {
    const g = m.group(name);
    const changes = g.paused !== paused;
    expect(protocol.decodeHeld(await r.run(protocol.encodeGroupPause(name, paused)))).toBe(changes);
    // A pause or resume that changes nothing leaves the group where it is: a rate-limited group whose slot
    // has come stays in the limited set until the next pop moves it (seed 579533983 found the model re-placing it).
    if (!changes) return;
    g.paused = paused;
    m.place(g, false);
  },
  toString: () => `${paused ? 'pause' : 'resume'}Group(${name})`,
});

const groupOptions = (name: string, concurrency: number, limit: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    await r.run(protocol.encodeGroupOptions(name, { concurrency, rateLimit: limit, rateWindowMs: limit > 0 ? 1000 : 0 }));
    const g = m.group(name);
    g.concurrency = concurrency;
    g.limit = limit;
    g.window = limit > 0 ? 1000 : 0;
    m.place(g, false);
  },
  toString: () => `setGroupOptions(${name}, ${concurrency}${limit > 0 ? `, ${limit}/s` : ''})`,
});

const drain = (limit: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    const gone = m.drain(limit);
    expect(protocol.decodeDrain(await r.run(protocol.encodeDrain(false, limit)))).toEqual({ removed: gone.length, more: gone.length === limit });
  },
  toString: () => `drain(${limit})`,
});

const tick = (ms: number): Cmd => ({
  check: () => true,
  run(m) {
    m.now += ms;
    return Promise.resolve();
  },
  toString: () => `tick(${ms})`,
});

const queuePause = (paused: boolean): Cmd => ({
  check: () => true,
  async run(m, r) {
    expect(protocol.decodeHeld(await r.run(protocol.encodePause(paused)))).toBe(m.paused !== paused);
    m.paused = paused;
  },
  toString: () => (paused ? 'pause()' : 'resume()'),
});

const commands = [
  fc.tuple(fc.constantFrom(...IDS), fc.constantFrom(undefined, ...GROUPS, ...GROUPS), fc.constantFrom(0, 0, 5)).map(([id, g, p]) => push(id, g, p)),
  fc.integer({ min: 1, max: 3 }).map(pop),
  fc.tuple(fc.constantFrom<'complete' | 'release' | 'fail'>('complete', 'complete', 'release', 'fail'), fc.constantFrom(...IDS)).map(([a, id]) => settle(a, id)),
  fc.tuple(fc.constantFrom(...GROUPS), fc.boolean()).map(([g, p]) => groupPause(g, p)),
  fc.tuple(fc.constantFrom(...GROUPS), fc.integer({ min: 1, max: 3 }), fc.constantFrom(0, 0, 1, 2)).map(([g, c, l]) => groupOptions(g, c, l)),
  fc.boolean().map(queuePause),
  fc.constantFrom(100, 300, 500, 1000).map(tick),
  fc.integer({ min: 1, max: 3 }).map(drain),
];

describe.each(topologies)('groups, pauses and limits against a model on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = connect(topology);
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  it('serves groups round-robin, FIFO inside, within every concurrency and pause, never losing a job', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'max' }), async (cmds) => {
        const prefix = randomPrefix();
        prefixes.push(prefix);
        const keys = protocol.declaredKeys(['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{gm}:${k}`)).keys;
        const policy = { events: true, eventsMaxLen: 100, completed: { count: 0, ageMs: -1 }, dead: { count: 0, ageMs: -1 }, globalConcurrency: GLOBAL };
        const model = new Model();
        // Every call runs at the model's time.
        const real: Real = {
          redis,
          run: (args) => scripts.executeScript(script, { keys, args: protocol.withPolicy(args, protocol.policyClock(policy, model.now / 1000)) }),
        };
        const wrapped = [...cmds].map((cmd) => ({
          check: () => true,
          run: async (m: Model, r: Real) => {
            await cmd.run(m, r);
            const stats = protocol.decodeStats(await r.run(protocol.encodeStats()));
            expect(stats.waiting).toBe(m.waiting());
            // getJobs('waiting') in its documented order, whole and in pages of two.
            const order = m.waitingOrder();
            const page = async (offset: number, limit: number) =>
              protocol.decodeGetJobs(await r.run(protocol.encodeGetJobs('waiting', offset, limit)), defaultCodec, defaultCodec).map((j) => j.id);
            expect(await page(0, 100)).toEqual(order);
            for (let offset = 0; offset < order.length; offset += 2) expect(await page(offset, 2)).toEqual(order.slice(offset, offset + 2));
            expect(stats.processing).toBe([...m.jobs.values()].filter((j) => j.leased).length);
            expect(stats.processing).toBeLessThanOrEqual(GLOBAL);
            // Every group that can lease is in the round robin, in the model's order, and every group held by
            // its rate limit waits for its slot; no other group is in either.
            expect(await (r.redis as Redis).zrange(keys[13]!, '0', '-1')).toEqual(m.order((g) => g.turn));
            const limited = m.order((g) => g.limitedUntil).flatMap((name) => [name, String(m.groups.get(name)!.limitedUntil)]);
            expect(await (r.redis as Redis).zrange(keys[14]!, '0', '-1', 'WITHSCORES')).toEqual(limited);
            // The index of groups with jobs waiting names exactly those, by name.
            const waitingGroups = [...m.groups.entries()].filter(([, g]) => g.list.length > 0).map(([name]) => name);
            expect(await (r.redis as Redis).zrange(keys[16]!, '0', '-1')).toEqual(waitingGroups.sort());
          },
          toString: () => cmd.toString(),
        }));
        await fc.asyncModelRun(() => ({ model, real }), wrapped);
      }),
      { numRuns: topology === 'single' ? 40 : 15 },
    );
  });
});
