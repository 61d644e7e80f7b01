// How a SmartCache's operations reach Redis: each tick's calls coalesced (TickBatcher) into as few pipelined
// commands as keep their order, plain reads' lookups buffered into TOUCH calls, and one deadline per call.
import {
  classifyError,
  isOutage,
  LuaScriptManager,
  readPackageLua,
  RedisUnavailableError,
  scriptName,
  TickBatcher,
  withDeadline,
  type RedisClient,
  type RegisteredScript,
  type ScriptArg,
} from '@cyredis/core';
import { decodeMget, decodeMset, encodeMget, encodeTouch, encodeWrites, SCRIPT_FILE, type CacheKeys, type EntryWrite, type WriteSettings } from './protocol.js';

/** Plain reads are reported to Redis (LRU order, hit/miss counts) at most this late, in batches of up to TOUCH_BATCH. */
const TOUCH_FLUSH_MS = 5;
const TOUCH_BATCH = 256;
/**
 * Operations per batched call at most. Measured at 64 in flight: 32 (two calls in flight, so the server runs
 * one while the client handles the other's replies) beat both 16 and 64.
 */
const BATCH_SIZE = 32;
const SOURCE = readPackageLua(import.meta.url, SCRIPT_FILE);

/**
 * One operation of a tick's batch: a lookup, a write without a lease, or any other script call (sent as it
 * is, in its place, so the calls of this instance keep the order they were made in).
 */
type Op =
  | { kind: 'get'; key: string; countMiss: boolean }
  | { kind: 'set'; key: string; text: string; ttlMs: number; tags: readonly string[] }
  | { kind: 'call'; args: readonly ScriptArg[]; keys: readonly string[] };

/** The reply of an operation whose command failed (a batch settles per operation, never as a whole). */
export class Failed {
  constructor(readonly error: unknown) {}
}

/**
 * Absorbs an outage (tells `onError` its typed error) and rethrows anything else: bad input and a script's
 * own `ERR` are bugs, not outages. Raw client errors (a plain `MGET`'s) are typed here, off the hot path.
 */
export function absorbOutage(err: unknown, onError: ((error: Error) => void) | undefined): void {
  const typed = classifyError(err, { label: 'cache read' });
  if (!isOutage(typed)) throw typed;
  onError?.(typed);
}

/** What `Transport` needs of the cache's settings. */
export interface TransportOptions {
  /** Deadline of each call, in ms. */
  timeoutMs: number;
  /**
   * Lookups as plain `MGET`s (no L1 and no grace, so no TTL is needed): their replies are the stored texts,
   * and the lookups are recorded for TOUCH as their replies come.
   */
  plainReads: boolean;
  onError: ((error: Error) => void) | undefined;
}

/** Each key of `keys` once, where it last occurs, in that order. */
function lastOccurrences(keys: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (let i = keys.length - 1; i >= 0; i--) {
    const size = seen.size;
    seen.add(keys[i]!);
    if (seen.size !== size) out.push(keys[i]!);
  }
  return out.reverse();
}

