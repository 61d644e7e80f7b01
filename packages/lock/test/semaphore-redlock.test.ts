import { readFileSync } from 'node:fs';
import { randomPrefix, startIndependent, waitFor, type RedisServer } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, LockManager, PermitsUnavailableError, QuorumUnreachableError, type Permit } from '../src/index.js';
import { permitQuorum } from '../src/permit-quorum.js';

const LUA = readFileSync(new URL('../lua/semaphore.lua', import.meta.url), 'utf8');

/**
 * Independent nodes, their clients and a manager over all of them. `failFast`: clients without the offline
 * queue, so a killed node fails at once. The wake-up test uses ordinary clients: with fail-fast ones the
 * waiter here slept to its deadline instead of hearing the release (a subscriber question left open).
 */
interface Nodes {
  servers: RedisServer[];
  clients: Redis[];
  prefix: string;
  locks: LockManager;
}

let open: Nodes | undefined;

async function startNodes(count: number, failFast = true): Promise<Nodes> {
  const servers = await startIndependent(count);
  const clients = servers.map((s) => s.client(failFast ? { lazyConnect: true, enableOfflineQueue: false } : {}));
  for (const c of clients) c.on('error', () => undefined);
  if (failFast) await Promise.all(clients.map((c) => c.connect()));
  // A generous timeoutMs: a live node must never look dead on a loaded machine.
  const prefix = randomPrefix();
  open = { servers, clients, prefix, locks: new LockManager(clients, { prefix, ttlMs: 10_000, timeoutMs: 2_000 }) };
  return open;
}

afterEach(async () => {
  if (!open) return;
  const { servers, clients, locks } = open;
  open = undefined;
  await locks.close();
  for (const c of clients) c.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
});

/** Permits free on one node, as its own script reports them. */
async function availableOn(client: Redis, key: string, permits: number): Promise<number> {
  const reply = (await client.eval(LUA, 1, key, '', 0, 'status', 0, permits)) as number[];
  return reply[1]!;
}

describe('permitQuorum', () => {
  it("is Redlock's majority for one permit and grows so that permits + 1 grants never fit", () => {
    expect([1, 2, 3, 4, 5].map((n) => permitQuorum(n, 1))).toEqual([1, 2, 2, 3, 3]);
    expect(permitQuorum(3, 2)).toBe(3);
    expect(permitQuorum(5, 2)).toBe(4);
    expect(permitQuorum(5, 4)).toBe(5);
    for (let n = 1; n <= 7; n++) {
      for (let k = 1; k <= 10; k++) {
        const q = permitQuorum(n, k);
        // k + 1 grants on q nodes each do not fit in n nodes of k permits, and q is the smallest such.
        expect((k + 1) * q).toBeGreaterThan(n * k);
        if (q > 1) expect((k + 1) * (q - 1)).toBeLessThanOrEqual(n * k);
      }
    }
  });
});

