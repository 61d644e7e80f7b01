// The JobQueue: typed calls over the job_queue.lua script, with the codec, limits and per-call deadline.
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOneOf,
  assertOptions,
  assertByteLength,
  assertTimeoutMs,
  assertRedisClient,
  CyRedisError,
  DEFAULT_PREFIX,
  defaultCodec,
  durationMs,
  InvalidArgumentError,
  KeySpace,
  listRegistered,
  LuaScriptManager,
  NameRecorder,
  readPackageLua,
  RedisTimeoutError,
  RedisUnavailableError,
  registryKey,
  scriptName,
  TickBatcher,
  warnIfEvicting,
  type Codec,
  type RedisClient,
  type RegisteredScript,
  type RegistryEntry,
  type RegistryListOptions,
  type ScriptArg,
  type OperationContext,
} from '@cyredis/core';
import { JobFailedError, JobNotFoundError } from './errors.js';
import { checkRepeat, nextRunAt, parseSpec, repeatJob, repeatSpec, type RepeatOptions } from './schedule.js';
import { FinishWatcher } from './finish.js';
import {
  decodeAck,
  decodeCount,
  decodeDead,
  decodeDrain,
  decodeExtend,
  decodeFail,
  decodeFetch,
  decodeGetJob,
  decodeGetJobs,
  decodeGetJobsNext,
  decodeHeld,
  decodeLogs,
  decodeObliterate,
  decodeOr,
  decodePushMany,
  decodeRetryDead,
  decodeSchedule,
  decodeScheduler,
  decodeSchedulers,
  decodeStats,
  declaredKeys,
  encodeAck,
  encodeClean,
  encodeComplete,
  encodeDead,
  encodeDrain,
  encodeExtend,
  encodeFail,
  encodeFetch,
  encodeGetJob,
  encodeGetJobs,
  encodeGroupOptions,
  encodeGroupPause,
  encodeLog,
  encodeLogs,
  encodeObliterate,
  encodePause,
  encodePaused,
  encodeProgress,
  encodePromote,
  encodePushMany,
  encodeRelease,
  encodeRemove,
  encodeRetryDead,
  encodeRetryJob,
  encodeSchedule,
  encodeScheduleNext,
  encodeScheduler,
  encodeSchedulers,
  encodeUnschedule,
  encodeStats,
  policyClock,
  pushKeys,
  requestKeys,
  SEED_SUFFIXES,
  withPolicy,
  type JobFactory,
  type Keep,
  type UndecodableJob,
  type PushSpec,
  type StoredScheduler,
} from './protocol.js';
import {
  ACK,
  Carried,
  checkTraceContext,
  COMPLETE,
  dataCodec,
  EXTEND,
  FAIL,
  FETCH,
  leaseCodec,
  PUSH,
  PUSH_BULK,
  RELEASE,
  settleAck,
  settleFail,
  settleFetch,
  settleHeld,
  settlePush,
  withTraceContext,
} from './tracing.js';

/** The shipped script's source (`lua/job_queue.lua`). */
export const JOB_QUEUE_LUA = readPackageLua(import.meta.url, 'job_queue');
/** The registry kind of queues (`<prefix>:registry:queue`). */
const REGISTRY_KIND = 'queue';

/** Limits the script enforces; the TypeScript API checks them before any round trip. */
export const LIMITS = Object.freeze({
  /** Job data as the codec encodes it, in UTF-8 bytes. */
  maxDataBytes: 1_048_576,
  /** Job id and request lane, in UTF-8 bytes. */
  maxIdBytes: 1024,
  /** Queue name, in UTF-8 bytes. */
  maxNameBytes: 256,
  /** Priorities run from -maxPriority to maxPriority; higher is served first. */
  maxPriority: 1000,
  /** Retries per job. */
  maxRetries: 1000,
  /** Push delay, in ms (one year). */
  maxDelayMs: 31_536_000_000,
  /** Jobs per pushBulk / pop / ack call (larger bulks are split). */
  maxBatch: 1000,
  /** Lease length, in ms (one day). */
  maxLeaseMs: 86_400_000,
  /** Error text kept with a failed or dead job, in bytes. */
  maxErrorBytes: 1000,
  /** Jobs per `getJobs` page, lines per `getLogs` page, jobs per `clean` call. */
  maxPage: 1000,
  /** A log line, in UTF-8 bytes. */
  maxLogLineBytes: 1024,
  /** Log lines kept per job (the last ones). */
  logLinesKept: 100,
  /** Progress as JSON text, in bytes. */
  maxProgressBytes: 1024,
  /** Events stream cap (`eventsMaxLen`), in entries. */
  maxEventsLen: 1_000_000,
  /** A group name, in UTF-8 bytes. */
  maxGroupBytes: 256,
});

/** Where a job is. A job waiting for its retry is `delayed` (with its `failedReason`). */
export type JobState = 'waiting' | 'delayed' | 'active' | 'completed' | 'dead';

const JOB_STATES: readonly JobState[] = ['waiting', 'delayed', 'active', 'completed', 'dead'];
const FINISHED_STATES = ['completed', 'dead'] as const;

/** A job's progress: a number in 0–100, or a small JSON object (at most 1024 bytes as JSON). */
export type JobProgress = number | Record<string, unknown>;

/** Everything kept of a job, as `getJob` and `getJobs` return it. Times are ms since the epoch, server clock. */
export interface JobInfo<T, R = unknown> {
  /** The job's id. */
  id: string;
  /** Where it is now. */
  state: JobState;
  /** Its payload; undefined when its record was lost or does not decode. */
  data: T | undefined;
  /** Its priority (higher is served first). */
  priority: number;
  /** Runs started so far (0 before the first). */
  attempts: number;
  /** Retries it is allowed. */
  maxRetries: number;
  /** The last progress its handler reported; 0 when none. */
  progress: JobProgress;
  /** What its handler returned (completed jobs, when kept); undefined when nothing. */
  returnValue: R | undefined;
  /**
   * The last error: its handler's, `lease expired`, `record lost`; undefined when none. Kept while the job waits
   * for and runs its next attempt; cleared when it completes.
   */
  failedReason: string | undefined;
  /** When it was pushed (undefined for jobs pushed before this was kept). */
  createdAt: number | undefined;
  /** When its current or last run began; undefined before the first. */
  processedAt: number | undefined;
  /** When it completed or died (completed and dead jobs). */
  finishedAt: number | undefined;
  /** When it becomes ready to run (delayed jobs, and jobs waiting for a retry). */
  readyAt: number | undefined;
}

/** How many finished jobs to keep, and for how long (either may be left out: no limit). */
export interface KeepOptions {
  /**
   * Keep at most this many (the newest). From 32 on they are trimmed in batches of count / 16 (at most 64)
   * completions, so up to one batch less one more may be held between trims.
   */
  count?: number;
  /** Keep none older than this, in ms. */
  ageMs?: number;
}

/** Retry delays: exponential from `baseMs`, capped at `maxMs`, with jitter. Stored with each job at push. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms (doubles each attempt, jittered down by up to half). Default 1000. */
  baseMs?: number;
  /** Cap on the retry delay, in ms. Default 60 000. */
  maxMs?: number;
}

/** Options of `new JobQueue(…)`. */
export interface JobQueueOptions<T = unknown> {
  /** Key prefix; default `cyredis`. */
  prefix?: string;
  /**
   * Retries of the jobs this instance pushes: a job runs at most maxRetries + 1 times. Default 3. Stored
   * with each job, so the instance that runs or fails the job does not change it.
   */
  maxRetries?: number;
  /** Retry delays of the jobs this instance pushes, stored with each job like `maxRetries`. */
  backoff?: BackoffOptions;
  /** Default lease for `pop`, in ms. Default 30 000. */
  leaseMs?: number;
  /**
   * Deadline of every call to Redis, in ms. Default 2000. Past it the call rejects with `RedisTimeoutError`
   * (the script may still run: an unknown outcome).
   */
  timeoutMs?: number;
  /** Turns job data (and return values) into the stored text and back. Default: core's `defaultCodec` (lossless JSON). */
  codec?: Codec<T>;
  /**
   * Completed jobs kept for `getJob`/`getJobs` by the calls this instance makes: `true` removes them at
   * once, `false` keeps them all, or `{ count, ageMs }`. Default `{ count: 1000, ageMs: 3_600_000 }`.
   */
  removeOnComplete?: boolean | KeepOptions;
  /** Dead jobs kept, as `removeOnComplete`. Default `{ count: 10_000, ageMs: 604_800_000 }` (7 days). */
  removeOnDead?: boolean | KeepOptions;
  /** Whether this instance's calls write events (see `QueueEvents`). Default true. */
  events?: boolean;
  /** About how many events the stream keeps (trimmed by whole entries, one per call). Default 10 000. */
  eventsMaxLen?: number;
  /**
   * Queue-wide, in every process: at most `limit` jobs leased in any `windowMs`, spread evenly (one every
   * windowMs / limit). Enforced by the script that leases; give every instance of the queue the same.
   */
  rateLimit?: RateLimitOptions;
  /** Queue-wide, in every process: at most this many jobs leased at once (1–1 000 000). Default: no limit. */
  globalConcurrency?: number;
}

