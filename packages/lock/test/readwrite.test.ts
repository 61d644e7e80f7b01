import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, Lock, LockLostError, LockManager, LockUnavailableError, type ReadWriteLock } from '../src/index.js';

describe.each(topologies)('ReadWriteLock on %s', (topology) => {
  let prefix: string;
  let managers: LockManager[];

  const redis = suiteClient(topology);
  beforeEach(() => {
    prefix = randomPrefix();
    managers = [];
  });
  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
    await deleteByPrefix(redis, prefix);
  });
  /** The lock as seen from a manager of its own: another process, as far as Redis can tell. */
  const rwLock = (name: string): ReadWriteLock => {
    const m = new LockManager(redis, { prefix, ttlMs: 30_000 });
    managers.push(m);
    return m.readWrite(name);
  };

  it('lets readers share, keeps a writer alone, and orders writes by fencing token', async () => {
    const [a, b, c] = [rwLock('doc'), rwLock('doc'), rwLock('doc')];
    const r1 = await a.read.acquire();
    const r2 = await b.read.acquire();
    expect(r1).toBeInstanceOf(Lock);
    expect(await c.write.tryAcquire()).toBeNull();
    const blocked = await c.write.acquire({ waitMs: 50 }).catch((e: unknown) => e);
    expect(blocked).toBeInstanceOf(LockUnavailableError);
    expect((await a.status()).readers.sort()).toEqual([r1.owner, r2.owner].sort());
    await Promise.all([r1.release(), r2.release()]);

    const w1 = await c.write.acquire();
    expect(w1.fencingToken).toBeGreaterThan(r2.fencingToken);
    expect(await a.read.tryAcquire()).toBeNull();
    expect(await b.write.tryAcquire()).toBeNull();
    expect(await a.status()).toMatchObject({ readers: [], writer: w1.owner, fencingToken: w1.fencingToken });
    await w1.extend(10_000);
    expect(await w1.release()).toBe(true);
    await expect(w1.extend()).rejects.toBeInstanceOf(LockLostError);
    const w2 = await b.write.acquire();
    expect(w2.fencingToken).toBeGreaterThan(w1.fencingToken);
    await w2.release();
  });

  it('prefers writers: a waiting writer holds new readers back, across processes, and gets the lock first', async () => {
    const [a, b, c] = [rwLock('pref'), rwLock('pref'), rwLock('pref')];
    const reader = await a.read.acquire({ ttlMs: 120_000 });
    const writer = b.write.acquire({ waitMs: 60_000, ttlMs: 60_000 });
    // The writer's wait round has marked the lock: new readers (elsewhere) are refused.
    await waitFor(async () => (Number(await redis.hget(a.key, 'q')) > 0 ? true : undefined));
    expect(await c.read.tryAcquire()).toBeNull();
    const lateReader = c.read.acquire({ waitMs: 60_000 });
    await reader.release();
    const w = await writer;
    expect(w.fencingToken).toBeGreaterThan(reader.fencingToken);
    expect(await c.read.tryAcquire()).toBeNull();
    await w.release();
    const r = await lateReader;
    expect(r.fencingToken).toBeGreaterThan(w.fencingToken);
    await r.release();
  });

  it('a writer that gives up holds readers back no longer than its own lease', async () => {
    const [a, b] = [rwLock('gone'), rwLock('gone')];
    const reader = await a.read.acquire({ ttlMs: 120_000 });
    const controller = new AbortController();
    const writer = b.write.acquire({ waitMs: 60_000, ttlMs: 500, signal: controller.signal });
    await waitFor(async () => (Number(await redis.hget(a.key, 'q')) > 0 ? true : undefined));
    controller.abort(new Error('gave up'));
    await expect(writer).rejects.toThrow('gave up');
    // Retried when the writer's hold ends (no release message needed).
    const next = await b.read.acquire({ waitMs: 20_000 });
    await Promise.all([next.release(), reader.release()]);
  });

  it('refuses bad input with InvalidArgumentError naming it', async () => {
    const rw = rwLock('bad');
    const refused = async (argument: string, run: () => unknown) => {
      const err = await Promise.resolve()
        .then(run)
        .catch((e: unknown) => e);
      expect(err, argument).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).argument, argument).toBe(argument);
    };
    await refused('name', () => managers[0]!.readWrite(''));
    await refused('options.count', () => rw.read.acquire({ count: 2 } as never));
    await refused('options.ttlMs', () => rw.write.acquire({ ttlMs: 1 }));
    await refused('options.waitMs', () => rw.write.acquire({ waitMs: -1 }));
    expect(await redis.exists(rw.key)).toBe(0);
    // No upgrade: the owner of a read lease asking for the write side is an error, not a write lock.
    const r = await rw.read.acquire({ owner: 'me' });
    await expect(rw.write.acquire({ owner: 'me' })).rejects.toThrow(/holds 1 permit/);
    expect(await rw.status()).toMatchObject({ readers: ['me'] });
    await r.release();
  });
});

