import { randomPrefix } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LockLostError, LockManager, type Lock } from '../src/index.js';

/**
 * The reference: who holds the lock (leases never run out here), who released it last, and the last token
 * (a new holder's token must be greater; its value is the server's clock in µs, so the model learns it).
 */
interface Model {
  holder: string | undefined;
  releasedBy: string | undefined;
  token: bigint;
}

interface Real {
  locks: LockManager;
  held: Map<string, Lock>;
}

const RESOURCE = 'model';
const owners = fc.constantFrom('a', 'b', 'c');

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(readonly owner: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const lock = await r.locks.tryAcquire(RESOURCE, { owner: this.owner, ttlMs: 600_000 });
    if (m.holder !== undefined && m.holder !== this.owner) {
      expect(lock).toBeNull();
      return;
    }
    expect(lock).not.toBeNull();
    if (m.holder === undefined) {
      expect(lock!.fencingToken).toBeGreaterThan(m.token);
      m.token = lock!.fencingToken;
      m.holder = this.owner;
      m.releasedBy = undefined;
    }
    expect(lock!.fencingToken).toBe(m.token);
    r.held.set(this.owner, lock!);
  }
  toString = () => `acquire(${this.owner})`;
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(readonly owner: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const lock = r.held.get(this.owner);
    if (!lock) return;
    const expected = m.holder === this.owner || (m.holder === undefined && m.releasedBy === this.owner);
    expect(await lock.release()).toBe(expected);
    if (m.holder === this.owner) {
      m.holder = undefined;
      m.releasedBy = this.owner;
    }
  }
  toString = () => `release(${this.owner})`;
}

class Extend implements fc.AsyncCommand<Model, Real> {
  constructor(readonly owner: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const lock = r.held.get(this.owner);
    if (!lock) return;
    const outcome = await lock.extend(600_000).then(
      () => 'extended',
      (err: unknown) => (err instanceof LockLostError ? 'lost' : err),
    );
    expect(outcome).toBe(m.holder === this.owner ? 'extended' : 'lost');
  }
  toString = () => `extend(${this.owner})`;
}

class Force implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    expect(await r.locks.forceUnlock(RESOURCE)).toBe(m.holder !== undefined);
    if (m.holder !== undefined) {
      m.holder = undefined;
      m.releasedBy = undefined;
    }
  }
  toString = () => 'force()';
}

class Status implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const status = await r.locks.status(RESOURCE);
    expect(status.locked).toBe(m.holder !== undefined);
    expect(status.owner).toBe(m.holder);
    expect(status.fencingToken).toBe(m.token);
  }
  toString = () => 'status()';
}

describe.each(topologies)('LockManager against a reference model on %s', (topology) => {
  const prefix = randomPrefix();

  const redis = suiteClient(topology, prefix);

  it('agrees with the model on every sequence of acquire, release, extend, force and status', async () => {
    let run = 0;
    const commands = fc.commands(
      [
        owners.map((o) => new Acquire(o)),
        owners.map((o) => new Release(o)),
        owners.map((o) => new Extend(o)),
        fc.constant(new Force()),
        fc.constant(new Status()),
      ],
      { maxCommands: 40 },
    );
    await fc.assert(
      fc.asyncProperty(commands, async (cmds) => {
        const locks = new LockManager(redis, { prefix: `${prefix}${run++}` });
        try {
          await fc.asyncModelRun(() => ({ model: { holder: undefined, releasedBy: undefined, token: 0n }, real: { locks, held: new Map() } }), cmds);
        } finally {
          await locks.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
