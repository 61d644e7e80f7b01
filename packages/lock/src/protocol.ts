// The wire format between LockManager and distributed_lock.lua: the only code that knows ARGV positions and replies.
import { CyRedisError, toBigInt, type ScriptArg } from '@cyredis/core';

/** The longest lease the script accepts, in ms: 2^40, about 35 years. */
export const MAX_TTL_MS = 2 ** 40;
/** The most operations one batch call may carry (the script refuses more keys). */
export const MAX_BATCH = 256;

/** Operations that take or prolong a lease. */
export type LeaseOperation = 'acquire' | 'wait' | 'extend';

/**
 * One operation on one lock key. `wait` is `acquire` that, when refused, asks the holder's release to be
 * published on the key's channel; `fence` (Redlock) raises a held lock's token to at least `floor`.
 */
export type LockRequest =
  | { readonly operation: LeaseOperation; readonly key: string; readonly owner: string; readonly ttlMs: number }
  | { readonly operation: 'release'; readonly key: string; readonly owner: string }
  | { readonly operation: 'status' | 'force'; readonly key: string }
  | { readonly operation: 'fence'; readonly key: string; readonly owner: string; readonly floor: bigint };

/** The operations the script's batch form accepts (all but `fence`). */
export type BatchableRequest = Exclude<LockRequest, { operation: 'fence' }>;

/** What the script answered to one operation, complete whichever reply form it used. */
export interface LockReply {
  /** `granted`: done (status: a live lease holds the lock); `refused`: not done (status: free). */
  readonly state: 'granted' | 'refused';
  /** The holder after the call ('' when free); on refusal, who holds it; release and force: who held it. */
  readonly owner: string;
  /** The lease left after the call, in ms (0 when free, released or force-unlocked). */
  readonly ttlMs: number;
  /** The holder's fencing token; when free, the last one issued (0n if never locked, or once the key expired). */
  readonly token: bigint;
}

/**
 * The mode argument of each operation. Lease operations and release go as compact codes, whose granted
 * reply is the token alone: the script then builds no table and the client decodes one integer
 * (`decodeReply` restores owner and ttl from the request).
 */
const MODE = { acquire: 'a', wait: 'w', extend: 'e', release: 'r', status: 'status', force: 'force', fence: 'fence' } as const;

/** ARGV of the single-key form: `<owner> <ttl_ms> <mode>`, and for fence the floor after it. */
export function encodeArgs(request: LockRequest): ScriptArg[] {
  switch (request.operation) {
    case 'acquire':
    case 'wait':
    case 'extend':
      return [request.owner, request.ttlMs, MODE[request.operation]];
    case 'release':
      return [request.owner, 0, MODE.release];
    case 'status':
    case 'force':
      return ['', 0, MODE[request.operation]];
    case 'fence':
      return [request.owner, 0, MODE.fence, request.floor];
  }
}

/** Writes the (owner, ttl, mode) triple of a batchable operation at `at`: the single-key ARGV, in place. */
function putTriple(args: ScriptArg[], at: number, request: BatchableRequest): void {
  switch (request.operation) {
    case 'acquire':
    case 'wait':
    case 'extend':
      args[at] = request.owner;
      args[at + 1] = request.ttlMs;
      break;
    case 'release':
      args[at] = request.owner;
      args[at + 1] = 0;
      break;
    case 'status':
    case 'force':
      args[at] = '';
      args[at + 1] = 0;
  }
  args[at + 2] = MODE[request.operation];
}

/** KEYS and ARGV of the batch form: one key and one (owner, ttl, mode) triple per operation, 2 … 256 of them. */
export function encodeBatch(requests: readonly BatchableRequest[]): { keys: string[]; args: ScriptArg[] } {
  const n = requests.length;
  const keys = new Array<string>(n);
  const args = new Array<ScriptArg>(3 * n);
  for (let i = 0; i < n; i++) {
    const request = requests[i]!;
    keys[i] = request.key;
    putTriple(args, 3 * i, request);
  }
  return { keys, args };
}

