// The wire formats of job_queue.lua: per operation, its KEYS and ARGV from named fields and its typed reply.
// The only code that knows argument positions and reply packings; the Lua header documents the same formats.
import { toArray, toNumber, type Codec, type ScriptArg } from '@cyredis/core';
import type { DeadJob, FailOutcome, Job, JobInfo, JobProgress, JobState, PushResult, QueueStats, RequestId } from './queue.js';

/** `current_time` asking the script for the server's clock (`TIME`). */
export const SERVER_TIME = '*';

/** The seed's four keys (`queue`, `processing`, `failed`, `dead`), which raw callers pass alone. */
export const SEED_KEY_COUNT = 4;

/**
 * Every key a call touches except the per-priority and per-group lists (chosen inside the script): the
 * seed's four, then `queue:delayed`, `queue:jobs`, `queue:state`, `queue:meta`, `queue:wake`,
 * `queue:completed`, `queue:events`, `queue:info`, `queue:groups`, `queue:gready`, `queue:glimited`,
 * `queue:schedulers`, `queue:gwait`, named
 * as the script derives them. `wakeKey` is the list idle workers block on, `eventsKey` the stream of events.
 */
export function declaredKeys(seedKeys: readonly string[]): { keys: string[]; wakeKey: string; eventsKey: string } {
  const queue = seedKeys[0]!;
  const wakeKey = `${queue}:wake`;
  const eventsKey = `${queue}:events`;
  const derived = [
    `${queue}:delayed`, `${queue}:jobs`, `${queue}:state`, `${queue}:meta`, wakeKey, `${queue}:completed`, eventsKey, `${queue}:info`,
    `${queue}:groups`, `${queue}:gready`, `${queue}:glimited`, `${queue}:schedulers`, `${queue}:gwait`,
  ];
  return { keys: [...seedKeys, ...derived], wakeKey, eventsKey };
}

/** How long finished jobs are kept: at most `count` (−1: any number), at most `ageMs` old (−1: any age). */
export interface Keep {
  count: number;
  ageMs: number;
}

/** What the API's calls ask of the script beyond their operation: events, and retention. */
export interface CallPolicy {
  events: boolean;
  /** About how many events the stream keeps. */
  eventsMaxLen: number;
  completed: Keep;
  dead: Keep;
  /** Queue-wide: at most `limit` leases in any `windowMs` (spread evenly); undefined for none. */
  rateLimit?: { limit: number; windowMs: number } | undefined;
  /** Queue-wide: at most this many jobs leased at once; undefined for no limit. */
  globalConcurrency?: number | undefined;
}

/**
 * The `current_time` argument that carries a call policy: the server's clock (or `atSeconds`, for tests
 * that drive time), then the policy (`*<events>,<max_len>,<keep>,<keep_ms>,<keep_dead>,<keep_dead_ms>`,
 * then `,<rate_limit>,<rate_window_ms>,<concurrency>` when a queue-wide limit is set; see the script's
 * LIMITS). The API builds it once per queue.
 */
export function policyClock(policy: CallPolicy, atSeconds?: number): string {
  const { completed, dead, rateLimit, globalConcurrency } = policy;
  const base = `${atSeconds ?? ''}*${policy.events ? 1 : 0},${policy.eventsMaxLen},${completed.count},${completed.ageMs},${dead.count},${dead.ageMs}`;
  if (rateLimit === undefined && globalConcurrency === undefined) return base;
  return `${base},${rateLimit?.limit ?? 0},${rateLimit?.windowMs ?? 0},${globalConcurrency ?? 0}`;
}

/** Gives a call built with `SERVER_TIME` the queue's policy clock (the second argument of every op). */
export function withPolicy(args: ScriptArg[], clock: string): ScriptArg[] {
  if (args[1] === SERVER_TIME) args[1] = clock;
  return args;
}

/** The keys of a `fetch`/`ack` call: with a request, its lane's memo key declared last. */
export function requestKeys(keys: readonly string[], request: RequestId | undefined): readonly string[] {
  return request === undefined ? keys : [...keys, `${keys[0]!}:req:${request.lane}`];
}

