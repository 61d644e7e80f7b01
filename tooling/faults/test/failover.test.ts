import { startCluster, startSentinelGroup, waitFor } from '@cyredis/testing';
import { describe, expect, it } from 'vitest';
import { underLoad } from '../src/scenario.js';
import { workloads } from '../src/workloads.js';

// Failovers: calls resume without a restart of the process; whatever failed, failed with a typed error
// (underLoad checks both and prints the count of failed calls by kind).
describe.each(workloads)('$name through failovers', (w) => {
  it('Sentinel: SENTINEL FAILOVER, then the new primary killed', async () => {
    const group = await startSentinelGroup();
    const client = group.client();
    client.on('error', () => undefined);
    try {
      const report = await underLoad(
        w,
        client,
        async (load) => {
          await group.failover();
          await load.resumed(30);
          const port = await group.primaryPort();
          await [group.primary, group.replica].find((n) => n.port === port)!.kill();
          await group.waitForNewPrimary(port);
          return { lossy: true };
        },
        { replicas: 1 },
      );
      expect(report.ok).toBeGreaterThan(0);
    } finally {
      client.disconnect();
      await group.stop();
    }
  });

  it('Cluster with replicas: CLUSTER FAILOVER, then a master killed', async () => {
    const cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    const client = cluster.client();
    client.on('error', () => undefined);
    try {
      const report = await underLoad(
        w,
        client,
        async (load) => {
          const masters = new Set((await cluster.masters()).map((m) => m.port));
          const replica = cluster.nodes.find((n) => !masters.has(n.port))!;
          await replica.command('CLUSTER', 'FAILOVER');
          await waitFor(async () => (await replica.info('replication')).role === 'master');
          await cluster.waitReplicasSynced();
          await load.resumed(30);
          // Kill another shard's master: masters refuse a second vote for the shard just failed over for
          // 2 × node-timeout, which would only slow the test down, not test anything more.
          const victim = (await cluster.masters()).find((m) => m.port !== replica.port)!;
          await victim.kill();
          await waitFor(async () => (await cluster.masters()).length === 3, { timeoutMs: 30_000, message: 'no replica took over' });
          return { lossy: true };
        },
        { replicas: 1 },
      );
      expect(report.ok).toBeGreaterThan(0);
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  });
});