function unexpected(request: LockRequest, reply: unknown): CyRedisError {
  return new CyRedisError(`unexpected reply to lock ${request.operation}: ${JSON.stringify(reply)}`);
}

/**
 * The typed result of one operation from its reply: `[ok, owner, ttl_ms, token]`, or for a granted compact
 * operation its token alone, the owner and ttl then being the request's own (release: ttl 0).
 */
export function decodeReply(request: LockRequest, reply: unknown): LockReply {
  if (Array.isArray(reply)) {
    const owner: unknown = reply[1];
    const ttlMs: unknown = reply[2];
    if (reply.length !== 4 || typeof owner !== 'string' || typeof ttlMs !== 'number') throw unexpected(request, reply);
    return { state: reply[0] === 1 ? 'granted' : 'refused', owner, ttlMs, token: toBigInt(reply[3]) };
  }
  switch (request.operation) {
    case 'acquire':
    case 'wait':
    case 'extend':
      return { state: 'granted', owner: request.owner, ttlMs: request.ttlMs, token: toBigInt(reply) };
    case 'release':
      return { state: 'granted', owner: request.owner, ttlMs: 0, token: toBigInt(reply) };
    default:
      throw unexpected(request, reply);
  }
}

/** The results of a batch call, one per request, in order. */
export function decodeBatch(requests: readonly BatchableRequest[], replies: unknown): LockReply[] {
  const n = requests.length;
  if (!Array.isArray(replies) || replies.length !== n) {
    throw new CyRedisError(`batch reply has ${String((replies as unknown[] | undefined)?.length)} results for ${n} operations`);
  }
  const results = new Array<LockReply>(n);
  for (let i = 0; i < n; i++) results[i] = decodeReply(requests[i]!, replies[i]);
  return results;
}

// ---- semaphore.lua ----

/** The most permits a semaphore may have (and so the largest count one acquire may ask for). */
export const MAX_PERMITS = 1_000_000;

/** One operation on one semaphore key. `wait` is `acquire` that, when refused, asks releases to be published. */
export type SemaphoreRequest =
  | {
      readonly operation: 'acquire' | 'wait';
      readonly key: string;
      readonly owner: string;
      readonly ttlMs: number;
      readonly count: number;
      /** The permits to use while the key holds none (it never had, or went idle). */
      readonly permits: number;
      /** Read-write lock: a request for all permits is a writer, and a waiting writer holds new readers back. */
      readonly writerPreference?: boolean;
    }
  | { readonly operation: 'extend'; readonly key: string; readonly owner: string; readonly ttlMs: number }
  | {
      readonly operation: 'release';
      readonly key: string;
      readonly owner: string;
      /** The releaser's permits: when the key holds the same and this lease was the last, the key goes at once. */
      readonly permits?: number;
    }
  | { readonly operation: 'status'; readonly key: string; readonly permits: number }
  | { readonly operation: 'resize'; readonly key: string; readonly permits: number }
  /** Redlock: raises the token of `owner`'s live lease to at least `floor`. */
  | { readonly operation: 'fence'; readonly key: string; readonly owner: string; readonly floor: bigint };

/** ARGV of one semaphore operation: `<owner> <ttl_ms> <mode>` (release: its permits in the ttl's place), then the count and permits where they apply. */
export function encodeSemaphoreArgs(request: SemaphoreRequest): ScriptArg[] {
  switch (request.operation) {
    case 'acquire':
    case 'wait': {
      const args: ScriptArg[] = [request.owner, request.ttlMs, request.operation, request.count, request.permits];
      if (request.writerPreference) args.push('w');
      return args;
    }
    case 'extend':
      return [request.owner, request.ttlMs, 'extend'];
    case 'release':
      return [request.owner, request.permits ?? 0, 'release'];
    case 'status':
      return ['', 0, 'status', 0, request.permits];
    case 'resize':
      return ['', 0, 'resize', request.permits];
    case 'fence':
      return [request.owner, 0, 'fence', request.floor];
  }
}

