import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import calculateSlot from 'cluster-key-slot';
import { Command, type ChainableCommander, type Cluster, type Pipeline, type Redis } from 'ioredis';
import {
  CrossSlotError,
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  UnknownScriptError,
} from './errors.js';
import { classifyError } from './outage.js';
import { clientKeyPrefix, isCluster, type RedisClient } from './client.js';
import { withDeadline } from './deadline.js';
import { assertInteger, assertNonEmptyString, assertScriptArg, type ScriptArg } from './validate.js';

/** Options of `registerScript` and `registerScriptFile`. */
export interface RegisterOptions {
  /**
   * Run as `EVALSHA_RO` / `EVAL_RO` (the server refuses writes, replicas may serve it). Default: true when the
   * source starts with a `#!lua` line carrying the `no-writes` flag.
   */
  readOnly?: boolean;
  /** When set, every call must pass exactly this many keys. */
  numberOfKeys?: number;
}

/** The handle `registerScript` returns; pass it to `executeScript` to run exactly this source. */
export interface RegisteredScript {
  /** The name it was registered under. */
  readonly name: string;
  /** SHA1 of the source, computed locally; equals what `SCRIPT LOAD` returns. */
  readonly sha: string;
  /** The Lua source. */
  readonly source: string;
  /** Sent as `EVALSHA_RO` / `EVAL_RO`. */
  readonly readOnly: boolean;
  /** When set, the number of keys every call must pass. */
  readonly numberOfKeys?: number;
}

/** What one script call sends. */
export interface ScriptCall {
  /** `KEYS`: non-empty strings, all in one cluster slot. */
  keys?: readonly string[];
  /** `ARGV`: strings, finite numbers, bigints or Buffers. */
  args?: readonly ScriptArg[];
  /**
   * Reject with `RedisTimeoutError` when no reply came within this many ms. The server may still run the
   * script: a timeout is an unknown outcome.
   */
  timeoutMs?: number;
}

const NO_WRITES = /^#!lua\b[^\n]*\bflags=[^\n]*\bno-writes\b/;

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/** Maps an ioredis failure to a typed one; cyredis errors pass through. */
function toCyRedisError(scriptName: string, err: unknown): CyRedisError {
  return classifyError(err, { label: `script "${scriptName}"`, scriptName });
}

/**
 * Registers Lua scripts and runs them on a Redis node or cluster: `EVALSHA` first, `EVAL` when the server's
 * script cache lost it (flush, restart, failover), so callers never see `NOSCRIPT`.
 */
export class LuaScriptManager {
  private readonly scripts = new Map<string, RegisteredScript>();
  /** Frozen key lists already checked (each key, and one slot on a cluster): a caller that keeps its list pays once. */
  private readonly checkedKeys = new WeakSet<readonly string[]>();
  private readonly isCluster: boolean;
  private readonly keyPrefix: string;

  constructor(
    /** The ioredis client (or cluster) every call goes through. */
    readonly client: RedisClient,
  ) {
    this.isCluster = isCluster(client);
    this.keyPrefix = clientKeyPrefix(client);
  }

  /**
   * Registers a script under `name` and returns its handle. Registering a name again with other source
   * points the name at the new script; handles returned earlier keep running their own source, so two
   * versions of a package can share one client.
   */
  registerScript(name: string, source: string, options: RegisterOptions = {}): RegisteredScript {
    assertNonEmptyString('name', name, 256);
    assertNonEmptyString('source', source, Number.MAX_SAFE_INTEGER);
    if (options.numberOfKeys !== undefined) assertInteger('options.numberOfKeys', options.numberOfKeys, { min: 0 });
    const script: RegisteredScript = Object.freeze({
      name,
      sha: createHash('sha1').update(source).digest('hex'),
      source,
      readOnly: options.readOnly ?? NO_WRITES.test(source),
      ...(options.numberOfKeys === undefined ? {} : { numberOfKeys: options.numberOfKeys }),
    });
    this.scripts.set(name, script);
    return script;
  }

  /** Reads a `.lua` file and registers it. */
  async registerScriptFile(name: string, path: string | URL, options: RegisterOptions = {}): Promise<RegisteredScript> {
    return this.registerScript(name, await readFile(path, 'utf8'), options);
  }

  /** Whether a script is registered under `name`. */
  has(name: string): boolean {
    return this.scripts.has(name);
  }

  /** The script registered under `name` (the latest one), if any. */
  get(name: string): RegisteredScript | undefined {
    return this.scripts.get(name);
  }

  /** The registered names, in registration order. */
  names(): string[] {
    return [...this.scripts.keys()];
  }

  /**
   * Runs a script by name or handle and resolves with its reply (Lua `true` → 1, `false`/nil → null). Bad
   * keys or arguments throw `InvalidArgumentError` before any round trip; keys in different cluster slots
   * throw `CrossSlotError`; a Redis error reply rejects with `ScriptError`, no reply with
   * `RedisUnavailableError`.
   */
  async executeScript<T = unknown>(script: string | RegisteredScript, call: ScriptCall = {}): Promise<T> {
    const s = this.resolve(script);
    const keys = call.keys ?? [];
    const args = call.args ?? [];
    this.check(s, keys, args);
    const run = this.run(s, keys, args);
    const { timeoutMs } = call;
    if (timeoutMs === undefined) return run as Promise<T>;
    return withDeadline(run, timeoutMs, () => new RedisTimeoutError(s.name, timeoutMs)) as Promise<T>;
  }

