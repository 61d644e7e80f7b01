// The JobQueue: typed calls over the job_queue.lua script, with the codec, limits and per-call deadline.
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertByteLength,
  assertTimeoutMs,
  assertRedisClient,
  defaultCodec,
  durationMs,
  InvalidArgumentError,
  KeySpace,
  LuaScriptManager,
  readPackageLua,
  scriptName,
  TickBatcher,
  warnIfEvicting,
  type Codec,
  type RedisClient,
  type RegisteredScript,
  type ScriptArg,
} from '@cyredis/core';
import {
  decodeAck,
  decodeDead,
  decodeExtend,
  decodeFail,
  decodeFetch,
  decodeHeld,
  decodePushMany,
  decodeRetryDead,
  decodeStats,
  declaredKeys,
  encodeAck,
  encodeComplete,
  encodeDead,
  encodeExtend,
  encodeFail,
  encodeFetch,
  encodePushMany,
  encodeRelease,
  encodeRetryDead,
  encodeStats,
  requestKeys,
  type LeasedJobs,
  type PushSpec,
} from './protocol.js';

/** The shipped script's source (`lua/job_queue.lua`). */
export const JOB_QUEUE_LUA = readPackageLua(import.meta.url, 'job_queue');

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
});

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
  /** Turns job data into the stored text and back. Default: core's `defaultCodec` (lossless JSON). */
  codec?: Codec<T>;
}

const QUEUE_OPTIONS = ['prefix', 'maxRetries', 'backoff', 'leaseMs', 'timeoutMs', 'codec'] as const;
const BACKOFF_OPTIONS = ['baseMs', 'maxMs'] as const;
const PUSH_OPTIONS = ['id', 'priority', 'delayMs', 'maxRetries', 'backoff'] as const;
const BULK_JOB_KEYS = ['data', ...PUSH_OPTIONS] as const;
const POP_OPTIONS = ['leaseMs', 'request'] as const;
const ACK_OPTIONS = ['leaseMs', 'request', 'fetch'] as const;
/** The script's backoff when a job stores none. */
const DEFAULT_BACKOFF = { baseMs: 1000, maxMs: 60_000 } as const;

