// LockManager: acquire, wait, using, status and force unlock on one Redis or, with several clients, Redlock.
import { randomUUID } from 'node:crypto';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertRedisClient,
  CyRedisError,
  InvalidArgumentError,
  isCluster,
  KeySpace,
  LuaScriptManager,
  readPackageLua,
  RedisUnavailableError,
  waitAtMost,
  warnIfEvicting,
  withDeadline,
  type RedisClient,
  type RegisteredScript,
} from '@cyredis/core';
import { LockLostError, LockUnavailableError, QuorumUnreachableError, type NodeOutcome } from './errors.js';
import { lockBatcher, one, runOne, type Mode, type Outcome } from './batch.js';
import { Lock, type LockBackend } from './lock.js';
import { Subscriber, WaitQueues, type Waiter } from './wakeups.js';

const SOURCE = readPackageLua(import.meta.url, 'distributed_lock');
/** The script refuses longer leases; 2^40 ms is about 35 years. */
const MAX_TTL_MS = 2 ** 40;
/**
 * The shortest lease accepted, in ms: a lease must outlast the drift taken off it (1–50 % of the ttl plus
 * 2 ms) and a round trip, or no acquire can ever succeed.
 */
export const MIN_TTL_MS = 10;
const MAX_OWNER_LENGTH = 1024;
const DEFAULT_TIMEOUT_MS = 1_000;
const EVICTION_RISK =
  'an evicted lock key ends its lease early, so a second owner can acquire the lock while the first still holds it (fencing tokens still increase)';
const MANAGER_OPTIONS = ['ttlMs', 'prefix', 'driftFactor', 'timeoutMs', 'waitForReplicas'] as const;
const ACQUIRE_OPTIONS = ['ttlMs', 'waitMs', 'signal', 'owner'] as const;

/** Options of `new LockManager(…)`. */
export interface LockManagerOptions {
  /** Lease length when `acquire` is given none, in ms: 10 … 2^40. Default 30 000. */
  ttlMs?: number;
  /** First part of every key. Default `cyredis`. */
  prefix?: string;
  /**
   * Share of the ttl (plus 2 ms) taken off the local deadline for clock drift between this process and the
   * servers. Default 0.01.
   */
  driftFactor?: number;
  /**
   * Reply deadline of every call, in ms. `status`, `forceUnlock`, `release` and `extend` settle within it
   * (plus `waitForReplicas.timeoutMs` where that applies); `acquire` within `waitMs` plus it. A call that
   * gets no reply in time rejects with `RedisTimeoutError` (outcome unknown); with Redlock a node that does
   * not answer in time counts as failed. Default 1 000.
   */
  timeoutMs?: number;
  /**
   * After acquire and extend, run `WAIT replicas timeoutMs` on each node and refuse (releasing) unless at
   * least `replicas` replicas acknowledged: narrows the window in which a failover loses the lock.
   */
  waitForReplicas?: {
    /** Replicas that must acknowledge the write (`WAIT` numreplicas), ≥ 1. */
    replicas: number;
    /** How long `WAIT` may block, in ms, ≥ 1. */
    timeoutMs: number;
  };
}

/** Options of `acquire`, `tryAcquire` and `using`. */
export interface AcquireOptions {
  /** Lease length in ms: 10 … 2^40. Default: the manager's `ttlMs`. */
  ttlMs?: number;
  /** How long to wait for a held lock to come free, in ms. Default 0 (one attempt). */
  waitMs?: number;
  /** Cancels the wait; `acquire` then rejects with the signal's reason (and holds nothing). */
  signal?: AbortSignal;
  /** The holder's unique value. Default: a random UUID. Acquiring again with the same owner is idempotent. */
  owner?: string;
}

/** What `status` reports about a resource. */
export interface LockStatus {
  /** Whether a live lease holds it. */
  locked: boolean;
  /** The holder, when locked. */
  owner?: string;
  /** Lease left in ms (0 when free). */
  ttlMs: number;
  /** The holder's token when locked; otherwise the last token issued (0n if never locked, or once the key expired). */
  fencingToken: bigint;
}

