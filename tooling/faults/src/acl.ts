/**
 * The ACL rules a cyredis application needs, for the key and channel prefix `prefix` (default `cyredis`):
 * scripts (`EVALSHA`, `EVAL`, their `_RO` forms, `SCRIPT LOAD`) and what they call, pub/sub for lock
 * wake-ups and cache invalidation, blocking pops for idle workers, `WAIT` for `waitForReplicas`.
 * `docs/GUARANTEES.md` prints the line for the default prefix; the security test runs every package under it.
 */
export function aclRules(prefix = 'cyredis'): string[] {
  return [
    'resetkeys', `~${prefix}:*`, 'resetchannels', `&${prefix}:*`,
    '-@all', '+@read', '+@write', '+@scripting', '+@pubsub', '+@blocking', '+@connection', '+wait', '+time',
    '-@dangerous', '-script|flush', '-script|kill', '-script|debug', '-function',
  ];
}
