import type { Cluster, Redis } from 'ioredis';

/** An ioredis client: a single node (standalone or sentinel) or a cluster. */
export type RedisClient = Redis | Cluster;

/** Whether the client is an ioredis `Cluster`. */
export function isCluster(client: RedisClient): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/**
 * The `keyPrefix` ioredis adds to every key of this client (`''` when none). Scripts see prefixed key names,
 * so a channel named after a key, for example, must carry the prefix too.
 */
export function clientKeyPrefix(client: RedisClient): string {
  const options = client.options as { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
  return options.keyPrefix ?? options.redisOptions?.keyPrefix ?? '';
}

/**
 * A new connection with the same options (for pub/sub or blocking calls, which need their own). The
 * caller closes it. `Redis#duplicate` and `Cluster#duplicate` take different arguments, so the union type
 * cannot call either directly; with none, both copy the client.
 */
export function duplicateClient(client: RedisClient): RedisClient {
  return isCluster(client) ? client.duplicate() : client.duplicate();
}