/** Options of `push` (and of each job of `pushBulk`). */
export interface PushOptions {
  /**
   * Job id; default a generated decimal one (unique per queue). Pushing an id that is still queued,
   * running, failed or dead is a no-op; a completed job's id can be used again.
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

/** What `fetch` returns. */
export interface FetchResult<T> {
  /** The leased jobs, highest priority first. */
  jobs: Job<T>[];
  /**
   * 0 when the batch came full or jobs still wait (ask again); else ms until the next delayed job, retry or
   * lease deadline; -1 when nothing is scheduled.
   */
  waitMs: number;
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
  /** Jobs completed since the queue was created (a counter; completed jobs are not kept). */
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
const SUFFIXES = ['waiting', 'processing', 'failed', 'dead'] as const;

function checkPriority(name: string, value: unknown): number {
  if (value === undefined) return 0;
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

/** A lease in whole ms, 1 ms to a day. */
function checkLease(name: string, value: unknown): number {
  return durationMs(name, value, { min: 1, max: LIMITS.maxLeaseMs, integer: true });
}

/** A job id or request lane: 1 to 1024 UTF-8 bytes. */
function checkId(name: string, value: unknown): asserts value is string {
  assertByteLength(name, value, LIMITS.maxIdBytes);
}

/** Checks an optional request. */
function checkRequest(name: string, value: RequestId | undefined): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError(name, 'must be { lane, seq }');
  assertOptions(name, value, ['lane', 'seq']);
  checkId(`${name}.lane`, value.lane);
  assertInteger(`${name}.seq`, value.seq, { min: 0 });
}

/** What `checkJob` accepts, without building a message. */
function isJob(job: Job<unknown>): boolean {
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
export class JobQueue<T = unknown> {
  /** The seed's four script keys: waiting, processing, failed, dead. */
  readonly keys: readonly string[];
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
  private readonly codec: Codec<T>;
  private warned = false;
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
    this.keys = Object.freeze(new KeySpace('queue', options.prefix).keys(name, SUFFIXES, 'name'));
    const declared = declaredKeys(this.keys);
    this.scriptKeys = Object.freeze(declared.keys);
    this.wakeKey = declared.wakeKey;
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
    this.codec = codec;
    this.scripts = new LuaScriptManager(redis);
    // Calls pass 9 keys, or 10 with a request; the seed's raw callers pass 4.
    this.script = this.scripts.registerScript(scriptName('queue', 'job_queue'), JOB_QUEUE_LUA);
    this.pushes = new TickBatcher((jobs) => this.run(encodePushMany(jobs)).then((reply) => decodePushMany(jobs, reply)), LIMITS.maxBatch);
  }

  /** Queues one job and resolves with its id (also when the id already existed; see `add`). */
  async push(data: T, options: PushOptions = {}): Promise<string> {
    return (await this.add(data, options)).id;
  }

  /**
   * Like `push`, and says whether the job was new. Pushes made in the same tick share one script call
   * (in call order), the way a pipeline would, with one result each.
   */
  async add(data: T, options: PushOptions = {}): Promise<PushResult> {
    return this.pushes.add(this.pushSpec('options', data, options, PUSH_OPTIONS));
  }

  /** Queues many jobs in one round trip per 1000; resolves with their ids in order. */
  async pushBulk(jobs: readonly BulkJob<T>[]): Promise<string[]> {
    return (await this.addBulk(jobs)).map((r) => r.id);
  }

  /** Like `pushBulk`, and says per job whether it was new. */
  async addBulk(jobs: readonly BulkJob<T>[]): Promise<PushResult[]> {
    checkArray('jobs', jobs);
    // All checked before the first call.
    const specs = jobs.map((job, i) => this.pushSpec(`jobs[${i}]`, job.data, job, BULK_JOB_KEYS));
    const out: PushResult[] = [];
    for (let start = 0; start < specs.length; start += LIMITS.maxBatch) {
      const chunk = specs.slice(start, start + LIMITS.maxBatch);
      out.push(...decodePushMany(chunk, await this.run(encodePushMany(chunk))));
    }
    return out;
  }

  /** Leases up to `count` (1–1000) jobs, highest priority first. An empty array when none is ready. */
  async pop(count = 1, options: PopOptions = {}): Promise<Job<T>[]> {
    return (await this.fetch(count, options)).jobs;
  }

  /** `pop` that also tells how long until more work may be ready (for custom workers). */
  async fetch(count = 1, options: PopOptions = {}): Promise<FetchResult<T>> {
    checkCount('count', count, 1);
    assertOptions('options', options, POP_OPTIONS);
    const leaseMs = checkLease('options.leaseMs', options.leaseMs ?? this.leaseMs);
    const { request } = options;
    checkRequest('options.request', request);
    const leased = decodeFetch(await this.run(encodeFetch(count, leaseMs, request), requestKeys(this.scriptKeys, request)), this.codec);
    await this.deadLetterUndecodable(leased);
    return { waitMs: leased.waitMs, jobs: leased.jobs };
  }

  /** Completes the job: true, or false when its lease was lost (reclaimed, or already completed). */
  async complete(job: Job<T>): Promise<boolean> {
    this.checkJob('job', job);
    return decodeHeld(await this.run(encodeComplete(job)));
  }

  /**
   * Completes up to 1000 jobs and leases up to `fetch` more in one round trip (what `Worker` does after
   * each burst of finished jobs).
   */
  async ack(jobs: readonly Job<T>[], options: PopOptions & { fetch?: number } = {}): Promise<AckResult<T>> {
    checkArray('jobs', jobs);
    checkCount('jobs.length', jobs.length, 0);
    assertOptions('options', options, ACK_OPTIONS);
    const fetch = checkCount('options.fetch', options.fetch ?? 0, 0);
    const leaseMs = checkLease('options.leaseMs', options.leaseMs ?? this.leaseMs);
    this.checkJobs(jobs);
    const { request } = options;
    checkRequest('options.request', request);
    const reply = await this.run(encodeAck(jobs, fetch, leaseMs, request), requestKeys(this.scriptKeys, request));
    const acked = decodeAck(reply, this.codec);
    await this.deadLetterUndecodable(acked);
    return { completed: acked.completed, waitMs: acked.waitMs, jobs: acked.jobs };
  }

  /**
   * Records a failure: `retry` (after the backoff stored with the job), `dead` (no attempts left, or the
   * job's record was lost) or `lost` (lease lost).
   */
  async fail(job: Job<T>, error: unknown): Promise<FailOutcome> {
    this.checkJob('job', job);
    const message = cutUtf8(error instanceof Error ? error.message || error.name : String(error), LIMITS.maxErrorBytes);
    return decodeFail(await this.run(encodeFail(job, message))).outcome;
  }

  /** Renews the leases of jobs still held (1–1000 a call): per job, true when renewed. */
  async extend(jobs: readonly Job<T>[], leaseMs: number = this.leaseMs): Promise<boolean[]> {
    checkArray('jobs', jobs);
    checkCount('jobs.length', jobs.length, 1);
    checkLease('leaseMs', leaseMs);
    this.checkJobs(jobs);
    return decodeExtend(await this.run(encodeExtend(jobs, leaseMs)));
  }

  /** Gives a leased job back to the queue without counting its attempt: true, or false if the lease was lost. */
  async release(job: Job<T>): Promise<boolean> {
    this.checkJob('job', job);
    return decodeHeld(await this.run(encodeRelease(job)));
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

  private run(args: ScriptArg[], keys: readonly string[] = this.scriptKeys): Promise<unknown> {
    if (!this.warned) {
      this.warned = true;
      warnIfEvicting(this.redis, '@cyredis/queue', EVICTION_RISK);
    }
    return this.scripts.executeScript(this.script, { keys, args, timeoutMs: this.timeoutMs });
  }

  private pushSpec(name: string, data: T, options: PushOptions, allowed: readonly string[]): PushSpec {
    assertOptions(name, options, allowed, false);
    // No id asks the script for a short generated one.
    const id = options.id;
    if (id !== undefined) checkId(`${name}.id`, id);
    const priority = checkPriority(`${name}.priority`, options.priority);
    let policy = this.policy;
    if (options.maxRetries !== undefined || options.backoff !== undefined) {
      const maxRetries = checkRetries(`${name}.maxRetries`, options.maxRetries, this.maxRetries);
      policy = policyArg(maxRetries, checkBackoff(`${name}.backoff`, options.backoff, this.backoff));
    }
    const delayMs = options.delayMs ?? 0;
    assertFiniteNumber(`${name}.delayMs`, delayMs, { min: 0, max: LIMITS.maxDelayMs });
    const dataName = name === 'options' ? 'data' : `${name}.data`;
    let text: unknown;
    try {
      text = this.codec.encode(data);
    } catch (err) {
      // The codec names the value `value`; the caller knows it as `dataName`.
      const detail = err instanceof InvalidArgumentError ? err.message.slice(err.argument.length + 2) : err instanceof Error ? err.message : String(err);
      throw new InvalidArgumentError(dataName, `cannot be encoded: ${detail}`);
    }
    if (typeof text !== 'string') throw new InvalidArgumentError(dataName, `the codec must encode it to a string, got ${typeof text}`);
    if (text.length > LIMITS.maxDataBytes / 3 && Buffer.byteLength(text) > LIMITS.maxDataBytes) {
      throw new InvalidArgumentError(dataName, `must encode to at most ${LIMITS.maxDataBytes} bytes`);
    }
    return { id, text, priority, policy, delaySeconds: delayMs / 1000 };
  }

  private checkJob(name: string, job: Job<T>): void {
    if (job === null || typeof job !== 'object') throw new InvalidArgumentError(name, 'must be a job returned by pop');
    assertNonEmptyString(`${name}.id`, job.id, LIMITS.maxIdBytes);
    assertNonEmptyString(`${name}.leaseToken`, job.leaseToken, 64);
  }

  /** Checks the jobs of `ack`/`extend`; the name is built only for a bad job (a string each would cost). */
  private checkJobs(jobs: readonly Job<T>[]): void {
    for (let i = 0; i < jobs.length; i++) if (!isJob(jobs[i]!)) this.checkJob(`jobs[${i}]`, jobs[i]!);
  }

  /**
   * Dead-letters the leased jobs whose data the codec cannot decode, with the reason, instead of returning
   * them: they could never run, and a caller that cannot see them could not fail them.
   */
  private async deadLetterUndecodable(leased: LeasedJobs<T>): Promise<void> {
    if (leased.undecodable === undefined) return;
    await Promise.all(
      leased.undecodable.map(({ id, leaseToken, error }) => {
        const reason = cutUtf8(`data cannot be decoded: ${error instanceof Error ? error.message : String(error)}`, LIMITS.maxErrorBytes);
        // Its lease runs out if this fails, and the next pop meets it again.
        return this.run(encodeFail({ id, leaseToken }, reason, true)).catch(() => undefined);
      }),
    );
  }
}