/** A queue-wide rate limit: `limit` (1–1 000 000) per `windowMs` (1 ms to a year). */
export interface RateLimitOptions {
  /** Jobs started per window, 1–1 000 000. */
  limit: number;
  /** The window in ms, 1 ms to a year. */
  windowMs: number;
}

const QUEUE_OPTIONS = [
  'prefix', 'maxRetries', 'backoff', 'leaseMs', 'timeoutMs', 'codec', 'removeOnComplete', 'removeOnDead', 'events', 'eventsMaxLen',
  'rateLimit', 'globalConcurrency',
] as const;
const RATE_LIMIT_OPTIONS = ['limit', 'windowMs'] as const;
/** Highest `rateLimit.limit` and `globalConcurrency`. */
const MAX_LIMIT = 1_000_000;
const KEEP_OPTIONS = ['count', 'ageMs'] as const;
const DEFAULT_KEEP_COMPLETED: Keep = { count: 1000, ageMs: 3_600_000 };
const DEFAULT_KEEP_DEAD: Keep = { count: 10_000, ageMs: 7 * 86_400_000 };
const BACKOFF_OPTIONS = ['baseMs', 'maxMs'] as const;
const PUSH_OPTIONS = ['id', 'priority', 'delayMs', 'maxRetries', 'backoff', 'dedup', 'group', 'traceContext'] as const;
const GROUP_OPTIONS = ['concurrency', 'rateLimit'] as const;
const TEMPLATE_OPTIONS = ['priority', 'maxRetries', 'backoff', 'group'] as const;
/** A scheduler id, in UTF-8 bytes. */
const MAX_SCHEDULER_ID_BYTES = 256;
const DEDUP_OPTIONS = ['key', 'ttlMs', 'mode'] as const;
const DEDUP_MODES = ['throttle', 'debounce'] as const;
const BULK_JOB_KEYS = ['data', ...PUSH_OPTIONS] as const;
const POP_OPTIONS = ['leaseMs', 'request'] as const;
const ACK_OPTIONS = ['leaseMs', 'request', 'fetch', 'returnValues'] as const;
const REQUEST_OPTIONS = ['lane', 'seq'] as const;
/** Lanes whose key lists a queue keeps (a worker uses about three); past it the cache starts over. */
const MAX_LANE_KEYS = 64;
/** The script's backoff when a job stores none. */
const DEFAULT_BACKOFF = { baseMs: 1000, maxMs: 60_000 } as const;

/** Options of `push` (and of each job of `pushBulk`). */
export interface PushOptions {
  /**
   * Job id; default a generated decimal one (unique per queue). Pushing an id that is still queued,
   * running, failed, dead or completed and kept (see `removeOnComplete`) is a no-op; once no longer kept, its
   * id can be used again.
   */
  id?: string;
  /** Integer in [-1000, 1000]; higher is served first, FIFO within a priority. Default 0. */
  priority?: number;
  /** Do not serve before this many ms from now (server time). Default 0. */
  delayMs?: number;
  /** Overrides the queue's `maxRetries` for this job. */
  maxRetries?: number;
  /** Overrides the queue's `backoff` for this job. */
  backoff?: BackoffOptions;
  /** Drops or merges pushes that share a key (see `DedupOptions`). */
  dedup?: DedupOptions;
  /**
   * The job's group (1–256 bytes): FIFO within the group whatever the priority, at most the group's
   * `concurrency` leased at once (default 1), groups served round-robin (see `setGroupOptions`).
   */
  group?: string;
  /**
   * Propagation fields (such as W3C `traceparent` and `tracestate`; at most 16, 2 KiB) stored with the job and
   * handed to its runs as `job.traceContext`, so a worker's span can link to the push. `@cyredis/otel` fills it
   * in for you while it is active.
   */
  traceContext?: Record<string, string>;
}

/** The job a scheduler makes at each tick: its data and push options. */
export interface SchedulerTemplate<T> {
  /** The data of every job it makes. */
  data: T;
  /** Integer in [-1000, 1000]. Default 0. */
  priority?: number;
  /** Default: the queue's. */
  maxRetries?: number;
  /** Default: the queue's. */
  backoff?: BackoffOptions;
  /** The group of its jobs, if any. */
  group?: string;
}

/** A scheduler as `getSchedulers` lists it. */
export interface SchedulerInfo<T> {
  /** The scheduler's id, as given to `upsertScheduler`. */
  id: string;
  /** Its cron expression, for a cron scheduler. */
  cron?: string;
  /** The time zone its cron expression is read in (IANA name), when one was given. */
  tz?: string;
  /** Its interval in ms, for an interval scheduler. */
  everyMs?: number;
  /** When its next job is due (ms since the epoch). */
  nextRunAt: number;
  /** Its job template (`data` undefined when it does not decode). */
  template: SchedulerTemplateInfo<T>;
}

/** A scheduler's job template as `getSchedulers` lists it. */
export interface SchedulerTemplateInfo<T> {
  /** The data of each job it makes (`undefined` when it does not decode). */
  data: T | undefined;
  /** The jobs' priority. */
  priority: number;
  /** The jobs' retries after the first attempt. */
  maxRetries: number;
  /** The jobs' backoff, when set. */
  backoff?: Required<BackoffOptions>;
  /** The group the jobs go to, when set. */
  group?: string;
}

/** What `upsertScheduler` answers. */
export interface SchedulerUpserted {
  /** The scheduler's id. */
  id: string;
  /** When its next job is due (ms since the epoch). */
  nextRunAt: number;
}

/** Options of a group (`setGroupOptions`). */
export interface GroupOptions {
  /** Jobs of the group leased at once, 1–1 000 000. Default 1. */
  concurrency?: number;
  /** At most `limit` leases of the group in any `windowMs`, spread evenly. Default: none. */
  rateLimit?: RateLimitOptions;
}

/**
 * Deduplication by key, beyond "same id while it lives". `throttle`: the first push with the key queues
 * its job, and pushes with it in the next `ttlMs` are dropped (`added: false`, `id` of the job that holds
 * the key). `debounce`: the job waits `ttlMs` (it is `delayed`); a push with the key while it still waits
 * replaces its data and options and restarts the wait, so it runs once, with the latest data, after
 * `ttlMs` without pushes (`delayMs` cannot be combined with it).
 */
export interface DedupOptions {
  /** 1 to 1024 bytes, per queue. */
  key: string;
  /** How long the key holds, in ms (1 ms to a year). */
  ttlMs: number;
  /** `throttle` (drop repeats) or `debounce` (keep the latest, run once quiet). */
  mode: 'throttle' | 'debounce';
}

/** One job of `pushBulk`. */
export interface BulkJob<T> extends PushOptions {
  /** The job's payload (anything the queue's codec encodes). */
  data: T;
}

/** What `add` / `addBulk` report per job. */
export interface PushResult {
  /** The job's id (generated when none was given). */
  id: string;
  /** false when a job with this id already existed (nothing was written). */
  added: boolean;
}

/** A leased job. Present it to `complete`/`fail`: the lease token fences a worker that lost its lease. */
export interface Job<T> {
  /**
   * Stores the job's progress (a number in 0–100 or a small JSON object) and emits a `progress` event:
   * true, or false when the lease was lost.
   */
  updateProgress(progress: JobProgress): Promise<boolean>;
  /** Appends a line (at most 1024 bytes) to the job's log; the number of lines logged so far. */
  log(line: string): Promise<number>;
  /** The job's id. */
  readonly id: string;
  /** The payload it was pushed with. */
  readonly data: T;
  /** Its priority (higher is served first). */
  readonly priority: number;
  /** Runs so far, this one included (1 on the first run). */
  readonly attempts: number;
  /** Retries it is allowed: it runs at most maxRetries + 1 times. */
  readonly maxRetries: number;
  /** Fences this lease: `complete`/`fail`/`extend`/`release` must present it. */
  readonly leaseToken: string;
  /** The propagation fields it was pushed with (`PushOptions.traceContext`); absent when none. */
  readonly traceContext?: Record<string, string>;
}

