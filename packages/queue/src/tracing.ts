// The queue's tracing channels, and the trace context a job carries from its push to its processing.
import { InvalidArgumentError, Operation, type Codec, type OperationContext } from '@cyredis/core';
import type { FailOutcome, PushResult } from './queue.js';

/**
 * `cyredis:queue:push` (`push` and `add`): `name` (the queue's), `key` (the id asked for, then the job's id),
 * `traceContext` (the job's propagation fields: a subscriber of `start` may set it to have them stored with the
 * job when the call gave none); `outcome` `added` or `duplicate`.
 */
export const PUSH = new Operation('queue', 'push');
/** `cyredis:queue:pushBulk` (`pushBulk` and `addBulk`): `name`, `count`, `traceContext` as `push` (for every job without its own). */
export const PUSH_BULK = new Operation('queue', 'pushBulk');
/** `cyredis:queue:fetch` (`pop` and `fetch`): `name`; then `count` (jobs leased). */
export const FETCH = new Operation('queue', 'fetch');
/** `cyredis:queue:complete`: `name`, `key` (the job's id); `outcome` `completed` or `lost`. */
export const COMPLETE = new Operation('queue', 'complete');
/** `cyredis:queue:ack`: `name`, `count` (jobs passed); then `completed` (how many were completed). */
export const ACK = new Operation('queue', 'ack');
/** `cyredis:queue:fail`: `name`, `key`; `outcome` `retry`, `dead` or `lost`. */
export const FAIL = new Operation('queue', 'fail');
/** `cyredis:queue:extend`: `name`, `count`. */
export const EXTEND = new Operation('queue', 'extend');
/** `cyredis:queue:release`: `name`, `key`; `outcome` `released` or `lost`. */
export const RELEASE = new Operation('queue', 'release');
/**
 * `cyredis:queue:process` (a `Worker` running its handler on one job): `name`, `key` (the job's id), `attempts`,
 * `traceContext` (the fields it was pushed with, if any), `target` (the `Job`). The handler's error is the
 * `error`; whether the job then completes, retries or dies is told by `ack`, `complete` and `fail`.
 */
export const PROCESS = new Operation('queue', 'process');

/** A push: the job's id and whether it was new. */
export function settlePush(ctx: OperationContext, result: PushResult): void {
  ctx.key = result.id;
  ctx.outcome = result.added ? 'added' : 'duplicate';
}

/** A fetch: how many jobs came. */
export function settleFetch(ctx: OperationContext, result: { jobs: readonly unknown[] }): void {
  ctx.count = result.jobs.length;
}

/** An ack: how many completions were accepted. */
export function settleAck(ctx: OperationContext, result: { completed: readonly boolean[] }): void {
  ctx.completed = result.completed.filter(Boolean).length;
}

/** A complete or release: held (done) or lost. */
export function settleHeld(ctx: OperationContext, held: boolean): void {
  ctx.outcome = held ? (ctx.outcome ?? 'completed') : 'lost';
}

/** A fail: what it did. */
export function settleFail(ctx: OperationContext, outcome: FailOutcome): void {
  ctx.outcome = outcome;
}

/** Most propagation fields a job carries, and their size in UTF-8 bytes. */
const MAX_FIELDS = 16;
const MAX_CARRIER_BYTES = 2048;
/** Opens and closes the trace context in front of the data's text (JSON escapes it, so it cannot occur inside). */
const MARK = '\u0001';

/** Checks a push's `traceContext`: string fields only, at most 16 and 2 KiB. */
export function checkTraceContext(name: string, value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidArgumentError(name, 'must be an object of string fields');
  const entries = Object.entries(value);
  if (entries.length > MAX_FIELDS) throw new InvalidArgumentError(name, `must have at most ${MAX_FIELDS} fields`);
  for (const [k, v] of entries) if (typeof v !== 'string') throw new InvalidArgumentError(`${name}.${k}`, 'must be a string');
  const text = JSON.stringify(value);
  if (Buffer.byteLength(text) > MAX_CARRIER_BYTES) throw new InvalidArgumentError(name, `must encode to at most ${MAX_CARRIER_BYTES} bytes`);
  return value as Record<string, string>;
}

/** The stored text of a job's data with its trace context in front. */
export function withTraceContext(text: string, traceContext: Record<string, string>): string {
  return `${MARK}${JSON.stringify(traceContext)}${MARK}${text}`;
}

/** Splits a stored text into its trace context (undefined when none) and the codec's text. */
function split(text: string): [Record<string, string> | undefined, string] {
  if (text.charCodeAt(0) !== 1) return [undefined, text];
  const end = text.indexOf(MARK, 1);
  if (end < 0) return [undefined, text];
  try {
    return [JSON.parse(text.slice(1, end)) as Record<string, string>, text.slice(end + 1)];
  } catch {
    return [undefined, text];
  }
}

/** A leased job's data with the trace context it was pushed with (unwrapped by the queue's job factory). */
export class Carried<T> {
  constructor(
    readonly data: T,
    readonly traceContext: Record<string, string>,
  ) {}
}

/** The queue's codec for every read: the data without any trace context in front. */
export function dataCodec<T>(codec: Codec<T>): Codec<T> {
  return {
    encode: (value) => codec.encode(value),
    decode: (text) => codec.decode(text.charCodeAt(0) === 1 ? split(text)[1] : text),
  };
}

/** The queue's codec for leased jobs: data pushed with a trace context comes back as `Carried`. */
export function leaseCodec<T>(codec: Codec<T>): Codec<T> {
  return {
    encode: (value) => codec.encode(value),
    decode: (text) => {
      if (text.charCodeAt(0) !== 1) return codec.decode(text);
      const [traceContext, rest] = split(text);
      const data = codec.decode(rest);
      return (traceContext === undefined ? data : new Carried(data, traceContext)) as T;
    },
  };
}
