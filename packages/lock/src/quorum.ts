// The nodes of one LockManager and the Redlock rule over them: an operation counts when ⌊N/2⌋+1 nodes agree.
import { classifyError, CyRedisError, waitAtMost, type RedisClient } from '@cyredis/core';
import { QuorumUnreachableError, type NodeReply } from './errors.js';
import { describeResult, inList, type LockNode, type NodeResult } from './node.js';
import type { LockRequest } from './protocol.js';
import type { ReleaseChannels } from './waiting.js';

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

function count(results: readonly NodeResult[], state: NodeResult['state']): number {
  let n = 0;
  for (const r of results) if (r.state === state) n++;
  return n;
}

/**
 * One client, or Redlock's independent ones. Results come as one array per operation, in node order (the
 * result at index i is node i's), so a node's result needs no index of its own. Also the release channels
 * waiters listen on: a key's channel on every node.
 */
export class LockNodes implements ReleaseChannels {
  /** Nodes that must agree: ⌊N/2⌋+1. */
  readonly quorum: number;

  constructor(
    private readonly nodes: readonly LockNode[],
    /** Reply deadline of every call, in ms; also bounds the clean-up after a failed round. */
    private readonly timeoutMs: number,
  ) {
    this.quorum = Math.floor(nodes.length / 2) + 1;
  }

  /** Several independent nodes: Redlock. */
  get isRedlock(): boolean {
    return this.nodes.length > 1;
  }

  /** The only node, when there is one (no Redlock). */
  get single(): LockNode | undefined {
    return this.nodes.length === 1 ? this.nodes[0] : undefined;
  }

  /** Node `index` (0-based, in client order). */
  at(index: number): LockNode {
    return this.nodes[index]!;
  }

  /** The clients given to the manager, in order. */
  get clients(): RedisClient[] {
    return this.nodes.map((node) => node.client);
  }

  /** Subscribes to `key`'s release channel on every node; settles once all confirmed, or after `timeoutMs`. */
  subscribe(key: string): Promise<void> {
    return waitAtMost(Promise.all(this.nodes.map((node) => node.subscribe(key))), this.timeoutMs);
  }

  unsubscribe(key: string): void {
    for (const node of this.nodes) node.unsubscribe(key);
  }

  /** Closes every node's subscriber connection (not the clients). */
  close(): void {
    for (const node of this.nodes) node.close();
  }

  /** Runs `request` on every node; never rejects. */
  runAll(request: LockRequest): Promise<NodeResult[]> {
    if (this.nodes.length === 1) return this.nodes[0]!.run(request).then(inList);
    return Promise.all(this.nodes.map((node) => node.run(request)));
  }

  /** Whether a quorum granted the operation. */
  reached(results: readonly NodeResult[]): boolean {
    return count(results, 'granted') >= this.quorum;
  }

  /**
   * Releases `owner`'s lease on the nodes whose result `where` selects (best effort), waiting for that only
   * while the `timeoutMs` of the call that began at `start` lasts.
   */
  releaseWhere(key: string, owner: string, results: readonly NodeResult[], where: (r: NodeResult) => boolean, start: number): Promise<void> {
    const nodes: number[] = [];
    results.forEach((r, i) => {
      if (where(r)) nodes.push(i);
    });
    return this.releaseOn(key, owner, nodes, start);
  }

  /**
   * Redlock: nodes count independently, so the lock's token is the highest granted one, raised on every
   * granting node. Any later quorum shares a node with this one, whose token is then already past it.
   * A node that cannot be raised is released and no longer counts: its result becomes `failed`.
   */
  async alignTokens(key: string, owner: string, results: NodeResult[], start: number): Promise<{ token: bigint; results: NodeResult[] }> {
    let token = 0n;
    for (const r of results) if (r.state === 'granted' && r.token > token) token = r.token;
    const lagging: number[] = [];
    results.forEach((r, i) => {
      if (r.state === 'granted' && r.token < token) lagging.push(i);
    });
    if (lagging.length === 0) return { token, results };
    const timeoutMs = Math.max(1, start + this.timeoutMs - performance.now());
    const raised = await Promise.all(lagging.map((i) => this.nodes[i]!.run({ operation: 'fence', key, owner, floor: token }, timeoutMs)));
    const unraised = lagging.filter((_, j) => raised[j]!.state !== 'granted');
    if (unraised.length === 0) return { token, results };
    const aligned = [...results];
    const error = new CyRedisError('could not raise the fencing token');
    for (const i of unraised) aligned[i] = { ...aligned[i]!, state: 'failed', error };
    await this.releaseOn(key, owner, unraised, start);
    return { token, results: aligned };
  }

  private async releaseOn(key: string, owner: string, nodes: readonly number[], start: number): Promise<void> {
    if (nodes.length === 0) return;
    const releases = nodes.map((i) => this.nodes[i]!.run({ operation: 'release', key, owner }));
    await waitAtMost(Promise.all(releases), Math.max(0, start + this.timeoutMs - performance.now()));
  }

  /**
   * Throws when failed nodes alone leave fewer than a quorum able to answer: with one client its node's
   * own error (`RedisUnavailableError`, `RedisTimeoutError`, `ScriptError`), with Redlock
   * `QuorumUnreachableError`.
   */
  assertReachable(resource: string, results: readonly NodeResult[]): void {
    const failed = results.length - count(results, 'granted') - count(results, 'refused');
    if (results.length - failed >= this.quorum) return;
    if (this.isRedlock) throw new QuorumUnreachableError(resource, this.describe(results), this.quorum);
    const only = results[0]!;
    throw classifyError('error' in only ? only.error : new Error('no usable reply'), { label: `lock "${resource}"` });
  }

  /** Per-node detail for an error. */
  describe(results: readonly NodeResult[]): NodeReply[] {
    return results.map(describeResult);
  }

  /** The status results of every node as one status: the owner holding a quorum, if any. */
  statusOf(results: readonly NodeResult[]): LockStatus {
    let fencingToken = 0n;
    const ttlsByOwner = new Map<string, number[]>();
    for (const r of results) {
      if (r.token > fencingToken) fencingToken = r.token;
      if (r.state !== 'granted') continue;
      const ttls = ttlsByOwner.get(r.owner) ?? [];
      ttls.push(r.ttlMs);
      ttlsByOwner.set(r.owner, ttls);
    }
    for (const [owner, ttls] of ttlsByOwner) {
      if (ttls.length < this.quorum) continue;
      // The lease holds while a quorum of nodes still has it.
      ttls.sort((a, b) => b - a);
      return { locked: true, owner, ttlMs: ttls[this.quorum - 1]!, fencingToken };
    }
    return { locked: false, ttlMs: 0, fencingToken };
  }
}