/** A checked job as PUSH and PUSHN take it: `id` undefined asks the script for a generated one. */
export interface PushSpec {
  id: string | undefined;
  /** The data as the codec encoded it. */
  text: string;
  priority: number;
  /** The retry policy as the script stores it: "maxRetries" or "maxRetries,baseMs,maxMs". */
  policy: string;
  delaySeconds: number;
  /** Deduplication under a key (see `DedupOptions`). */
  dedup?: { key: string; ttlMs: number; mode: 'throttle' | 'debounce' } | undefined;
  /** The job's group (FIFO within it), if any. */
  group?: string | undefined;
}

/** The keys of a PUSHN: the declared ones, then the dedup key of each job that has one, in order. */
export function pushKeys(keys: readonly string[], jobs: readonly PushSpec[]): readonly string[] {
  let out: string[] | undefined;
  for (const job of jobs) if (job.dedup !== undefined) (out ??= [...keys]).push(`${keys[0]!}:dedup:${job.dedup.key}`);
  return out ?? keys;
}

/**
 * Seed PUSH (one named job): `1` queued, `0` when the id exists. The API sends PUSHN; this typed form of the
 * frozen seed format is kept so the contract test checks it through the same module.
 */
export function encodePush(job: PushSpec & { id: string }): ScriptArg[] {
  return ['PUSH', SERVER_TIME, job.id, job.text, job.priority, job.policy, job.delaySeconds];
}

/** PUSH's reply: whether the job was queued. */
export function decodePush(reply: unknown): boolean {
  return reply === 1;
}

/**
 * PUSHN: runs of jobs with the same options, all named or all with generated ids, all with or all without
 * a dedup, all with or all without a group, share one header (`k priority policy delay_seconds named`:
 * named is 1 with ids, plus 2 with dedups, plus 4 with groups), so a bulk of plain jobs costs about one
 * argument per job; a dedup adds its mode, ttl_ms and key, then a group its name, before the job's id. Its
 * keys: `pushKeys`.
 */
export function encodePushMany(jobs: readonly PushSpec[]): ScriptArg[] {
  const args: ScriptArg[] = ['PUSHN', SERVER_TIME, jobs.length];
  let groupSize = 0;
  let groupSizeAt = 0;
  let prev: PushSpec | undefined;
  for (const job of jobs) {
    const named = job.id !== undefined;
    const dedup = job.dedup;
    const sameGroup =
      job.priority === prev?.priority &&
      job.policy === prev.policy &&
      job.delaySeconds === prev.delaySeconds &&
      named === (prev.id !== undefined) &&
      (dedup === undefined) === (prev.dedup === undefined) &&
      (job.group === undefined) === (prev.group === undefined);
    if (!sameGroup) {
      if (prev !== undefined) args[groupSizeAt] = groupSize;
      groupSizeAt = args.length;
      groupSize = 0;
      args.push(0, job.priority, job.policy, job.delaySeconds, (named ? 1 : 0) + (dedup === undefined ? 0 : 2) + (job.group === undefined ? 0 : 4));
    }
    groupSize++;
    if (dedup !== undefined) args.push(dedup.mode, dedup.ttlMs, dedup.key);
    if (job.group !== undefined) args.push(job.group);
    if (named) args.push(job.id!);
    args.push(job.text);
    prev = job;
  }
  if (prev !== undefined) args[groupSizeAt] = groupSize;
  return args;
}

/**
 * PUSHN's reply, per job: its id when queued, 0 when the id existed, `[id]` when its dedup key held the job
 * `id` (throttled, or that job's data replaced by a debounce).
 */
export function decodePushMany(jobs: readonly PushSpec[], reply: unknown): PushResult[] {
  const items = toArray(reply);
  const out = new Array<PushResult>(jobs.length);
  for (let i = 0; i < jobs.length; i++) {
    const item = items[i];
    if (typeof item === 'string') out[i] = { id: item, added: true };
    else if (Array.isArray(item)) out[i] = { id: String(item[0]), added: false };
    else out[i] = { id: jobs[i]!.id ?? '', added: false };
  }
  return out;
}

