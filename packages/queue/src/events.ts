// QueueEvents: a queue's events from any process, read from its stream with blocking XREAD, resumable by id.
import { EventEmitter } from 'node:events';
import {
  assertByteLength,
  assertOptions,
  assertRedisClient,
  defaultCodec,
  duplicateClient,
  InvalidArgumentError,
  KeySpace,
  optionalMs,
  RedisUnavailableError,
  type Codec,
  type RedisClient,
} from '@cyredis/core';
import { decodeEventEntries, decodeOr, declaredKeys, SEED_SUFFIXES, type StreamEvent } from './protocol.js';
import { LIMITS, type JobProgress } from './queue.js';

/** What every event carries: `id`, its stream entry's id (pass it as `lastEventId` to resume after it). */
export interface EventBase {
  /** The stream entry's id, such as `1733500000000-0`. */
  id: string;
}

/** A job's event. */
export interface JobEvent extends EventBase {
  /** The job it is about. */
  jobId: string;
}

/** When a job is ready to run. */
export interface Ready {
  /** Ms since the epoch (server clock). */
  readyAt: number;
}

/** A job's progress report. */
export interface Progress {
  /** A number 0–100 or a small object, as the handler reported it. */
  progress: JobProgress;
}

/** A completed job's result. */
export interface Returned<R> {
  /** What the handler returned, decoded by the queue's codec (`undefined` when it returned nothing). */
  returnValue: R | undefined;
}

/** Why a job failed. */
export interface Failed {
  /** The error message of its last attempt. */
  failedReason: string;
}

/** The events a `QueueEvents` emits, with their payloads. */
export interface QueueEventMap<R = unknown> {
  /** A job was pushed (without a delay). */
  added: [JobEvent];
  /** A job was pushed with a delay; it is ready at `readyAt` (ms since the epoch). */
  delayed: [JobEvent & Ready];
  /** A delayed job or a retry came due, or a job was promoted, released or retried from the dead letters. */
  waiting: [JobEvent];
  /** A worker leased the job. */
  active: [JobEvent];
  /** The job's handler reported progress. */
  progress: [JobEvent & Progress];
  /** The job completed, with its handler's return value. */
  completed: [JobEvent & Returned<R>];
  /** The job failed and waits for its retry at `readyAt`. */
  retrying: [JobEvent & Failed & Ready];
  /** The job went to the dead letters. */
  dead: [JobEvent & Failed];
  /** The job was removed (`remove`, `drain`, `clean`). */
  removed: [JobEvent];
  /** The job's lease ran out: it waits again (or, after its last attempt, a `dead` event follows). */
  stalled: [JobEvent];
  /** The queue was paused. */
  paused: [EventBase];
  /** The queue was resumed. */
  resumed: [EventBase];
  /** A fetch took the last waiting job: nothing is left to run. */
  drained: [EventBase];
  /** Reading failed (the reader retries by itself); emitted only while someone listens. */
  error: [error: unknown];
}

/** Options of `new QueueEvents(…)`. */
export interface QueueEventsOptions<R = unknown> {
  /** Key prefix of the queue; default `cyredis`. */
  prefix?: string;
  /** Start after this event id (resume); default `$`: only events written after the reader starts. */
  lastEventId?: string;
  /** Longest single blocking read, in ms. Default 5000. */
  blockMs?: number;
  /** Decodes return values; default core's `defaultCodec` (use the queue's codec). */
  codec?: Codec<R>;
}

const OPTIONS = ['prefix', 'lastEventId', 'blockMs', 'codec'] as const;
const EVENT_ID = /^(\$|\d+(-\d+)?)$/;

/** The events stream key of a queue. */
export function eventsKeyOf(name: string, prefix: string | undefined): string {
  assertByteLength('name', name, LIMITS.maxNameBytes);
  return declaredKeys(new KeySpace('queue', prefix).keys(name, SEED_SUFFIXES, 'name')).eventsKey;
}

/** Whether stream id `a` comes after `b` ("<ms>-<seq>"). */
export function isAfter(a: string, b: string): boolean {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am > bm || (am === bm && as > bs);
}

/**
 * Reads a stream from an id on a connection of its own, entry by entry, until closed; on a failed read it
 * waits and reads again from the last entry it handled, so nothing is skipped (unless the stream's cap
 * trimmed it first).
 */
export class EventReader {
  /** The id of the last entry handled (its events were all passed on). */
  lastId: string;
  /** Resolves once the start id is fixed (`$` resolved to the stream's last id). */
  readonly ready: Promise<void>;
  private readonly client: RedisClient;
  private closing = false;
  private readonly loop: Promise<void>;
  private failures = 0;

