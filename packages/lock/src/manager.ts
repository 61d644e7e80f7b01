// LockManager: acquire, wait, using, status and force unlock on one Redis or, with several clients, Redlock.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertRedisClient,
  assertTimeoutMs,
  durationMs,
  InvalidArgumentError,
  listRegistered,
  NameRecorder,
  RedisUnavailableError,
  registryKey,
  warnIfEvicting,
  type RedisClient,
  type RegistryEntry,
  type RegistryListOptions,
} from '@cyredis/core';
import { LockLostError, LockUnavailableError } from './errors.js';
import { LockKeys } from './keys.js';
import { KIND_SUFFIX, listHeldLocks, type HeldLocksPage, type ListHeldOptions } from './held.js';
import { Lock, orNull, type LockBackend } from './lock.js';
import { LockNode, type NodeResult, type ReplicaCheck } from './node.js';
import { MAX_TTL_MS } from './protocol.js';
import { LockNodes, type LockStatus } from './quorum.js';
import { FairLock } from './fair.js';
import type { MultiLock } from './multi.js';
import { acquireMany } from './multi.js';
import { ReadWriteLock } from './readwrite.js';
import { redlockUnsupported, Semaphore, type SemaphoreContext, type SemaphoreOptions } from './semaphore.js';
import { runHoldingLock, type LeaseEvents } from './using.js';
import { WaitQueues } from './waiting.js';
import { ACQUIRE, ACQUIRE_MANY, acquired, notAcquired, type LockManagerEvents } from './tracing.js';

/**
 * The shortest lease accepted, in ms: a lease must outlast the drift taken off it (1–50 % of the ttl plus
 * 2 ms) and a round trip, or no acquire can ever succeed.
 */
export const MIN_TTL_MS = 10;
const MAX_OWNER_LENGTH = 1024;
const DEFAULT_TIMEOUT_MS = 1_000;
const EVICTION_RISK =
  'an evicted lock key ends its lease early, so a second owner can acquire the lock while the first still holds it (fencing tokens still increase)';
/** The registry kind of lock prefixes (`<prefix>:registry:lock`). */
const REGISTRY_KIND = 'lock';
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

/**
 * Distributed locks on one Redis (node or cluster) or, given several independent clients, Redlock over
 * ⌊N/2⌋+1 of them. Every acquire returns a fencing token greater than all before it; waiters are woken by
 * the release (pub/sub), not by polling. Call `close()` when done: it closes the subscriber connections.
 */
export class LockManager extends EventEmitter<LockManagerEvents> {
  /** Nodes that must agree: ⌊N/2⌋+1. */
  readonly quorum: number;
  private readonly nodes: LockNodes;
  private readonly keySpace: LockKeys;
  private readonly ttlMs: number;
  private readonly driftFactor: number;
  private readonly timeoutMs: number;
  private readonly waiting: WaitQueues;
  private evictionChecked = false;
  /** Record the manager's prefix in its registry on each node when a lock is taken (at most once a minute). */
  private readonly registries: NameRecorder[];
  private readonly backend: LockBackend & LeaseEvents = {
    extend: (lock, ttlMs) => this.extendLock(lock, ttlMs),
    release: (lock) => this.releaseLock(lock),
    lost: (lock, error) => this.emit('lost', lock, error),
    error: (error, resource) => this.backgroundError(error, resource),
  };

  constructor(redis: RedisClient | readonly RedisClient[], options: LockManagerOptions = {}) {
    super();
    const clients = Array.isArray(redis) ? (redis as readonly RedisClient[]) : [redis as RedisClient];
    if (clients.length === 0) throw new InvalidArgumentError('redis', 'needs at least one client');
    clients.forEach((client, i) => assertRedisClient(Array.isArray(redis) ? `redis[${i}]` : 'redis', client));
    assertOptions('options', options, MANAGER_OPTIONS);
    this.keySpace = new LockKeys(options.prefix);
    this.registries = clients.map((client) => new NameRecorder(client, registryKey(this.keySpace.prefix, REGISTRY_KIND)));
    this.ttlMs = ttl('options.ttlMs', options.ttlMs ?? 30_000);
    this.driftFactor = options.driftFactor ?? 0.01;
    assertFiniteNumber('options.driftFactor', this.driftFactor, { min: 0, max: 0.5 });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    assertTimeoutMs('options.timeoutMs', this.timeoutMs);
    let replicaCheck: ReplicaCheck | undefined;
    if (options.waitForReplicas !== undefined) {
      assertOptions('options.waitForReplicas', options.waitForReplicas, ['replicas', 'timeoutMs'], false);
      assertInteger('options.waitForReplicas.replicas', options.waitForReplicas.replicas, { min: 1 });
      // WAIT with 0 blocks forever.
      assertInteger('options.waitForReplicas.timeoutMs', options.waitForReplicas.timeoutMs, { min: 1 });
      replicaCheck = { ...options.waitForReplicas };
    }
    const events = {
      released: (key: string, message: string) => this.waiting.released(key, message),
      resubscribed: () => this.waiting.wakeAll(),
    };
    this.nodes = new LockNodes(
      clients.map((client) => new LockNode(client, this.timeoutMs, replicaCheck, events)),
      this.timeoutMs,
    );
    this.waiting = new WaitQueues(this.nodes);
    this.quorum = this.nodes.quorum;
  }