/**
 * Seed POP (no lease token, attempts or wait): `{ {id, data}, … }`. The API sends the full form; this typed
 * form of the frozen seed format is kept so the contract test checks it through the same module.
 */
export function encodeSeedPop(count: number, leaseMs: number): ScriptArg[] {
  return ['POP', SERVER_TIME, count, leaseMs];
}

/** The seed POP reply: id and data text per job. */
export function decodeSeedPop(reply: unknown): { id: string; text: string }[] {
  return toArray(reply).map((pair) => {
    const [id, text] = toArray(pair);
    return { id: String(id), text: String(text) };
  });
}

/** The optional request as trailing arguments (none without one). */
function requestArgs(args: ScriptArg[], request: RequestId | undefined): ScriptArg[] {
  if (request !== undefined) args.push(request.lane, request.seq);
  return args;
}

/** POP with `full` = 1: leases up to `count` jobs for `leaseMs`. */
export function encodeFetch(count: number, leaseMs: number, request: RequestId | undefined): ScriptArg[] {
  return requestArgs(['POP', SERVER_TIME, count, leaseMs, '1'], request);
}

/** A job whose data the codec refused: it could never run, so the queue dead-letters it. */
export interface UndecodableJob {
  id: string;
  leaseToken: string;
  error: unknown;
}

/** Leased jobs as a POP (full) or ACK reply carries them. */
export interface LeasedJobs<T> {
  /** 0 when the batch came full or jobs still wait; else ms to the next due job; -1 when none is scheduled. */
  waitMs: number;
  jobs: Job<T>[];
  /** Set only when some job's data did not decode. */
  undecodable: UndecodableJob[] | undefined;
}

/** Builds the job object of a lease (the queue's gives it `updateProgress` and `log`). */
export type JobFactory<T> = (id: string, data: T, priority: number, attempts: number, maxRetries: number, leaseToken: string) => Job<T>;

/** Plain job objects, for callers that need no methods on them. */
export function plainJob<T>(id: string, data: T, priority: number, attempts: number, maxRetries: number, leaseToken: string): Job<T> {
  return { id, data, priority, attempts, maxRetries, leaseToken } as Job<T>;
}

/**
 * The integer written in `text` at `at` (an optional '-', then digits), read up to the first other
 * character: the numbers inside a reply's strings, read in place rather than through a slice each.
 */
function intAt(text: string, at: number): number {
  const negative = text.charCodeAt(at) === 45;
  let i = negative ? at + 1 : at;
  let n = 0;
  for (let c = text.charCodeAt(i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) n = n * 10 + (c - 48);
  return negative ? -n : n;
}

/**
 * The lease part of a POP (full) or ACK reply from `reply[from]` on: wait_ms, the call's lease token, the
 * attempts as one string ("1,1,2"), then pairs of id and record "priority:policy@created:data".
 */
function decodeLeased<T>(reply: unknown[], from: number, codec: Codec<T>, make: JobFactory<T>): LeasedJobs<T> {
  const leaseToken = String(reply[from + 1]);
  const tries = String(reply[from + 2]);
  const jobs: Job<T>[] = [];
  let undecodable: UndecodableJob[] | undefined;
  // `at`: where the next job's attempts start in `tries`.
  for (let i = from + 3, at = 0; i < reply.length; i += 2) {
    const id = reply[i] as string;
    const rec = reply[i + 1] as string;
    const attempts = intAt(tries, at);
    const comma = tries.indexOf(',', at);
    at = comma < 0 ? tries.length : comma + 1;
    const a = rec.indexOf(':');
    const b = rec.indexOf(':', a + 1);
    let data: T;
    try {
      data = codec.decode(rec.slice(b + 1));
    } catch (error) {
      (undecodable ??= []).push({ id, leaseToken, error });
      continue;
    }
    // The policy is "maxRetries" or "maxRetries,baseMs,maxMs", then "@created": its number ends at either.
    jobs.push(make(id, data, intAt(rec, 0), attempts, intAt(rec, a + 1), leaseToken));
  }
  return { waitMs: toNumber(reply[from]), jobs, undecodable };
}

/** POP (full)'s reply. */
export function decodeFetch<T>(reply: unknown, codec: Codec<T>, make: JobFactory<T> = plainJob): LeasedJobs<T> {
  return decodeLeased(toArray(reply), 0, codec, make);
}

/** The lease of a job: what COMPLETE, FAIL, EXTEND, RELEASE and ACK present. */
export interface LeaseRef {
  readonly id: string;
  readonly leaseToken: string;
}

/**
 * ACK: completes `jobs` and leases up to `fetch` more. Runs of jobs leased under one token (one per fetch)
 * share a group: the token, how many, whether return values follow the ids, then the ids (or id and value
 * pairs; '' for none). `values[i]`: job i's return value as the codec encoded it, or undefined.
 */
export function encodeAck(
  jobs: readonly LeaseRef[],
  fetch: number,
  leaseMs: number,
  request: RequestId | undefined,
  values?: readonly (string | undefined)[],
): ScriptArg[] {
  const args: ScriptArg[] = ['ACK', SERVER_TIME, leaseMs, fetch, jobs.length];
  const valued = values?.some((v) => v !== undefined) ? 1 : 0;
  let groupSize = 0;
  let groupSizeAt = 0;
  let token: string | undefined;
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i]!;
    if (job.leaseToken !== token) {
      if (token !== undefined) args[groupSizeAt] = groupSize;
      token = job.leaseToken;
      args.push(token, 0, valued);
      groupSizeAt = args.length - 2;
      groupSize = 0;
    }
    groupSize++;
    args.push(job.id);
    if (valued === 1) args.push(values![i] ?? '');
  }
  if (token !== undefined) args[groupSizeAt] = groupSize;
  return requestArgs(args, request);
}

