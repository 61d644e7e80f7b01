import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { afterAll, inject } from 'vitest';
import type {} from './provided.js';

export type Topology = 'single' | 'cluster';
/** Run a suite on both with `describe.each(topologies)`. */
export const topologies: readonly Topology[] = ['single', 'cluster'];

export function redisUrl(): string {
  return inject('redisUrl');
}

export function clusterSeeds(): { host: string; port: number }[] {
  return inject('clusterSeeds');
}

/** A client for the run's single node or cluster; the caller closes it (`quit()`). */
export function connect(topology: Topology = 'single', options: RedisOptions = {}): Redis | Cluster {
  if (topology === 'cluster') return new Cluster(clusterSeeds(), { redisOptions: options });
  return new Redis(redisUrl(), options);
}

/**
 * A client for the enclosing suite, closed when the suite ends (after deleting every key under
 * `cleanupPrefix`, when given). Call it in a `describe` body.
 */
export function suiteClient(topology: Topology, cleanupPrefix?: string, options: RedisOptions = {}): Redis | Cluster {
  const client = connect(topology, options);
  afterAll(async () => {
    if (cleanupPrefix !== undefined) await deleteByPrefix(client, cleanupPrefix);
    await client.quit();
  });
  return client;
}

/** Deletes every key under a prefix on every master, so a test can clean up without FLUSHALL. */
export async function deleteByPrefix(redis: Redis | Cluster, prefix: string): Promise<void> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) await node.del(key);
    } while (cursor !== '0');
  }
}
