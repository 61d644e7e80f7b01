// Redlock for semaphores: how many independent nodes must grant a permit, and what their answers add up to.
import { RedisUnavailableError } from '@cyredis/core';
import { QuorumUnreachableError, type NodeReply } from './errors.js';
import type { LockNode } from './node.js';
import type { PermitReply, SemaphoreRequest } from './protocol.js';

/** One node's answer to one operation: the decoded reply, or the error its call failed with. */
export type Outcome<R> = R | Error;

/**
 * Nodes that must grant a permit of a semaphore with `permits` permits on `nodes` independent nodes:
 * ⌊N·permits / (permits + 1)⌋ + 1, which is Redlock's ⌊N/2⌋ + 1 for one permit. Why more for more permits:
 * each node counts only its own holders, so permits + 1 grants, each on q nodes, fit on N nodes of
 * `permits` each whenever (permits + 1)·q ≤ N·permits (three nodes, two permits and majorities {0,1},
 * {1,2}, {0,2} hold three permits). This q is the smallest that rules that out.
 */
export function permitQuorum(nodes: number, permits: number): number {
  return Math.min(nodes, Math.floor((nodes * permits) / (permits + 1)) + 1);
}

/** Runs `request` on every node; each answer decoded by `decode`, a failure (or undecodable reply) as its Error. */
export function onEveryNode<R>(nodes: readonly LockNode[], request: SemaphoreRequest, decode: (reply: unknown) => R): Promise<Outcome<R>[]> {
  return Promise.all(
    nodes.map((node) =>
      node.runSemaphore(request).then(decode).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    ),
  );
}

/** Per-node detail for an error: a refusal carries the ms until the node's earliest lease ends (what waiters wait for). */
export function describeOutcomes(outcomes: readonly Outcome<PermitReply | boolean>[]): NodeReply[] {
  return outcomes.map((o, node): NodeReply => {
    if (o instanceof Error) return { node, state: 'failed', error: o };
    if (o === true) return { node, state: 'granted' };
    if (o === false) return { node, state: 'refused' };
    return o.state === 'granted' ? { node, state: 'granted' } : { node, state: 'refused', ttlMs: o.waitMs };
  });
}

/** Per-node detail of status and resize: each node answered or failed. */
export function answeredNodes(outcomes: readonly Outcome<unknown>[]): NodeReply[] {
  return outcomes.map((o, node): NodeReply => (o instanceof Error ? { node, state: 'failed', error: o } : { node, state: 'granted' }));
}

/**
 * Throws when too few nodes answered for `quorum` of them to decide: an error reply of a node that is not
 * an outage (a `ScriptError`, e.g. an owner asking for another count than it holds) as it is, otherwise
 * `QuorumUnreachableError`.
 */
export function assertAnswered(resource: string, outcomes: readonly Outcome<unknown>[], quorum: number, nodes: () => NodeReply[]): void {
  let answered = 0;
  let misuse: Error | undefined;
  for (const o of outcomes) {
    if (!(o instanceof Error)) answered++;
    else if (!(o instanceof RedisUnavailableError)) misuse ??= o;
  }
  if (answered >= quorum) return;
  if (misuse) throw misuse;
  throw new QuorumUnreachableError(resource, nodes(), quorum);
}
