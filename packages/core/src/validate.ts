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
