// How a SmartCache turns values into stored text and back, and the rules on what may be cached.
import { InvalidArgumentError, type Codec } from '@cyredis/core';
import { LOAD } from './tracing.js';

/** What a `getOrSet` loader may decide about the value it returns. */
export interface LoaderContext {
  /** Store the value for this many ms instead of the call's TTL (an adaptive TTL, e.g. short for "not found"). */
  setTtl(ttlMs: number): void;
  /** Return the value to the callers but do not store it. */
  skipCache(): void;
}

/** Computes a missing value for `getOrSet`. */
export type Loader<T> = (ctx: LoaderContext) => T | Promise<T>;

/** The codec plus the cache's rules: no `undefined` (it means "miss") and at most `maxValueBytes`. */
export class Values<T> {
  constructor(
    private readonly codec: Codec<T>,
    private readonly maxValueBytes: number,
    private readonly onError: ((error: Error) => void) | undefined,
    /** The cache's name, for the loader's tracing channel. */
    private readonly name: string,
  ) {}

  /**
   * The stored text of a value: refuses `undefined` (which `get` uses for "not cached", so a cached one could
   * not be told from a miss; cache `null` instead) and texts over `maxValueBytes`.
   */
  encode(value: T): string {
    if (value === undefined) throw new InvalidArgumentError('value', 'must not be undefined: get() reports a miss as undefined; cache null for "not found"');
    const text = this.codec.encode(value);
    if (text.length * 3 > this.maxValueBytes && Buffer.byteLength(text) > this.maxValueBytes) {
      throw new InvalidArgumentError('value', `must encode to at most ${this.maxValueBytes} bytes (maxValueBytes), got ${Buffer.byteLength(text)}`);
    }
    return text;
  }

  decode(text: string): T {
    return this.codec.decode(text);
  }

  /** The value of a stored text, or `undefined` (told to `onError`) when the codec cannot read it: a miss. */
  decodeOrMiss(text: string): T | undefined {
    try {
      return this.codec.decode(text);
    } catch (err) {
      this.onError?.(err as Error);
      return undefined;
    }
  }

  /** The loader's value; `undefined` is refused (see `encode`), whether or not Redis is reachable. */
  async load(loader: Loader<T>, ctx: LoaderContext): Promise<T> {
    const value = await LOAD.run(() => ({ name: this.name }), () => Promise.resolve(loader(ctx)));
    if (value === undefined) {
      throw new InvalidArgumentError('loader', 'returned undefined, which get() could not tell from a miss: return null for "not found"');
    }
    return value;
  }
}
