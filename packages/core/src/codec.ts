import { InvalidArgumentError } from './errors.js';

/**
 * Turns values into the strings stored in Redis and back. Strings, because replies come back as UTF-8
 * text; a codec for binary data must wrap it (the default one uses base64 for Buffers).
 */
export interface Codec<T = unknown> {
  /** The stored text of `value`; throw `InvalidArgumentError` for a value it cannot encode. */
  encode(value: T): string;
  /** The value back from its stored text. */
  decode(text: string): T;
}

// Tagged values are `{"$t": tag, "v": payload}`; a user object that owns a `$t` key is wrapped as tag `O`
// (its entries), so no user data is ever mistaken for a tag.
const TAG = '$t';
const TAG_TEXT = '"$t"';

interface Tagged {
  $t: string;
  v: unknown;
}

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  switch (typeof raw) {
    case 'bigint':
      return { $t: 'n', v: raw.toString() };
    case 'number':
      return Number.isFinite(raw) && !Object.is(raw, -0) ? raw : { $t: 'f', v: Object.is(raw, -0) ? '-0' : String(raw) };
    case 'function':
    case 'symbol':
      throw new InvalidArgumentError('value', `the codec cannot encode a ${typeof raw} (at "${key}")`);
    case 'object':
      if (raw === null) return null;
      if (raw instanceof Date) return { $t: 'D', v: String(raw.getTime()) };
      if (Buffer.isBuffer(raw)) return { $t: 'B', v: raw.toString('base64') };
      if (raw instanceof Map) return { $t: 'M', v: [...raw] };
      if (raw instanceof Set) return { $t: 'S', v: [...raw] };
      if (Object.hasOwn(raw, TAG) && !Array.isArray(raw)) return { $t: 'O', v: Object.entries(raw) };
      return value;
    default:
      return value;
  }
}

function reviver(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const { $t: tag, v } = value as Tagged;
  switch (tag) {
    case 'n':
      return BigInt(v as string);
    case 'f':
      return Number(v);
    case 'D':
      return new Date(Number(v));
    case 'B':
      return Buffer.from(v as string, 'base64');
    case 'M':
      return new Map(v as [unknown, unknown][]);
    case 'S':
      return new Set(v as unknown[]);
    case 'O':
      return Object.fromEntries(v as [string, unknown][]);
    default:
      return value;
  }
}

/**
 * Whether `JSON.stringify` alone encodes `value` exactly, so the replacer (a call per property) can be
 * skipped: strings, booleans, null, finite numbers other than -0, and arrays and plain objects of those with
 * no `$t` key. Anything else, or nesting deeper than 64 (a cycle, maybe), takes the replacer's path, which
 * tags, refuses or reports it.
 */
function isPlain(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && (value !== 0 || 1 / value > 0);
    case 'object': {
      if (value === null) return true;
      if (depth > 64) return false;
      if (Array.isArray(value)) {
        for (const item of value) if (!isPlain(item, depth + 1)) return false;
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if ((proto !== Object.prototype && proto !== null) || Object.hasOwn(value, TAG)) return false;
      for (const key in value) if (!isPlain((value as Record<string, unknown>)[key], depth + 1)) return false;
      return true;
    }
    default:
      return false;
  }
}

/**
 * The default codec: JSON plus tags for what JSON loses — `Date`, `Map`, `Set`, `BigInt`, `Buffer`, `NaN`,
 * `±Infinity` and `-0` round-trip exactly. Class instances come back as plain objects and `undefined`
 * properties are dropped, as with `JSON`. Functions, symbols, cycles and a top-level `undefined` are
 * refused with `InvalidArgumentError`. Plain JSON values skip the replacer and text with no tag skips the
 * reviver, so plain data encodes and decodes at `JSON` speed.
 */
export const defaultCodec: Codec = {
  encode(value: unknown): string {
    if (isPlain(value, 0)) return JSON.stringify(value);
    let text: string | undefined;
    try {
      text = JSON.stringify(value, replacer);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      throw new InvalidArgumentError('value', `the codec cannot encode it: ${(err as Error).message}`);
    }
    if (text === undefined) throw new InvalidArgumentError('value', 'the codec cannot encode undefined');
    return text;
  },
  decode(text: string): unknown {
    return text.includes(TAG_TEXT) ? JSON.parse(text, reviver) : JSON.parse(text);
  },
};