/** What `complete`, `fail`, `extend`, `release`, `ack` and `updateProgress` need of a job: its lease. */
export type JobLease = Pick<Job<unknown>, 'id' | 'leaseToken'>;

/** A leased job as the queue hands it out: the `Job` fields and its methods, bound to the queue. */
class LeasedJob<T> implements Job<T> {
  // Private (not an own property) so the job compares and prints as its fields.
  readonly #queue: JobQueue<T, never>;
  // Declared, not defined: only a job pushed with a trace context has the property.
  declare readonly traceContext?: Record<string, string>;

  constructor(
    queue: JobQueue<T, never>,
    readonly id: string,
    readonly data: T,
    readonly priority: number,
    readonly attempts: number,
    readonly maxRetries: number,
    readonly leaseToken: string,
  ) {
    this.#queue = queue;
  }

  updateProgress(progress: JobProgress): Promise<boolean> {
    return this.#queue.updateProgress(this, progress);
  }

  log(line: string): Promise<number> {
    return this.#queue.log(this.id, line);
  }
}


/** `options` with the trace context a tracing subscriber set on the call, unless they carry their own. */
function carrying<O extends PushOptions>(options: O, ctx: OperationContext | undefined): O {
  if (ctx?.traceContext === undefined || options === null || typeof options !== 'object' || options.traceContext !== undefined) return options;
  return { ...options, traceContext: ctx.traceContext };
}

/** Options of `pop`, `fetch` and `ack`. */
export interface PopOptions {
  /** Lease length in ms; an unfinished job returns to the queue when it passes. Default: the queue's. */
  leaseMs?: number;
  /** Makes the call safe to repeat: see `RequestId`. */
  request?: RequestId;
}

/**
 * Names a `fetch` or `ack` call so that a repeat of it, such as ioredis resending it after a reset or a retry
 * after an unknown outcome, writes nothing and answers as the first run did (its completions, and the jobs
 * it leased that are still leased to it) within the lease, and at least 60 s. Redis keeps one memo per lane,
 * the lane's latest call: give each call in flight its own lane, and reuse a lane only once its last call
 * was answered (the `Worker` does this).
 */
export interface RequestId {
  /** 1 to 1024 bytes; unique to its caller (e.g. a random prefix and a number). */
  lane: string;
  /** Integer ≥ 0, new for each call on the lane. */
  seq: number;
}

/** Options of `ack`. */
export interface AckOptions<R> extends PopOptions {
  /** Jobs to lease after completing (0–1000). Default 0. */
  fetch?: number;
  /** Per job passed, its handler's return value (undefined: none), kept with the completed job. */
  returnValues?: readonly (R | undefined)[];
}

/** What `fetch` returns. */
export interface FetchResult<T> {
  /** The leased jobs, highest priority first. */
  jobs: Job<T>[];
  /**
   * 0 when the batch came full or jobs still wait (ask again); else ms until the next delayed job, retry or
   * lease deadline; -1 when nothing is scheduled.
   */
  waitMs: number;
  /**
   * Present only when something in the background of this call failed: the dead-lettering of a leased job
   * whose data the codec cannot decode (the job is not returned; its lease runs out and a later call meets
   * it again). The `Worker` emits each as `error`; `pop` drops them.
   */
  errors?: CyRedisError[];
}

/** What `ack` returns: the completions and the next batch. */
export interface AckResult<T> extends FetchResult<T> {
  /** Per job passed to `ack`: true when completed, false when its lease was lost. */
  completed: boolean[];
}

/** What `fail` did: scheduled a retry, dead-lettered the job, or found its lease lost (nothing changed). */
export type FailOutcome = 'retry' | 'dead' | 'lost';

/** Counts per state, read in O(1). */
export interface QueueStats {
  /** Jobs ready to be served. */
  waiting: number;
  /** Jobs pushed with a delay that has not passed. */
  delayed: number;
  /** Jobs under a lease. */
  processing: number;
  /** Failed jobs waiting for their retry. */
  failed: number;
  /** Jobs in the dead letter set. */
  dead: number;
  /** Jobs completed since the queue was created (a counter; how many are kept: `removeOnComplete`). */
  completed: number;
}

/** A dead-lettered job, as `deadJobs` lists it. */
export interface DeadJob<T> {
  /** The job's id. */
  id: string;
  /** Its payload; undefined when its record was lost (evicted or deleted) or its data does not decode. */
  data: T | undefined;
  /** Runs it had. */
  attempts: number;
  /** The last error (cut to 1000 bytes), `lease expired`, `record lost`, why its data did not decode, or `reason lost`. */
  error: string;
  /** When it died, in ms since the epoch (server time). */
  diedAt: number;
}

/** What `warnIfEvicting` says the queue loses under an evicting policy. */
const EVICTION_RISK =
  'an evicted key loses queue state: jobs whose records go are dead-lettered as "record lost", and a lost list, set or counter is rebuilt only when the queue next runs empty';

/** A checked `removeOnComplete` / `removeOnDead`: true keeps none, false all, or `{ count, ageMs }`. */
function checkKeep(name: string, value: boolean | KeepOptions | undefined, fallback: Keep): Keep {
  if (value === undefined) return fallback;
  if (value === true) return { count: 0, ageMs: -1 };
  if (value === false) return { count: -1, ageMs: -1 };
  assertOptions(name, value, KEEP_OPTIONS, false);
  if (value.count !== undefined) assertInteger(`${name}.count`, value.count, { min: 0, max: 1e9 });
  if (value.ageMs !== undefined) assertInteger(`${name}.ageMs`, value.ageMs, { min: 0, max: 1e13 });
  return { count: value.count ?? -1, ageMs: value.ageMs ?? -1 };
}

/** A checked page: offset ≥ 0, limit 1–1000. */
function checkPage(name: string, value: { offset?: number; limit?: number } | undefined, defaultLimit: number): { offset: number; limit: number } {
  assertOptions(name, value, ['offset', 'limit']);
  const offset = value?.offset ?? 0;
  const limit = value?.limit ?? defaultLimit;
  assertInteger(`${name}.offset`, offset, { min: 0, max: 1e9 });
  assertInteger(`${name}.limit`, limit, { min: 1, max: LIMITS.maxPage });
  return { offset, limit };
}

/** Progress as the JSON text the script stores: a number in 0–100, or a plain object of at most 1024 bytes. */
function progressText(progress: unknown): string {
  if (typeof progress === 'number') {
    assertFiniteNumber('progress', progress, { min: 0, max: 100 });
    return JSON.stringify(progress);
  }
  if (progress === null || typeof progress !== 'object' || Array.isArray(progress)) {
    throw new InvalidArgumentError('progress', 'must be a number in 0–100 or a plain object');
  }
  let text: string;
  try {
    text = JSON.stringify(progress);
  } catch (err) {
    throw new InvalidArgumentError('progress', `must be JSON: ${(err as Error).message}`);
  }
  if (Buffer.byteLength(text) > LIMITS.maxProgressBytes) throw new InvalidArgumentError('progress', `must be at most ${LIMITS.maxProgressBytes} bytes as JSON`);
  return text;
}

/** A priority given with a push: an integer in [-1000, 1000] (left out, a push has 0). */
function checkPriority(name: string, value: unknown): number {
  assertInteger(name, value, { min: -LIMITS.maxPriority, max: LIMITS.maxPriority });
  return value;
}

function checkRetries(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  assertInteger(name, value, { min: 0, max: LIMITS.maxRetries });
  return value;
}

/** A checked backoff, with the fallback's values for what it leaves out. */
function checkBackoff(name: string, value: BackoffOptions | undefined, fallback: Required<BackoffOptions>): Required<BackoffOptions> {
  if (value === undefined) return fallback;
  assertOptions(name, value, BACKOFF_OPTIONS);
  const baseMs = value.baseMs ?? fallback.baseMs;
  const maxMs = value.maxMs ?? Math.max(fallback.maxMs, baseMs);
  assertInteger(`${name}.baseMs`, baseMs, { min: 0, max: LIMITS.maxLeaseMs });
  assertInteger(`${name}.maxMs`, maxMs, { min: baseMs, max: LIMITS.maxLeaseMs });
  return { baseMs, maxMs };
}

