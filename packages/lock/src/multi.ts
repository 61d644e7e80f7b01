// acquireMany: several locks at once, all or nothing, in one global order so that no two callers deadlock.
import { InvalidArgumentError } from '@cyredis/core';
import { LockUnavailableError } from './errors.js';
import { Lock } from './lock.js';
import { together } from './node.js';

/** The most resources one `acquireMany` call may name. */
export const MAX_RESOURCES = 256;

/** Locks held together: extended and released together. Get one from `LockManager.acquireMany`. */
export class MultiLock {
  constructor(
    /** The locks, in the order the resources were named. */
    readonly locks: readonly Lock[],
  ) {}

  /** The lease left on the local monotonic clock, in ms: the shortest of the locks'. */
  get remainingMs(): number {
    return Math.min(...this.locks.map((lock) => lock.remainingMs));
  }

  /**
   * Extends every lease to `ttlMs` from now (default: each lock's own ttl); the extensions go out together
   * (one script call on a single node, one per hash tag on a cluster). Rejects with the first
   * `LockLostError` when any lease is gone.
   */
  async extend(ttlMs?: number): Promise<void> {
    const results = await together(() => Promise.allSettled(this.locks.map((lock) => lock.extend(ttlMs))));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Releases every lock (calls as `extend`); true when all of them were still held. */
  async release(): Promise<boolean> {
    const released = await together(() => Promise.all(this.locks.map((lock) => lock.release())));
    return released.every(Boolean);
  }
}

/** What `acquireMany` needs from its manager, per resource. */
export interface ManyBackend {
  keyOf: (resource: string) => string;
  /** One attempt, no waiting (operations of one tick share one script call on a single node). */
  attempt: (resource: string) => Promise<Lock | LockUnavailableError>;
  /** Takes one lock, waiting up to `waitMs`. */
  acquire: (resource: string, waitMs: number) => Promise<Lock>;
  /** Told when releasing what a failed call took failed (the manager emits `error`). */
  error: (error: unknown, resource: string) => void;
}

/** The resources in key order, after checking the list: 1 … 256 names, no name twice. */
export function orderResources(resources: unknown, keyOf: (resource: string) => string): { resource: string; key: string }[] {
  if (!Array.isArray(resources) || resources.length === 0 || resources.length > MAX_RESOURCES) {
    throw new InvalidArgumentError('resources', `must be an array of 1 … ${MAX_RESOURCES} names`);
  }
  const seen = new Set<string>();
  const entries = (resources as unknown[]).map((resource, i) => {
    const key = keyOf(resource as string);
    if (seen.has(key)) throw new InvalidArgumentError(`resources[${i}]`, `names "${String(resource)}" a second time`);
    seen.add(key);
    return { resource: resource as string, key };
  });
  return entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Best effort (calls as `MultiLock.release`): a lock whose release fails runs out at its ttl, and `backend.error` is told. */
async function releaseAll(backend: ManyBackend, locks: readonly Lock[]): Promise<void> {
  await together(() => Promise.all(locks.map((lock) => lock.release().catch((err: unknown) => backend.error(err, lock.resource)))));
}

/**
 * All the locks or none. First one round for all at once: on a single node one script call (the attempts
 * share a tick), on a cluster one call per hash tag, in parallel (one call when the names share a tag,
 * `{acct}:1`, `{acct}:2`; see `LockKeys`). If any is held elsewhere, whatever was taken
 * is released and, when there is time to wait, the locks are taken one by one in key order, each waiting
 * for its holder: every caller waits in that same order, so no two can each hold what the other waits for.
 * A failure on the way releases what was taken.
 */
export async function acquireMany(backend: ManyBackend, resources: readonly string[], waitMs: number): Promise<MultiLock> {
  const ordered = orderResources(resources, backend.keyOf);
  const inCallerOrder = (locks: Map<string, Lock>) => new MultiLock(resources.map((r) => locks.get(backend.keyOf(r))!));
  const deadline = performance.now() + waitMs;
  const first = await together(() => Promise.allSettled(ordered.map(({ resource }) => backend.attempt(resource))));
  const taken = new Map<string, Lock>();
  first.forEach((r, i) => {
    if (r.status === 'fulfilled' && r.value instanceof Lock) taken.set(ordered[i]!.key, r.value);
  });
  if (taken.size === ordered.length) return inCallerOrder(taken);
  await releaseAll(backend, [...taken.values()]);
  const outage = first.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (outage) throw outage.reason;
  const refusal = first.find((r) => r.status === 'fulfilled' && r.value instanceof LockUnavailableError) as PromiseFulfilledResult<LockUnavailableError>;
  if (waitMs === 0) throw refusal.value;
  taken.clear();
  try {
    for (const { resource, key } of ordered) taken.set(key, await backend.acquire(resource, Math.max(0, deadline - performance.now())));
  } catch (err) {
    await releaseAll(backend, [...taken.values()]);
    throw err;
  }
  return inCallerOrder(taken);
}