  /**
   * The lock prefixes in use under `prefix`, from the registry: every manager records its own prefix in
   * `<prefix>:registry:lock` when it takes a lock (at most once a minute), and an entry not refreshed for a
   * day drops out. So the answer is `[{ name: prefix, lastSeenMs }]` when locks were taken under `prefix`
   * within the last day, else `[]`: one key read, no keyspace scan. Options: `prefix` (default `cyredis`),
   * `limit`, `offset`, `timeoutMs` (default 1000).
   */
  static list(redis: RedisClient, options: RegistryListOptions = {}): Promise<RegistryEntry[]> {
    return listRegistered(redis, REGISTRY_KIND, options);
  }

  /**
   * The Redis key of a resource's lock: `<prefix>:lock:{<resource>}:lock` (braces and `%` in the resource
   * escaped); for a resource with a hash tag (`{acct}:1`), `<prefix>:lock:{<tag>}:{<resource>}:lock`, in
   * the tag's slot.
   */
  keyOf(resource: string): string {
    return this.keySpace.key(resource, KIND_SUFFIX.mutex, 'resource');
  }

  /**
   * Takes the lock, waiting up to `waitMs` for the holder to release it or its lease to end; settles within
   * `waitMs` plus `timeoutMs`. Rejects with `LockUnavailableError` when still held after `waitMs`, a
   * `RedisUnavailableError` when Redis does not answer in time (Redlock: `QuorumUnreachableError`), or the
   * signal's reason when aborted.
   */
  acquire(resource: string, options: AcquireOptions = {}): Promise<Lock> {
    if (!ACQUIRE.active) return this.acquireNow(resource, options);
    return ACQUIRE.run(() => ({ key: resource }), () => this.acquireNow(resource, options), acquired, notAcquired);
  }

  private async acquireNow(resource: string, options: AcquireOptions): Promise<Lock> {
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
    this.beforeAcquire();
    const first = await this.attempt(resource, key, owner, ttlMs, 'acquire', signal);
    if (first instanceof Lock) return first;
    if (waitMs === 0) throw first;
    return this.waiting.waitFor(key, ttlMs, deadline, signal, () => this.attempt(resource, key, owner, ttlMs, 'wait', signal));
  }

  /**
   * Takes the locks of several resources, all or none, whatever order callers name them in (no deadlock).
   * Uncontended it is one script call on a single node, and on a cluster one per hash tag (so one call when
   * every name carries the same tag, `{acct}:1`, `{acct}:2`; names without a tag each have a slot of their
   * own), in parallel. When one is held elsewhere, what was taken is released and the locks are taken one
   * by one in key order, each waiting for its holder, releasing what was taken when one fails. Every lock
   * has `owner` (default: one random UUID for all) and `ttlMs`. Settles within `waitMs` plus `timeoutMs`
   * per resource. Rejects like `acquire`; an empty list or a name given twice is an `InvalidArgumentError`.
   */
  acquireMany(resources: readonly string[], options: AcquireOptions = {}): Promise<MultiLock> {
    if (!ACQUIRE_MANY.active) return this.acquireManyNow(resources, options);
    const context = () => ({ key: Array.isArray(resources) ? resources.join(',') : undefined, count: resources?.length });
    return ACQUIRE_MANY.run(context, () => this.acquireManyNow(resources, options), acquired, notAcquired);
  }

