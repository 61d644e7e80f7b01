// Semaphore: a counting semaphore with leased permits and fencing tokens, on one Redis (node or cluster) or Redlock.
import { randomUUID } from 'node:crypto';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  CyRedisError,
  InvalidArgumentError,
  RedisUnavailableError,
  waitAtMost,
} from '@cyredis/core';
import { LockLostError, LockUnavailableError, type NodeReply } from './errors.js';
import { holdGranted, Lock, orNull, type LockBackend } from './lock.js';
import type { LockNode } from './node.js';
import { answeredNodes, assertAnswered, describeOutcomes, onEveryNode, permitQuorum, type Outcome } from './permit-quorum.js';
import {
  decodePermitReply,
  decodeReleaseReply,
  decodeResizeReply,
  decodeStatusReply,
  MAX_PERMITS,
  type PermitHolder,
  type PermitReply,
  type SemaphoreRequest,
  type SemaphoreState,
} from './protocol.js';
import { SEMAPHORE_ACQUIRE, acquired, notAcquired } from './tracing.js';
import { runHoldingLock } from './using.js';
import type { WaitQueues } from './waiting.js';

const ACQUIRE_OPTIONS = ['count', 'ttlMs', 'waitMs', 'signal', 'owner'] as const;
const MAX_OWNER_LENGTH = 1024;

/** Options of `LockManager.semaphore(name, options)`. */
export interface SemaphoreOptions {
  /** How many permits the semaphore has: 1 … 1 000 000. Required. */
  permits: number;
}

/** Options of `Semaphore.acquire`, `tryAcquire` and `using`. */
export interface PermitOptions {
  /** Permits to take at once, all or none: 1 … `permits`. Default 1. */
  count?: number;
  /** Lease length in ms: 10 … 2^40. Default: the manager's `ttlMs`. */
  ttlMs?: number;
  /** How long to wait for enough permits, in ms. Default 0 (one attempt). */
  waitMs?: number;
  /** Cancels the wait; `acquire` then rejects with the signal's reason (and holds nothing). */
  signal?: AbortSignal;
  /** The holder's unique value. Default: a random UUID. Acquiring again with the same owner and count renews its lease; another count is a `ScriptError`. */
  owner?: string;
}

/** What `Semaphore.status()` reports. */
export interface SemaphoreStatus {
  /** The semaphore's permits (as last set by `setPermits`, while its key exists). */
  permits: number;
  /** Permits free now (negative after `setPermits` below what holders keep). */
  available: number;
  /** Every live lease. */
  holders: PermitHolder[];
  /** The last token issued (0n if never acquired, or once the idle semaphore's key is gone). */
  fencingToken: bigint;
}

/** What a manager lends its semaphores, read-write and fair locks (built by `LockManager`; users never need one). */
export interface SemaphoreContext {
  /** The only node, or with Redlock the first. */
  readonly node: LockNode;
  /** Every node: one, or Redlock's independent ones (semaphores only; read-write and fair locks refuse several). */
  readonly nodes: readonly LockNode[];
  /** Reply deadline of every call, in ms; also bounds the clean-up after a failed Redlock round. */
  readonly timeoutMs: number;
  readonly waiting: WaitQueues;
  readonly ttlMs: number;
  /** Checks and rounds a lease length (`InvalidArgumentError` naming `name`). */
  readonly ttl: (name: string, value: unknown) => number;
  /** The part of a lease taken off the local deadline for clock drift, in ms. */
  readonly drift: (ttlMs: number) => number;
  /** Called before each acquire: the manager's once-per-process eviction warning. */
  readonly beforeAcquire: () => void;
  /** Told when a lease is found gone (the manager emits `lost`). */
  readonly lost: (lock: Lock, error: LockLostError) => void;
  /** Told when a best-effort release or give-back failed (the manager emits `error`). */
  readonly error: (error: unknown, resource: string) => void;
}

/** Permits held under one lease: a `Lock` (fencing token, extend, release, deadline) with its `count`. */
export class Permit extends Lock {
  constructor(
    backend: LockBackend,
    resource: string,
    key: string,
    owner: string,
    fencingToken: bigint,
    ttlMs: number,
    deadline: number,
    /** How many permits this lease holds. */
    readonly count: number,
  ) {
    super(backend, resource, key, owner, fencingToken, ttlMs, deadline);
  }
}

/** Not enough permits were free within `waitMs`. A `LockUnavailableError`, so one `catch` serves both. */
export class PermitsUnavailableError extends LockUnavailableError {
  constructor(
    resource: string,
    /** Permits asked for. */
    readonly requested: number,
    /** Permits free at the last attempt. */
    readonly available: number,
    /** The semaphore's permits at the last attempt. */
    readonly permits: number,
    waitMs: number,
    /** Per-node detail (Redlock); default: one refusing node. */
    nodes: readonly NodeReply[] = [{ node: 0, state: 'refused', ttlMs: waitMs }],
  ) {
    super(resource, nodes);
    this.message = `semaphore "${resource}": ${requested} permit(s) asked, ${available} of ${permits} free`;
  }
}