/** ACK's reply: one "1" (completed) or "0" (lease lost) per job, then the leased jobs as POP's. */
export function decodeAck<T>(reply: unknown, codec: Codec<T>, make: JobFactory<T> = plainJob): LeasedJobs<T> & { completed: boolean[] } {
  const items = toArray(reply);
  const marks = String(items[0]);
  const completed = new Array<boolean>(marks.length);
  for (let i = 0; i < marks.length; i++) completed[i] = marks.charCodeAt(i) === 49;
  const out = decodeLeased(items, 1, codec, make) as LeasedJobs<T> & { completed: boolean[] };
  out.completed = completed;
  return out;
}

/** COMPLETE under the job's lease token, with its return value as the codec encoded it (if any). */
export function encodeComplete(job: LeaseRef, value?: string): ScriptArg[] {
  const args: ScriptArg[] = ['COMPLETE', SERVER_TIME, job.id, job.leaseToken];
  if (value !== undefined) args.push(value);
  return args;
}

/** COMPLETE's, RELEASE's reply: whether the lease was still held. */
export function decodeHeld(reply: unknown): boolean {
  return reply === 1;
}

/** FAIL under the job's lease token; `final` dead-letters it whatever attempts it has left. */
export function encodeFail(job: LeaseRef, message: string, final = false): ScriptArg[] {
  const args: ScriptArg[] = ['FAIL', SERVER_TIME, job.id, message, job.leaseToken];
  if (final) args.push('1');
  return args;
}

/** FAIL's reply: what it did, and when the retry is due or the job died (ms since the epoch; 0 when lost). */
export function decodeFail(reply: unknown): { outcome: FailOutcome; atMs: number } {
  const [outcome, atMs] = toArray(reply);
  return { outcome: outcome as FailOutcome, atMs: toNumber(atMs) };
}

/** EXTEND: renews each lease still held to now + `leaseMs`. */
export function encodeExtend(jobs: readonly LeaseRef[], leaseMs: number): ScriptArg[] {
  const args: ScriptArg[] = ['EXTEND', SERVER_TIME, leaseMs, jobs.length];
  for (const job of jobs) args.push(job.id, job.leaseToken);
  return args;
}

/** EXTEND's reply: per job, whether its lease was renewed. */
export function decodeExtend(reply: unknown): boolean[] {
  return toArray(reply).map((r) => r === 1);
}

/**
 * RELEASE: gives a leased job back without counting its attempt; with `pauseMs`, no job of the queue is
 * leased for that long (reply: `decodeHeld`).
 */
