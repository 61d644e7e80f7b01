// One Redis client of a LockManager: runs lock operations (batched per tick on a single node, per hash tag in `together` on a cluster), WAITs for replicas, hears releases.
import {
  classifyError,
  clientKeyPrefix,
  CyRedisError,
  isCluster,
  LuaScriptManager,
  PubSubSubscriber,
  readPackageLua,
  RedisUnavailableError,
  scriptName,
  TickBatcher,
  withDeadline,
  type RedisClient,
  type RegisteredScript,
} from '@cyredis/core';
import type { NodeReply } from './errors.js';
import { hashTagOf } from './keys.js';
import {
  decodeBatch,
  decodeReply,
  encodeArgs,
  encodeBatch,
  encodeFairArgs,
  encodeSemaphoreArgs,
  encodeSemaphoreBatch,
  isBatchableSemaphore,
  MAX_SEMAPHORE_BATCH,
  splitSemaphoreBatch,
  type BatchableSemaphoreRequest,
  type BatchableRequest,
  type FairRequest,
  type LockReply,
  type LockRequest,
  type SemaphoreRequest,
} from './protocol.js';

const SOURCE = readPackageLua(import.meta.url, 'distributed_lock');
const SCRIPT_NAME = scriptName('lock', 'distributed_lock');
const SEMAPHORE_SOURCE = readPackageLua(import.meta.url, 'semaphore');
const SEMAPHORE_NAME = scriptName('lock', 'semaphore');
const FAIR_SOURCE = readPackageLua(import.meta.url, 'fair_lock');
const FAIR_NAME = scriptName('lock', 'fair_lock');

/**
 * Operations per call (the script takes up to 256). 32 rather than more: at 64 or more in flight, two or
 * more calls are then on their way, so the server runs one while the client handles the replies of the
 * other (measured here: more cycles/s at 64 and 128 in flight than with 64 per call, the same at 16; 22
 * per call lost more to the per-call cost than it gained).
 */
const BATCH_SIZE = 32;

/** Above 0 while `together` runs. */
let grouping = 0;

/**
 * Runs `start`; the lock operations it starts (synchronously) on a cluster client share script calls per
 * hash tag, as every operation of one tick does on a single node: `acquireMany`'s first round and a
 * `MultiLock`'s extend and release. Elsewhere a cluster's operations go out alone, at once, as they did.
 */
export function together<T>(start: () => T): T {
  grouping++;
  try {
    return start();
  } finally {
    grouping--;
  }
}

/** What one node made of one operation: the script's reply, or why there is no usable one. */
export type NodeResult = LockReply | FailedResult;

/** No usable reply (`failed`), or a granted lease too few replicas acknowledged (`unreplicated`). */
interface FailedResult {
  readonly state: 'failed' | 'unreplicated';
  readonly owner?: string;
  readonly ttlMs?: number;
  /** 0n: nothing is known of the node's token. */
  readonly token: bigint;
  readonly error: Error;
}

/** `waitForReplicas` of the manager's options. */
export interface ReplicaCheck {
  readonly replicas: number;
  readonly timeoutMs: number;
}

function failed(err: unknown): NodeResult {
  return { state: 'failed', error: err as Error, token: 0n };
}

/** One result as the one-element list a batch (or a one-node quorum) answers with. */
export function inList(result: NodeResult): NodeResult[] {
  return [result];
}

/** What a node's release channels report to its manager. */
export interface ReleaseEvents {
  /**
   * A lease of `key` ended by release or force unlock (and someone had waited); `message` is what the
   * script published: a lock's token, or the permits a semaphore has available.
   */
  released: (key: string, message: string) => void;
  /** The subscription was lost and made again: releases published in between are gone. */
  resubscribed: () => void;
}

/** One Redis client (node or cluster) as a lock node. */
export class LockNode {
  /**
   * The release channels, on a connection of its own that resubscribes after every reconnect. The script
   * publishes on KEYS[1] as the server sees it, so a channel carries the client's keyPrefix (which ioredis
   * never adds to SUBSCRIBE).
   */
  private readonly subscriber: PubSubSubscriber;
  private readonly keyPrefix: string;
  private readonly scripts: LuaScriptManager;
  private readonly script: RegisteredScript;
  private readonly semaphoreScript: RegisteredScript;
  private readonly fairScript: RegisteredScript;
  /** Absent on a cluster, where one call cannot span the slots of several resources. */
  private readonly batcher: TickBatcher<BatchableRequest, NodeResult> | undefined;
  /** A cluster's batches of what `together` starts, one call per hash tag; absent on a single node. */
  private readonly tagBatcher: TickBatcher<BatchableRequest, NodeResult> | undefined;
  /** The semaphore script's batches; absent on a cluster. */
  private readonly semaphoreBatcher: TickBatcher<BatchableSemaphoreRequest, unknown> | undefined;