/** The retry policy as the script stores it; the default backoff is left out to keep records short. */
function policyArg(maxRetries: number, backoff: Required<BackoffOptions>): string {
  if (backoff.baseMs === DEFAULT_BACKOFF.baseMs && backoff.maxMs === DEFAULT_BACKOFF.maxMs) return String(maxRetries);
  return `${maxRetries},${backoff.baseMs},${backoff.maxMs}`;
}

/** A checked `dedup` option. */
function checkDedup(name: string, value: DedupOptions | undefined): DedupOptions | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError(name, 'must be { key, ttlMs, mode }');
  assertOptions(name, value, DEDUP_OPTIONS);
  checkId(`${name}.key`, value.key);
  assertInteger(`${name}.ttlMs`, value.ttlMs, { min: 1, max: LIMITS.maxDelayMs });
  assertOneOf(`${name}.mode`, value.mode, DEDUP_MODES);
  return { key: value.key, ttlMs: value.ttlMs, mode: value.mode };
}

function checkLimit(name: string, value: unknown): number {
  assertInteger(name, value, { min: 1, max: MAX_LIMIT });
  return value;
}

/** A checked `rateLimit` option. */
function checkRateLimit(name: string, value: RateLimitOptions | undefined): RateLimitOptions | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError(name, 'must be { limit, windowMs }');
  assertOptions(name, value, RATE_LIMIT_OPTIONS);
  const limit = checkLimit(`${name}.limit`, value.limit);
  assertInteger(`${name}.windowMs`, value.windowMs, { min: 1, max: LIMITS.maxDelayMs });
  return { limit, windowMs: value.windowMs };
}

/** An optional boolean option, false when left out. */
function checkFlag(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(name, 'must be a boolean');
  return value;
}

/** A lease in whole ms, 1 ms to a day. */
function checkLease(name: string, value: unknown): number {
  if (Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= LIMITS.maxLeaseMs) return value as number;
  return durationMs(name, value, { min: 1, max: LIMITS.maxLeaseMs, integer: true });
}

/** A job id or request lane: 1 to 1024 UTF-8 bytes. */
function checkId(name: string, value: unknown): asserts value is string {
  assertByteLength(name, value, LIMITS.maxIdBytes);
}

/** The name of a push's options in messages: `options`, `template`, or `jobs[i]` for a bulk's job `i`. */
function pushName(where: string | number): string {
  return typeof where === 'number' ? `jobs[${where}]` : where;
}

/** The name of a push's data in messages: `data` for `push`, else `<options name>.data`. */
function dataName(where: string | number): string {
  return where === 'options' ? 'data' : `${pushName(where)}.data`;
}

/** What `assertOptions(…, value, allowed, false)` accepts, without building a key list or a name. */
function hasOnlyKeys(value: unknown, allowed: readonly string[]): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  for (const key in value) if (Object.hasOwn(value, key) && !allowed.includes(key)) return false;
  return true;
}

/** Text `assertByteLength` accepts whatever its characters (at most 3 UTF-8 bytes per UTF-16 unit), without a name. */
function fitsBytes(value: unknown, maxBytes: number): boolean {
  return typeof value === 'string' && value.length > 0 && value.length * 3 <= maxBytes && value.isWellFormed();
}

/** An integer `assertInteger` accepts within ±`max`, without a name. */
function isIntegerIn(value: unknown, max: number): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= -max && value <= max;
}

/** Checks an optional request. */
function checkRequest(name: string, value: RequestId | undefined): void {
  if (value === undefined || isRequest(value)) return;
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError(name, 'must be { lane, seq }');
  assertOptions(name, value, REQUEST_OPTIONS);
  checkId(`${name}.lane`, value.lane);
  assertInteger(`${name}.seq`, value.seq, { min: 0 });
}

/** What `checkRequest` accepts, without building a message. */
function isRequest(value: RequestId): boolean {
  return hasOnlyKeys(value, REQUEST_OPTIONS) && fitsBytes(value.lane, LIMITS.maxIdBytes) && Number.isSafeInteger(value.seq) && value.seq >= 0;
}

/** What `checkJob` accepts, without building a message. */
function isJob(job: JobLease): boolean {
  return (
    job !== null &&
    typeof job === 'object' &&
    typeof job.id === 'string' &&
    job.id.length > 0 &&
    job.id.length <= LIMITS.maxIdBytes &&
    job.id.isWellFormed() &&
    typeof job.leaseToken === 'string' &&
    job.leaseToken.length > 0 &&
    job.leaseToken.length <= 64
  );
}

function checkCount(name: string, value: unknown, min: number): number {
  if (Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= LIMITS.maxBatch) return value as number;
  assertInteger(name, value, { min, max: LIMITS.maxBatch });
  return value;
}

// Not a type guard on purpose: narrowing a readonly array with Array.isArray gives any[].
function checkArray(name: string, value: unknown): void {
  if (!Array.isArray(value)) throw new InvalidArgumentError(name, 'must be an array');
}

/** Cuts text to at most `max` UTF-8 bytes without splitting a character. */
function cutUtf8(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let cut = text.slice(0, max);
  while (Buffer.byteLength(cut) > max) cut = cut.slice(0, -1);
  return cut;
}

/**
 * A job queue in Redis: priorities, delays, leases, retries with backoff and a dead letter set, all in one
 * Lua script. Every key of a queue shares the queue name's hash tag, so one queue lives on one cluster
 * shard. Times come from the server's clock.
 */
export class JobQueue<T = unknown, R = unknown> {
  /** The seed's four script keys: waiting, processing, failed, dead. */
  readonly keys: readonly string[];
  /** The stream `QueueEvents` reads. */
  readonly eventsKey: string;
  /** `current_time` with this instance's events and retention (see the script's POLICY). */
  private readonly clock: string;
  private readonly results: Codec<R>;
  private readonly makeJob: JobFactory<T>;
  private watcher: FinishWatcher<R> | undefined;
  /** Every key the script is given: the four, then the ones it would otherwise derive (see `declaredKeys`). */
  private readonly scriptKeys: readonly string[];
  /** The list idle workers block on (`BLPOP`). */
  readonly wakeKey: string;
  private readonly scripts: LuaScriptManager;
  /** Sends the `add` calls of one tick in one PUSHN. */
  private readonly pushes: TickBatcher<PushSpec, PushResult>;
  private readonly script: RegisteredScript;
  private readonly maxRetries: number;
  private readonly backoff: Required<BackoffOptions>;
  /** The retry policy argument of jobs pushed with the queue's defaults. */
  private readonly policy: string;
  /** The codec for every read, past any trace context stored in front of the data. */
  private readonly codec: Codec<T>;
  /** The codec for leased jobs: keeps the trace context for the job factory. */
  private readonly leases: Codec<T>;
  private warned = false;
  /** The key lists of recent request lanes: built once per lane, not per call (a worker reuses its lanes). */
  private readonly laneKeys = new Map<string, readonly string[]>();
  /** Records the queue's name in the prefix's registry on use (at most once a minute). */
  private readonly registry: NameRecorder;
  /** Default lease for `pop`, in ms. */
  readonly leaseMs: number;
  /** Deadline of every call to Redis, in ms. */
  readonly timeoutMs: number;