export function encodeRelease(job: LeaseRef, pauseMs?: number): ScriptArg[] {
  const args: ScriptArg[] = ['RELEASE', SERVER_TIME, job.id, job.leaseToken];
  if (pauseMs !== undefined) args.push(pauseMs);
  return args;
}

/** STATS. */
export function encodeStats(): ScriptArg[] {
  return ['STATS', SERVER_TIME];
}

/** STATS's reply: `{ 'waiting', n, 'delayed', n, 'processing', n, 'failed', n, 'dead', n, 'completed', n }`. */
export function decodeStats(reply: unknown): QueueStats {
  const r = toArray(reply);
  return {
    waiting: toNumber(r[1]),
    delayed: toNumber(r[3]),
    processing: toNumber(r[5]),
    failed: toNumber(r[7]),
    dead: toNumber(r[9]),
    completed: toNumber(r[11]),
  };
}

/** RETRYDEAD: of the `count` oldest dead jobs after the first `skip`, moves back those with a record. */
export function encodeRetryDead(count: number, skip: number): ScriptArg[] {
  return ['RETRYDEAD', SERVER_TIME, count, skip];
}

/** RETRYDEAD's reply: how many moved, and how many were looked at. */
export function decodeRetryDead(reply: unknown): { moved: number; seen: number } {
  const [moved, seen] = toArray(reply);
  return { moved: toNumber(moved), seen: toNumber(seen) };
}

/** DEAD: the `count` most recent dead jobs. */
export function encodeDead(count: number): ScriptArg[] {
  return ['DEAD', SERVER_TIME, count];
}

/** DEAD's reply, five items per job: id, data (nil when its record is lost), attempts, error, died_at_ms. */
export function decodeDead<T>(reply: unknown, codec: Codec<T>): DeadJob<T>[] {
  const r = toArray(reply);
  const out: DeadJob<T>[] = [];
  for (let i = 0; i < r.length; i += 5) {
    const text = r[i + 1];
    let data: T | undefined;
    try {
      data = typeof text === 'string' ? codec.decode(text) : undefined;
    } catch {
      data = undefined;
    }
    out.push({ id: String(r[i]), data, attempts: toNumber(r[i + 2]), error: String(r[i + 3]), diedAt: toNumber(r[i + 4]) });
  }
  return out;
}

/** PAUSED: whether the queue is paused. */
export function encodePaused(): ScriptArg[] {
  return ['PAUSED', SERVER_TIME];
}

/** PAUSE: pauses (`true`) or resumes the queue. Reply (`decodeHeld`): whether it changed. */
export function encodePause(paused: boolean): ScriptArg[] {
  return ['PAUSE', SERVER_TIME, paused ? 1 : 0];
}

/** A group's options as GROUPOPTS takes them (rate limit 0: none). */
export interface GroupSpec {
  concurrency: number;
  rateLimit: number;
  rateWindowMs: number;
}

/** GROUPOPTS: sets a group's concurrency and rate limit. Reply: 1. */
export function encodeGroupOptions(group: string, spec: GroupSpec): ScriptArg[] {
  return ['GROUPOPTS', SERVER_TIME, group, spec.concurrency, spec.rateLimit, spec.rateWindowMs];
}

/** GROUPPAUSE: pauses (`true`) or resumes one group. Reply (`decodeHeld`): whether it changed. */
export function encodeGroupPause(group: string, paused: boolean): ScriptArg[] {
  return ['GROUPPAUSE', SERVER_TIME, group, paused ? 1 : 0];
}

/** A scheduler as the script keeps it: its next run, group ('' for none), rule text and job template. */
export interface StoredScheduler {
  id: string;
  nextRunAt: number;
  group: string;
  spec: string;
  priority: number;
  /** The retry policy as stored: "maxRetries" or "maxRetries,baseMs,maxMs". */
  policy: string;
  /** The job's data as the codec encoded it. */
  text: string;
}

