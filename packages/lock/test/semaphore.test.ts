import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  LockLostError,
  LockManager,
  LockUnavailableError,
  Permit,
  PermitsUnavailableError,
  ScriptError,
  type Semaphore,
} from '../src/index.js';

describe.each(topologies)('Semaphore on %s', (topology) => {
  let prefix: string;
  let locks: LockManager;
  let others: LockManager[];

  const redis = suiteClient(topology);
  beforeEach(() => {
    prefix = randomPrefix();
    locks = new LockManager(redis, { prefix, ttlMs: 30_000 });
    others = [];
  });
  afterEach(async () => {
    await Promise.all([locks, ...others].map((m) => m.close()));
    await deleteByPrefix(redis, prefix);
  });
  /** Another manager on the same Redis: another process, as far as the semaphore can tell. */
  const another = () => {
    const m = new LockManager(redis, { prefix, ttlMs: 30_000 });
    others.push(m);
    return m;
  };

  it('grants up to its permits, refuses beyond them, extends, releases and reports status', async () => {
    const sem = locks.semaphore('pdf', { permits: 5 });
    const a = await sem.acquire({ count: 2, ttlMs: 10_000 });
    expect(a).toBeInstanceOf(Permit);
    expect(a.count).toBe(2);
    const b = await another().semaphore('pdf', { permits: 5 }).acquire({ count: 3 });
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    expect(await sem.tryAcquire()).toBeNull();
    const refused = await sem.acquire({ count: 1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PermitsUnavailableError);
    expect(refused).toBeInstanceOf(LockUnavailableError);
    expect(refused).toMatchObject({ requested: 1, available: 0, permits: 5 });

    const status = await sem.status();
    expect(status).toMatchObject({ permits: 5, available: 0, fencingToken: b.fencingToken });
    expect(status.holders.map(({ owner, count }) => ({ owner, count })).sort((x, y) => x.count - y.count)).toEqual([
      { owner: a.owner, count: 2 },
      { owner: b.owner, count: 3 },
    ]);
    for (const holder of status.holders) expect(holder.ttlMs).toBeGreaterThan(0);

    await a.extend(20_000);
    expect(a.remainingMs).toBeGreaterThan(10_000);
    expect(await a.release()).toBe(true);
    expect(await a.release()).toBe(false);
    await expect(a.extend()).rejects.toBeInstanceOf(LockLostError);
    const c = await sem.acquire({ count: 2 });
    expect(c.fencingToken).toBeGreaterThan(b.fencingToken);
    expect((await sem.status()).available).toBe(0);
    await Promise.all([b.release(), c.release()]);
    expect(await sem.status()).toMatchObject({ permits: 5, available: 5, holders: [] });
  });

  it('gives a crashed holder’s permits back when its lease ends', async () => {
    const sem = locks.semaphore('crash', { permits: 1 });
    // Never released: a holder that died.
    const dead = await sem.acquire({ ttlMs: 300 });
    const next = await another().semaphore('crash', { permits: 1 }).acquire({ waitMs: 20_000 });
    expect(next.fencingToken).toBeGreaterThan(dead.fencingToken);
    expect(await dead.release()).toBe(false);
    await next.release();
  });

  it('wakes a waiter on release, long before the holder’s lease would end', async () => {
    const sem = locks.semaphore('wake', { permits: 2 });
    const held = await sem.acquire({ count: 2, ttlMs: 120_000 });
    const other = another().semaphore('wake', { permits: 2 });
    // Each waiter needs one permit; one release of two permits wakes both (waitMs is far below the lease).
    const waiters = [other.acquire({ waitMs: 60_000 }), other.acquire({ waitMs: 60_000 })];
    await waitFor(async () => ((await redis.hget(sem.key, 'w')) === '1' ? true : undefined));
    await held.release();
    const granted = await Promise.all(waiters);
    expect(granted.map((p) => p.count)).toEqual([1, 1]);
    for (const p of granted) expect(p.fencingToken).toBeGreaterThan(held.fencingToken);
    await Promise.all(granted.map((p) => p.release()));
  });

  it('gives up after waitMs, and stops at an abort holding nothing', async () => {
    const sem = locks.semaphore('busy', { permits: 1 });
    const held = await sem.acquire();
    const err = await sem.acquire({ waitMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermitsUnavailableError);
    const controller = new AbortController();
    const waiting = sem.acquire({ waitMs: 60_000, signal: controller.signal });
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    await held.release();
    expect((await sem.status()).available).toBe(1);
  });

  it('using: holds the permits while the routine runs, extends past the ttl, releases at the end', async () => {
    const sem = locks.semaphore('using', { permits: 3 });
    const start = performance.now();
    const result = await sem.using(
      async (signal, permit) => {
        expect(permit.count).toBe(2);
        expect((await sem.status()).available).toBe(1);
        await waitFor(() => (performance.now() > start + 1_500 ? true : undefined), { timeoutMs: 30_000 });
        expect(signal.aborted).toBe(false);
        return 'done';
      },
      { count: 2, ttlMs: 1_000 },
    );
    expect(result).toBe('done');
    expect((await sem.status()).available).toBe(3);
  });

  it('setPermits resizes for every process; holders keep what they have', async () => {
    const sem = locks.semaphore('resize', { permits: 2 });
    const a = await sem.acquire({ count: 2 });
    const other = another().semaphore('resize', { permits: 2 });
    await sem.setPermits(3);
    const b = await other.acquire();
    await sem.setPermits(1);
    expect(await sem.status()).toMatchObject({ permits: 1, available: -2 });
    expect(await other.tryAcquire()).toBeNull();
    await Promise.all([a.release(), b.release()]);
    expect(await other.tryAcquire()).not.toBeNull();
  });

  it('keeps tokens increasing when Redis loses the key, lets a lease’s key expire, and deletes it with the last lease', async () => {
    const sem = locks.semaphore('lost', { permits: 2 });
    const a = await sem.acquire({ ttlMs: 300_000 });
    // What an eviction (or a restart without persistence) does in the middle of a lease.
    await redis.del(sem.key);
    const b = await sem.acquire({ count: 2, ttlMs: 5_000 });
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    expect(await a.release()).toBe(false);
    // Outlives the lease by 25 s or more, gone within a minute of its end.
    const pttl = await redis.pttl(sem.key);
    expect(pttl).toBeGreaterThanOrEqual(5_000 + 25_000 - 1_000);
    expect(pttl).toBeLessThanOrEqual(60_000);
    // The last lease released: nothing in the key is needed any more (tokens do not need it), so it goes.
    await b.release();
    expect(await redis.exists(sem.key)).toBe(0);
    const c = await sem.acquire();
    expect(c.fencingToken).toBeGreaterThan(b.fencingToken);
    await c.release();
    expect(await redis.exists(sem.key)).toBe(0);
  });

  it('shares one call among the operations of one tick; one owner’s error fails only its own', async () => {
    const sem = locks.semaphore('tick', { permits: 3 });
    const mine = await sem.acquire({ owner: 'me', count: 1 });
    const [again, other] = await Promise.allSettled([sem.acquire({ owner: 'me', count: 2 }), sem.acquire({ owner: 'you', count: 2 })]);
    expect(again.status).toBe('rejected');
    expect((again as PromiseRejectedResult).reason).toBeInstanceOf(ScriptError);
    expect(other.status).toBe('fulfilled');
    await Promise.all([mine.release(), (other as PromiseFulfilledResult<Permit>).value.release()]);
    expect((await sem.status()).available).toBe(3);
  });

  it('refuses bad input with InvalidArgumentError naming it, before any round trip', async () => {
    const refused = async (argument: string, run: () => unknown) => {
      const err = await Promise.resolve()
        .then(run)
        .catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
    };
    await refused('options.permits', () => locks.semaphore('s', { permits: 0 }));
    await refused('options.permits', () => locks.semaphore('s', { permits: 1.5 }));
    await refused('options.permits', () => locks.semaphore('s', {} as never));
    await refused('options.limit', () => locks.semaphore('s', { permits: 1, limit: 2 } as never));
    await refused('name', () => locks.semaphore('', { permits: 1 }));
    const sem: Semaphore = locks.semaphore('s', { permits: 2 });
    await refused('options.count', () => sem.acquire({ count: 3 }));
    await refused('options.count', () => sem.acquire({ count: 0 }));
    await refused('options.ttlMs', () => sem.acquire({ ttlMs: 5 }));
    await refused('options.waitMs', () => sem.acquire({ waitMs: -1 }));
    await refused('options.owner', () => sem.acquire({ owner: 'me\uD800' }));
    await refused('options.wait', () => sem.acquire({ wait: 1 } as never));
    await refused('permits', () => sem.setPermits(0));
    expect(await redis.exists(sem.key)).toBe(0);
  });
});

const SOURCE = readFileSync(new URL('../lua/semaphore.lua', import.meta.url), 'utf8');

describe('semaphore.lua, raw', () => {
  it('answers bad input with ERR and writes nothing', async () => {
    const redis = new Redis(redisUrl());
    const key = `${randomPrefix()}{raw}:s`;
    try {
      const bad: (string | number)[][] = [
        ['a', 1_000, 'acquire', 0, 3],
        ['a', 1_000, 'acquire', 4, 3],
        ['a', 1_000, 'acquire', 1.5, 3],
        ['a', 1_000, 'acquire', 1, 0],
        ['a', 0, 'acquire', 1, 3],
        ['', 1_000, 'acquire', 1, 3],
        ['a', 1_000, 'take', 1, 3],
        ['', 0, 'resize', 0],
        ['a', 0, 'extend'],
        ['a', 0, 'fence', -1],
        ['a', 0, 'fence', 'x'],
        ['', 0, 'fence', 5],
      ];
      for (const args of bad) await expect(redis.eval(SOURCE, 1, key, ...args), JSON.stringify(args)).rejects.toThrow(/^ERR semaphore: /);
      expect(await redis.exists(key)).toBe(0);
      // A hash that is not a semaphore, or a string: refused before any write.
      await redis.hset(key, 'u', 'many');
      await expect(redis.eval(SOURCE, 1, key, 'a', 1_000, 'acquire', 1, 3)).rejects.toThrow(/does not hold a semaphore/);
      expect(await redis.hgetall(key)).toEqual({ u: 'many' });
    } finally {
      await redis.del(key);
      await redis.quit();
    }
  });
});

describe('a semaphore holder paused past its lease, or killed', () => {
  const holder = (prefix: string, name: string) => {
    const child = spawn('node', [new URL('./fixtures/holder.mjs', import.meta.url).pathname, redisUrl(), prefix, name, '3000', '2'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    return { child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator]() };
  };

  it('the others proceed after the lease; the paused holder’s extend and release fail and its token is lower', async () => {
    const prefix = randomPrefix();
    const { child, lines } = holder(prefix, 's');
    const redis = new Redis(redisUrl());
    const locks = new LockManager(redis, { prefix });
    try {
      const first = JSON.parse(String((await lines.next()).value)) as { token: string };
      child.kill('SIGSTOP');
      const sem = locks.semaphore('s', { permits: 2 });
      const second = await sem.acquire({ count: 2, ttlMs: 30_000, waitMs: 20_000 });
      child.kill('SIGCONT');
      child.stdin.write('go\n');
      const after = JSON.parse(String((await lines.next()).value)) as { extend: string; release: boolean };
      expect(after).toEqual({ extend: 'LockLostError', release: false });
      expect(second.fencingToken).toBeGreaterThan(BigInt(first.token));
      expect((await sem.status()).holders.map((h) => h.owner)).toEqual([second.owner]);
      await second.release();
    } finally {
      child.kill('SIGKILL');
      await locks.close();
      await redis.quit();
    }
  });

  it('a killed holder’s permits come back at its lease end', async () => {
    const prefix = randomPrefix();
    const { child, lines } = holder(prefix, 'k');
    const redis = new Redis(redisUrl());
    const locks = new LockManager(redis, { prefix });
    try {
      const first = JSON.parse(String((await lines.next()).value)) as { token: string };
      child.kill('SIGKILL');
      const permit = await locks.semaphore('k', { permits: 2 }).acquire({ waitMs: 20_000 });
      expect(permit.fencingToken).toBeGreaterThan(BigInt(first.token));
      await permit.release();
    } finally {
      child.kill('SIGKILL');
      await locks.close();
      await redis.quit();
    }
  });
});

/** The reference: permits held per owner (leases never run out here), and the last token. */
interface Model {
  permits: number;
  held: Map<string, number>;
  token: bigint;
}

interface Real {
  sems: Semaphore[];
  permits: Map<string, Permit>;
}

const PERMITS = 3;
const owners = fc.constantFrom('a', 'b', 'c', 'd');

class Take implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly owner: string,
    readonly count: number,
    readonly via: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const mine = m.held.get(this.owner);
    const attempt = r.sems[this.via]!.tryAcquire({ owner: this.owner, count: this.count, ttlMs: 600_000 });
    if (mine !== undefined && mine !== this.count) {
      // An owner asking for another count than it holds: an error, nothing changes.
      await expect(attempt).rejects.toBeInstanceOf(ScriptError);
      return;
    }
    const permit = await attempt;
    if (mine !== undefined) {
      // A resent acquire renews the lease it has, with its token.
      expect(permit?.count).toBe(mine);
      return;
    }
    const used = [...m.held.values()].reduce((x, y) => x + y, 0);
    if (this.count > m.permits - used) {
      expect(permit).toBeNull();
      return;
    }
    expect(permit).not.toBeNull();
    expect(permit!.fencingToken).toBeGreaterThan(m.token);
    m.token = permit!.fencingToken;
    m.held.set(this.owner, this.count);
    r.permits.set(this.owner, permit!);
    expect([...m.held.values()].reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(m.permits);
  }
  toString = () => `take(${this.owner}, ${this.count}, via ${this.via})`;
}

class Give implements fc.AsyncCommand<Model, Real> {
  constructor(readonly owner: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const permit = r.permits.get(this.owner);
    if (!permit) return;
    expect(await permit.release()).toBe(m.held.has(this.owner));
    m.held.delete(this.owner);
  }
  toString = () => `give(${this.owner})`;
}

class Look implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const status = await r.sems[0]!.status();
    const used = [...m.held.values()].reduce((x, y) => x + y, 0);
    expect(status.available).toBe(m.permits - used);
    expect(new Map(status.holders.map((h) => [h.owner, h.count]))).toEqual(m.held);
  }
  toString = () => 'status()';
}

describe.each(topologies)('Semaphore against a reference model on %s', (topology) => {
  const prefix = randomPrefix();
  const redis = suiteClient(topology, prefix);

  it('never grants more than its permits, and every grant has a higher token, across several managers', async () => {
    let run = 0;
    const commands = fc.commands(
      [
        fc.tuple(owners, fc.integer({ min: 1, max: PERMITS }), fc.integer({ min: 0, max: 2 })).map(([o, c, v]) => new Take(o, c, v)),
        owners.map((o) => new Give(o)),
        fc.constant(new Look()),
      ],
      { maxCommands: 40 },
    );
    await fc.assert(
      fc.asyncProperty(commands, async (cmds) => {
        const managers = [0, 1, 2].map(() => new LockManager(redis, { prefix: `${prefix}${run}` }));
        run++;
        try {
          const sems = managers.map((m) => m.semaphore('model', { permits: PERMITS }));
          await fc.asyncModelRun(() => ({ model: { permits: PERMITS, held: new Map(), token: 0n }, real: { sems, permits: new Map() } }), cmds);
        } finally {
          await Promise.all(managers.map((m) => m.close()));
        }
      }),
      { numRuns: 30 },
    );
  });
});