  /**
   * Queues a script call on an ioredis pipeline or `MULTI` (checked like `executeScript`); its reply comes
   * from `exec()`. In a pipeline a lost script is resent as `EVAL`; in a transaction it is sent as `EVAL`
   * from the start, since nothing can be resent inside `MULTI`.
   */
  queueScript<P extends ChainableCommander>(pipeline: P, script: string | RegisteredScript, call: Omit<ScriptCall, 'timeoutMs'> = {}): P {
    const s = this.resolve(script);
    const keys = call.keys ?? [];
    const args = call.args ?? [];
    this.check(s, keys, args);
    const inTransaction = ((pipeline as unknown as { _transactions?: number })._transactions ?? 0) > 0;
    const command = this.command(s, keys, args, inTransaction);
    if (!inTransaction) {
      command.promise = command.promise.catch((err: unknown) => {
        if (!isNoScript(err)) throw toCyRedisError(s.name, err);
        return this.send(s, keys, args, true).catch((retryErr: unknown) => {
          throw toCyRedisError(s.name, retryErr);
        });
      });
    }
    (pipeline as unknown as Pipeline).sendCommand(command);
    return pipeline;
  }

  /** Loads every registered script on every master (useful before a burst; never needed for correctness). */
  async loadAll(): Promise<void> {
    const nodes = this.isCluster ? (this.client as Cluster).nodes('master') : [this.client as Redis];
    await Promise.all(
      nodes.flatMap((node) =>
        [...this.scripts.values()].map(async (s) => {
          const sha = await node.script('LOAD', s.source).catch((err: unknown) => {
            throw toCyRedisError(s.name, err);
          });
          if (sha !== s.sha) throw new CyRedisError(`script "${s.name}": server SHA ${String(sha)} differs from local ${s.sha}`);
        }),
      ),
    );
  }

  private resolve(script: string | RegisteredScript): RegisteredScript {
    if (typeof script !== 'string') return script;
    const found = this.scripts.get(script);
    if (!found) throw new UnknownScriptError(script);
    return found;
  }

  private check(s: RegisteredScript, keys: readonly string[], args: readonly ScriptArg[]): void {
    if (s.numberOfKeys !== undefined && keys.length !== s.numberOfKeys) {
      throw new InvalidArgumentError('keys', `script "${s.name}" takes ${s.numberOfKeys} keys, got ${keys.length}`);
    }
    // Every script call passes here: test the common shapes inline and name the position only on failure,
    // so a call does not build a `keys[i]`/`args[i]` string for every key and argument.
    if (!this.checkedKeys.has(keys)) this.checkKeys(keys);
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      if (typeof arg !== 'string' && !(typeof arg === 'number' && Number.isFinite(arg))) assertScriptArg(`args[${i}]`, arg);
    }
  }

  private checkKeys(keys: readonly string[]): void {
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (typeof key !== 'string' || key.length === 0 || !key.isWellFormed()) {
        assertNonEmptyString(`keys[${i}]`, key, Number.MAX_SAFE_INTEGER);
      }
    }
    if (this.isCluster && keys.length > 1) {
      const prefixed = keys.map((k) => this.keyPrefix + k);
      const slots = prefixed.map((k) => calculateSlot(k));
      if (slots.some((slot) => slot !== slots[0])) throw new CrossSlotError(prefixed, slots);
    }
    // Frozen, the list cannot change after this check.
    if (Object.isFrozen(keys)) this.checkedKeys.add(keys);
  }

  private async run(s: RegisteredScript, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    try {
      return await this.send(s, keys, args, false);
    } catch (err) {
      if (!isNoScript(err)) throw toCyRedisError(s.name, err);
    }
    try {
      return await this.send(s, keys, args, true);
    } catch (err) {
      throw toCyRedisError(s.name, err);
    }
  }

  private command(s: RegisteredScript, keys: readonly string[], args: readonly ScriptArg[], withSource: boolean): Command {
    const name = withSource ? (s.readOnly ? 'eval_ro' : 'eval') : s.readOnly ? 'evalsha_ro' : 'evalsha';
    const wire = new Array<string | number | Buffer>(2 + keys.length + args.length);
    wire[0] = withSource ? s.source : s.sha;
    wire[1] = keys.length;
    for (let i = 0; i < keys.length; i++) wire[2 + i] = keys[i]!;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      wire[2 + keys.length + i] = typeof arg === 'bigint' ? arg.toString() : arg;
    }
    if (this.keyPrefix !== '') return new Command(name, wire, { replyEncoding: 'utf8', keyPrefix: this.keyPrefix });
    // ioredis' constructor copies its arguments with Array#flat (about 2.7 µs for the 32 of a queue's ack,
    // measured); `wire` is flat already, so it is handed over after construction and given the same
    // conversion (numbers to text, buffer mode). With a client key prefix the constructor must see the keys
    // to prefix them, so that path keeps the plain form. (No argument transformer exists for EVAL*.)
    const command = new Command(name, [], { replyEncoding: 'utf8' });
    command.args = wire;
    command.stringifyArguments();
    return command;
  }

  private send(s: RegisteredScript, keys: readonly string[], args: readonly ScriptArg[], withSource: boolean): Promise<unknown> {
    const command = this.command(s, keys, args, withSource);
    void this.client.sendCommand(command);
    return command.promise as Promise<unknown>;
  }
}
