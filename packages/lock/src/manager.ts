import { randomUUID } from 'node:crypto';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  CyRedisError,
  InvalidArgumentError,
  isCluster,
  KeySpace,
  LuaScriptManager,
  readPackageLua,
  waitAtMost,
  type RedisClient,
  type RegisteredScript,
} from '@cyredis/core';
import { LockLostError, LockUnavailableError, QuorumUnreachableError, type NodeOutcome } from './errors.js';
import { lockBatcher, one, runOne, type Mode, type Outcome } from './batch.js';
import { Lock, type LockBackend } from './lock.js';
import { Wakeups, type Waiter } from './wakeups.js';

const SOURCE = readPackageLua(import.meta.url, 'distributed_lock');
/** The script refuses longer leases; 2^40 ms is about 35 years. */
const MAX_TTL_MS = 2 ** 40;
const MAX_OWNER_LENGTH = 1024;

/** Options of `new LockManager(…)`. */
export interface LockManagerOptions {
  /** Lease length when `acquire` is given none, in ms. Default 30 000. */
  ttlMs?: number;
  /** First part of every key. Default `cyredis`. */
  prefix?: string;
  /**
   * Share of the ttl (plus 2 ms) taken off the local deadline for clock drift between this process and the
   * servers. Default 0.01.
   */
  driftFactor?: number;
  /**
   * Per-node reply deadline in ms; a node that does not answer in time counts as failed. Default: none for a
   * single client (ioredis decides), 500 with several clients (Redlock), so a dead node cannot stall a quorum.
   */
  nodeTimeoutMs?: number;
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
  /** Lease length in ms. Default: the manager's `ttlMs`. */
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
  /** The holder's token when locked; otherwise the last token issued (0n if never locked). */
  fencingToken: bigint;
}

interface Node {
  readonly index: number;
  readonly scripts: LuaScriptManager;
  readonly script: RegisteredScript;
  readonly client: RedisClient;
  readonly wakeups: Wakeups;
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
  private readonly nodeTimeoutMs: number | undefined;
  private readonly replicas: { replicas: number; timeoutMs: number } | undefined;
  private readonly backend: LockBackend = {
    extend: (lock, ttlMs) => this.extendLock(lock, ttlMs),
    release: (lock) => this.releaseLock(lock),
  };

  constructor(redis: RedisClient | readonly RedisClient[], options: LockManagerOptions = {}) {
    const clients = Array.isArray(redis) ? (redis as readonly RedisClient[]) : [redis as RedisClient];
    if (clients.length === 0) throw new InvalidArgumentError('redis', 'needs at least one client');
    this.keySpace = new KeySpace('lock', options.prefix);
    this.ttlMs = ttl('options.ttlMs', options.ttlMs ?? 30_000);
    this.driftFactor = options.driftFactor ?? 0.01;
    assertFiniteNumber('options.driftFactor', this.driftFactor, { min: 0, max: 0.5 });
    this.nodeTimeoutMs = options.nodeTimeoutMs ?? (clients.length > 1 ? 500 : undefined);
    if (this.nodeTimeoutMs !== undefined) assertFiniteNumber('options.nodeTimeoutMs', this.nodeTimeoutMs, { min: 0, exclusiveMin: true });
    if (options.waitForReplicas) {
      assertInteger('options.waitForReplicas.replicas', options.waitForReplicas.replicas, { min: 1 });
      // WAIT with 0 blocks forever.
      assertInteger('options.waitForReplicas.timeoutMs', options.waitForReplicas.timeoutMs, { min: 1 });
      this.replicas = { ...options.waitForReplicas };
    }
    this.nodes = clients.map((client, index) => {
      const scripts = new LuaScriptManager(client);
      const script = scripts.registerScript('cyredis:lock', SOURCE);
      const batcher = isCluster(client) ? undefined : lockBatcher(index, scripts, script, this.nodeTimeoutMs);
      return { index, client, scripts, script, wakeups: new Wakeups(client), batcher };
    });
    this.quorum = Math.floor(clients.length / 2) + 1;
  }

  /** The Redis key of a resource's lock: `<prefix>:lock:{<resource>}:lock`. */
  keyOf(resource: string): string {
    return this.keySpace.key(resource, 'lock', 'resource');
  }