/** The operations the semaphore's batch form accepts. */
export type BatchableSemaphoreRequest = Extract<SemaphoreRequest, { operation: 'acquire' | 'wait' | 'extend' | 'release' }>;

/** The most operations one semaphore batch call may carry. */
export const MAX_SEMAPHORE_BATCH = 64;

/** KEYS and ARGV of the semaphore's batch form: one key and six ARGV (the single form's, padded with '') per operation. */
export function encodeSemaphoreBatch(requests: readonly BatchableSemaphoreRequest[]): { keys: string[]; args: ScriptArg[] } {
  const keys = new Array<string>(requests.length);
  const args: ScriptArg[] = [];
  requests.forEach((request, i) => {
    keys[i] = request.key;
    const own = encodeSemaphoreArgs(request);
    args.push(...own);
    for (let k = own.length; k < 6; k++) args.push('');
  });
  return { keys, args };
}

/** The replies of a batch call, one per request (an `Error` for an operation the script refused with an error). */
export function splitSemaphoreBatch(requests: readonly BatchableSemaphoreRequest[], replies: unknown): unknown[] {
  if (!Array.isArray(replies) || replies.length !== requests.length) {
    throw new CyRedisError(`semaphore batch reply has ${String((replies as unknown[] | undefined)?.length)} results for ${requests.length} operations`);
  }
  return replies as unknown[];
}

/** Whether the semaphore's batch form takes `request` (status, resize and fence go alone). */
export function isBatchableSemaphore(request: SemaphoreRequest): request is BatchableSemaphoreRequest {
  return request.operation !== 'status' && request.operation !== 'resize' && request.operation !== 'fence';
}

/** What acquire, wait, extend and fence answered. */
export type PermitReply =
  | { readonly state: 'granted'; readonly count: number; readonly ttlMs: number; readonly token: bigint }
  | {
      readonly state: 'refused';
      /** Permits free at the time (negative after a resize below what is held). */
      readonly available: number;
      /** ms until the earliest lease ends, when permits may come back without a release (0: none held). */
      readonly waitMs: number;
      /** The semaphore's permits (0 for a refused extend). */
      readonly permits: number;
    };

function unexpectedSemaphore(operation: string, reply: unknown): CyRedisError {
  return new CyRedisError(`unexpected reply to semaphore ${operation}: ${JSON.stringify(reply)}`);
}

function isIntegers(reply: unknown, length: number): reply is number[] {
  return Array.isArray(reply) && reply.length === length && reply.every((v) => typeof v === 'number');
}

/**
 * The reply of acquire, wait, extend or fence: a granted acquire or wait answers with its token alone (the
 * count and ttl being the request's own), extend and fence with `[1, count, ttl_ms, token]`; a refusal with
 * `[0, available, wait_ms, permits]`.
 */
export function decodePermitReply(request: SemaphoreRequest, reply: unknown): PermitReply {
  if (!Array.isArray(reply) && (request.operation === 'acquire' || request.operation === 'wait')) {
    return { state: 'granted', count: request.count, ttlMs: request.ttlMs, token: toBigInt(reply) };
  }
  if (!Array.isArray(reply) || reply.length !== 4 || typeof reply[1] !== 'number' || typeof reply[2] !== 'number') {
    throw unexpectedSemaphore(request.operation, reply);
  }
  if (reply[0] === 1) return { state: 'granted', count: reply[1], ttlMs: reply[2], token: toBigInt(reply[3]) };
  if (!isIntegers(reply, 4)) throw unexpectedSemaphore(request.operation, reply);
  return { state: 'refused', available: reply[1], waitMs: reply[2], permits: reply[3]! };
}

/** The reply of release: true when a live lease of this owner ended. */
export function decodeReleaseReply(reply: unknown): boolean {
  if (reply !== 0 && reply !== 1) throw unexpectedSemaphore('release', reply);
  return reply === 1;
}

