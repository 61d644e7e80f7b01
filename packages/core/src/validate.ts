import { InvalidArgumentError } from './errors.js';

/** Ids and names longer than this (in UTF-16 units) are refused. */
export const MAX_ID_LENGTH = 16_384;

function describe(value: unknown): string {
  if (typeof value === 'string') return `"${value.length > 40 ? `${value.slice(0, 40)}…` : value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** A non-empty string of at most `maxLength` characters. */
export function assertNonEmptyString(name: string, value: unknown, maxLength = MAX_ID_LENGTH): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(name, `must be a non-empty string, got ${describe(value)}`);
  }
  if (value.length > maxLength) {
    throw new InvalidArgumentError(name, `must be at most ${maxLength} characters, got ${value.length}`);
  }
  assertWellFormed(name, value);
}

/**
 * Well-formed Unicode: no lone UTF-16 surrogate. ioredis sends a lone surrogate as U+FFFD, so without this
 * check `'a\uD800'` and `'a\uDBFF'` would name one object on the server.
 */
export function assertWellFormed(name: string, value: string): void {
  if (!value.isWellFormed()) {
    const at = [...value].findIndex((c) => c.length === 1 && c >= '\uD800' && c <= '\uDFFF');
    throw new InvalidArgumentError(name, `must be well-formed Unicode: it has a lone UTF-16 surrogate at code point ${at}`);
  }
}

/** Bounds for the number validators. */
export interface NumberBounds {
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  /** Refuse exactly `min` (for "must be > 0"). */
  exclusiveMin?: boolean;
}

/** A finite number within `bounds`. */
export function assertFiniteNumber(name: string, value: unknown, bounds: NumberBounds = {}): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidArgumentError(name, `must be a finite number, got ${describe(value)}`);
  }
  const { min, max, exclusiveMin = false } = bounds;
  if (min !== undefined && (value < min || (exclusiveMin && value === min))) {
    throw new InvalidArgumentError(name, `must be ${exclusiveMin ? '>' : '≥'} ${min}, got ${value}`);
  }
  if (max !== undefined && value > max) {
    throw new InvalidArgumentError(name, `must be ≤ ${max}, got ${value}`);
  }
}

/** A safe integer within `bounds`. */
export function assertInteger(name: string, value: unknown, bounds: NumberBounds = {}): asserts value is number {
  assertFiniteNumber(name, value, bounds);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(name, `must be an integer, got ${value}`);
}

/** A duration in milliseconds: finite and > 0. */
export function assertPositiveMs(name: string, value: unknown): asserts value is number {
  assertFiniteNumber(name, value, { min: 0, exclusiveMin: true });
}

/** The longest delay `setTimeout` honours (2^31 - 1 ms, about 24.8 days): above it, Node fires at once. */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** Bounds of a duration in ms (see `durationMs`). */
export interface DurationBounds {
  /** Smallest allowed value in ms (inclusive). Default: anything > 0. */
  min?: number;
  /** Largest allowed value in ms (inclusive). Default: none. */
  max?: number;
  /** Refuse fractions of a ms instead of rounding them up. */
  integer?: boolean;
}

/**
 * A duration in ms within `bounds` (by default > 0), as whole ms: fractions round up, so a lease or TTL is
 * never shorter than asked; with `integer`, a fraction is refused instead. The one check behind every
 * `…Ms` option: leases, TTLs, windows, grace periods.
 */
export function durationMs(name: string, value: unknown, bounds: DurationBounds = {}): number {
  const { min, max, integer = false } = bounds;
  if (integer) assertInteger(name, value, min === undefined ? { min: 0, exclusiveMin: true, max } : { min, max });
  else assertFiniteNumber(name, value, min === undefined ? { min: 0, exclusiveMin: true, max } : { min, max });
  return Math.ceil(value);
}

/** `fallback` when `value` is `undefined`, else `durationMs(name, value, bounds)`: an optional `…Ms` option. */
export function optionalMs(name: string, value: unknown, fallback: number, bounds: DurationBounds = {}): number {
  return value === undefined ? fallback : durationMs(name, value, bounds);
}

/**
 * A deadline or wait for `setTimeout`: finite, > 0 and at most `MAX_TIMEOUT_MS`, since Node fires a longer
 * timer at once (with a warning) instead of late.
 */
export function assertTimeoutMs(name: string, value: unknown): asserts value is number {
  assertFiniteNumber(name, value, { min: 0, exclusiveMin: true, max: MAX_TIMEOUT_MS });
}

/**
 * A non-empty, well-formed string of at most `maxBytes` UTF-8 bytes: ids, names and prefixes are capped in
 * bytes, as the server stores them. Strings short enough that no encoding could exceed the cap are not
 * measured, so the check costs nothing on the common path.
 */
export function assertByteLength(name: string, value: unknown, maxBytes: number): asserts value is string {
  assertNonEmptyString(name, value, maxBytes);
  if (value.length * 3 <= maxBytes) return;
  const bytes = Buffer.byteLength(value);
  if (bytes > maxBytes) throw new InvalidArgumentError(name, `must be at most ${maxBytes} UTF-8 bytes, got ${bytes}`);
}

/** One of the `allowed` strings. */
export function assertOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): asserts value is T {
  if (!allowed.includes(value as T)) {
    throw new InvalidArgumentError(name, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`);
  }
}

