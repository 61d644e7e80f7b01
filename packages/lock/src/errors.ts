// The lock's own errors: contention, a lost lease, and too few Redlock nodes answering.
import { CyRedisError, RedisUnavailableError } from '@cyredis/core';

/** What one Redis node said to one lock request. */
export interface NodeReply {
  /** Index of the node in the client list given to `LockManager` (0 for a single client). */
  readonly node: number;
  /**
   * `granted`: the node did it; `refused`: another owner holds the lock there (or, for extend/release, the
   * lease is gone); `failed`: no usable reply (connection, timeout, error reply); `unreplicated`: granted,
   * but fewer replicas than `waitForReplicas.replicas` acknowledged it in time.
   */
  readonly state: 'granted' | 'refused' | 'failed' | 'unreplicated';
  /** The holder the node reported ('' when free). */
  readonly owner?: string;
  /** The remaining lease the node reported, in ms. */
  readonly ttlMs?: number;
  /** Why the node's answer was not usable (`failed`, `unreplicated`). */
  readonly error?: Error;
}

function summary(nodes: readonly NodeReply[]): string {
  return nodes
    .map((n) => {
      const detail = n.error
        ? `: ${n.error.message}`
        : n.owner
          ? ` (held by ${n.owner}, ${n.ttlMs ?? 0} ms left)`
          : n.state === 'refused'
            ? ' (not held: the lease expired, was released or force-unlocked)'
            : '';
      return `node ${n.node} ${n.state}${detail}`;
    })
    .join('; ');
}

/** The lock is held by someone else (on too many nodes) and did not come free within `waitMs`. */
export class LockUnavailableError extends CyRedisError {
  constructor(
    /** The resource asked for. */
    readonly resource: string,
    /** Per-node detail of the last attempt. */
    readonly nodes: readonly NodeReply[],
  ) {
    super(`lock "${resource}" is held by another owner: ${summary(nodes)}`);
  }

  /** The holder seen on the first refusing node, if any. */
  get holder(): string | undefined {
    return this.nodes.find((n) => n.state === 'refused' && n.owner)?.owner;
  }
}

/**
 * Redlock: too few of several nodes gave a usable answer to reach ⌊N/2⌋+1, so the outcome cannot be
 * decided (connection lost, timeout, error reply, or too few replicas acknowledged). Whatever the attempt
 * may have taken was released (best effort). An outage like any other: `instanceof RedisUnavailableError`.
 * With one client the node's own error is thrown instead.
 */
export class QuorumUnreachableError extends RedisUnavailableError {
  constructor(
    /** The resource asked for. */
    readonly resource: string,
    /** Per-node detail of the attempt. */
    readonly nodes: readonly NodeReply[],
    /** How many nodes had to answer usably: ⌊N/2⌋+1. */
    readonly quorum: number,
  ) {
    super(`lock "${resource}": fewer than ${quorum} of ${nodes.length} nodes answered usably: ${summary(nodes)}`, {
      cause: nodes.find((n) => n.error)?.error,
    });
  }
}

/** The lease is gone: it expired, was force-unlocked or is held by another owner; it was not extended. */
export class LockLostError extends CyRedisError {
  constructor(
    /** The resource whose lease is gone. */
    readonly resource: string,
    /** Per-node detail of the failed extend or release (empty when the local clock decided). */
    readonly nodes: readonly NodeReply[],
    /** Why, when no node said so (e.g. the lease ran out on the local clock). */
    reason?: string,
  ) {
    super(`lock "${resource}" is no longer held by this owner: ${reason ?? summary(nodes)}`);
  }
}