/** SCHEDULE: creates or changes a scheduler (unchanged when the rule and job are the same). */
export function encodeSchedule(id: string, nextRunAt: number, spec: string, job: PushSpec): ScriptArg[] {
  const args: ScriptArg[] = ['SCHEDULE', SERVER_TIME, id, nextRunAt, spec, job.priority, job.policy, job.text];
  if (job.group !== undefined) args.push(job.group);
  return args;
}

/** SCHEDULE's reply: whether the call changed the scheduler, and its next run (ms). */
export function decodeSchedule(reply: unknown): { changed: boolean; nextRunAt: number } {
  const [changed, nextRunAt] = toArray(reply);
  return { changed: changed === 1, nextRunAt: toNumber(nextRunAt) };
}

/** SCHEDNEXT: moves a scheduler from the tick `runMs` on to `nextRunAt` (reply `decodeHeld`: moved). */
export function encodeScheduleNext(id: string, runMs: number, nextRunAt: number): ScriptArg[] {
  return ['SCHEDNEXT', SERVER_TIME, id, runMs, nextRunAt];
}

/** SCHEDGET: one scheduler. */
export function encodeScheduler(id: string): ScriptArg[] {
  return ['SCHEDGET', SERVER_TIME, id];
}

function storedScheduler(id: string, r: unknown[], at: number): StoredScheduler {
  const head = String(r[at + 3]);
  const cut = head.indexOf(':');
  return {
    id,
    nextRunAt: toNumber(r[at]),
    group: String(r[at + 1]),
    spec: String(r[at + 2]),
    priority: Number(head.slice(0, cut)),
    policy: head.slice(cut + 1),
    text: String(r[at + 4]),
  };
}

/** SCHEDGET's reply: the scheduler, or undefined. */
export function decodeScheduler(id: string, reply: unknown): StoredScheduler | undefined {
  const r = toArray(reply);
  return r.length === 0 ? undefined : storedScheduler(id, r, 0);
}

/** SCHEDULERS: a page of schedulers from `cursor` ("0" to start). */
export function encodeSchedulers(cursor: string): ScriptArg[] {
  return ['SCHEDULERS', SERVER_TIME, cursor];
}

/** SCHEDULERS's reply: the next cursor ("0" when done) and the page. */
export function decodeSchedulers(reply: unknown): { cursor: string; schedulers: StoredScheduler[] } {
  const r = toArray(reply);
  const schedulers: StoredScheduler[] = [];
  for (let i = 1; i + 5 < r.length; i += 6) schedulers.push(storedScheduler(String(r[i]), r, i + 1));
  return { cursor: String(r[0]), schedulers };
}

/** UNSCHEDULE: removes a scheduler and its pending job (reply `decodeHeld`: it existed). */
export function encodeUnschedule(id: string): ScriptArg[] {
  return ['UNSCHEDULE', SERVER_TIME, id];
}

/** GETJOB: one job, and the last event id. */
export function encodeGetJob(id: string): ScriptArg[] {
  return ['GETJOB', SERVER_TIME, id];
}

/**
 * GETJOBS: a page of the jobs in `state`; `afterGroup` continues a waiting page after that group (see
 * `decodeGetJobsNext`).
 */
export function encodeGetJobs(state: JobState, offset: number, limit: number, afterGroup?: string): ScriptArg[] {
  const args: ScriptArg[] = ['GETJOBS', SERVER_TIME, state, offset, limit];
  if (afterGroup !== undefined) args.push(afterGroup);
  return args;
}

/** Items per job in GETJOB and GETJOBS replies. */
const INFO_ITEMS = 7;

/** ms since the epoch from a lease token ("~" or "=" once the lease ended): token / 1000; undefined for old tokens. */
function leaseStart(token: string): number | undefined {
  const n = Number(token.startsWith('~') || token.startsWith('=') ? token.slice(1) : token);
  // Tokens from before lease times were kept are small counters.
  return n >= 1e15 ? Math.floor(n / 1000) : undefined;
}

/** Decodes text the codec wrote; undefined when there is none or it does not decode. */
export function decodeOr<T>(codec: Codec<T>, text: unknown): T | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    return codec.decode(text);
  } catch {
    return undefined;
  }
}

/**
 * One job's seven items (id, state, record, job state, progress, return value, score) as `JobInfo`. The
 * record is "priority:policy@created:data", the job state "attempts:token:error" (see the script's GETJOB).
 */