function permitsArgument(name: string, value: unknown): number {
  assertInteger(name, value, { min: 1, max: MAX_PERMITS });
  return value;
}

/**
 * A counting semaphore: at most `permits` permits are held at once, each acquire takes `count` of them
 * under a lease, and the permits of a crashed holder come back when its lease ends. Get one from
 * `LockManager.semaphore(name, { permits })`.
 */
export class Semaphore {
  private permits: number;
  private readonly backend: LockBackend = {
    extend: (permit, ttlMs) => this.extendPermit(permit, ttlMs),
    release: (permit) => this.releasePermit(permit),
    lost: (permit, error) => this.context.lost(permit, error),
  };

  /** @hidden Built by `LockManager`. */
  constructor(
    private readonly context: SemaphoreContext,
    /** The name given to `LockManager.semaphore`. */
    readonly name: string,
    /** The Redis key of the semaphore. */
    readonly key: string,
    permits: number,
    /** Read-write lock: a request for all permits is a writer, and a waiting writer holds new readers back. */
    private readonly writerPreference = false,
  ) {
    this.permits = permitsArgument('options.permits', permits);
  }

  /**
   * Takes `count` permits (default 1), waiting up to `waitMs` for enough of them to come free; settles within
   * `waitMs` plus `timeoutMs`. Rejects with `PermitsUnavailableError` (a `LockUnavailableError`) when still
   * too few are free after `waitMs`, a `RedisUnavailableError` when Redis does not answer in time, or the
   * signal's reason when aborted.
   */
  acquire(options: PermitOptions = {}): Promise<Permit> {
    if (!SEMAPHORE_ACQUIRE.active) return this.acquireNow(options);
    const context = () => ({ key: this.name, count: options?.count ?? 1 });
    return SEMAPHORE_ACQUIRE.run(context, () => this.acquireNow(options), acquired, notAcquired);
  }

  private async acquireNow(options: PermitOptions): Promise<Permit> {
    assertOptions('options', options, ACQUIRE_OPTIONS);
    const count = options.count ?? 1;
    assertInteger('options.count', count, { min: 1, max: this.permits });
    const ttlMs = options.ttlMs === undefined ? this.context.ttlMs : this.context.ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    const deadline = performance.now() + waitMs;
    this.context.beforeAcquire();
    const first = await this.attempt(owner, ttlMs, count, 'acquire', signal);
    if (first instanceof Permit) return first;
    if (waitMs === 0) throw first;
    const round = () => this.attempt(owner, ttlMs, count, 'wait', signal);
    return this.context.waiting.waitFor<Permit>(this.key, ttlMs, deadline, signal, round, { count });
  }

  /** One attempt, no waiting: the permits, or null when too few are free. */
  tryAcquire(options: Omit<PermitOptions, 'waitMs'> = {}): Promise<Permit | null> {
    return orNull(this.acquire({ ...options, waitMs: 0 }));
  }

  /**
   * Runs `routine` while holding the permits, like `LockManager.using`: the lease is extended in the
   * background, `signal` aborts with `LockLostError` when it is lost, and the permits are released at the end.
   */
  async using<T>(routine: (signal: AbortSignal, permit: Permit) => Promise<T> | T, options: PermitOptions = {}): Promise<T> {
    const permit = await this.acquire(options);
    return runHoldingLock(permit, routine, options.signal, this.context);
  }

  /**
   * The permits, how many are free, and every live lease. With Redlock: the leases held on a quorum of
   * nodes (each with the lease a quorum still has), the permits of the first node that answered, and the
   * highest token.
   */
  async status(): Promise<SemaphoreStatus> {
    const request: SemaphoreRequest = { operation: 'status', key: this.key, permits: this.permits };
    if (this.context.nodes.length === 1) {
      const state = decodeStatusReply(await this.context.node.runSemaphore(request));
      return { permits: state.permits, available: state.available, holders: [...state.holders], fencingToken: state.token };
    }
    const outcomes = await onEveryNode(this.context.nodes, request, decodeStatusReply);
    const quorum = this.quorum;
    assertAnswered(this.name, outcomes, quorum, () => answeredNodes(outcomes));
    const states = outcomes.filter((o): o is SemaphoreState => !(o instanceof Error));
    let fencingToken = 0n;
    const leases = new Map<string, { count: number; ttls: number[] }>();
    for (const state of states) {
      if (state.token > fencingToken) fencingToken = state.token;
      for (const { owner, count, ttlMs } of state.holders) {
        const lease = leases.get(owner) ?? { count, ttls: [] };
        lease.ttls.push(ttlMs);
        leases.set(owner, lease);
      }
    }
    const permits = states[0]!.permits;
    const holders: PermitHolder[] = [];
    for (const [owner, { count, ttls }] of leases) {
      if (ttls.length < quorum) continue;
      ttls.sort((a, b) => b - a);
      holders.push({ owner, count, ttlMs: ttls[quorum - 1]! });
    }
    return { permits, available: permits - holders.reduce((sum, h) => sum + h.count, 0), holders, fencingToken };
  }