interface Node {
  readonly index: number;
  readonly scripts: LuaScriptManager;
  readonly script: RegisteredScript;
  readonly client: RedisClient;
  readonly subscriber: Subscriber;
  /** Absent on a cluster, where one call cannot span the slots of several resources. */
  readonly batcher: ReturnType<typeof lockBatcher> | undefined;
}

/**
 * Distributed locks on one Redis (node or cluster) or, given several independent clients, Redlock over
 * ⌊N/2⌋+1 of them. Every acquire returns a fencing token greater than all before it; waiters are woken by
 * the release (pub/sub), not by polling. Call `close()` when done: it closes the subscriber connections.
 */
export class LockManager {
  /** Nodes that must agree: ⌊N/2⌋+1. */
  readonly quorum: number;
  private readonly nodes: Node[];
  private readonly keySpace: KeySpace;
  private readonly ttlMs: number;
  private readonly driftFactor: number;
  private readonly timeoutMs: number;
  private readonly waiting = new WaitQueues();
  private evictionChecked = false;
  private readonly replicas: { replicas: number; timeoutMs: number } | undefined;
  private readonly backend: LockBackend = {
    extend: (lock, ttlMs) => this.extendLock(lock, ttlMs),
    release: (lock) => this.releaseLock(lock),
  };

  constructor(redis: RedisClient | readonly RedisClient[], options: LockManagerOptions = {}) {
    const clients = Array.isArray(redis) ? (redis as readonly RedisClient[]) : [redis as RedisClient];
    if (clients.length === 0) throw new InvalidArgumentError('redis', 'needs at least one client');
    clients.forEach((client, i) => assertRedisClient(Array.isArray(redis) ? `redis[${i}]` : 'redis', client));
    assertOptions('options', options, MANAGER_OPTIONS);
    this.keySpace = new KeySpace('lock', options.prefix);
    this.ttlMs = ttl('options.ttlMs', options.ttlMs ?? 30_000);
    this.driftFactor = options.driftFactor ?? 0.01;
    assertFiniteNumber('options.driftFactor', this.driftFactor, { min: 0, max: 0.5 });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    assertFiniteNumber('options.timeoutMs', this.timeoutMs, { min: 0, exclusiveMin: true, max: 2 ** 31 - 1 });
    if (options.waitForReplicas !== undefined) {
      assertOptions('options.waitForReplicas', options.waitForReplicas, ['replicas', 'timeoutMs'], false);
      assertInteger('options.waitForReplicas.replicas', options.waitForReplicas.replicas, { min: 1 });
      // WAIT with 0 blocks forever.
      assertInteger('options.waitForReplicas.timeoutMs', options.waitForReplicas.timeoutMs, { min: 1 });
      this.replicas = { ...options.waitForReplicas };
    }
    const events = {
      released: (key: string) => this.waiting.released(key),
      resubscribed: () => this.waiting.wakeAll(),
    };
    this.nodes = clients.map((client, index) => {
      const scripts = new LuaScriptManager(client);
      const script = scripts.registerScript('cyredis:lock', SOURCE);
      const batcher = isCluster(client) ? undefined : lockBatcher(index, scripts, script, this.timeoutMs);
      return { index, client, scripts, script, subscriber: new Subscriber(client, events), batcher };
    });
    this.quorum = Math.floor(clients.length / 2) + 1;
  }

  /** The Redis key of a resource's lock: `<prefix>:lock:{<resource>}:lock`. */
  keyOf(resource: string): string {
    return this.keySpace.key(resource, 'lock', 'resource');
  }

