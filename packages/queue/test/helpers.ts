import type { RedisClient } from '@cyredis/core';
import { Cluster, type Redis } from 'ioredis';
import { expect } from 'vitest';
import { JOB_QUEUE_LUA } from '../src/index.js';

export function masters(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/**
 * Every key under `prefix` with its DUMP, to show that a refused call wrote nothing. The registry of queue
 * names (`<prefix>:registry:queue`) is left out: it is no key of a queue, and a queue writes it in the
 * background on its first call.
 */
export async function snapshot(redis: RedisClient, prefix: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const registry = `${prefix}:registry:`;
  for (const node of masters(redis)) {
    const keys = (await node.keys(`${prefix}*`)).filter((key) => !key.startsWith(registry));
    for (const key of keys.sort()) out[key] = (await node.dumpBuffer(key))?.toString('hex') ?? '';
  }
  return out;
}

/** A raw call of the shipped script, the way the seed README shows it (EVAL with the four keys). */
export function raw(redis: RedisClient, keys: readonly string[], ...args: (string | number)[]): Promise<unknown> {
  return (redis as Redis).eval(JOB_QUEUE_LUA, 4, ...keys, ...args);
}

/**
 * The end of a lost-key property run: every pushed job completed exactly once or is dead with a reason
 * (`reasons`: dead job id to its reason), never both, never in no state.
 */
export function expectCompletedOnceOrDead(pushed: readonly string[], completed: ReadonlyMap<string, number>, reasons: ReadonlyMap<string, string>, lost: string): void {
  for (const id of pushed) {
    const done = completed.get(id) ?? 0;
    expect(done, `${id} completed`).toBeLessThanOrEqual(1);
    expect(done === 1 || reasons.has(id), `${id} is in no state after losing ${lost}`).toBe(true);
    expect(done === 1 && reasons.has(id), `${id} both completed and dead`).toBe(false);
    if (reasons.has(id)) expect(reasons.get(id), `${id} dead without a reason`).not.toBe('');
  }
}