describe('ReadWriteLock on Redlock', () => {
  it('is refused: read-write locks need one Redis', async () => {
    const servers = await Promise.all([RedisServer.start(), RedisServer.start(), RedisServer.start()]);
    const clients = servers.map((s) => s.client());
    const locks = new LockManager(clients);
    try {
      expect(() => locks.readWrite('x')).toThrow(InvalidArgumentError);
    } finally {
      await locks.close();
      for (const client of clients) client.disconnect();
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});

/** The reference: who reads and who writes (leases never run out here), and the last token. */
interface Model {
  readers: Set<string>;
  writer: string | undefined;
  token: bigint;
}

interface Real {
  locks: ReadWriteLock[];
  held: Map<string, Lock>;
}

const owners = fc.constantFrom('a', 'b', 'c', 'd');

class Take implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly owner: string,
    readonly write: boolean,
    readonly via: number,
  ) {}
  check = (m: Readonly<Model>) => !m.readers.has(this.owner) && m.writer !== this.owner;
  async run(m: Model, r: Real): Promise<void> {
    const side = this.write ? r.locks[this.via]!.write : r.locks[this.via]!.read;
    const lock = await side.tryAcquire({ owner: this.owner, ttlMs: 600_000 });
    const free = this.write ? m.writer === undefined && m.readers.size === 0 : m.writer === undefined;
    if (!free) {
      expect(lock).toBeNull();
      return;
    }
    expect(lock).not.toBeNull();
    expect(lock!.fencingToken).toBeGreaterThan(m.token);
    m.token = lock!.fencingToken;
    if (this.write) m.writer = this.owner;
    else m.readers.add(this.owner);
    r.held.set(this.owner, lock!);
    // Never a writer with anyone else.
    expect(m.writer === undefined || m.readers.size === 0).toBe(true);
  }
  toString = () => `${this.write ? 'write' : 'read'}(${this.owner}, via ${this.via})`;
}

class Drop implements fc.AsyncCommand<Model, Real> {
  constructor(readonly owner: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const lock = r.held.get(this.owner);
    if (!lock) return;
    expect(await lock.release()).toBe(m.writer === this.owner || m.readers.has(this.owner));
    if (m.writer === this.owner) m.writer = undefined;
    m.readers.delete(this.owner);
    r.held.delete(this.owner);
  }
  toString = () => `release(${this.owner})`;
}

class Look implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const status = await r.locks[0]!.status();
    expect(new Set(status.readers)).toEqual(new Set(m.readers));
    expect(status.writer).toBe(m.writer);
  }
  toString = () => 'status()';
}

describe.each(topologies)('ReadWriteLock against a reference model on %s', (topology) => {
  const prefix = randomPrefix();
  const redis = suiteClient(topology, prefix);

  it('never grants a writer with anyone else, and every grant has a higher token, across several managers', async () => {
    let run = 0;
    const commands = fc.commands(
      [
        fc.tuple(owners, fc.boolean(), fc.integer({ min: 0, max: 2 })).map(([o, w, v]) => new Take(o, w, v)),
        owners.map((o) => new Drop(o)),
        fc.constant(new Look()),
      ],
      { maxCommands: 40 },
    );
    await fc.assert(
      fc.asyncProperty(commands, async (cmds) => {
        const managers = [0, 1, 2].map(() => new LockManager(redis, { prefix: `${prefix}${run}` }));
        run++;
        try {
          const locks = managers.map((m) => m.readWrite('model'));
          await fc.asyncModelRun(() => ({ model: { readers: new Set<string>(), writer: undefined, token: 0n }, real: { locks, held: new Map() } }), cmds);
        } finally {
          await Promise.all(managers.map((m) => m.close()));
        }
      }),
      { numRuns: 30 },
    );
  });
});
