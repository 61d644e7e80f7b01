// Warns once per client when the server may evict keys that a package needs to keep its promises.
import { isCluster, type RedisClient } from './client.js';

const checked = new WeakSet<object>();

/**
 * At first use, reads `maxmemory-policy` (every master of a cluster) and emits one process warning, code
 * `CYREDIS_EVICTION`, unless it is `noeviction`. `risk` says what the package loses when a key is evicted.
 * Servers that refuse `CONFIG GET` (managed Redis, ACL users) are skipped silently; the check never delays
 * or fails a call.
 */
export function warnIfEvicting(client: RedisClient, packageName: string, risk: string): void {
  if (checked.has(client)) return;
  checked.add(client);
  const nodes = isCluster(client) ? client.nodes('master') : [client];
  void Promise.all(
    nodes.map(async (node) => {
      const reply = await node.config('GET', 'maxmemory-policy');
      return reply[1];
    }),
  ).then(
    (policies) => {
      const evicting = [...new Set(policies.filter((p): p is string => p !== undefined && p !== 'noeviction'))];
      if (evicting.length === 0) return;
      process.emitWarning(
        `${packageName}: the server's maxmemory-policy is ${evicting.join(', ')}, so Redis may evict its keys: ${risk}. ` +
          'Set maxmemory-policy to noeviction for the keys of this package (see docs/GUARANTEES.md, "What eviction takes away").',
        { code: 'CYREDIS_EVICTION' },
      );
    },
    () => undefined,
  );
}
