// Exact versions of everything the package check installs from the registry: a run never depends on what was published yesterday.

/** The ends of the `ioredis` peer range `^5.4.0 || ^6.0.0` that every run tests. */
export const IOREDIS_LOWEST = '5.4.0';
export const IOREDIS_PINNED = '6.0.0';

/**
 * ioredis 6.1 declarations import `redis-errors`, which ships no types: under `skipLibCheck: false` a user
 * needs `@types/redis-errors` (the fix the READMEs give, checked by the package check).
 */
export const IOREDIS_UNTYPED_ERRORS = '6.1.0';
export const TYPES_REDIS_ERRORS = '@types/redis-errors@1.2.3';

/** What every user project gets besides our tarballs and ioredis. */
export const USER_TOOLS = ['typescript@5.9.3', '@types/node@20.19.43'];

/** Optional peers a package's subpath entry points need at run time and for their types. */
export const PEERS: Record<string, string[]> = {
  ratelimit: ['express@5.3.0', '@types/express@5.0.6', 'fastify@5.12.8', 'hono@4.13.19', 'express-rate-limit@8.7.4'],
  dashboard: ['@bull-board/api@9.10.1', '@bull-board/ui@9.10.1'],
};