function decodeInfo<T, R>(r: unknown[], at: number, codec: Codec<T>, results: Codec<R>): JobInfo<T, R> {
  const state = r[at + 1] as JobState;
  const rec = r[at + 2];
  let priority = 0;
  let maxRetries = 0;
  let createdAt: number | undefined;
  let data: T | undefined;
  if (typeof rec === 'string') {
    const a = rec.indexOf(':');
    const b = rec.indexOf(':', a + 1);
    const policy = rec.slice(a + 1, b);
    const c = policy.indexOf('@');
    priority = Number(rec.slice(0, a));
    maxRetries = Number.parseInt(policy, 10);
    createdAt = c < 0 ? undefined : Number(policy.slice(c + 1));
    data = decodeOr(codec, rec.slice(b + 1));
  }
  let attempts = 0;
  let processedAt: number | undefined;
  let failedReason: string | undefined;
  const js = r[at + 3];
  if (typeof js === 'string') {
    const a = js.indexOf(':');
    const b = js.indexOf(':', a + 1);
    attempts = Number(js.slice(0, a));
    processedAt = leaseStart(js.slice(a + 1, b));
    failedReason = js.slice(b + 1) || undefined;
  }
  const score = r[at + 6] === null ? undefined : toNumber(r[at + 6]);
  const progress = typeof r[at + 4] === 'string' ? (JSON.parse(r[at + 4] as string) as JobProgress) : 0;
  return {
    id: String(r[at]),
    state,
    data,
    priority,
    attempts,
    maxRetries,
    progress,
    returnValue: decodeOr(results, r[at + 5]),
    failedReason,
    createdAt,
    processedAt,
    finishedAt: state === 'completed' || state === 'dead' ? score : undefined,
    readyAt: state === 'delayed' ? score : undefined,
  };
}

/** GETJOB's reply: the last event id, and the job (undefined when no record has that id). */
export function decodeGetJob<T, R>(reply: unknown, codec: Codec<T>, results: Codec<R>): { lastEventId: string; job: JobInfo<T, R> | undefined } {
  const r = toArray(reply);
  return { lastEventId: String(r[0]), job: r.length > 1 ? decodeInfo(r, 1, codec, results) : undefined };
}

/** GETJOBS's reply: the page of jobs. */
export function decodeGetJobs<T, R>(reply: unknown, codec: Codec<T>, results: Codec<R>): JobInfo<T, R>[] {
  const r = toArray(reply);
  const out: JobInfo<T, R>[] = [];
  for (let i = 0; i + INFO_ITEMS <= r.length; i += INFO_ITEMS) out.push(decodeInfo(r, i, codec, results));
  return out;
}

/**
 * Where a waiting page that stopped after the script's bound on groups per call goes on: the offset left
 * to skip and the last group passed (the next call's `afterGroup`); undefined when the page is complete.
 */
export function decodeGetJobsNext(reply: unknown): { offset: number; afterGroup: string } | undefined {
  const r = toArray(reply);
  if (r.length % INFO_ITEMS !== 2) return undefined;
  return { offset: toNumber(r[r.length - 2]), afterGroup: String(r[r.length - 1]) };
}

/** LOGS: a page of a job's kept log lines. */
export function encodeLogs(id: string, offset: number, limit: number): ScriptArg[] {
  return ['LOGS', SERVER_TIME, id, offset, limit];
}

/** LOGS's reply: the lines (the total logged comes first and is dropped). */
export function decodeLogs(reply: unknown): string[] {
  return toArray(reply).slice(1).map(String);
}

/** LOG: appends a line to a job's log. */
export function encodeLog(id: string, line: string): ScriptArg[] {
  return ['LOG', SERVER_TIME, id, line];
}

/** LOG's, CLEAN's reply: a count (LOG: lines logged, 0 for an unknown job). */
export function decodeCount(reply: unknown): number {
  return toNumber(reply);
}

/** PROGRESS under the job's lease token; `progress` as JSON text. Reply (`decodeHeld`): stored. */
export function encodeProgress(job: LeaseRef, progress: string): ScriptArg[] {
  return ['PROGRESS', SERVER_TIME, job.id, job.leaseToken, progress];
}