/** What a script argument may be: anything that has exactly one string form on the wire. */
export type ScriptArg = string | number | bigint | Buffer;

/** A value with exactly one string form on the wire (see `ScriptArg`). */
export function assertScriptArg(name: string, value: unknown): asserts value is ScriptArg {
  if (typeof value === 'string' || typeof value === 'bigint' || Buffer.isBuffer(value)) return;
  if (typeof value === 'number' && Number.isFinite(value)) return;
  throw new InvalidArgumentError(name, `must be a string, finite number, bigint or Buffer, got ${describe(value)}`);
}

/** How to name a wrong client in an error: what a caller may pass by mistake. */
function clientKind(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return 'a string (pass `new Redis(url)`, not the URL)';
  if (typeof value !== 'object') return typeof value;
  // node-redis v4+ clients are instances of an anonymous `Class`; name them by what they are.
  if ('isOpen' in value && 'sendCommand' in value) return 'a node-redis client (cyredis needs ioredis)';
  const ctor = (value as { constructor?: { name?: string } }).constructor?.name;
  return ctor ? `a ${ctor}` : 'an object';
}

/**
 * An ioredis `Redis` or `Cluster`. Other clients (node-redis, a URL, `null`) are refused here: a node-redis
 * client given to `evalsha` with ioredis' argument order sends a broken command that kills the connection.
 */
export function assertRedisClient(name: string, value: unknown): void {
  const c = value as { evalsha?: unknown; defineCommand?: unknown; options?: unknown; duplicate?: unknown; isCluster?: unknown; status?: unknown };
  const looksIoredis =
    typeof value === 'object' &&
    value !== null &&
    typeof c.evalsha === 'function' &&
    typeof c.defineCommand === 'function' &&
    typeof c.duplicate === 'function' &&
    typeof c.options === 'object' &&
    typeof c.status === 'string';
  if (!looksIoredis) {
    throw new InvalidArgumentError(name, `must be an ioredis Redis or Cluster client, got ${clientKind(value)}`);
  }
}

/** Levenshtein distance, for "did you mean" hints on option names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The allowed name nearest to `key`, for the error message. */
export function nearestName(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of allowed) {
    const d = distance(key, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/**
 * An options object (a plain object, or `undefined` when `optional`) whose keys are all in `allowed`. An
 * unknown key is refused, naming it and the nearest allowed one, so a misspelt option never goes unnoticed.
 */
export function assertOptions(name: string, value: unknown, allowed: readonly string[], optional = true): void {
  if (value === undefined && optional) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(name, `must be an object, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const near = nearestName(key, allowed);
    throw new InvalidArgumentError(`${name}.${key}`, `is not an option${near ? ` (did you mean "${near}"?)` : ''}; valid: ${allowed.join(', ')}`);
  }
}