  /**
   * Takes the lock, waiting up to `waitMs` for the holder to release it or its lease to end. Rejects with
   * `LockUnavailableError` when still held after `waitMs`, `QuorumUnreachableError` when too few nodes
   * answer, or the signal's reason when aborted.
   */
  async acquire(resource: string, options: AcquireOptions = {}): Promise<Lock> {
    const key = this.keyOf(resource);
    const ttlMs = options.ttlMs === undefined ? this.ttlMs : ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    const first = await this.attempt(resource, key, owner, ttlMs, 'acquire', signal);
    if (first instanceof Lock || waitMs === 0) return unwrap(first);
    return this.wait(resource, key, owner, ttlMs, performance.now() + waitMs, signal, first);
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
   * an extension fails, `signal` aborts (with `LockLostError`) at the latest when the local lease ends. The
   * lock is released at the end; the routine's own error is what rejects, never a release failure.
   */
  async using<T>(resource: string, routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lock = await this.acquire(resource, options);
    const controller = new AbortController();
    let stopped = false;
    let renewTimer: NodeJS.Timeout | undefined;
    let deadlineTimer: NodeJS.Timeout | undefined;
    let renewing: Promise<void> = Promise.resolve();
    const lost = (reason: unknown) => {
      if (!controller.signal.aborted) controller.abort(reason instanceof LockLostError ? reason : new LockLostError(resource, []));
    };
    const armDeadline = () => {
      clearTimeout(deadlineTimer);
      deadlineTimer = setTimeout(lost, lock.remainingMs, undefined);
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
    try {
      return await routine(controller.signal, lock);
    } finally {
      stopped = true;
      clearTimeout(renewTimer);
      clearTimeout(deadlineTimer);
      options.signal?.removeEventListener('abort', onCallerAbort);
      await renewing;
      // The lease ends by itself if the release cannot reach Redis; the routine's outcome matters more.
      await lock.release().catch(() => false);
    }
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
    for (const node of this.nodes) node.wakeups.close();
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
    try {
      await this.subscribe(key, waiter);
      let last = refused;
      for (;;) {
        signal?.throwIfAborted();
        waiter.woken = false;
        // `wait` asks the holder's release to publish; this waiter is subscribed by now.
        const result = await this.attempt(resource, key, owner, ttlMs, 'wait', signal);
        if (result instanceof Lock) return result;
        last = result;
        const left = deadline - performance.now();
        if (left <= 0) throw last;
        // Woken or aborted while the attempt was in flight: go round again at once.
        if (waiter.woken || signal?.aborted) continue;
        // The holder may never release: retry when its lease ends at the latest.
        const retryIn = Math.min(left, 1 + Math.min(...last.nodes.map((n) => (n.state === 'refused' ? (n.ttlMs ?? 0) : left))));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, retryIn);
          resolveSleep = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        resolveSleep = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      for (const node of this.nodes) node.wakeups.remove(key, waiter);
    }
  }

  /** Subscribes on every node before the next attempt, so a release after it cannot be missed. */
  private async subscribe(key: string, waiter: Waiter): Promise<void> {
    if (this.nodes.length === 1) {
      await this.nodes[0]!.wakeups.add(key, waiter);
      return;
    }
    // A dead node must not hold up the wait: its wake-ups are lost, the lease-end retry still comes.
    await waitAtMost(Promise.allSettled(this.nodes.map((node) => node.wakeups.add(key, waiter))), this.nodeTimeoutMs ?? 0);
  }

  /**
   * One acquire round on every node. Returns the lock, or the contention error to wait on; throws
   * `QuorumUnreachableError`. Whatever a failed round may have taken is released.
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
      token = this.nodes.length === 1 ? outcomes[0]!.token : await this.alignTokens(key, owner, outcomes);
    }
    const deadline = start + ttlMs - this.drift(ttlMs);
    if (count(outcomes, 'granted') >= this.quorum) {
      if (signal?.aborted) {
        await this.releaseOn(key, owner, outcomes.filter((o) => o.state === 'granted'));
        signal.throwIfAborted();
      }
      if (deadline > performance.now()) return new Lock(this.backend, resource, key, owner, token, ttlMs, deadline);
      for (const o of outcomes) {
        if (o.state === 'granted') Object.assign(o, { state: 'failed', error: new CyRedisError('the lease ran out before a quorum was reached') });
      }
    }
    const touched = outcomes.filter((o) => o.state !== 'refused');
    if (touched.length > 0) {
      const releasing = this.releaseOn(key, owner, touched);
      // A single node that gave no reply may queue the release until it is back: do not wait for that.
      if (this.nodes.length > 1 || touched[0]!.state !== 'failed') await releasing;
    }
    signal?.throwIfAborted();
    this.assertReachable(resource, outcomes);
    return new LockUnavailableError(resource, outcomes.map(publicOutcome));
  }

  /**
   * Redlock: nodes count independently, so the lock's token is the highest granted one, raised on every
   * granting node. Any later quorum shares a node with this one, whose counter is then already past it.
   * A node that cannot be raised is released and no longer counts.
   */
  private async alignTokens(key: string, owner: string, outcomes: Outcome[]): Promise<bigint> {
    let max = 0n;
    for (const o of outcomes) if (o.state === 'granted' && o.token > max) max = o.token;
    const lagging = outcomes.filter((o) => o.state === 'granted' && o.token < max);
    if (lagging.length === 0) return max;
    const raised = await Promise.all(lagging.map((o) => this.call(this.nodes[o.node]!, key, owner, 0, 'fence', false, max)));
    const failed = lagging.filter((_, i) => raised[i]!.state !== 'granted');
    for (const o of failed) Object.assign(o, { state: 'failed', error: new CyRedisError('could not raise the fencing token') });
    if (failed.length > 0) await this.releaseOn(key, owner, failed);
    return max;
  }

  private async extendLock(lock: Lock, ttlMs: number): Promise<number> {
    ttlMs = ttl('ttlMs', ttlMs);
    const start = performance.now();
    const outcomes = await this.callAll(lock.key, lock.owner, ttlMs, 'extend', true);
    const deadline = start + ttlMs - this.drift(ttlMs);
    if (count(outcomes, 'granted') >= this.quorum && deadline > performance.now()) return deadline;
    if (outcomes.some((o) => o.state === 'unreplicated')) {
      await this.releaseOn(lock.key, lock.owner, outcomes);
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

  /** Throws `QuorumUnreachableError` when failed nodes alone leave fewer than a quorum able to answer. */
  private assertReachable(resource: string, outcomes: readonly Outcome[]): void {
    const failed = outcomes.length - count(outcomes, 'granted') - count(outcomes, 'refused');
    if (outcomes.length - failed < this.quorum) throw new QuorumUnreachableError(resource, outcomes.map(publicOutcome), this.quorum);
  }

  private drift(ttlMs: number): number {
    return Math.floor(ttlMs * this.driftFactor) + 2;
  }

  private callAll(key: string, owner: string, ttlMs: number, mode: Mode, replicate: boolean): Promise<Outcome[]> {
    if (this.nodes.length === 1) return this.call(this.nodes[0]!, key, owner, ttlMs, mode, replicate).then(one);
    return Promise.all(this.nodes.map((node) => this.call(node, key, owner, ttlMs, mode, replicate)));
  }

  /** Runs the script on one node; never rejects (a failure is an outcome). */
  private call(node: Node, key: string, owner: string, ttlMs: number, mode: Mode, replicate: boolean, floor?: bigint): Promise<Outcome> {
    const op = { key, owner, ttlMs, mode, floor };
    const outcome = mode !== 'fence' && node.batcher ? node.batcher.add(op) : runOne(node.index, node.scripts, node.script, op, this.nodeTimeoutMs);
    const replicas = replicate ? this.replicas : undefined;
    return replicas ? outcome.then((o) => this.replicate(node, key, o, replicas)) : outcome;
  }

  /** `waitForReplicas`: a granted outcome stays granted only when enough replicas acknowledged it. */
  private async replicate(node: Node, key: string, outcome: Outcome, { replicas, timeoutMs }: { replicas: number; timeoutMs: number }): Promise<Outcome> {
    if (outcome.state !== 'granted') return outcome;
    try {
      const acked = await this.waitForReplicas(node, key, replicas, timeoutMs);
      if (acked < replicas) {
        return { ...outcome, state: 'unreplicated', error: new CyRedisError(`${acked} of ${replicas} replica(s) acknowledged within ${timeoutMs} ms`) };
      }
    } catch (err) {
      return { ...outcome, state: 'failed', error: err as Error };
    }
    return outcome;
  }

  /**
   * `WAIT` on the connection that ran the script: the pipeline's `EXISTS` routes it to the key's node on a
   * cluster, and the connection's order makes WAIT cover the script's write.
   */
  private async waitForReplicas(node: Node, key: string, replicas: number, timeoutMs: number): Promise<number> {
    const replies = await node.client.pipeline().exists(key).wait(replicas, timeoutMs).exec();
    const [err, acked] = replies?.[1] ?? [new CyRedisError('WAIT got no reply'), 0];
    if (err) throw err;
    return Number(acked);
  }
}

function ttl(name: string, value: number): number {
  assertFiniteNumber(name, value, { min: 0, exclusiveMin: true, max: MAX_TTL_MS });
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