  /**
   * Takes the lock, waiting up to `waitMs` for the holder to release it or its lease to end; settles within
   * `waitMs` plus `timeoutMs`. Rejects with `LockUnavailableError` when still held after `waitMs`, a
   * `RedisUnavailableError` when Redis does not answer in time (Redlock: `QuorumUnreachableError`), or the
   * signal's reason when aborted.
   */
  async acquire(resource: string, options: AcquireOptions = {}): Promise<Lock> {
    assertOptions('options', options, ACQUIRE_OPTIONS);
    const key = this.keyOf(resource);
    const ttlMs = options.ttlMs === undefined ? this.ttlMs : ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    const deadline = performance.now() + waitMs;
    if (!this.evictionChecked) {
      this.evictionChecked = true;
      for (const node of this.nodes) warnIfEvicting(node.client, '@cyredis/lock', EVICTION_RISK);
    }
    const first = await this.attempt(resource, key, owner, ttlMs, 'acquire', signal);
    if (first instanceof Lock || waitMs === 0) return unwrap(first);
    return this.wait(resource, key, owner, ttlMs, deadline, signal, first);
  }

  /** One attempt, no waiting: the lock, or null when another owner holds it. */
  async tryAcquire(resource: string, options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lock | null> {
    try {
      return await this.acquire(resource, { ...options, waitMs: 0 });
    } catch (err) {
      if (err instanceof LockUnavailableError) return null;
      throw err;
    }
  }

  /**
   * Runs `routine` while holding the lock. The lease is extended in the background before it runs out; if
   * an extension is refused, or gets no answer until the local lease ends, `signal` aborts with
   * `LockLostError`. The lock is released at the end. Rejects with the routine's own error when it throws;
   * otherwise with `LockLostError` when the lease was lost while it ran (even if it returned), else resolves
   * with its result. Settles within `timeoutMs` of the routine's end.
   */
  async using<T>(resource: string, routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lock = await this.acquire(resource, options);
    const controller = new AbortController();
    let stopped = false;
    let renewTimer: NodeJS.Timeout | undefined;
    let deadlineTimer: NodeJS.Timeout | undefined;
    let renewing: Promise<void> = Promise.resolve();
    const lost = (reason: LockLostError) => {
      if (!controller.signal.aborted) controller.abort(reason);
    };
    const ranOut = () => new LockLostError(resource, [], 'its lease ran out on the local clock before an extension was confirmed');
    const armDeadline = () => {
      clearTimeout(deadlineTimer);
      deadlineTimer = setTimeout(() => lost(ranOut()), lock.remainingMs);
    };
    const renew = () => {
      renewing = lock.extend().then(
        () => {
          if (stopped) return;
          armDeadline();
          schedule();
        },
        (err: unknown) => {
          // A refusal is final; for an unknown outcome keep trying while the local lease lasts.
          if (err instanceof LockLostError) lost(err);
          else schedule(Math.max(10, lock.remainingMs / 4));
        },
      );
    };
    const schedule = (delayMs = lock.remainingMs / 2) => {
      if (!stopped && !controller.signal.aborted) renewTimer = setTimeout(renew, delayMs);
    };
    const onCallerAbort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onCallerAbort, { once: true });
    armDeadline();
    schedule();
    const finish = async () => {
      stopped = true;
      clearTimeout(renewTimer);
      clearTimeout(deadlineTimer);
      options.signal?.removeEventListener('abort', onCallerAbort);
      // An extension in flight and the release go out together: both are bounded by timeoutMs. A release
      // that cannot reach Redis leaves the lease to run out by itself.
      const [, released] = await Promise.all([renewing, lock.release().catch(() => undefined)]);
      return released;
    };
    let result: T;
    try {
      result = await routine(controller.signal, lock);
    } catch (err) {
      // The routine's outcome matters more than the release's.
      await finish();
      throw err;
    }
    if (lock.remainingMs === 0) lost(ranOut());
    const released = await finish();
    const reason: unknown = controller.signal.reason;
    if (reason instanceof LockLostError) throw reason;
    if (released === false) throw new LockLostError(resource, [], 'the lease was gone when using() released it (it expired, was force-unlocked or taken)');
    return result;
  }