/** One live lease of a semaphore, as status reports it. */
export interface PermitHolder {
  /** The holder's unique value. */
  readonly owner: string;
  /** Permits it holds. */
  readonly count: number;
  /** Lease left in ms. */
  readonly ttlMs: number;
}

/** What status reports: `[permits, available, token, owner1, count1, ttl_ms1, …]`. */
export interface SemaphoreState {
  readonly permits: number;
  readonly available: number;
  /** The last token issued (0n if never acquired, or once the key is gone). */
  readonly token: bigint;
  readonly holders: readonly PermitHolder[];
}

export function decodeStatusReply(reply: unknown): SemaphoreState {
  if (!Array.isArray(reply) || reply.length < 3 || reply.length % 3 !== 0) throw unexpectedSemaphore('status', reply);
  const [permits, available] = reply as unknown[];
  if (typeof permits !== 'number' || typeof available !== 'number') throw unexpectedSemaphore('status', reply);
  const holders: PermitHolder[] = [];
  for (let i = 3; i < reply.length; i += 3) {
    const [owner, count, ttlMs] = reply.slice(i, i + 3) as unknown[];
    if (typeof owner !== 'string' || typeof count !== 'number' || typeof ttlMs !== 'number') throw unexpectedSemaphore('status', reply);
    holders.push({ owner, count, ttlMs });
  }
  return { permits, available, token: toBigInt(reply[2]), holders };
}

/** The reply of resize: `[permits, available]`. */
export function decodeResizeReply(reply: unknown): { permits: number; available: number } {
  if (!isIntegers(reply, 2)) throw unexpectedSemaphore('resize', reply);
  return { permits: reply[0]!, available: reply[1]! };
}

// ---- fair_lock.lua ----

/** One operation on one fair-lock key. `wait` takes (or keeps) a place in line when refused. */
export type FairRequest =
  | { readonly operation: 'acquire' | 'wait' | 'extend'; readonly key: string; readonly owner: string; readonly ttlMs: number }
  | { readonly operation: 'release' | 'leave'; readonly key: string; readonly owner: string }
  | { readonly operation: 'status' | 'force'; readonly key: string };

/** ARGV of one fair-lock operation: `<owner> <ttl_ms> <mode>`. */
export function encodeFairArgs(request: FairRequest): ScriptArg[] {
  switch (request.operation) {
    case 'acquire':
    case 'wait':
    case 'extend':
      return [request.owner, request.ttlMs, request.operation];
    case 'release':
    case 'leave':
      return [request.owner, 0, request.operation];
    case 'status':
    case 'force':
      return ['', 0, request.operation];
  }
}

/**
 * The reply of acquire, wait and extend: `[1, owner, ttl_ms, token]` granted, `[0, holder, wait_ms, token]`
 * refused (`ttlMs` is then the wait: ms until the lease or the head's place in line ends).
 */
export function decodeFairReply(request: FairRequest, reply: unknown): LockReply {
  return decodeReply({ operation: 'status', key: request.key }, reply);
}

/**
 * The reply of release, force and leave: true when a live lease ended (release: also when already
 * released; leave: when the owner had a place in line).
 */
export function decodeFairEnded(request: FairRequest, reply: unknown): boolean {
  if (reply !== 0 && reply !== 1) throw new CyRedisError(`unexpected reply to fair lock ${request.operation}: ${JSON.stringify(reply)}`);
  return reply === 1;
}

/** What a fair lock's status reports. */
export interface FairState extends LockReply {
  /** Places taken in line (some may belong to waiters that gave up and whose place has not ended yet). */
  readonly waiting: number;
}

/** The reply of status: `[locked, holder, ttl_ms, token, waiting]`. */
export function decodeFairStatus(reply: unknown): FairState {
  if (!Array.isArray(reply) || reply.length !== 5 || typeof reply[4] !== 'number') {
    throw new CyRedisError(`unexpected reply to fair lock status: ${JSON.stringify(reply)}`);
  }
  return { ...decodeReply({ operation: 'status', key: '' }, reply.slice(0, 4)), waiting: reply[4] };
}
