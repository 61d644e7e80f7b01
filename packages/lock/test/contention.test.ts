import { randomPrefix } from '@cyredis/testing';
import { suiteClient, topologies } from '@cyredis/testing/context';
import { describe, expect, it } from 'vitest';
import { LockManager } from '../src/index.js';

const CONTENDERS = 50;
const ACQUISITIONS = 200;
const MANAGERS = 5;

describe.each(topologies)('contention on one resource on %s', (topology) => {
  const prefix = randomPrefix();

  const redis = suiteClient(topology, prefix);

  it(`${CONTENDERS} contenders × ${ACQUISITIONS} acquisitions: no overlap, strictly increasing tokens`, async () => {
    // Several managers, so waiters are woken across subscriber connections too.
    const managers = Array.from({ length: MANAGERS }, () => new LockManager(redis, { prefix, ttlMs: 10_000 }));
    const sections: { token: bigint; start: number; end: number }[] = [];
    let inside = 0;
    let overlaps = 0;
    const counter = `${prefix}:{data}:counter`;
    try {
      await Promise.all(
        Array.from({ length: CONTENDERS }, async (_, c) => {
          const locks = managers[c % MANAGERS]!;
          for (let i = 0; i < ACQUISITIONS; i++) {
            const lock = await locks.acquire('hot', { waitMs: 60_000 });
            if (++inside !== 1) overlaps++;
            const start = performance.now();
            // A round trip inside the section gives other contenders every chance to interleave.
            await redis.incr(counter);
            sections.push({ token: lock.fencingToken, start, end: performance.now() });
            inside--;
            expect(await lock.release()).toBe(true);
          }
        }),
      );
    } finally {
      await Promise.all(managers.map((m) => m.close()));
    }
    expect(overlaps).toBe(0);
    expect(sections).toHaveLength(CONTENDERS * ACQUISITIONS);
    expect(Number(await redis.get(counter))).toBe(CONTENDERS * ACQUISITIONS);
    for (let i = 1; i < sections.length; i++) {
      expect(sections[i]!.token > sections[i - 1]!.token).toBe(true);
      expect(sections[i]!.start >= sections[i - 1]!.end).toBe(true);
    }
  }, 120_000);
});