  /** The lock's state (with several clients: the owner that holds a quorum, if any). */
  async status(resource: string): Promise<LockStatus> {
    const key = this.keyOf(resource);
    const outcomes = await this.callAll(key, '', 0, 'status', false);
    this.assertReachable(resource, outcomes);
    let fencingToken = 0n;
    const ttlsByOwner = new Map<string, number[]>();
    for (const o of outcomes) {
      if (o.token > fencingToken) fencingToken = o.token;
      if (o.state !== 'granted') continue;
      const ttls = ttlsByOwner.get(o.owner!) ?? [];
      ttls.push(o.ttlMs!);
      ttlsByOwner.set(o.owner!, ttls);
    }
    for (const [owner, ttls] of ttlsByOwner) {
      if (ttls.length < this.quorum) continue;
      // The lease holds while a quorum of nodes still has it.
      ttls.sort((a, b) => b - a);
      return { locked: true, owner, ttlMs: ttls[this.quorum - 1]!, fencingToken };
    }
    return { locked: false, ttlMs: 0, fencingToken };
  }

  /** Ends whoever's lease; true when a live lease was removed. The fencing counter is kept. */
  async forceUnlock(resource: string): Promise<boolean> {
    const outcomes = await this.callAll(this.keyOf(resource), '', 0, 'force', false);
    this.assertReachable(resource, outcomes);
    return outcomes.some((o) => o.state === 'granted');
  }

  /** Closes the subscriber connections this manager opened (not the clients it was given). */
  close(): Promise<void> {
    this.waiting.clear();
    for (const node of this.nodes) node.subscriber.close();
    return Promise.resolve();
  }