describe('Semaphore on Redlock', () => {
  it('grants on a quorum, refuses contention, aligns tokens, and frees every node on release', async () => {
    const { clients, locks } = await startNodes(3);
    const sem = locks.semaphore('s', { permits: 1 });
    // Node 2's last token is far ahead of the others' (a clock ahead, or a token raised by fence).
    const ahead = BigInt(Date.now() + 3_600_000) * 1000n;
    await clients[2]!.hset(sem.key, { p: 1, u: 0, n: 0, f: ahead });
    const a = await sem.acquire();
    expect(a.fencingToken).toBe(ahead + 1n);
    expect(await sem.tryAcquire()).toBeNull();
    const status = await sem.status();
    expect(status.holders.map((h) => h.owner)).toEqual([a.owner]);
    expect(status.available).toBe(0);
    expect(await a.release()).toBe(true);
    for (const client of clients) expect(await availableOn(client, sem.key, 1)).toBe(1);

    // Node 2 now held by someone else: the quorum (0, 1) shares a node with the last one, raised to its token.
    await clients[2]!.eval(LUA, 1, sem.key, 'blocker', 60_000, 'acquire', 1, 1);
    const b = await sem.acquire();
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    await b.extend(5_000);
    expect(await b.release()).toBe(true);
  });

  it('needs every one of 3 nodes for 2 permits: two majorities must not add up to 3 permits', async () => {
    const { clients, locks } = await startNodes(3);
    const sem = locks.semaphore('s', { permits: 2 });
    // Another holder took both permits of node 0: nodes 1 and 2 would grant, a majority, but not all.
    await clients[0]!.eval(LUA, 1, sem.key, 'other', 60_000, 'acquire', 2, 2);
    const err = await sem.acquire().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermitsUnavailableError);
    expect((err as PermitsUnavailableError).nodes.map((n) => n.state)).toEqual(['refused', 'granted', 'granted']);
    // What nodes 1 and 2 granted for a moment was given back.
    expect(await availableOn(clients[1]!, sem.key, 2)).toBe(2);
    expect(await availableOn(clients[2]!, sem.key, 2)).toBe(2);
  });

  it('keeps working with one of 3 nodes killed (one permit), and reports QuorumUnreachableError with two down', async () => {
    const { servers, locks } = await startNodes(3);
    const sem = locks.semaphore('s', { permits: 1 });
    await servers[0]!.kill();
    const permit = await sem.acquire();
    expect(await sem.tryAcquire()).toBeNull();
    await permit.extend(5_000);
    expect((await sem.status()).holders.map((h) => h.owner)).toEqual([permit.owner]);
    expect(await permit.release()).toBe(true);

    await servers[1]!.kill();
    await expect(sem.acquire()).rejects.toBeInstanceOf(QuorumUnreachableError);
    await expect(sem.status()).rejects.toBeInstanceOf(QuorumUnreachableError);
  });

  it('with one of 5 nodes killed, never holds more than 2 of 2 permits among racing managers', async () => {
    const { servers, clients, prefix, locks } = await startNodes(5);
    await servers[4]!.kill();
    // Other processes, as far as the semaphore can tell.
    const managers = [locks, ...Array.from({ length: 3 }, () => new LockManager(clients, { prefix, ttlMs: 10_000, timeoutMs: 2_000 }))];
    let holding = 0;
    let most = 0;
    let grants = 0;
    const deadline = performance.now() + 1_500;
    try {
      await Promise.all(
        managers.map(async (m) => {
          const sem = m.semaphore('s', { permits: 2 });
          while (performance.now() < deadline) {
            const permit: Permit | null = await sem.tryAcquire();
            if (!permit) continue;
            grants++;
            holding++;
            most = Math.max(most, holding);
            await new Promise((resolve) => setTimeout(resolve, 2));
            holding--;
            expect(await permit.release()).toBe(true);
          }
        }),
      );
    } finally {
      await Promise.all(managers.slice(1).map((m) => m.close()));
    }
    expect(grants).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('wakes a waiter when the holder releases, long before the lease would end', async () => {
    const { locks } = await startNodes(3, false);
    const sem = locks.semaphore('s', { permits: 1 });
    const holder = await sem.acquire({ ttlMs: 30_000 });
    let granted: Permit | undefined;
    const waiter = sem.acquire({ waitMs: 20_000 }).then((p) => (granted = p));
    // The waiter has tried and subscribed once a wait refusal marked a node as waited on.
    await waitFor(async () => (await open!.clients[0]!.hget(sem.key, 'w')) === '1', { timeoutMs: 10_000 });
    const releasedAt = performance.now();
    await holder.release();
    await waiter;
    expect(granted!.fencingToken).toBeGreaterThan(holder.fencingToken);
    expect(performance.now() - releasedAt).toBeLessThan(10_000);
    await granted!.release();
  });

  it('refuses read-write and fair locks, which need one Redis', async () => {
    const { locks } = await startNodes(3);
    expect(() => locks.readWrite('x')).toThrow(InvalidArgumentError);
    expect(() => locks.fair('x')).toThrow(InvalidArgumentError);
  });
});
