import { InvalidArgumentError } from './errors.js';
import { assertNonEmptyString } from './validate.js';

/** The prefix every cyredis key starts with unless a `prefix` option says otherwise. */
export const DEFAULT_PREFIX = 'cyredis';

/**
 * Escapes `%`, `{` and `}` so an id can sit inside a hash tag: with no braces left, the id cannot end the
 * tag early (moving the key to another slot) and two different ids never give the same key.
 */
export function escapeId(id: string): string {
  // Most ids need nothing: a test is cheaper than a replace with a callback.
  return NEEDS_ESCAPE.test(id) ? id.replace(ESCAPED, (c) => (c === '%' ? '%25' : c === '{' ? '%7B' : '%7D')) : id;
}

const NEEDS_ESCAPE = /[%{}]/;
const ESCAPED = /[%{}]/g;

/** The id `escapeId` was given, from what it returned (for tools that read ids back out of key names). */
export function unescapeId(escaped: string): string {
  return escaped.includes('%') ? escaped.replace(UNESCAPED, (c) => (c === '%25' ? '%' : c === '%7B' ? '{' : '}')) : escaped;
}

const UNESCAPED = /%25|%7B|%7D/g;

/**
 * Builds the keys of one kind of object: `<prefix>:<kind>:{<escaped id>}:<suffix>`. Every key of one object
 * shares the hash tag, so one script can touch them all on Redis Cluster, and the kind keeps a lock named
 * like a cache entry from ever meeting it.
 */
export class KeySpace {
  /** First part of every key (no braces). */
  readonly prefix: string;

  constructor(
    /** What the objects are (`rl`, `lock`, …): keeps objects of different kinds apart. */
    readonly kind: string,
    prefix: string = DEFAULT_PREFIX,
  ) {
    assertNonEmptyString('options.prefix', prefix, 256);
    if (/[{}]/.test(prefix)) throw new InvalidArgumentError('options.prefix', 'must not contain { or }');
    this.prefix = prefix;
  }

  /** The `{…}` hash tag of one object. */
  tag(id: string, argument = 'id'): string {
    assertNonEmptyString(argument, id);
    return `{${escapeId(id)}}`;
  }

  /** The key of one object's part: `key('user:1', 'state')`. */
  key(id: string, suffix: string, argument = 'id'): string {
    return `${this.prefix}:${this.kind}:${this.tag(id, argument)}:${suffix}`;
  }

  /** Several keys of one object in one go, in the order of `suffixes`. */
  keys(id: string, suffixes: readonly string[], argument = 'id'): string[] {
    const base = `${this.prefix}:${this.kind}:${this.tag(id, argument)}:`;
    return suffixes.map((suffix) => base + suffix);
  }
}