  constructor(
    /** The client every call goes through. */
    readonly redis: RedisClient,
    /** The queue's name (its hash tag). */
    readonly name: string,
    options: JobQueueOptions<T> = {},
  ) {
    assertRedisClient('redis', redis);
    assertByteLength('name', name, LIMITS.maxNameBytes);
    assertOptions('options', options, QUEUE_OPTIONS);
    this.keys = Object.freeze(new KeySpace('queue', options.prefix).keys(name, SEED_SUFFIXES, 'name'));
    this.registry = new NameRecorder(redis, registryKey(options.prefix ?? DEFAULT_PREFIX, REGISTRY_KIND));
    const declared = declaredKeys(this.keys);
    this.scriptKeys = Object.freeze(declared.keys);
    this.wakeKey = declared.wakeKey;
    this.eventsKey = declared.eventsKey;
    const events = options.events ?? true;
    if (typeof events !== 'boolean') throw new InvalidArgumentError('options.events', 'must be a boolean');
    const eventsMaxLen = options.eventsMaxLen ?? 10_000;
    assertInteger('options.eventsMaxLen', eventsMaxLen, { min: 1, max: LIMITS.maxEventsLen });
    this.clock = policyClock({
      events,
      eventsMaxLen,
      completed: checkKeep('options.removeOnComplete', options.removeOnComplete, DEFAULT_KEEP_COMPLETED),
      dead: checkKeep('options.removeOnDead', options.removeOnDead, DEFAULT_KEEP_DEAD),
      rateLimit: checkRateLimit('options.rateLimit', options.rateLimit),
      globalConcurrency: options.globalConcurrency === undefined ? undefined : checkLimit('options.globalConcurrency', options.globalConcurrency),
    });
    this.maxRetries = checkRetries('options.maxRetries', options.maxRetries, 3);
    this.backoff = checkBackoff('options.backoff', options.backoff, DEFAULT_BACKOFF);
    this.policy = policyArg(this.maxRetries, this.backoff);
    this.leaseMs = checkLease('options.leaseMs', options.leaseMs ?? 30_000);
    this.timeoutMs = options.timeoutMs ?? 2000;
    assertTimeoutMs('options.timeoutMs', this.timeoutMs);
    const codec = options.codec ?? (defaultCodec as Codec<T>);
    if (codec === null || typeof codec !== 'object' || typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
      throw new InvalidArgumentError('options.codec', 'must have encode(value) and decode(text) functions');
    }
    this.codec = dataCodec(codec);
    this.leases = leaseCodec(codec);
    // Return values go through the same codec (the default one takes any value).
    this.results = codec as unknown as Codec<R>;
    this.makeJob = (id, data, priority, attempts, maxRetries, token) => {
      if (!(data instanceof Carried)) return new LeasedJob(this as unknown as JobQueue<T, never>, id, data, priority, attempts, maxRetries, token);
      const job = new LeasedJob(this as unknown as JobQueue<T, never>, id, data.data as T, priority, attempts, maxRetries, token);
      Object.defineProperty(job, 'traceContext', { value: data.traceContext, enumerable: true });
      return job;
    };
    this.scripts = new LuaScriptManager(redis);
    // Calls pass 15 keys, 16 with a request, more with dedup keys; the seed's raw callers pass 4.
    this.script = this.scripts.registerScript(scriptName('queue', 'job_queue'), JOB_QUEUE_LUA);
    this.pushes = new TickBatcher(
      (jobs) => this.run(encodePushMany(jobs), pushKeys(this.scriptKeys, jobs)).then((reply) => decodePushMany(jobs, reply)),
      LIMITS.maxBatch,
    );
  }

  /**
   * The queues used under a prefix within the last day, most recently used first, from the registry (one
   * key, no keyspace scan; on a cluster it lives in one slot). Every queue records its name when it calls
   * Redis (at most one write a minute). Options: `prefix`, `limit` (1 to 1000, default 100), `offset`,
   * `timeoutMs` (default 1000).
   */
  static list(redis: RedisClient, options: RegistryListOptions = {}): Promise<RegistryEntry[]> {
    return listRegistered(redis, REGISTRY_KIND, options);
  }

  /** Queues one job and resolves with its id (also when the id already existed; see `add`). */
  async push(data: T, options: PushOptions = {}): Promise<string> {
    return (await this.add(data, options)).id;
  }

  /**
   * Like `push`, and says whether the job was new. Pushes made in the same tick share one script call
   * (in call order), the way a pipeline would, with one result each.
   */
  add(data: T, options: PushOptions = {}): Promise<PushResult> {
    if (!PUSH.active) return this.addNow(data, options);
    const context = () => ({ name: this.name, key: options?.id, traceContext: options?.traceContext });
    return PUSH.run(context, (ctx) => this.addNow(data, carrying(options, ctx)), settlePush);
  }

  /** Not `async`: the batcher's promise is the push's, with no second one wrapped around it per push. */
  private addNow(data: T, options: PushOptions): Promise<PushResult> {
    let spec: PushSpec;
    try {
      spec = this.pushSpec('options', data, options, PUSH_OPTIONS);
    } catch (err) {
      // Rejects with what the checks threw, as an async function would (an InvalidArgumentError).
      const error = err as Error;
      return Promise.reject(error);
    }
    return this.pushes.add(spec);
  }

  /** Queues many jobs in one round trip per 1000; resolves with their ids in order. */
  async pushBulk(jobs: readonly BulkJob<T>[]): Promise<string[]> {
    return (await this.addBulk(jobs)).map((r) => r.id);
  }

  /** Like `pushBulk`, and says per job whether it was new. */
  addBulk(jobs: readonly BulkJob<T>[]): Promise<PushResult[]> {
    if (!PUSH_BULK.active) return this.addBulkNow(jobs);
    const context = () => ({ name: this.name, count: Array.isArray(jobs) ? jobs.length : undefined });
    const carried = (ctx: OperationContext | undefined) => (ctx?.traceContext && Array.isArray(jobs) ? (jobs as readonly BulkJob<T>[]).map((job) => carrying(job, ctx)) : jobs);
    return PUSH_BULK.run(context, (ctx) => this.addBulkNow(carried(ctx)));
  }

  private async addBulkNow(jobs: readonly BulkJob<T>[]): Promise<PushResult[]> {
    checkArray('jobs', jobs);
    // All checked before the first call.
    const specs = jobs.map((job, i) => this.pushSpec(i, job.data, job, BULK_JOB_KEYS));
    const out: PushResult[] = [];
    for (let start = 0; start < specs.length; start += LIMITS.maxBatch) {
      const chunk = specs.slice(start, start + LIMITS.maxBatch);
      out.push(...decodePushMany(chunk, await this.run(encodePushMany(chunk), pushKeys(this.scriptKeys, chunk))));
    }
    return out;
  }

  /** Leases up to `count` (1–1000) jobs, highest priority first. An empty array when none is ready. */
  async pop(count = 1, options: PopOptions = {}): Promise<Job<T>[]> {
    return (await this.fetch(count, options)).jobs;
  }

  /** `pop` that also tells how long until more work may be ready (for custom workers). */
  fetch(count = 1, options: PopOptions = {}): Promise<FetchResult<T>> {
    if (!FETCH.active) return this.fetchNow(count, options);
    return FETCH.run(() => ({ name: this.name }), () => this.fetchNow(count, options), settleFetch);
  }

  private async fetchNow(count: number, options: PopOptions): Promise<FetchResult<T>> {
    checkCount('count', count, 1);
    if (!hasOnlyKeys(options, POP_OPTIONS)) assertOptions('options', options, POP_OPTIONS);
    const leaseMs = checkLease('options.leaseMs', options.leaseMs ?? this.leaseMs);
    const { request } = options;
    checkRequest('options.request', request);
    const leased = decodeFetch(await this.run(encodeFetch(count, leaseMs, request), this.requestKeys(request)), this.leases, this.makeJob);
    // Almost every lease has neither: no await then, so the jobs reach the caller without extra ticks.
    const errors = leased.undecodable === undefined ? undefined : await this.deadLetterUndecodable(leased.undecodable);
    if (leased.jobs.some(fromScheduler)) await this.advanceSchedulers(leased.jobs);
    return errors === undefined ? { waitMs: leased.waitMs, jobs: leased.jobs } : { waitMs: leased.waitMs, jobs: leased.jobs, errors };
  }

  /**
   * Completes the job, keeping `returnValue` with it (see `removeOnComplete`): true, or false when its lease
   * was lost (reclaimed, or already completed).
   */
  complete(job: JobLease, returnValue?: R): Promise<boolean> {
    if (!COMPLETE.active) return this.completeNow(job, returnValue);
    return COMPLETE.run(() => ({ name: this.name, key: job?.id }), () => this.completeNow(job, returnValue), settleHeld);
  }

  private async completeNow(job: JobLease, returnValue?: R): Promise<boolean> {
    this.checkJob('job', job);
    return decodeHeld(await this.run(encodeComplete(job, this.encodeResult('returnValue', returnValue))));
  }

  /**
   * Completes up to 1000 jobs and leases up to `fetch` more in one round trip (what `Worker` does after
   * each burst of finished jobs).
   */
  ack(jobs: readonly JobLease[], options: AckOptions<R> = {}): Promise<AckResult<T>> {
    if (!ACK.active) return this.ackNow(jobs, options);
    return ACK.run(() => ({ name: this.name, count: jobs?.length }), () => this.ackNow(jobs, options), settleAck);
  }

