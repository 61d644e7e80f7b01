import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, type ClusterOptions, type Redis } from 'ioredis';
import { RedisServer } from './server.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export interface ClusterSpec {
  /** Number of masters; default 3. */
  masters?: number;
  /** Replicas per master; default 0. */
  replicasPerMaster?: number;
  /** Extra `redis-server` arguments for every node. */
  args?: string[];
}

/** A Redis Cluster of private nodes, created with `redis-cli --cluster create`. */
export class RedisClusterHandle {
  constructor(readonly nodes: RedisServer[]) {}

  get seeds(): { host: string; port: number }[] {
    return this.nodes.map((node) => node.address);
  }

  /** The nodes that are masters right now (this changes after a failover). */
  async masters(): Promise<RedisServer[]> {
    const roles = await Promise.all(
      this.nodes.map(async (node) => {
        try {
          return (await node.info('replication')).role;
        } catch {
          return 'down';
        }
      }),
    );
    return this.nodes.filter((_, i) => roles[i] === 'master');
  }

  /** A new cluster client; the caller closes it. */
  client(options: ClusterOptions = {}): Cluster {
    return new Cluster(this.seeds, options);
  }

  /**
   * Waits until every node reports `cluster_state:ok` and sees the same nodes, all connected, with
   * `replicas` of them as replicas: a manual failover is ignored by a master that does not yet know the
   * replica asking for it.
   */
  async waitHealthy(replicas = 0, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      async () => {
        for (const node of this.nodes) {
          const state = String(await node.command('CLUSTER', 'INFO'));
          if (!state.includes('cluster_state:ok')) return false;
          const lines = String(await node.command('CLUSTER', 'NODES')).trim().split('\n');
          if (lines.length !== this.nodes.length) return false;
          if (lines.some((line) => /fail|handshake|noaddr/.test(line.split(' ')[2] ?? '') || !line.includes('connected'))) return false;
          if (lines.filter((line) => line.split(' ')[2]?.includes('slave')).length !== replicas) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 50, message: 'cluster did not become healthy' },
    );
  }

  /**
   * Waits until every live replica's link to its master is up. A replica that has not synced since it was
   * demoted refuses to fail over (its data counts as too old), so fault tests wait for this between faults.
   */
  async waitReplicasSynced(timeoutMs = 20_000): Promise<void> {
    await waitFor(
      async () => {
        for (const node of this.nodes) {
          const info = await node.info('replication').catch(() => undefined);
          if (info?.role === 'slave' && info.master_link_status !== 'up') return false;
        }
        return true;
      },
      { timeoutMs, message: 'cluster replicas did not sync' },
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

export async function startCluster(spec: ClusterSpec = {}): Promise<RedisClusterHandle> {
  const masters = spec.masters ?? 3;
  const replicas = spec.replicasPerMaster ?? 0;
  const args = ['--repl-diskless-sync-delay', '0', ...(spec.args ?? [])];
  const nodes = await Promise.all(
    Array.from({ length: masters * (1 + replicas) }, () => RedisServer.start({ cluster: true, args })),
  );
  const handle = new RedisClusterHandle(nodes);
  try {
    await run('redis-cli', [
      '--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes',
    ]);
    await handle.waitReplicasSynced();
    await handle.waitHealthy(masters * replicas);
    return handle;
  } catch (err) {
    await handle.stop();
    throw err;
  }
}

/** A primary with one replica that has finished its first sync. */
export async function startReplicated(args: string[] = []): Promise<{ primary: RedisServer; replica: RedisServer; stop: () => Promise<void> }> {
  const primary = await RedisServer.start({ args: ['--repl-diskless-sync-delay', '0', ...args] });
  const replica = await RedisServer.start({ args: ['--replicaof', primary.host, String(primary.port), ...args] });
  await waitFor(async () => (await replica.info('replication')).master_link_status === 'up', {
    timeoutMs: 15_000,
    message: 'replica did not sync',
  });
  // After a diskless sync the primary streams only once the replica has acked: wait until WAIT sees it.
  const client = primary.client();
  try {
    await waitFor(async () => {
      await client.set('cyredis:harness:sync', '1');
      return (await client.wait(1, 100)) === 1;
    }, { timeoutMs: 15_000, message: 'replica did not acknowledge writes' });
    await client.del('cyredis:harness:sync');
  } finally {
    client.disconnect();
  }
  return { primary, replica, stop: async () => void (await Promise.all([primary.stop(), replica.stop()])) };
}

/** Independent single nodes (no replication between them), as Redlock wants. */
export async function startIndependent(count: number, args: string[] = []): Promise<RedisServer[]> {
  return Promise.all(Array.from({ length: count }, () => RedisServer.start({ args })));
}

/** A private single node or 3-master cluster, for tests that kill, restart or reconfigure servers. */
export interface PrivateTopology {
  /** A client for it (a `Cluster` for the cluster); `stop()` disconnects it. */
  client: Redis | Cluster;
  /** Its servers: the one node, or every cluster node. */
  nodes: RedisServer[];
  /** Disconnects the client and stops every server. */
  stop: () => Promise<void>;
}

/**
 * Starts a private single node or 3-master cluster: for faults that would hit other suites on the shared
 * servers (`CLIENT KILL`, restarts, `CONFIG SET`).
 */
export async function startPrivate(topology: 'single' | 'cluster'): Promise<PrivateTopology> {
  const handle = topology === 'single' ? new RedisClusterHandle([await RedisServer.start()]) : await startCluster({ masters: 3 });
  const client = topology === 'single' ? handle.nodes[0]!.client() : handle.client();
  return {
    client,
    nodes: handle.nodes,
    stop: async () => {
      client.disconnect();
      await handle.stop();
    },
  };
}