  constructor(
    source: RedisClient,
    private readonly key: string,
    startId: string,
    private readonly blockMs: number,
    private readonly onEntry: (entryId: string, events: StreamEvent[]) => void,
    private readonly onError: (err: unknown) => void,
  ) {
    this.lastId = startId;
    this.client = duplicateClient(source);
    this.client.on('error', (err: unknown) => this.fail(err));
    let started!: () => void;
    this.ready = new Promise((resolve) => (started = resolve));
    this.loop = this.read(started);
  }

  /** Stops reading and closes the connection. */
  async close(): Promise<void> {
    this.closing = true;
    this.client.disconnect();
    await this.loop;
  }

  private async read(started: () => void): Promise<void> {
    while (!this.closing && this.lastId === '$') {
      try {
        const last = (await this.client.xrevrange(this.key, '+', '-', 'COUNT', 1))[0];
        this.lastId = last ? last[0] : '0-0';
      } catch (err) {
        await this.retry(err);
      }
    }
    started();
    while (!this.closing) {
      let reply: unknown;
      try {
        reply = await this.client.xread('COUNT', 1000, 'BLOCK', this.blockMs, 'STREAMS', this.key, this.lastId);
        this.failures = 0;
      } catch (err) {
        await this.retry(err);
        continue;
      }
      for (const { entryId, events } of decodeEventEntries(reply)) {
        if (this.closing) return;
        this.onEntry(entryId, events);
        this.lastId = entryId;
      }
    }
  }

  private async retry(err: unknown): Promise<void> {
    if (this.closing) return;
    this.fail(err);
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * 2 ** this.failures++)));
  }

  private fail(err: unknown): void {
    if (this.closing) return;
    this.onError(err instanceof RedisUnavailableError ? err : new RedisUnavailableError(`reading events: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
  }
}

/** Payload of a stream event, as `QueueEvents` emits it. */
function payload<R>(entryId: string, e: StreamEvent, codec: Codec<R>): EventBase & Record<string, unknown> {
  if (e.name === 'paused' || e.name === 'resumed' || e.name === 'drained') return { id: entryId };
  const out: EventBase & Record<string, unknown> = { id: entryId, jobId: e.jobId };
  const { r, f, t, p } = e.fields;
  if (e.name === 'completed') out.returnValue = decodeOr(codec, r);
  if (f !== undefined) out.failedReason = f;
  if (t !== undefined) out.readyAt = Number(t);
  if (p !== undefined) out.progress = JSON.parse(p) as JobProgress;
  return out;
}

/**
 * A queue's events, from any process: one blocking `XREAD` connection (made with `duplicate()`) on the
 * queue's events stream. Events come in the order the queue's calls wrote them; `lastEventId` is the last
 * one emitted, so a new `QueueEvents` with `{ lastEventId }` resumes without loss (within the stream's cap).
 */
export class QueueEvents<R = unknown> extends EventEmitter<QueueEventMap<R>> {
  /** The stream read. */
  readonly key: string;
  private readonly reader: EventReader;
  private readonly codec: Codec<R>;
  private closed: Promise<void> | undefined;

  constructor(redis: RedisClient, name: string, options: QueueEventsOptions<R> = {}) {
    super();
    assertRedisClient('redis', redis);
    assertOptions('options', options, OPTIONS);
    this.key = eventsKeyOf(name, options.prefix);
    const start = options.lastEventId ?? '$';
    if (typeof start !== 'string' || !EVENT_ID.test(start)) throw new InvalidArgumentError('options.lastEventId', `must be "$" or a stream id such as "1700000000000-0", got ${String(start)}`);
    const blockMs = optionalMs('options.blockMs', options.blockMs, 5000, { min: 1, max: 600_000, integer: true });
    this.codec = options.codec ?? (defaultCodec as Codec<R>);
    this.reader = new EventReader(redis, this.key, start, blockMs, (entryId, events) => this.dispatch(entryId, events), (err) => this.report(err));
  }

  /** The id of the last event emitted (or the start id): resume from it with `{ lastEventId }`. */
  get lastEventId(): string {
    return this.reader.lastId;
  }

  /** Resolves once the reader has fixed where it starts: events written after this are all emitted. */
  ready(): Promise<void> {
    return this.reader.ready;
  }

  /** Stops reading and closes the connection. */
  close(): Promise<void> {
    this.closed ??= this.reader.close();
    return this.closed;
  }

  private dispatch(entryId: string, events: StreamEvent[]): void {
    for (const e of events) {
      try {
        (this.emit as (name: string, arg: unknown) => boolean)(e.name, payload(entryId, e, this.codec));
      } catch (err) {
        this.report(err);
      }
    }
  }

  private report(err: unknown): void {
    try {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    } catch {
      // An 'error' listener that throws has nowhere left to report to.
    }
  }
}