  constructor(
    readonly client: RedisClient,
    /** Reply deadline of every call, in ms. */
    private readonly timeoutMs: number,
    /** After a granted lease operation, WAIT for this many replicas; undefined: do not. */
    private readonly replicaCheck: ReplicaCheck | undefined,
    events: ReleaseEvents,
  ) {
    this.scripts = new LuaScriptManager(client);
    this.script = this.scripts.registerScript(SCRIPT_NAME, SOURCE);
    this.semaphoreScript = this.scripts.registerScript(SEMAPHORE_NAME, SEMAPHORE_SOURCE);
    this.fairScript = this.scripts.registerScript(FAIR_NAME, FAIR_SOURCE);
    const keyPrefix = clientKeyPrefix(client);
    this.keyPrefix = keyPrefix;
    this.subscriber = new PubSubSubscriber(client, {
      message: (channel, message) => events.released(channel.slice(keyPrefix.length), message),
      resubscribed: events.resubscribed,
    });
    this.batcher = isCluster(client)
      ? undefined
      : new TickBatcher<BatchableRequest, NodeResult>(
          (requests) => (requests.length === 1 ? this.runAlone(requests[0]!, timeoutMs).then(inList) : this.runBatch(requests)),
          BATCH_SIZE,
        );
    this.tagBatcher = isCluster(client) ? new TickBatcher((requests) => this.runByTag(requests), BATCH_SIZE) : undefined;
    this.semaphoreBatcher = isCluster(client)
      ? undefined
      : new TickBatcher<BatchableSemaphoreRequest, unknown>(
          (requests) => (requests.length === 1 ? this.runSemaphoreAlone(requests[0]!).then((r) => [r]) : this.runSemaphoreBatch(requests)),
          Math.min(BATCH_SIZE, MAX_SEMAPHORE_BATCH),
        );
  }

  /**
   * Runs one operation, with the others of this tick on a single node; never rejects (a failure is a
   * `failed` result). A granted acquire, wait or extend then passes the replica check, if configured.
   */
  run(request: LockRequest, timeoutMs = this.timeoutMs): Promise<NodeResult> {
    const batcher = this.batcher ?? (grouping > 0 ? this.tagBatcher : undefined);
    const result = request.operation !== 'fence' && batcher ? batcher.add(request) : this.runAlone(request, timeoutMs);
    const check = this.replicaCheck;
    if (!check || (request.operation !== 'acquire' && request.operation !== 'wait' && request.operation !== 'extend')) return result;
    return result.then((r) => this.replicated(request.key, r, check));
  }

  /**
   * Runs one semaphore operation (with the others of this tick on a single node; status, resize and fence
   * alone) and resolves with the raw reply for `protocol.ts` to decode; rejects like `executeScript`
   * (`ScriptError`, `RedisUnavailableError`).
   */
  runSemaphore(request: SemaphoreRequest): Promise<unknown> {
    if (!this.semaphoreBatcher || !isBatchableSemaphore(request)) return this.runSemaphoreAlone(request);
    return this.semaphoreBatcher.add(request).then((reply) => {
      // An operation the batch refused with an error of its own (the rest of the batch went through).
      if (reply instanceof Error) throw classifyError(reply, { label: SEMAPHORE_NAME, scriptName: SEMAPHORE_NAME });
      return reply;
    });
  }

  private runSemaphoreAlone(request: SemaphoreRequest): Promise<unknown> {
    return this.scripts.executeScript(this.semaphoreScript, { keys: [request.key], args: encodeSemaphoreArgs(request), timeoutMs: this.timeoutMs });
  }

  private async runSemaphoreBatch(requests: BatchableSemaphoreRequest[]): Promise<unknown[]> {
    const { keys, args } = encodeSemaphoreBatch(requests);
    return splitSemaphoreBatch(requests, await this.scripts.executeScript(this.semaphoreScript, { keys, args, timeoutMs: this.timeoutMs }));
  }

  /** Runs one fair-lock operation on its own call; resolves with the raw reply, rejects like `runSemaphore`. */
  runFair(request: FairRequest): Promise<unknown> {
    return this.scripts.executeScript(this.fairScript, { keys: [request.key], args: encodeFairArgs(request), timeoutMs: this.timeoutMs });
  }

