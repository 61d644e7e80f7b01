import type { TestProject } from 'vitest/node';
import type {} from './provided.js';
import { RedisServer } from './server.js';
import { startCluster } from './topology.js';

function seedsFromUrl(url: string): { host: string; port: number }[] {
  const parsed = new URL(url);
  return [{ host: parsed.hostname, port: Number(parsed.port || 6379) }];
}

/**
 * Starts a private single node and a private 3-master cluster for one vitest run, and stops them by PID at
 * the end. `REDIS_URL` / `REDIS_CLUSTER_URL` point the tests at servers that already run instead.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { REDIS_URL, REDIS_CLUSTER_URL } = process.env;
  const single = REDIS_URL ? undefined : RedisServer.start();
  const cluster = REDIS_CLUSTER_URL ? undefined : startCluster({ masters: 3 });
  const started = await Promise.allSettled([single, cluster].filter((p) => p !== undefined));
  const stopAll = async () => {
    await Promise.all(started.flatMap((r) => (r.status === 'fulfilled' ? [r.value.stop()] : [])));
  };
  const failure = started.find((r) => r.status === 'rejected');
  if (failure) {
    await stopAll();
    throw failure.reason;
  }
  project.provide('redisUrl', REDIS_URL ?? (await single)!.url);
  project.provide('clusterSeeds', REDIS_CLUSTER_URL ? seedsFromUrl(REDIS_CLUSTER_URL) : (await cluster)!.seeds);
  return stopAll;
}