/** REMOVE (`force`: also an active job). Reply (`decodeHeld`): removed. */
export function encodeRemove(id: string, force: boolean): ScriptArg[] {
  return ['REMOVE', SERVER_TIME, id, force ? 1 : 0];
}

/** PROMOTE: a delayed job becomes ready. Reply (`decodeHeld`): promoted. */
export function encodePromote(id: string): ScriptArg[] {
  return ['PROMOTE', SERVER_TIME, id];
}

/** RETRYJOB: one dead job back to waiting. Reply (`decodeHeld`): moved. */
export function encodeRetryJob(id: string): ScriptArg[] {
  return ['RETRYJOB', SERVER_TIME, id];
}

/** DRAIN: removes up to `limit` waiting (and, with `delayed`, delayed) jobs. */
export function encodeDrain(delayed: boolean, limit: number): ScriptArg[] {
  return ['DRAIN', SERVER_TIME, delayed ? 1 : 0, limit];
}

/** DRAIN's reply: how many were removed, and whether to call again. */
export function decodeDrain(reply: unknown): { removed: number; more: boolean } {
  const [removed, more] = toArray(reply);
  return { removed: toNumber(removed), more: more === 1 };
}

/** CLEAN: removes up to `limit` completed or dead jobs finished at least `olderThanMs` ago (reply: `decodeCount`). */
export function encodeClean(state: 'completed' | 'dead', olderThanMs: number, limit: number): ScriptArg[] {
  return ['CLEAN', SERVER_TIME, state, olderThanMs, limit];
}

/** OBLITERATE: deletes a step of the queue's keys (see `decodeObliterate`). */
export function encodeObliterate(force: boolean): ScriptArg[] {
  return ['OBLITERATE', SERVER_TIME, force ? 1 : 0];
}

/** OBLITERATE's reply: every key deleted, refused (active jobs, no `force`, nothing deleted), or call again. */
export function decodeObliterate(reply: unknown): 'done' | 'refused' | 'more' {
  const r = toNumber(reply);
  return r === 1 ? 'done' : r === 2 ? 'more' : 'refused';
}

/** One event as the stream holds it: its name, job id ('' for queue events) and extra fields. */
export interface StreamEvent {
  name: string;
  jobId: string;
  /** `r` return value, `f` failure reason, `t` ready time (ms), `p` progress (JSON text). */
  fields: { r?: string; f?: string; t?: string; p?: string };
}

/** Event names as the script writes them; any other field belongs to the event before it. */
export const EVENT_NAMES = new Set([
  'added', 'delayed', 'waiting', 'active', 'progress', 'completed', 'retrying', 'dead', 'removed', 'stalled', 'paused', 'resumed', 'drained',
]);

/**
 * The entries of an `XREAD` reply on the events stream: per entry its id and events. An entry holds the
 * events of one script call, each as `<name> <job id>` then its extra fields (`r`, `f`, `t`, `p`).
 */
export function decodeEventEntries(reply: unknown): { entryId: string; events: StreamEvent[] }[] {
  const out: { entryId: string; events: StreamEvent[] }[] = [];
  if (reply === null) return out;
  for (const stream of toArray(reply)) {
    for (const entry of toArray(toArray(stream)[1])) {
      const [entryId, flat] = toArray(entry);
      const items = toArray(flat).map(String);
      const events: StreamEvent[] = [];
      for (let i = 0; i + 1 < items.length; i += 2) {
        const field = items[i]!;
        if (EVENT_NAMES.has(field)) events.push({ name: field, jobId: items[i + 1]!, fields: {} });
        else if (events.length > 0 && (field === 'r' || field === 'f' || field === 't' || field === 'p')) events[events.length - 1]!.fields[field] = items[i + 1]!;
      }
      out.push({ entryId: String(entryId), events });
    }
  }
  return out;
}

/** The seed's four keys, by their suffixes after the queue's hash tag. */
export const SEED_SUFFIXES = ['waiting', 'processing', 'failed', 'dead'] as const;
