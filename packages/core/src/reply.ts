import { CyRedisError } from './errors.js';

function bad(what: string, reply: unknown): CyRedisError {
  return new CyRedisError(`unexpected reply: expected ${what}, got ${JSON.stringify(reply)}`);
}

/** An integer reply (or its string form) as a number. */
export function toNumber(reply: unknown): number {
  if (typeof reply === 'number') return reply;
  if (typeof reply === 'string' && reply !== '' && Number.isFinite(Number(reply))) return Number(reply);
  throw bad('a number', reply);
}

/** An integer reply (or its string form) as a bigint, for counters that may pass 2^53. */
export function toBigInt(reply: unknown): bigint {
  if (typeof reply === 'number' && Number.isSafeInteger(reply)) return BigInt(reply);
  if (typeof reply === 'string' && /^-?\d+$/.test(reply)) return BigInt(reply);
  throw bad('an integer', reply);
}

/** A bulk string reply, with nil as `undefined`. */
export function toOptionalString(reply: unknown): string | undefined {
  if (reply === null || reply === undefined) return undefined;
  if (typeof reply === 'string') return reply;
  if (typeof reply === 'number') return String(reply);
  throw bad('a string or nil', reply);
}

/** An array reply; anything else is an unexpected reply. */
export function toArray(reply: unknown): unknown[] {
  if (Array.isArray(reply)) return reply;
  throw bad('an array', reply);
}

/** A flat `[field, value, field, value, …]` reply as a record. */
export function pairsToRecord(reply: unknown): Record<string, string> {
  const items = toArray(reply);
  if (items.length % 2 !== 0) throw bad('field/value pairs', reply);
  const out: Record<string, string> = {};
  for (let i = 0; i < items.length; i += 2) out[String(items[i])] = String(items[i + 1]);
  return out;
}