  private async wait(
    resource: string,
    key: string,
    owner: string,
    ttlMs: number,
    deadline: number,
    signal: AbortSignal | undefined,
    refused: LockUnavailableError,
  ): Promise<Lock> {
    let resolveSleep: (() => void) | undefined;
    const waiter: Waiter = { woken: false, wake: () => resolveSleep?.() };
    const onAbort = () => resolveSleep?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    // Subscribed before the next attempt, so a release after it cannot be missed; a node that does not
    // confirm in time must not hold the wait up (the lease-end timer and its resubscribe still wake us).
    const subscribed = this.waiting.join(key, waiter, () =>
      waitAtMost(Promise.all(this.nodes.map((node) => node.subscriber.add(key))), this.timeoutMs),
    );
    try {
      await waitAtMost(subscribed, Math.max(0, deadline - performance.now()));
      let last = refused;
      for (;;) {
        signal?.throwIfAborted();
        waiter.woken = false;
        // `wait` asks the holder's release to publish; this waiter is subscribed by now.
        const result = await this.attempt(resource, key, owner, ttlMs, 'wait', signal);
        if (result instanceof Lock) {
          // The next waiter retries when this new lease ends, should its holder never release it.
          this.waiting.leaseEndsIn(key, ttlMs + 1);
          return result;
        }
        last = result;
        // The holder may never release: the head waiter retries when its lease ends at the latest.
        const leaseLeft = Math.min(...last.nodes.map((n) => (n.state === 'refused' ? (n.ttlMs ?? 0) : Infinity)));
        if (Number.isFinite(leaseLeft)) this.waiting.leaseEndsIn(key, leaseLeft + 1);
        const left = deadline - performance.now();
        if (left <= 0) throw last;
        // Woken or aborted while the attempt was in flight: go round again at once.
        if (waiter.woken || signal?.aborted) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          resolveSleep = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        resolveSleep = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (this.waiting.leave(key, waiter)) for (const node of this.nodes) node.subscriber.remove(key);
    }
  }

  /**
   * One acquire round on every node. Returns the lock, or the contention error to wait on; throws the
   * node's error (one client) or `QuorumUnreachableError` (Redlock). Whatever a failed round may have taken
   * is released, waiting for that only while the round's `timeoutMs` lasts.
   */
  private async attempt(
    resource: string,
    key: string,
    owner: string,
    ttlMs: number,
    mode: 'acquire' | 'wait',
    signal: AbortSignal | undefined,
  ): Promise<Lock | LockUnavailableError> {
    const start = performance.now();
    const outcomes = await this.callAll(key, owner, ttlMs, mode, true);
    let token = 0n;
    if (count(outcomes, 'granted') >= this.quorum) {
      token = this.nodes.length === 1 ? outcomes[0]!.token : await this.alignTokens(key, owner, outcomes, start);
    }
    const deadline = start + ttlMs - this.drift(ttlMs);
    if (count(outcomes, 'granted') >= this.quorum) {
      if (signal?.aborted) {
        await this.settle(this.releaseOn(key, owner, outcomes.filter((o) => o.state === 'granted')), start);
        signal.throwIfAborted();
      }
      if (deadline > performance.now()) return new Lock(this.backend, resource, key, owner, token, ttlMs, deadline);
      const late = new RedisUnavailableError(`lock "${resource}": the reply came after the ${ttlMs} ms lease (minus drift) had run out`);
      for (const o of outcomes) if (o.state === 'granted') Object.assign(o, { state: 'failed', error: late });
    }
    const touched = outcomes.filter((o) => o.state !== 'refused');
    if (touched.length > 0) await this.settle(this.releaseOn(key, owner, touched), start);
    signal?.throwIfAborted();
    this.assertReachable(resource, outcomes);
    return new LockUnavailableError(resource, outcomes.map(publicOutcome));
  }

  /**
   * Redlock: nodes count independently, so the lock's token is the highest granted one, raised on every
   * granting node. Any later quorum shares a node with this one, whose token is then already past it.
   * A node that cannot be raised is released and no longer counts.
   */
  private async alignTokens(key: string, owner: string, outcomes: Outcome[], start: number): Promise<bigint> {
    let max = 0n;
    for (const o of outcomes) if (o.state === 'granted' && o.token > max) max = o.token;
    const lagging = outcomes.filter((o) => o.state === 'granted' && o.token < max);
    if (lagging.length === 0) return max;
    const left = Math.max(1, start + this.timeoutMs - performance.now());
    const raised = await Promise.all(lagging.map((o) => this.call(this.nodes[o.node]!, key, owner, 0, 'fence', false, max, left)));
    const failed = lagging.filter((_, i) => raised[i]!.state !== 'granted');
    for (const o of failed) Object.assign(o, { state: 'failed', error: new CyRedisError('could not raise the fencing token') });
    if (failed.length > 0) await this.settle(this.releaseOn(key, owner, failed), start);
    return max;
  }

  private async extendLock(lock: Lock, ttlMs: number): Promise<number> {
    ttlMs = ttl('ttlMs', ttlMs);
    const start = performance.now();
    const outcomes = await this.callAll(lock.key, lock.owner, ttlMs, 'extend', true);
    const deadline = start + ttlMs - this.drift(ttlMs);
    if (count(outcomes, 'granted') >= this.quorum && deadline > performance.now()) return deadline;
    if (outcomes.some((o) => o.state === 'unreplicated')) {
      await this.settle(this.releaseOn(lock.key, lock.owner, outcomes), start);
    }
    this.assertReachable(lock.resource, outcomes);
    throw new LockLostError(lock.resource, outcomes.map(publicOutcome));
  }

  private async releaseLock(lock: Lock): Promise<boolean> {
    const outcomes = await this.callAll(lock.key, lock.owner, 0, 'release', false);
    if (count(outcomes, 'granted') >= this.quorum) return true;
    this.assertReachable(lock.resource, outcomes);
    return false;
  }

  private async releaseOn(key: string, owner: string, outcomes: readonly Outcome[]): Promise<void> {
    await Promise.all(outcomes.map((o) => this.call(this.nodes[o.node]!, key, owner, 0, 'release', false)));
  }

  /** Waits for best-effort cleanup only while the `timeoutMs` of the call that began at `start` lasts. */
  private settle(work: Promise<unknown>, start: number): Promise<void> {
    return waitAtMost(work, Math.max(0, start + this.timeoutMs - performance.now()));
  }

  /**
   * Throws when failed nodes alone leave fewer than a quorum able to answer: with one client its node's
   * own error (`RedisUnavailableError`, `RedisTimeoutError`, `ScriptError`), with Redlock
   * `QuorumUnreachableError`.
   */
  private assertReachable(resource: string, outcomes: readonly Outcome[]): void {
    const failed = outcomes.length - count(outcomes, 'granted') - count(outcomes, 'refused');
    if (outcomes.length - failed >= this.quorum) return;
    if (this.nodes.length > 1) throw new QuorumUnreachableError(resource, outcomes.map(publicOutcome), this.quorum);
    const error = outcomes[0]!.error;
    throw error instanceof CyRedisError ? error : new RedisUnavailableError(`lock "${resource}": ${error?.message ?? 'no usable reply'}`, { cause: error });
  }

  private drift(ttlMs: number): number {
    return Math.floor(ttlMs * this.driftFactor) + 2;
  }

  private callAll(key: string, owner: string, ttlMs: number, mode: Mode, replicate: boolean): Promise<Outcome[]> {
    if (this.nodes.length === 1) return this.call(this.nodes[0]!, key, owner, ttlMs, mode, replicate).then(one);
    return Promise.all(this.nodes.map((node) => this.call(node, key, owner, ttlMs, mode, replicate)));
  }

  /** Runs the script on one node; never rejects (a failure is an outcome). */
  private call(
    node: Node,
    key: string,
    owner: string,
    ttlMs: number,
    mode: Mode,
    replicate: boolean,
    floor?: bigint,
    timeoutMs = this.timeoutMs,
  ): Promise<Outcome> {
    const op = { key, owner, ttlMs, mode, floor };
    const outcome = mode !== 'fence' && node.batcher ? node.batcher.add(op) : runOne(node.index, node.scripts, node.script, op, timeoutMs);
    const replicas = replicate ? this.replicas : undefined;
    return replicas ? outcome.then((o) => this.replicate(node, key, o, replicas)) : outcome;
  }

  /** `waitForReplicas`: a granted outcome stays granted only when enough replicas acknowledged it. */
  private async replicate(node: Node, key: string, outcome: Outcome, { replicas, timeoutMs }: { replicas: number; timeoutMs: number }): Promise<Outcome> {
    if (outcome.state !== 'granted') return outcome;
    try {
      const acked = await this.waitForReplicas(node, key, replicas, timeoutMs);
      if (acked < replicas) {
        const error = new RedisUnavailableError(`${acked} of ${replicas} replica(s) acknowledged the lock within ${timeoutMs} ms`);
        return { ...outcome, state: 'unreplicated', error };
      }
    } catch (err) {
      const error = err instanceof CyRedisError ? err : new RedisUnavailableError(`WAIT failed: ${(err as Error).message}`, { cause: err });
      return { ...outcome, state: 'failed', error };
    }
    return outcome;
  }

  /**
   * `WAIT` on the connection that ran the script: the pipeline's `EXISTS` routes it to the key's node on a
   * cluster, and the connection's order makes WAIT cover the script's write. Bounded by WAIT's own timeout
   * plus `timeoutMs`.
   */
  private async waitForReplicas(node: Node, key: string, replicas: number, timeoutMs: number): Promise<number> {
    const limit = timeoutMs + this.timeoutMs;
    const exec = node.client.pipeline().exists(key).wait(replicas, timeoutMs).exec();
    const replies = await withDeadline(exec, limit, () => new RedisUnavailableError(`WAIT got no reply within ${limit} ms`));
    const [err, acked] = replies?.[1] ?? [new RedisUnavailableError('WAIT got no reply'), 0];
    if (err) throw err;
    return Number(acked);
  }
}

/** A lease length in whole ms: at least `MIN_TTL_MS`, at most 2^40; fractions round up. */
function ttl(name: string, value: number): number {
  assertFiniteNumber(name, value, { min: MIN_TTL_MS, max: MAX_TTL_MS });
  return Math.ceil(value);
}

function count(outcomes: readonly Outcome[], state: Outcome['state']): number {
  let n = 0;
  for (const o of outcomes) if (o.state === state) n++;
  return n;
}

function publicOutcome({ node, state, owner, ttlMs, error }: Outcome): NodeOutcome {
  return { node, state, ...(owner === undefined ? {} : { owner }), ...(ttlMs === undefined ? {} : { ttlMs }), ...(error ? { error } : {}) };
}

function unwrap(result: Lock | LockUnavailableError): Lock {
  if (result instanceof Lock) return result;
  throw result;
}
