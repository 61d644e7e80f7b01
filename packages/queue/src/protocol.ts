// The wire formats of job_queue.lua: per operation, its KEYS and ARGV from named fields and its typed reply.
// The only code that knows argument positions and reply packings; the Lua header documents the same formats.
import { toArray, toNumber, type Codec, type ScriptArg } from '@cyredis/core';
import type { DeadJob, FailOutcome, Job, PushResult, QueueStats, RequestId } from './queue.js';

/** `current_time` asking the script for the server's clock (`TIME`). */
export const SERVER_TIME = '*';

/** The seed's four keys (`queue`, `processing`, `failed`, `dead`), which raw callers pass alone. */
export const SEED_KEY_COUNT = 4;

/**
 * Every key a call touches except the per-priority lists (chosen inside the script): the seed's four, then
 * `queue:delayed`, `queue:jobs`, `queue:state`, `queue:meta`, `queue:wake`, named as the script derives them.
 * `wakeKey` is the list idle workers block on.
 */
export function declaredKeys(seedKeys: readonly string[]): { keys: string[]; wakeKey: string } {
  const queue = seedKeys[0]!;
  const wakeKey = `${queue}:wake`;
  return { keys: [...seedKeys, `${queue}:delayed`, `${queue}:jobs`, `${queue}:state`, `${queue}:meta`, wakeKey], wakeKey };
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
 * PUSHN: runs of jobs with the same options, all named or all with generated ids, share one group header
 * (`k priority policy delay_seconds named`), so a bulk of plain jobs costs about one argument per job.
 */
export function encodePushMany(jobs: readonly PushSpec[]): ScriptArg[] {
  const args: ScriptArg[] = ['PUSHN', SERVER_TIME, jobs.length];
  let groupSize = 0;
  let groupSizeAt = 0;
  let prev: PushSpec | undefined;
  for (const job of jobs) {
    const named = job.id !== undefined;
    const sameGroup =
      job.priority === prev?.priority &&
      job.policy === prev.policy &&
      job.delaySeconds === prev.delaySeconds &&
      named === (prev.id !== undefined);
    if (!sameGroup) {
      if (prev !== undefined) args[groupSizeAt] = groupSize;
      groupSizeAt = args.length;
      groupSize = 0;
      args.push(0, job.priority, job.policy, job.delaySeconds, named ? 1 : 0);
    }
    groupSize++;
    if (named) args.push(job.id!);
    args.push(job.text);
    prev = job;
  }
  if (prev !== undefined) args[groupSizeAt] = groupSize;
  return args;
}

/** PUSHN's reply, per job: its id when queued, 0 when the id existed. */
export function decodePushMany(jobs: readonly PushSpec[], reply: unknown): PushResult[] {
  const items = toArray(reply);
  const out = new Array<PushResult>(jobs.length);
  for (let i = 0; i < jobs.length; i++) {
    const item = items[i];
    out[i] = typeof item === 'string' ? { id: item, added: true } : { id: jobs[i]!.id ?? '', added: false };
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

/**
 * The lease part of a POP (full) or ACK reply from `reply[from]` on: wait_ms, the call's lease token, the
 * attempts as one string ("1,1,2"), then pairs of id and record "priority:policy:data".
 */
function decodeLeased<T>(reply: unknown[], from: number, codec: Codec<T>): LeasedJobs<T> {
  const leaseToken = String(reply[from + 1]);
  const tries = String(reply[from + 2]).split(',');
  const jobs: Job<T>[] = [];
  let undecodable: UndecodableJob[] | undefined;
  for (let i = from + 3, k = 0; i < reply.length; i += 2, k++) {
    const id = reply[i] as string;
    const rec = reply[i + 1] as string;
    const a = rec.indexOf(':');
    const b = rec.indexOf(':', a + 1);
    let data: T;
    try {
      data = codec.decode(rec.slice(b + 1));
    } catch (error) {
      (undecodable ??= []).push({ id, leaseToken, error });
      continue;
    }
    jobs.push({
      id,
      data,
      priority: Number(rec.slice(0, a)),
      attempts: Number(tries[k]),
      // The policy is "maxRetries" or "maxRetries,baseMs,maxMs": parseInt stops at the comma.
      maxRetries: Number.parseInt(rec.slice(a + 1, b), 10),
      leaseToken,
    });
  }
  return { waitMs: toNumber(reply[from]), jobs, undecodable };
}

/** POP (full)'s reply. */
export function decodeFetch<T>(reply: unknown, codec: Codec<T>): LeasedJobs<T> {
  return decodeLeased(toArray(reply), 0, codec);
}

/** The lease of a job: what COMPLETE, FAIL, EXTEND, RELEASE and ACK present. */
export interface LeaseRef {
  readonly id: string;
  readonly leaseToken: string;
}

/**
 * ACK: completes `jobs` and leases up to `fetch` more. Runs of jobs leased under one token (one per fetch)
 * share a group: the token, how many, their ids.
 */
export function encodeAck(jobs: readonly LeaseRef[], fetch: number, leaseMs: number, request: RequestId | undefined): ScriptArg[] {
  const args: ScriptArg[] = ['ACK', SERVER_TIME, leaseMs, fetch, jobs.length];
  let groupSize = 0;
  let groupSizeAt = 0;
  let token: string | undefined;
  for (const job of jobs) {
    if (job.leaseToken !== token) {
      if (token !== undefined) args[groupSizeAt] = groupSize;
      token = job.leaseToken;
      args.push(token, 0);
      groupSizeAt = args.length - 1;
      groupSize = 0;
    }
    groupSize++;
    args.push(job.id);
  }
  if (token !== undefined) args[groupSizeAt] = groupSize;
  return requestArgs(args, request);
}

/** ACK's reply: one "1" (completed) or "0" (lease lost) per job, then the leased jobs as POP's. */
export function decodeAck<T>(reply: unknown, codec: Codec<T>): LeasedJobs<T> & { completed: boolean[] } {
  const items = toArray(reply);
  const marks = String(items[0]);
  const completed = new Array<boolean>(marks.length);
  for (let i = 0; i < marks.length; i++) completed[i] = marks.charCodeAt(i) === 49;
  const out = decodeLeased(items, 1, codec) as LeasedJobs<T> & { completed: boolean[] };
  out.completed = completed;
  return out;
}

/** COMPLETE under the job's lease token. */
export function encodeComplete(job: LeaseRef): ScriptArg[] {
  return ['COMPLETE', SERVER_TIME, job.id, job.leaseToken];
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

/** RELEASE: gives a leased job back without counting its attempt (reply: `decodeHeld`). */
export function encodeRelease(job: LeaseRef): ScriptArg[] {
  return ['RELEASE', SERVER_TIME, job.id, job.leaseToken];
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