  private async acquireManyNow(resources: readonly string[], options: AcquireOptions): Promise<MultiLock> {
    assertOptions('options', options, ACQUIRE_OPTIONS);
    const ttlMs = options.ttlMs === undefined ? this.ttlMs : ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    this.beforeAcquire();
    const backend = {
      keyOf: (resource: string) => this.keyOf(resource),
      attempt: (resource: string) => this.attempt(resource, this.keyOf(resource), owner, ttlMs, 'acquire', signal),
      acquire: (resource: string, wait: number) => this.acquire(resource, { ttlMs, waitMs: wait, owner, ...(signal ? { signal } : {}) }),
      error: this.backend.error,
    };
    return acquireMany(backend, resources, waitMs);
  }

  /** One attempt, no waiting: the lock, or null when another owner holds it. */
  tryAcquire(resource: string, options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lock | null> {
    return orNull(this.acquire(resource, { ...options, waitMs: 0 }));
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
    return runHoldingLock(lock, routine, options.signal, this.backend);
  }

  /**
   * A counting semaphore named `name` with `permits` permits (1 … 1 000 000), shared by every process that
   * names it. Runs on one Redis (node, Sentinel or cluster) or, given several clients, on Redlock: a permit
   * then needs ⌊N·permits/(permits+1)⌋+1 nodes (⌊N/2⌋+1 for one permit), so that no more than `permits`
   * are ever held. Its key: `<prefix>:lock:{<name>}:semaphore`, and a name with a hash tag falls in the tag's slot, as in `keyOf`.
   */
  semaphore(name: string, options: SemaphoreOptions): Semaphore {
    assertOptions('options', options, ['permits'], false);
    const key = this.keySpace.key(name, KIND_SUFFIX.semaphore, 'name');
    return new Semaphore(this.semaphoreContext(true), name, key, options.permits);
  }

  /**
   * A read-write lock named `name`: many readers or one writer, across processes, writer-preferring.
   * `rw.read.acquire()` and `rw.write.acquire()` resolve with a `Lock` (the writer's fencing token orders
   * writes). Runs on one Redis, like `semaphore()`. Its key: `<prefix>:lock:{<name>}:rw`, and a name with a hash tag falls in the tag's slot, as in `keyOf`.
   */
  readWrite(name: string): ReadWriteLock {
    const key = this.keySpace.key(name, KIND_SUFFIX.readWrite, 'name');
    return new ReadWriteLock(this.semaphoreContext(), name, key);
  }

  /**
   * A fair lock named `name`: waiters are served strictly in arrival order, across processes, each woken
   * individually. Runs on one Redis, like `semaphore()`. Its key: `<prefix>:lock:{<name>}:fair`, and a name with a hash tag falls in the tag's slot, as in `keyOf`.
   */
  fair(name: string): FairLock {
    const key = this.keySpace.key(name, KIND_SUFFIX.fair, 'name');
    return new FairLock(this.semaphoreContext(), name, key);
  }

  /** The lock's state (with several clients: the owner that holds a quorum, if any). */
  async status(resource: string): Promise<LockStatus> {
    const results = await this.nodes.runAll({ operation: 'status', key: this.keyOf(resource) });
    this.nodes.assertReachable(resource, results);
    return this.nodes.statusOf(results);
  }

  /**
   * A page of the locks held now under this manager's prefix, of every kind (mutex, semaphore, read-write,
   * fair), with holders, lease left and fencing token. Bounded: at most `limit` locks (1 to 1000, default
   * 100) and 50 SCAN steps per page; pass the returned `cursor` back for the next page (a page may hold
   * fewer than `limit` locks while a cursor is returned). On a cluster it visits every master (SCAN with
   * MATCH on the prefix, never KEYS); with Redlock each lock held by a quorum is listed once. Reads only;
   * `match` filters resource names with a Redis glob pattern.
   */
  listHeld(options: ListHeldOptions = {}): Promise<HeldLocksPage> {
    return listHeldLocks(this.nodes, this.keySpace.prefix, this.timeoutMs, options);
  }

  /** Ends whoever's lease; true when a live lease was removed. The fencing counter is kept. */
  async forceUnlock(resource: string): Promise<boolean> {
    const results = await this.nodes.runAll({ operation: 'force', key: this.keyOf(resource) });
    this.nodes.assertReachable(resource, results);
    return results.some(isGranted);
  }

  /** Closes the subscriber connections this manager opened (not the clients it was given). */
  close(): Promise<void> {
    this.waiting.clear();
    this.nodes.close();
    return Promise.resolve();
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
    operation: 'acquire' | 'wait',
    signal: AbortSignal | undefined,
  ): Promise<Lock | LockUnavailableError> {
    const start = performance.now();
    let results = await this.nodes.runAll({ operation, key, owner, ttlMs });
    const nodes = this.nodes;
    if (nodes.reached(results)) {
      let token = results[0]!.token;
      if (nodes.isRedlock) ({ token, results } = await nodes.alignTokens(key, owner, results, start));
      if (nodes.reached(results)) {
        if (signal?.aborted) {
          await nodes.releaseWhere(key, owner, results, isGranted, start);
          signal.throwIfAborted();
        }
        const deadline = start + ttlMs - this.drift(ttlMs);
        if (deadline > performance.now()) return new Lock(this.backend, resource, key, owner, token, ttlMs, deadline);
        const late = new RedisUnavailableError(`lock "${resource}": the reply came after the ${ttlMs} ms lease (minus drift) had run out`);
        results = results.map((r): NodeResult => (r.state === 'granted' ? { ...r, state: 'failed', error: late } : r));
      }
    }
    await nodes.releaseWhere(key, owner, results, (r) => r.state !== 'refused', start);
    signal?.throwIfAborted();
    nodes.assertReachable(resource, results);
    return new LockUnavailableError(resource, nodes.describe(results));
  }

  private async extendLock(lock: Lock, ttlMs: number): Promise<number> {
    ttlMs = ttl('ttlMs', ttlMs);
    const start = performance.now();
    const results = await this.nodes.runAll({ operation: 'extend', key: lock.key, owner: lock.owner, ttlMs });
    const deadline = start + ttlMs - this.drift(ttlMs);
    if (this.nodes.reached(results) && deadline > performance.now()) return deadline;
    if (results.some((r) => r.state === 'unreplicated')) {
      await this.nodes.releaseWhere(lock.key, lock.owner, results, () => true, start);
    }
    this.nodes.assertReachable(lock.resource, results);
    throw new LockLostError(lock.resource, this.nodes.describe(results));
  }

  private async releaseLock(lock: Lock): Promise<boolean> {
    const results = await this.nodes.runAll({ operation: 'release', key: lock.key, owner: lock.owner });
    if (this.nodes.reached(results)) return true;
    this.nodes.assertReachable(lock.resource, results);
    return false;
  }

  /** What semaphores, read-write and fair locks borrow from the manager; on Redlock, semaphores only. */
  private semaphoreContext(redlock = false): SemaphoreContext {
    const nodes = this.nodes.all;
    if (nodes.length > 1 && !redlock) throw redlockUnsupported();
    return {
      node: nodes[0]!,
      nodes,
      timeoutMs: this.timeoutMs,
      waiting: this.waiting,
      ttlMs: this.ttlMs,
      ttl,
      drift: (ttlMs: number) => this.drift(ttlMs),
      beforeAcquire: () => this.beforeAcquire(),
      lost: (lock, error) => this.emit('lost', lock, error),
      error: this.backend.error,
    };
  }

  /**
   * A best-effort background call failed: emitted as `error` only when someone listens (an `EventEmitter`
   * throws an `error` nobody listens to); a listener that throws has nowhere left to report to.
   */
  private backgroundError(error: unknown, resource: string): void {
    if (this.listenerCount('error') === 0) return;
    try {
      this.emit('error', error, resource);
    } catch {
      // Swallowed on purpose: the caller of the background call is gone.
    }
  }

  /**
   * Before every acquire: records the prefix in the registry (a clock read and a map lookup; a write at
   * most once a minute), and at the first one warns when the servers may evict keys.
   */
  private beforeAcquire(): void {
    for (const registry of this.registries) registry.record(this.keySpace.prefix);
    if (this.evictionChecked) return;
    this.evictionChecked = true;
    for (const client of this.nodes.clients) warnIfEvicting(client, '@cyredis/lock', EVICTION_RISK);
  }

  private drift(ttlMs: number): number {
    return Math.floor(ttlMs * this.driftFactor) + 2;
  }
}

/** A lease length in whole ms: at least `MIN_TTL_MS`, at most 2^40; fractions round up. */
function ttl(name: string, value: unknown): number {
  return durationMs(name, value, { min: MIN_TTL_MS, max: MAX_TTL_MS });
}

function isGranted(result: NodeResult): boolean {
  return result.state === 'granted';
}