  /**
   * Subscribes to the release channel of `key`; settles once the server confirmed it (no later release is
   * missed) or it failed (the lease-end timer and the next resubscribe still wake the waiters). Never rejects.
   */
  subscribe(key: string): Promise<boolean> {
    return this.subscriber.subscribe(this.keyPrefix + key);
  }

  unsubscribe(key: string): void {
    this.subscriber.unsubscribe(this.keyPrefix + key);
  }

  /** Closes the subscriber connection (not the client). */
  close(): void {
    this.subscriber.close();
  }

  /** The single-key form. */
  private runAlone(request: LockRequest, timeoutMs: number): Promise<NodeResult> {
    return this.scripts.executeScript(this.script, { keys: [request.key], args: encodeArgs(request), timeoutMs }).then((reply) => {
      try {
        return decodeReply(request, reply);
      } catch (err) {
        return failed(err);
      }
    }, failed);
  }

  /** The batch form, n ≥ 2: a failed call is a `failed` result for each operation. */
  private async runBatch(requests: BatchableRequest[]): Promise<NodeResult[]> {
    const { keys, args } = encodeBatch(requests);
    try {
      return decodeBatch(requests, await this.scripts.executeScript(this.script, { keys, args, timeoutMs: this.timeoutMs }));
    } catch (err) {
      return requests.map(() => failed(err));
    }
  }

  /**
   * A cluster's batch: one call per hash tag of the keys as the server sees them (one tag, one slot), in
   * parallel; an operation alone under its tag in the single-key form.
   */
  private async runByTag(requests: BatchableRequest[]): Promise<NodeResult[]> {
    const groups = new Map<string, number[]>();
    requests.forEach((request, i) => {
      const key = this.keyPrefix + request.key;
      const tag = hashTagOf(key) ?? key;
      const group = groups.get(tag);
      if (group) group.push(i);
      else groups.set(tag, [i]);
    });
    const results = new Array<NodeResult>(requests.length);
    const runs = [...groups.values()].map(async (indexes) => {
      const group = indexes.map((i) => requests[i]!);
      const replies = group.length === 1 ? [await this.runAlone(group[0]!, this.timeoutMs)] : await this.runBatch(group);
      indexes.forEach((i, j) => (results[i] = replies[j]!));
    });
    await Promise.all(runs);
    return results;
  }

  /** A granted result stays granted only when enough replicas acknowledged it. */
  private async replicated(key: string, result: NodeResult, { replicas, timeoutMs }: ReplicaCheck): Promise<NodeResult> {
    if (result.state !== 'granted') return result;
    try {
      const acked = await this.waitForReplicas(key, replicas, timeoutMs);
      if (acked < replicas) {
        const error = new RedisUnavailableError(`${acked} of ${replicas} replica(s) acknowledged the lock within ${timeoutMs} ms`);
        return { ...result, state: 'unreplicated', error };
      }
    } catch (err) {
      // Not core's classifyError: whatever WAIT failed with (a reply error such as NOPERM included), the
      // replication is unknown, which the lock reports as an outage.
      const error = err instanceof CyRedisError ? err : new RedisUnavailableError(`WAIT failed: ${(err as Error).message}`, { cause: err });
      return { ...result, state: 'failed', error };
    }
    return result;
  }

  /**
   * `WAIT` on the connection that ran the script: the pipeline's `EXISTS` routes it to the key's node on a
   * cluster, and the connection's order makes WAIT cover the script's write. Bounded by WAIT's own timeout
   * plus `timeoutMs`.
   */
  private async waitForReplicas(key: string, replicas: number, timeoutMs: number): Promise<number> {
    const limit = timeoutMs + this.timeoutMs;
    const exec = this.client.pipeline().exists(key).wait(replicas, timeoutMs).exec();
    const replies = await withDeadline(exec, limit, () => new RedisUnavailableError(`WAIT got no reply within ${limit} ms`));
    const [err, acked] = replies?.[1] ?? [new RedisUnavailableError('WAIT got no reply'), 0];
    if (err) throw err;
    return Number(acked);
  }
}

/** A node's result as the errors report it: its index in the client list, without the token. */
export function describeResult(result: NodeResult, node: number): NodeReply {
  const { state, owner, ttlMs } = result;
  const error = 'error' in result ? result.error : undefined;
  return { node, state, ...(owner === undefined ? {} : { owner }), ...(ttlMs === undefined ? {} : { ttlMs }), ...(error ? { error } : {}) };
}
