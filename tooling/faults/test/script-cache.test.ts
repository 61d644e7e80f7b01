import { RedisServer, sleep, startCluster, type RedisClusterHandle } from '@cyredis/testing';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mastersOf, underLoad } from '../src/scenario.js';
import { workloads } from '../src/workloads.js';

// Scripts vanish from the server's cache; callers must not notice.
let single: RedisServer;
let cluster: RedisClusterHandle;
let singleClient: Redis;
let clusterClient: Cluster;

beforeAll(async () => {
  // AOF keeps the data across the restart, so only the script cache is lost.
  [single, cluster] = await Promise.all([
    RedisServer.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] }),
    startCluster({ masters: 3 }),
  ]);
  singleClient = single.client();
  clusterClient = cluster.client();
  // Connection errors during the restart are expected; callers see results or typed errors.
  singleClient.on('error', () => undefined);
  clusterClient.on('error', () => undefined);
});

afterAll(async () => {
  singleClient.disconnect();
  clusterClient.disconnect();
  await Promise.all([single.stop(), cluster.stop()]);
});

async function flushRepeatedly(client: Redis | Cluster): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.all(mastersOf(client).map((node) => node.script('FLUSH')));
    await sleep(30);
  }
}

describe.each(workloads)('$name when the script cache is lost', (w) => {
  it('SCRIPT FLUSH on a single node mid-run: no caller error', async () => {
    const report = await underLoad(w, singleClient, () => flushRepeatedly(singleClient));
    expect(report.failed).toBe(0);
  });

  it('SCRIPT FLUSH on every cluster master mid-run: no caller error', async () => {
    const report = await underLoad(w, clusterClient, () => flushRepeatedly(clusterClient));
    expect(report.failed).toBe(0);
  });

  it('a server restart mid-run: no caller error', async () => {
    const report = await underLoad(w, singleClient, () => single.restart());
    expect(report.failed).toBe(0);
  });
});