  /**
   * Sets the number of permits (1 … 1 000 000) for every process; holders keep what they hold, so fewer
   * may be free than the new number says until they release. Lasts while the semaphore's key exists: it
   * is kept while someone holds a permit, and after the last lease for at most a minute (deleted at once
   * when a process that uses the new number releases it); then the `permits` each process was created
   * with apply again.
   * With Redlock it is set on every node, and a quorum for the new number must answer (a node that did not
   * keeps its old number until its key expires).
   */
  async setPermits(permits: number): Promise<void> {
    permitsArgument('permits', permits);
    this.permits = permits;
    const request: SemaphoreRequest = { operation: 'resize', key: this.key, permits };
    if (this.context.nodes.length === 1) {
      decodeResizeReply(await this.context.node.runSemaphore(request));
      return;
    }
    const outcomes = await onEveryNode(this.context.nodes, request, decodeResizeReply);
    assertAnswered(this.name, outcomes, this.quorum, () => answeredNodes(outcomes));
  }

  /**
   * One acquire round: the permit, or the refusal to wait on. A call whose outcome is unknown (no reply in
   * time) or granted too late is released, waiting for that only while its `timeoutMs` lasts.
   */
  private async attempt(
    owner: string,
    ttlMs: number,
    count: number,
    operation: 'acquire' | 'wait',
    signal: AbortSignal | undefined,
  ): Promise<Permit | PermitsUnavailableError> {
    const start = performance.now();
    const request = { operation, key: this.key, owner, ttlMs, count, permits: this.permits, writerPreference: this.writerPreference };
    if (this.context.nodes.length > 1) return this.attemptOnQuorum(request, start, signal);
    let reply: PermitReply;
    try {
      reply = decodePermitReply(request, await this.context.node.runSemaphore(request));
    } catch (err) {
      if (err instanceof RedisUnavailableError) await this.releaseOwner(owner);
      throw err;
    }
    if (reply.state === 'refused') return new PermitsUnavailableError(this.name, count, reply.available, reply.permits, reply.waitMs);
    return this.toPermit(owner, ttlMs, reply.count, reply.token, start, signal);
  }

  /** A granted round as a held `Permit` (see `holdGranted`): given back when aborted meanwhile or granted too late. */
  private toPermit(owner: string, ttlMs: number, count: number, token: bigint, start: number, signal: AbortSignal | undefined): Promise<Permit> {
    return holdGranted({
      what: `semaphore "${this.name}"`,
      start,
      ttlMs,
      driftMs: this.context.drift(ttlMs),
      signal,
      giveBack: () => this.releaseOwner(owner),
      hold: (deadline) => new Permit(this.backend, this.name, this.key, owner, token, ttlMs, deadline, count),
    });
  }

  /**
   * Redlock: one acquire round on every node, granted when `permitQuorum` of them grant. The token is the
   * highest granted one, raised on every granting node (as the lock's `alignTokens` does), so any later
   * quorum, which shares a node with this one, issues a greater one. Whatever a failed round took is released.
   */
  private async attemptOnQuorum(
    request: Extract<SemaphoreRequest, { operation: 'acquire' | 'wait' }>,
    start: number,
    signal: AbortSignal | undefined,
  ): Promise<Permit | PermitsUnavailableError> {
    const { owner, ttlMs, count } = request;
    const quorum = this.quorum;
    const outcomes: Outcome<PermitReply>[] = await onEveryNode(this.context.nodes, request, (reply) => decodePermitReply(request, reply));
    let token = 0n;
    const granted: number[] = [];
    outcomes.forEach((o, i) => {
      if (o instanceof Error || o.state !== 'granted') return;
      granted.push(i);
      if (o.token > token) token = o.token;
    });
    if (granted.length >= quorum) {
      const unraised = await this.raiseTokens(owner, token, granted, outcomes);
      if (granted.length - unraised.length >= quorum) {
        await this.releaseOn(owner, unraised, start);
        return this.toPermit(owner, ttlMs, count, token, start, signal);
      }
    }
    const touched: number[] = [];
    outcomes.forEach((o, i) => {
      if (o instanceof Error || o.state === 'granted') touched.push(i);
    });
    await this.releaseOn(owner, touched, start);
    signal?.throwIfAborted();
    const nodes = describeOutcomes(outcomes);
    assertAnswered(this.name, outcomes, quorum, () => nodes);
    let available = Infinity;
    let permits = this.permits;
    for (const o of outcomes) {
      if (o instanceof Error || o.state !== 'refused') continue;
      if (o.available < available) ({ available, permits } = o);
    }
    return new PermitsUnavailableError(this.name, count, available, permits, 0, nodes);
  }