  private async ackNow(jobs: readonly JobLease[], options: AckOptions<R>): Promise<AckResult<T>> {
    checkArray('jobs', jobs);
    checkCount('jobs.length', jobs.length, 0);
    if (!hasOnlyKeys(options, ACK_OPTIONS)) assertOptions('options', options, ACK_OPTIONS);
    const fetch = checkCount('options.fetch', options.fetch ?? 0, 0);
    const leaseMs = checkLease('options.leaseMs', options.leaseMs ?? this.leaseMs);
    this.checkJobs(jobs);
    const { request, returnValues } = options;
    checkRequest('options.request', request);
    let values: (string | undefined)[] | undefined;
    if (returnValues !== undefined) {
      checkArray('options.returnValues', returnValues);
      if (returnValues.length !== jobs.length) throw new InvalidArgumentError('options.returnValues', `must have one entry per job (${jobs.length})`);
      values = returnValues.map((v, i) => this.encodeResult(`options.returnValues[${i}]`, v));
    }
    const reply = await this.run(encodeAck(jobs, fetch, leaseMs, request, values), this.requestKeys(request));
    const acked = decodeAck(reply, this.leases, this.makeJob);
    // Almost every lease has neither: no await then, so the jobs reach the caller without extra ticks.
    const errors = acked.undecodable === undefined ? undefined : await this.deadLetterUndecodable(acked.undecodable);
    if (acked.jobs.some(fromScheduler)) await this.advanceSchedulers(acked.jobs);
    const result = { completed: acked.completed, waitMs: acked.waitMs, jobs: acked.jobs };
    return errors === undefined ? result : { ...result, errors };
  }

  /**
   * Records a failure: `retry` (after the backoff stored with the job), `dead` (no attempts left, or the
   * job's record was lost) or `lost` (lease lost).
   */
  fail(job: JobLease, error: unknown): Promise<FailOutcome> {
    if (!FAIL.active) return this.failNow(job, error);
    return FAIL.run(() => ({ name: this.name, key: job?.id }), () => this.failNow(job, error), settleFail);
  }

  private async failNow(job: JobLease, error: unknown): Promise<FailOutcome> {
    this.checkJob('job', job);
    const message = cutUtf8(error instanceof Error ? error.message || error.name : String(error), LIMITS.maxErrorBytes);
    return decodeFail(await this.run(encodeFail(job, message))).outcome;
  }

  /** Renews the leases of jobs still held (1–1000 a call): per job, true when renewed. */
  extend(jobs: readonly JobLease[], leaseMs: number = this.leaseMs): Promise<boolean[]> {
    if (!EXTEND.active) return this.extendNow(jobs, leaseMs);
    return EXTEND.run(() => ({ name: this.name, count: jobs?.length }), () => this.extendNow(jobs, leaseMs));
  }

  private async extendNow(jobs: readonly JobLease[], leaseMs: number): Promise<boolean[]> {
    checkArray('jobs', jobs);
    checkCount('jobs.length', jobs.length, 1);
    checkLease('leaseMs', leaseMs);
    this.checkJobs(jobs);
    return decodeExtend(await this.run(encodeExtend(jobs, leaseMs)));
  }

  /**
   * Gives a leased job back to the queue without counting its attempt: true, or false if the lease was lost.
   * With `pauseMs` (1 ms to a day; what a `RateLimitedError` does) no process leases any job of the queue
   * for that long.
   */
  release(job: JobLease, options: { pauseMs?: number } = {}): Promise<boolean> {
    if (!RELEASE.active) return this.releaseNow(job, options);
    return RELEASE.run(() => ({ name: this.name, key: job?.id, outcome: 'released' }), () => this.releaseNow(job, options), settleHeld);
  }

  private async releaseNow(job: JobLease, options: { pauseMs?: number }): Promise<boolean> {
    this.checkJob('job', job);
    assertOptions('options', options, ['pauseMs']);
    const { pauseMs } = options;
    if (pauseMs !== undefined) assertInteger('options.pauseMs', pauseMs, { min: 1, max: LIMITS.maxLeaseMs });
    return decodeHeld(await this.run(encodeRelease(job, pauseMs)));
  }

  /** Counts per state, in O(1). */
  async stats(): Promise<QueueStats> {
    return decodeStats(await this.run(encodeStats()));
  }

  /**
   * Moves every dead job back to the queue with its attempts reset; resolves with how many moved. A job
   * whose record was lost stays dead (there is nothing to run).
   */
  async retryDead(): Promise<number> {
    let total = 0;
    let skip = 0;
    // The dead set is capped (10 000), so this ends; each call looks at most at 1000.
    for (;;) {
      const { moved, seen } = decodeRetryDead(await this.run(encodeRetryDead(LIMITS.maxBatch, skip)));
      total += moved;
      skip += seen - moved;
      if (seen < LIMITS.maxBatch) return total;
    }
  }

  /** The most recent dead jobs (at most `limit`, 1–1000), newest first, with the reason each died. */
  async deadJobs(limit = 100): Promise<DeadJob<T>[]> {
    checkCount('limit', limit, 1);
    return decodeDead(await this.run(encodeDead(limit)), this.codec);
  }

  /** The job with this id, or undefined when no job has it (never pushed, removed, or past retention). */
  async getJob(id: string): Promise<JobInfo<T, R> | undefined> {
    checkId('id', id);
    return decodeGetJob(await this.run(encodeGetJob(id)), this.codec, this.results).job;
  }

  /**
   * A page of the jobs in `state` (default offset 0, limit 50, at most 1000), in the state's order:
   * waiting: the ungrouped jobs in the order they will run, then the jobs waiting in groups, group by group
   * in the bytewise order of the group names, FIFO within a group (groups are served round robin, so
   * across groups this is not the run order); delayed: delayed pushes by ready time, then jobs waiting for
   * a retry by retry time; active by lease deadline; completed and dead newest first. A waiting page that
   * passes more than 1000 groups takes one bounded call per 1000 groups, so it is not one snapshot.
   */
  async getJobs(state: JobState, page: { offset?: number; limit?: number } = {}): Promise<JobInfo<T, R>[]> {
    assertOneOf('state', state, JOB_STATES);
    const { offset, limit } = checkPage('page', page, 50);
    let reply = await this.run(encodeGetJobs(state, offset, limit));
    const jobs = decodeGetJobs(reply, this.codec, this.results);
    // A waiting page past many groups takes several calls, each bounded (not one snapshot: see the docs).
    for (let next = decodeGetJobsNext(reply); next !== undefined && jobs.length < limit; next = decodeGetJobsNext(reply)) {
      reply = await this.run(encodeGetJobs(state, next.offset, limit - jobs.length, next.afterGroup));
      jobs.push(...decodeGetJobs(reply, this.codec, this.results));
    }
    return jobs;
  }

  /** A page of the job's kept log lines (its last 100), oldest first; [] for an unknown job. */
  async getLogs(id: string, page: { offset?: number; limit?: number } = {}): Promise<string[]> {
    checkId('id', id);
    const { offset, limit } = checkPage('page', page, 100);
    return decodeLogs(await this.run(encodeLogs(id, offset, limit)));
  }

  /** Appends a line (at most 1024 bytes) to a job's log: the number of lines logged so far, 0 for an unknown job. */
  async log(id: string, line: string): Promise<number> {
    checkId('id', id);
    if (typeof line !== 'string') throw new InvalidArgumentError('line', 'must be a string');
    if (Buffer.byteLength(line) > LIMITS.maxLogLineBytes) throw new InvalidArgumentError('line', `must be at most ${LIMITS.maxLogLineBytes} bytes`);
    if (!line.isWellFormed()) throw new InvalidArgumentError('line', 'must be well-formed Unicode');
    return decodeCount(await this.run(encodeLog(id, line)));
  }

  /** Stores a leased job's progress and emits `progress`: true, or false when the lease was lost. */
  async updateProgress(job: JobLease, progress: JobProgress): Promise<boolean> {
    this.checkJob('job', job);
    return decodeHeld(await this.run(encodeProgress(job, progressText(progress))));
  }

  /** Removes a job and all kept of it: true, false when unknown or active (unless `force`: its worker loses it). */
  async remove(id: string, options: { force?: boolean } = {}): Promise<boolean> {
    checkId('id', id);
    assertOptions('options', options, ['force']);
    return decodeHeld(await this.run(encodeRemove(id, checkFlag('options.force', options.force))));
  }

  /** Makes a delayed job (or one waiting for its retry) ready now: true, or false when it was not delayed. */
  async promote(id: string): Promise<boolean> {
    checkId('id', id);
    return decodeHeld(await this.run(encodePromote(id)));
  }

