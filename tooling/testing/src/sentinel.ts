import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { RedisServer } from './server.js';
import { startReplicated } from './topology.js';
import { waitFor } from './wait.js';

export const SENTINEL_MASTER_NAME = 'cyredis';

/** A primary with one replica watched by sentinels (quorum 2), all private processes. */
export class SentinelGroup {
  constructor(
    readonly primary: RedisServer,
    readonly replica: RedisServer,
    readonly sentinels: RedisServer[],
  ) {}

  /** A sentinel-aware client that follows failovers; the caller closes it. */
  client(options: RedisOptions = {}): Redis {
    return new Redis({ sentinels: this.sentinels.map((s) => s.address), name: SENTINEL_MASTER_NAME, ...options });
  }

  /** The port the sentinels currently name as primary. */
  async primaryPort(): Promise<number> {
    const [, port] = (await this.sentinels[0]!.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as [string, string];
    return Number(port);
  }

  /** Forces a failover and waits until the sentinels name the other node and it accepts writes. */
  async failover(): Promise<void> {
    const before = await this.primaryPort();
    await this.sentinels[0]!.command('SENTINEL', 'FAILOVER', SENTINEL_MASTER_NAME);
    await this.waitForNewPrimary(before);
  }

  async waitForNewPrimary(oldPort: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      async () => {
        const port = await this.primaryPort();
        if (port === oldPort) return false;
        const node = [this.primary, this.replica].find((n) => n.port === port);
        return node ? (await node.info('replication')).role === 'master' : false;
      },
      { timeoutMs, intervalMs: 50, message: 'sentinels did not promote the replica' },
    );
  }

  async stop(): Promise<void> {
    await Promise.all([this.primary, this.replica, ...this.sentinels].map((n) => n.stop()));
  }
}

/** Starts a primary, a replica and `count` sentinels that agree on them (about 2–3 s). */
export async function startSentinelGroup(count = 3): Promise<SentinelGroup> {
  const { primary, replica } = await startReplicated();
  const sentinels = await Promise.all(
    Array.from({ length: count }, () =>
      RedisServer.start({
        sentinel: (dir) => {
          const file = path.join(dir, 'sentinel.conf');
          writeFileSync(
            file,
            [
              `sentinel monitor ${SENTINEL_MASTER_NAME} ${primary.host} ${primary.port} 2`,
              `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
              `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 5000`,
              `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
              '',
            ].join('\n'),
          );
          return file;
        },
      }),
    ),
  );
  const group = new SentinelGroup(primary, replica, sentinels);
  await waitFor(
    async () => {
      for (const s of sentinels) {
        const info = String(await s.command('INFO', 'sentinel'));
        if (!/status=ok,address=[^,]+,slaves=1,sentinels=\d+/.test(info) || !info.includes(`sentinels=${count}`)) return false;
      }
      return true;
    },
    { timeoutMs: 20_000, intervalMs: 50, message: 'sentinels did not discover each other' },
  );
  return group;
}
