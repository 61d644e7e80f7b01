// Runs a script with every redis.call/redis.pcall traced, to list the keys it touched without being given them.
import type { Cluster, Redis } from 'ioredis';

/** What `traceKeys` saw. */
export interface KeyTrace {
  /** The script's reply; an error reply (or a Lua error) is an `Error` here, not a rejection. */
  reply: unknown;
  /** Keys the script touched that are not in its KEYS, in first-touch order, without repeats. */
  undeclared: string[];
}

/**
 * Wraps the script so `redis.call`/`redis.pcall` first ask the server which arguments of the command are
 * keys (`COMMAND GETKEYS`, callable from Lua on Redis 7.0) and record those not in KEYS. The `redis` table
 * is read-only in scripts, so the prologue shadows it with a local; the body runs in a function under
 * `pcall`, so a script that fails still reports what it touched. A `#!lua` shebang line stays first.
 */
export function tracingSource(source: string): string {
  const shebang = /^#!lua[^\n]*\n/.exec(source)?.[0] ?? '';
  const body = source.slice(shebang.length);
  return `${shebang}local __trace_seen, __trace_undeclared, __trace_declared = {}, {}, {}
for _, k in ipairs(KEYS) do __trace_declared[k] = true end
local function __trace_keys(...)
  local keys = redis.pcall('COMMAND', 'GETKEYS', ...)
  if type(keys) ~= 'table' or keys.err then return end
  for _, k in ipairs(keys) do
    if not __trace_declared[k] and not __trace_seen[k] then
      __trace_seen[k] = true
      __trace_undeclared[#__trace_undeclared + 1] = k
    end
  end
end
local __trace_redis = redis
local redis = setmetatable({
  call = function(...) __trace_keys(...) return __trace_redis.call(...) end,
  pcall = function(...) __trace_keys(...) return __trace_redis.pcall(...) end,
}, { __index = __trace_redis })
local __trace_ok, __trace_reply = pcall(function()
${body}
end)
if not __trace_ok then
  __trace_reply = { err = type(__trace_reply) == 'table' and __trace_reply.err or tostring(__trace_reply) }
end
-- The list goes first: a nil reply would end the Lua array.
return { __trace_undeclared, __trace_reply }
`;
}

/**
 * Runs `source` once with `keys` and `args` (the client's `keyPrefix` applies, as for any `EVAL`) and
 * returns its reply and the keys it touched that were not in KEYS. Every key a script touches must be in
 * KEYS (cluster correctness; Dragonfly and some managed services refuse others), so a package's keys test
 * asserts this list equals its documented exceptions.
 */
export async function traceKeys(client: Redis | Cluster, source: string, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<KeyTrace> {
  const [undeclared, reply = null] = (await client.eval(tracingSource(source), keys.length, ...keys, ...args)) as [string[], unknown?];
  return { reply, undeclared };
}

/** The keys `source` touched without being given them in KEYS (see `traceKeys`). */
export async function undeclaredKeys(client: Redis | Cluster, source: string, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<string[]> {
  return (await traceKeys(client, source, keys, args)).undeclared;
}