  /** Moves one dead job back to waiting with its attempts reset: true, or false when it was not dead. */
  async retryJob(id: string): Promise<boolean> {
    checkId('id', id);
    return decodeHeld(await this.run(encodeRetryJob(id)));
  }

  /** Pauses the queue for every process: workers lease nothing more (running jobs finish) until `resume`. */
  async pause(): Promise<void> {
    await this.run(encodePause(true));
  }

  /** Resumes a paused queue and wakes a blocked worker. */
  async resume(): Promise<void> {
    await this.run(encodePause(false));
  }

  /**
   * Sets a group's options for every process: `concurrency` (default 1) and an optional `rateLimit`; left
   * out, each goes back to its default. Kept while the group is idle (one small field per group).
   */
  async setGroupOptions(group: string, options: GroupOptions): Promise<void> {
    assertByteLength('group', group, LIMITS.maxGroupBytes);
    assertOptions('options', options, GROUP_OPTIONS);
    const concurrency = options.concurrency ?? 1;
    checkLimit('options.concurrency', concurrency);
    const rateLimit = checkRateLimit('options.rateLimit', options.rateLimit);
    await this.run(encodeGroupOptions(group, { concurrency, rateLimit: rateLimit?.limit ?? 0, rateWindowMs: rateLimit?.windowMs ?? 0 }));
  }

  /** Pauses one group in every process: its jobs wait (pushes still queue), none is leased until `resumeGroup`. */
  async pauseGroup(group: string): Promise<void> {
    assertByteLength('group', group, LIMITS.maxGroupBytes);
    await this.run(encodeGroupPause(group, true));
  }

  /** Resumes a paused group and wakes a blocked worker. */
  async resumeGroup(group: string): Promise<void> {
    assertByteLength('group', group, LIMITS.maxGroupBytes);
    await this.run(encodeGroupPause(group, false));
  }

  /**
   * Creates or changes the scheduler `id` (1–256 bytes): a job from `template` at each occurrence of
   * `repeat` (`{ cron, tz? }` or `{ everyMs }`). Idempotent: any number of processes may upsert the same
   * one at once, and each tick makes exactly one job. Resolves with its next run (ms since the epoch).
   */
  async upsertScheduler(id: string, repeat: RepeatOptions, template: SchedulerTemplate<T>): Promise<SchedulerUpserted> {
    assertByteLength('id', id, MAX_SCHEDULER_ID_BYTES);
    const rule = checkRepeat('repeat', repeat);
    if (template === null || typeof template !== 'object' || !('data' in template)) throw new InvalidArgumentError('template', 'must be { data, ...options }');
    const { data, ...options } = template;
    const job = this.pushSpec('template', data, options, TEMPLATE_OPTIONS);
    const next = nextRunAt(rule, Date.now())!;
    const reply = decodeSchedule(await this.run(encodeSchedule(id, next, repeatSpec(rule), job)));
    return { id, nextRunAt: reply.nextRunAt };
  }