  /**
   * Raises the token of `owner`'s lease to `token` on the granting nodes that issued less; returns the nodes
   * that could not be raised (their outcome becomes a failure).
   */
  private async raiseTokens(owner: string, token: bigint, granted: readonly number[], outcomes: Outcome<PermitReply>[]): Promise<number[]> {
    const lagging = granted.filter((i) => {
      const o = outcomes[i]!;
      return !(o instanceof Error) && o.state === 'granted' && o.token < token;
    });
    const fence: SemaphoreRequest = { operation: 'fence', key: this.key, owner, floor: token };
    const raised = await Promise.all(
      lagging.map((i) =>
        this.context.nodes[i]!.runSemaphore(fence).then(
          (reply) => decodePermitReply(fence, reply).state === 'granted',
          () => false,
        ),
      ),
    );
    const unraised = lagging.filter((_, j) => !raised[j]);
    for (const i of unraised) outcomes[i] = new CyRedisError('could not raise the fencing token');
    return unraised;
  }

  /** Best effort: releases `owner`'s lease on the nodes at `indices`, waiting only while the round's `timeoutMs` lasts. */
  private async releaseOn(owner: string, indices: readonly number[], start: number): Promise<void> {
    if (indices.length === 0) return;
    const release: SemaphoreRequest = { operation: 'release', key: this.key, owner, permits: this.permits };
    const releases = indices.map((i) => this.context.nodes[i]!.runSemaphore(release).catch(this.giveBackFailed));
    await waitAtMost(Promise.all(releases), Math.max(0, start + this.context.timeoutMs - performance.now()));
  }

  /** The permits this process knows, as the quorum of the next operation (the Redlock rule, see `permitQuorum`). */
  private get quorum(): number {
    return permitQuorum(this.context.nodes.length, this.permits);
  }

  /** Best effort: releases whatever `owner` may hold (on every node); never rejects. */
  private releaseOwner(owner: string): Promise<unknown> {
    const release: SemaphoreRequest = { operation: 'release', key: this.key, owner, permits: this.permits };
    return Promise.all(this.context.nodes.map((node) => node.runSemaphore(release).catch(this.giveBackFailed)));
  }

  /** A give-back that failed: the permits come back when their lease ends; the manager's `error` event tells. */
  private readonly giveBackFailed = (err: unknown): void => this.context.error(err, this.name);

  private async extendPermit(permit: Lock, ttlMs: number): Promise<number> {
    ttlMs = this.context.ttl('ttlMs', ttlMs);
    const start = performance.now();
    const request: SemaphoreRequest = { operation: 'extend', key: this.key, owner: permit.owner, ttlMs };
    const outcomes = await onEveryNode(this.context.nodes, request, (reply) => decodePermitReply(request, reply));
    const deadline = start + ttlMs - this.context.drift(ttlMs);
    let granted = 0;
    for (const o of outcomes) {
      if (o instanceof Error) continue;
      if (o.state === 'granted') granted++;
    }
    if (granted >= this.quorum && deadline > performance.now()) return deadline;
    const nodes = describeOutcomes(outcomes);
    if (this.context.nodes.length === 1 && outcomes[0] instanceof Error) throw outcomes[0];
    assertAnswered(this.name, outcomes, this.quorum, () => nodes);
    throw new LockLostError(this.name, nodes, 'the lease of its permits ended (expired, or released)');
  }

  private async releasePermit(permit: Lock): Promise<boolean> {
    const request: SemaphoreRequest = { operation: 'release', key: this.key, owner: permit.owner, permits: this.permits };
    if (this.context.nodes.length === 1) return decodeReleaseReply(await this.context.node.runSemaphore(request));
    const outcomes = await onEveryNode(this.context.nodes, request, decodeReleaseReply);
    if (outcomes.filter((o) => o === true).length >= this.quorum) return true;
    assertAnswered(this.name, outcomes, this.quorum, () => describeOutcomes(outcomes));
    return false;
  }
}

/** Read-write and fair locks need one Redis: `readWrite()` and `fair()` on a Redlock manager are refused with this. */
export function redlockUnsupported(): InvalidArgumentError {
  return new InvalidArgumentError(
    'redis',
    'read-write and fair locks run on one Redis (node, Sentinel or cluster); Redlock over several clients is not supported for them (see the README)',
  );
}