/** Sends the operations of one cache; every call of the instance goes through it, in order. */
export class Transport {
  readonly plainReads: boolean;
  private readonly scripts: LuaScriptManager;
  private readonly script: RegisteredScript;
  private readonly batcher: TickBatcher<Op, unknown>;
  private readonly timeoutMs: number;
  private readonly onError: ((error: Error) => void) | undefined;
  /**
   * Plain reads' lookups (entry keys), sent as one TOUCH every `TOUCH_FLUSH_MS` (or 256 lookups), and
   * always before any script call of this cache on the connection, so this process's own order stays exact.
   */
  private touchHits: string[] = [];
  private touchMisses: string[] = [];
  private touchTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: CacheKeys,
    private readonly writeSettings: WriteSettings,
    options: TransportOptions,
  ) {
    this.plainReads = options.plainReads;
    this.timeoutMs = options.timeoutMs;
    this.onError = options.onError;
    this.scripts = new LuaScriptManager(redis);
    this.script = this.scripts.registerScript(scriptName('cache', SCRIPT_FILE), SOURCE);
    this.batcher = new TickBatcher(this.sendOps, BATCH_SIZE);
  }

  /**
   * A lookup, batched with the others of the tick: the stored text (plain reads) or the script's `Lookup`;
   * a failure resolves as `Failed` (the callers absorb it, so it is not thrown and caught on the hot path).
   * A plain read is recorded for the next TOUCH when its reply comes, so lookups are recorded in the order
   * they were made: a hit always, a miss only with `countMiss` (a `getOrSet` miss is counted by its LEASE).
   */
  readSettled(key: string, countMiss = true): Promise<unknown> {
    return this.batcher.add({ kind: 'get', key, countMiss });
  }

  /** A write without a lease, batched with the consecutive writes of the tick into one MSET. */
  write(key: string, text: string, ttlMs: number, tags: readonly string[]): Promise<unknown> {
    return this.submit({ kind: 'set', key, text, ttlMs, tags });
  }

  /** As `write`, but a failure resolves as `Failed` (one promise less on the path of a `set`). */
  writeSettled(key: string, text: string, ttlMs: number, tags: readonly string[]): Promise<unknown> {
    return this.batcher.add({ kind: 'set', key, text, ttlMs, tags });
  }

  /** Any other script call, in its place in the tick. */
  call(args: readonly ScriptArg[], keys: readonly string[]): Promise<unknown> {
    return this.submit({ kind: 'call', args, keys });
  }

  /** Plain reads of the cache's keys as one pipeline under `timeoutMs` (`inspect`); `[error, reply]` each. */
  async pipeline(commands: [string, ...string[]][]): Promise<[Error | null, unknown][]> {
    const replies = await this.withDeadline(this.redis.pipeline(commands).exec());
    if (replies === null) throw new RedisUnavailableError('the pipeline was discarded');
    return replies;
  }

  /** Records the lookups of a plain MGET (`entryKeys`, the keys of `ops[from…]`) for the next TOUCH. */
  private recordReads(ops: Op[], from: number, entryKeys: readonly string[], texts: readonly (string | null)[]): void {
    for (let i = 0; i < entryKeys.length; i++) {
      if (texts[i] !== null) this.touchHits.push(entryKeys[i]!);
      else if ((ops[from + i] as { countMiss: boolean }).countMiss) this.touchMisses.push(entryKeys[i]!);
      else continue;
      if (this.touchHits.length + this.touchMisses.length >= TOUCH_BATCH) void this.flushTouches();
      else this.touchTimer ??= setTimeout(() => void this.flushTouches(), TOUCH_FLUSH_MS);
    }
  }

  /**
   * Sends the recorded lookups as one TOUCH, each key once: a hit key at its last hit (stamping only an entry's
   * last lookup gives the order stamping every one would), with the numbers of hits and misses to count.
   * Failures go to `onError`.
   */
  flushTouches(): Promise<void> {
    clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    const hits = this.touchHits;
    const misses = this.touchMisses;
    if (hits.length + misses.length === 0) return Promise.resolve();
    this.touchHits = [];
    this.touchMisses = [];
    const hitKeys = lastOccurrences(hits);
    const keys = this.keys.forCache(misses.length === 0 ? hitKeys : [...hitKeys, ...new Set(misses)]);
    const args = encodeTouch(Date.now(), hitKeys.length, hits.length, misses.length);
    return this.run(args, keys).then(
      () => undefined,
      (err: unknown) => this.onError?.(err as Error),
    );
  }

  /** Runs `op` with the others started in this tick; rejects with the error of the command that carried it. */
  private async submit(op: Op): Promise<unknown> {
    const reply = await this.batcher.add(op);
    if (reply instanceof Failed) throw reply.error;
    return reply;
  }

  /**
   * Sends the operations of a tick in the order they were made, all at once (pipelined): each run of
   * consecutive lookups as one `MGET` (plain reads) or one script MGET, each run of consecutive writes as one
   * script MSET, any other call as it is. A failed command fails only its own operations.
   */
  private readonly sendOps = (ops: Op[]): Promise<ArrayLike<unknown>> => {
    // A lone operation (one call in flight) is its own run: no bookkeeping of runs, no promise more.
    if (ops.length === 1) return this.sendRun(ops, 0, 1).catch((err: unknown) => [new Failed(err)]);
    return this.sendRuns(ops);
  };

  /** `sendOps` for several operations: one command per run of one kind, all issued at once. */
  private async sendRuns(ops: Op[]): Promise<unknown[]> {
    const replies = new Array<unknown>(ops.length);
    const sent: Promise<void>[] = [];
    for (let from = 0; from < ops.length; ) {
      const kind = ops[from]!.kind;
      let to = from + 1;
      if (kind !== 'call') while (to < ops.length && ops[to]!.kind === kind) to++;
      const first = from;
      const last = to;
      sent.push(
        this.sendRun(ops, first, last).then(
          (run) => {
            for (let i = first; i < last; i++) replies[i] = run[i - first];
          },
          (err: unknown) => {
            const failed = new Failed(err);
            for (let i = first; i < last; i++) replies[i] = failed;
          },
        ),
      );
      from = to;
    }
    await Promise.all(sent);
    return replies;
  }

  /**
   * One command for `ops[from..to)`, all of one kind; resolves with one reply per operation. The command is
   * issued before the first `await`, so the commands of one batch leave in order.
   */
  private async sendRun(ops: Op[], from: number, to: number): Promise<ArrayLike<unknown>> {
    const op = ops[from]!;
    if (op.kind === 'call') return [await this.run(op.args, op.keys)];
    const n = to - from;
    const entryKeys = new Array<string>(n);
    for (let i = 0; i < n; i++) entryKeys[i] = this.keys.entryPrefix + (ops[from + i] as { key: string }).key;
    if (op.kind === 'get' && this.plainReads) {
      // A lone lookup (one call in flight) is a GET: Redis and the client skip the array reply.
      const texts = n === 1 ? [await this.withDeadline(this.redis.get(entryKeys[0]!))] : await this.withDeadline(this.redis.mget(entryKeys));
      this.recordReads(ops, from, entryKeys, texts);
      return texts;
    }
    const keys = this.keys.forEntries(entryKeys);
    const now = Date.now();
    if (op.kind === 'get') return decodeMget(await this.run(encodeMget(now, this.writeSettings.graceMs), keys), n);
    const args = encodeWrites(now, this.writeSettings, ops as EntryWrite[], from, to);
    const evicted = decodeMset(await this.run(args, keys));
    return new Array<unknown>(n).fill(evicted);
  }

  /** Runs the script now (the lookups recorded for TOUCH go first). */
  private run(args: readonly ScriptArg[], keys: readonly string[]): Promise<unknown> {
    if (this.touchTimer !== undefined) void this.flushTouches();
    return this.scripts.executeScript(this.script, { keys, args, timeoutMs: this.timeoutMs });
  }

  /** Rejects with `RedisUnavailableError` when no reply came within `timeoutMs` (the outcome is unknown). */
  private withDeadline<R>(promise: Promise<R>): Promise<R> {
    return withDeadline(promise, this.timeoutMs, () => new RedisUnavailableError(`no reply within ${this.timeoutMs} ms`));
  }
}