  /** Every scheduler of the queue (read in pages of about 1000). */
  async getSchedulers(): Promise<SchedulerInfo<T>[]> {
    const out: SchedulerInfo<T>[] = [];
    let cursor = '0';
    do {
      const page = decodeSchedulers(await this.run(encodeSchedulers(cursor)));
      cursor = page.cursor;
      for (const stored of page.schedulers) out.push(this.schedulerInfo(stored));
    } while (cursor !== '0');
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Removes a scheduler and its pending job: true, or false when there was none. A job already due still runs. */
  async removeScheduler(id: string): Promise<boolean> {
    assertByteLength('id', id, MAX_SCHEDULER_ID_BYTES);
    return decodeHeld(await this.run(encodeUnschedule(id)));
  }

  private schedulerInfo(stored: StoredScheduler): SchedulerInfo<T> {
    const rule = parseSpec(stored.spec) ?? {};
    const [maxRetries, baseMs, maxMs] = stored.policy.split(',').map(Number);
    const template: SchedulerInfo<T>['template'] = { data: decodeOr(this.codec, stored.text), priority: stored.priority, maxRetries: maxRetries! };
    if (baseMs !== undefined) template.backoff = { baseMs, maxMs: maxMs! };
    if (stored.group !== '') template.group = stored.group;
    return { id: stored.id, ...rule, nextRunAt: stored.nextRunAt, template };
  }

  /**
   * Leased jobs of schedulers move their schedulers on to the next occurrence after their tick, or, when the
   * occurrence after that one has passed too, to the first after now: ticks missed while nothing ran make
   * no job (the late one is the one catch-up), while a lease late by less than one period (a busy machine)
   * still makes the next tick's job, due at once. Done
   * at every lease of the job, so a worker that dies first leaves it to the next lease; a repeat is
   * harmless (the script moves a scheduler on only from the tick it is at).
   */
  private async advanceSchedulers(jobs: readonly Job<T>[]): Promise<void> {
    for (const job of jobs) {
      const tick = repeatJob(job.id);
      if (tick === undefined) continue;
      const stored = decodeScheduler(tick.id, await this.run(encodeScheduler(tick.id)));
      const rule = stored === undefined ? undefined : parseSpec(stored.spec);
      if (stored?.nextRunAt !== tick.runMs || rule === undefined) continue;
      const now = Date.now();
      const following = nextRunAt(rule, tick.runMs);
      const next = following !== undefined && (nextRunAt(rule, following) ?? Infinity) > now ? following : nextRunAt(rule, Math.max(tick.runMs, now));
      if (next !== undefined) await this.run(encodeScheduleNext(tick.id, tick.runMs, next));
    }
  }

  /** Whether the queue is paused. */
  async isPaused(): Promise<boolean> {
    return decodeHeld(await this.run(encodePaused()));
  }

  /** Removes every waiting job (and with `delayed`, delayed ones and those waiting for a retry): how many. */
  async drain(options: { delayed?: boolean } = {}): Promise<number> {
    assertOptions('options', options, ['delayed']);
    const delayed = checkFlag('options.delayed', options.delayed);
    let total = 0;
    for (;;) {
      const { removed, more } = decodeDrain(await this.run(encodeDrain(delayed, LIMITS.maxPage)));
      total += removed;
      if (!more) return total;
    }
  }

  /**
   * Removes up to `limit` (1–1000, default 1000) completed or dead jobs that finished at least
   * `olderThanMs` ago (default 0), oldest first: how many.
   */
  async clean(state: 'completed' | 'dead', options: { olderThanMs?: number; limit?: number } = {}): Promise<number> {
    assertOneOf('state', state, FINISHED_STATES);
    assertOptions('options', options, ['olderThanMs', 'limit']);
    const olderThanMs = options.olderThanMs ?? 0;
    assertInteger('options.olderThanMs', olderThanMs, { min: 0, max: 1e13 });
    const limit = options.limit ?? LIMITS.maxPage;
    assertInteger('options.limit', limit, { min: 1, max: LIMITS.maxPage });
    return decodeCount(await this.run(encodeClean(state, olderThanMs, limit)));
  }

  /**
   * Deletes every key of the queue (jobs in all states, events, counters): true, or false when jobs are
   * active and `force` is not set (nothing deleted).
   */
  async obliterate(options: { force?: boolean } = {}): Promise<boolean> {
    assertOptions('options', options, ['force']);
    const force = checkFlag('options.force', options.force);
    for (;;) {
      const outcome = decodeObliterate(await this.run(encodeObliterate(force)));
      if (outcome !== 'more') return outcome === 'done';
    }
  }

  /**
   * Resolves with the job's return value once it completes; rejects with `JobFailedError` when it dies,
   * `JobNotFoundError` when no job has the id (or it is removed), `RedisTimeoutError` after `timeoutMs`
   * (default 30 000). Wakes on the job's event (one blocking `XREAD` connection per queue while anyone
   * waits), not on a poll; needs events on in the processes that finish the job.
   */
  async waitUntilFinished(id: string, options: { timeoutMs?: number } = {}): Promise<R> {
    checkId('id', id);
    assertOptions('options', options, ['timeoutMs']);
    const timeoutMs = options.timeoutMs ?? 30_000;
    assertTimeoutMs('options.timeoutMs', timeoutMs);
    const watcher = (this.watcher ??= new FinishWatcher(this.redis, this.eventsKey, this.results));
    return await new Promise<R>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        unwatch();
        fn();
      };
      const onFinished = (job: { state: JobState | 'removed'; returnValue?: R | undefined; failedReason?: string | undefined }): void => {
        if (job.state === 'completed') settle(() => resolve(job.returnValue as R));
        else if (job.state === 'dead') settle(() => reject(new JobFailedError(id, job.failedReason ?? '')));
        else if (job.state === 'removed') settle(() => reject(new JobNotFoundError(id)));
      };
      // Watching starts before the lookup, so a finish after the lookup is always seen.
      const unwatch = watcher.watch(id, onFinished);
      const timer = setTimeout(() => settle(() => reject(new RedisTimeoutError(`waitUntilFinished("${id}")`, timeoutMs))), timeoutMs);
      const check = async (again: boolean): Promise<void> => {
        const { lastEventId, job } = decodeGetJob(await this.run(encodeGetJob(id)), this.codec, this.results);
        if (job === undefined) return onFinished({ state: 'removed' });
        onFinished(job);
        // A reader already running from a later event may have passed this job's: look again, once (the
        // second lookup comes after the reader started, so it has seen whatever the reader skipped).
        if (!settled && !watcher.start(lastEventId) && again) await check(false);
      };
      check(true).catch((err: unknown) => settle(() => reject(err instanceof Error ? err : new Error(String(err)))));
    });
  }

  /** The keys of a `fetch`/`ack` call with `request` (see `requestKeys`), frozen and kept per lane. */
  private requestKeys(request: RequestId | undefined): readonly string[] {
    if (request === undefined) return this.scriptKeys;
    let keys = this.laneKeys.get(request.lane);
    if (keys === undefined) {
      if (this.laneKeys.size >= MAX_LANE_KEYS) this.laneKeys.clear();
      keys = Object.freeze(requestKeys(this.scriptKeys, request));
      this.laneKeys.set(request.lane, keys);
    }
    return keys;
  }

  private run(args: ScriptArg[], keys: readonly string[] = this.scriptKeys): Promise<unknown> {
    this.registry.record(this.name);
    if (!this.warned) {
      this.warned = true;
      warnIfEvicting(this.redis, '@cyredis/queue', EVICTION_RISK);
    }
    return this.scripts.executeScript(this.script, { keys, args: withPolicy(args, this.clock), timeoutMs: this.timeoutMs });
  }

  /**
   * A return value as the codec stores it; undefined stores nothing. Throws `InvalidArgumentError` for a
   * value the codec refuses or over 1 MiB. @internal (the `Worker` checks its handlers' values with it)
   */
  encodeResult(name: string, value: R | undefined): string | undefined {
    if (value === undefined) return undefined;
    let text: unknown;
    try {
      text = this.results.encode(value);
    } catch (err) {
      throw new InvalidArgumentError(name, `cannot be encoded: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof text !== 'string') throw new InvalidArgumentError(name, `the codec must encode it to a string, got ${typeof text}`);
    if (text.length > LIMITS.maxDataBytes / 3 && Buffer.byteLength(text) > LIMITS.maxDataBytes) {
      throw new InvalidArgumentError(name, `must encode to at most ${LIMITS.maxDataBytes} bytes`);
    }
    return text;
  }

  /**
   * Checks one push and encodes its data. `where` names its options in messages (`options`, `template`, or
   * the index of a bulk's job, `jobs[i]`); names are built only for a message, so a plain job builds none.
   */
  private pushSpec(where: string | number, data: T, options: PushOptions, allowed: readonly string[]): PushSpec {
    if (!hasOnlyKeys(options, allowed)) assertOptions(pushName(where), options, allowed, false);
    // No id asks the script for a short generated one.
    const id = options.id;
    if (id !== undefined && !fitsBytes(id, LIMITS.maxIdBytes)) checkId(`${pushName(where)}.id`, id);
    const given = options.priority;
    const priority = given === undefined ? 0 : isIntegerIn(given, LIMITS.maxPriority) ? given : checkPriority(`${pushName(where)}.priority`, given);
    let policy = this.policy;
    if (options.maxRetries !== undefined || options.backoff !== undefined) {
      const name = pushName(where);
      const maxRetries = checkRetries(`${name}.maxRetries`, options.maxRetries, this.maxRetries);
      policy = policyArg(maxRetries, checkBackoff(`${name}.backoff`, options.backoff, this.backoff));
    }
    const delayMs = options.delayMs ?? 0;
    if (!(typeof delayMs === 'number' && delayMs >= 0 && delayMs <= LIMITS.maxDelayMs)) {
      assertFiniteNumber(`${pushName(where)}.delayMs`, delayMs, { min: 0, max: LIMITS.maxDelayMs });
    }
    const dedup = options.dedup === undefined ? undefined : checkDedup(`${pushName(where)}.dedup`, options.dedup);
    const group = options.group;
    if (group !== undefined && !fitsBytes(group, LIMITS.maxGroupBytes)) assertByteLength(`${pushName(where)}.group`, group, LIMITS.maxGroupBytes);
    if (dedup?.mode === 'debounce' && delayMs !== 0) {
      throw new InvalidArgumentError(`${pushName(where)}.delayMs`, 'cannot be combined with a debounce (the job waits its ttlMs)');
    }
    let text: unknown;
    try {
      text = this.codec.encode(data);
    } catch (err) {
      // The codec names the value `value`; the caller knows it as `dataName`.
      const detail = err instanceof InvalidArgumentError ? err.message.slice(err.argument.length + 2) : err instanceof Error ? err.message : String(err);
      throw new InvalidArgumentError(dataName(where), `cannot be encoded: ${detail}`);
    }
    if (typeof text !== 'string') throw new InvalidArgumentError(dataName(where), `the codec must encode it to a string, got ${typeof text}`);
    // The trace context is stored in front of the data and counts in its size.
    const stored = options.traceContext === undefined ? text : withTraceContext(text, checkTraceContext(`${pushName(where)}.traceContext`, options.traceContext));
    if (stored.length > LIMITS.maxDataBytes / 3 && Buffer.byteLength(stored) > LIMITS.maxDataBytes) {
      throw new InvalidArgumentError(dataName(where), `must encode to at most ${LIMITS.maxDataBytes} bytes`);
    }
    return { id, text: stored, priority, policy, delaySeconds: delayMs / 1000, dedup, group };
  }

  private checkJob(name: string, job: JobLease): void {
    if (job === null || typeof job !== 'object') throw new InvalidArgumentError(name, 'must be a job returned by pop');
    assertNonEmptyString(`${name}.id`, job.id, LIMITS.maxIdBytes);
    assertNonEmptyString(`${name}.leaseToken`, job.leaseToken, 64);
  }

  /** Checks the jobs of `ack`/`extend`; the name is built only for a bad job (a string each would cost). */
  private checkJobs(jobs: readonly JobLease[]): void {
    for (let i = 0; i < jobs.length; i++) if (!isJob(jobs[i]!)) this.checkJob(`jobs[${i}]`, jobs[i]!);
  }

  /**
   * Dead-letters the leased jobs whose data the codec cannot decode, with the reason, instead of returning
   * them: they could never run, and a caller that cannot see them could not fail them. Resolves with the
   * failures of that, if any.
   */
  private async deadLetterUndecodable(undecodable: readonly UndecodableJob[]): Promise<CyRedisError[] | undefined> {
    const failures: CyRedisError[] = [];
    await Promise.all(
      undecodable.map(({ id, leaseToken, error }) => {
        const reason = cutUtf8(`data cannot be decoded: ${error instanceof Error ? error.message : String(error)}`, LIMITS.maxErrorBytes);
        // Its lease runs out if this fails, and the next pop meets it again.
        return this.run(encodeFail({ id, leaseToken }, reason, true)).catch((err: unknown) => failures.push(deadLetterFailed(id, err)));
      }),
    );
    return failures.length === 0 ? undefined : failures;
  }
}

/** Whether a leased job was made by a scheduler (its lease moves the scheduler on). */
function fromScheduler(job: Job<unknown>): boolean {
  return repeatJob(job.id) !== undefined;
}

/** A failed dead-lettering of job `id`, named as such; an outage stays a `RedisUnavailableError`. */
function deadLetterFailed(id: string, err: unknown): CyRedisError {
  const message = `could not dead-letter job "${id}", whose data cannot be decoded (it comes back when its lease ends): ${err instanceof Error ? err.message : String(err)}`;
  return err instanceof RedisUnavailableError ? new RedisUnavailableError(message, { cause: err }) : new CyRedisError(message, { cause: err });
}
