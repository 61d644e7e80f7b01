// The rate limiter's API (limit, peek, reset) and its transport: batching, deadlines and what an outage answers.
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertRedisClient,
  isCluster,
  isOutage,
  KeySpace,
  LuaScriptManager,
  readPackageLua,
  RedisUnavailableError,
  scriptName,
  TickBatcher,
  withDeadline,
  type CyRedisError,
  type RedisClient,
  type RegisteredScript,
} from '@cyredis/core';
import { MAX_MS, resolveOptions, type LimitOptions, type OnRedisError, type RateLimitAlgorithm, type RateLimiterOptions, type RateLimitResult, type ResolvedRule } from './options.js';
import { LimiterProtocol, type CheckCall } from './protocol.js';
import { RefusalCache } from './refusals.js';

const SCRIPT_NAME = scriptName('ratelimit', 'rate_limiter');
const SOURCE = readPackageLua(import.meta.url, 'rate_limiter');
/** `retryAfterMs` of a refusal made up by `onRedisError: 'deny'`. */
const DENY_RETRY_MS = 1000;
const LIMIT_KEYS = ['cost', 'requestId', 'nowMs'] as const;
const PEEK_KEYS = ['cost', 'nowMs'] as const;
/** Checks per batch call: bounds the script's run time, and leaves several batches in flight so Node and Redis overlap. */
const MAX_BATCH = 16;

/** A plain `limit` check waiting for its tick's batch. */
interface QueuedCheck {
  keys: string[];
  cost: number;
}

/**
 * Rate limits ids against one or more rules on Redis or Redis Cluster, one script call per check. A refused
 * call is a result (`allowed: false`), never an exception.
 */
export class RateLimiter {
  /** The algorithm every rule uses. */
  readonly algorithm: RateLimitAlgorithm;
  /** How long an id stays refused once limited, in ms (0: no block). */
  readonly blockMs: number;
  /** Deadline of each Redis call, in ms. */
  readonly timeoutMs: number;
  /** What a Redis failure answers. */
  readonly onRedisError: OnRedisError;
  private readonly scripts: LuaScriptManager;
  private readonly script: RegisteredScript;
  private readonly ruleList: ResolvedRule[];
  private readonly protocol: LimiterProtocol;
  private readonly minCapacity: number;
  private readonly refusals: RefusalCache | undefined;
  /** Absent when batching is off. */
  private readonly batcher: TickBatcher<QueuedCheck, RateLimitResult> | undefined;

  constructor(redis: RedisClient, options: RateLimiterOptions) {
    assertRedisClient('redis', redis);
    const resolved = resolveOptions(options);
    this.algorithm = resolved.algorithm;
    this.ruleList = resolved.rules;
    this.blockMs = resolved.blockMs;
    this.timeoutMs = resolved.timeoutMs;
    this.onRedisError = resolved.onRedisError;
    this.refusals = resolved.maxRefusals === undefined ? undefined : new RefusalCache(resolved.maxRefusals, this.blockMs > 0);
    // A batch may mix ids, whose keys live in different slots on a cluster.
    if (resolved.batch && !isCluster(redis)) this.batcher = new TickBatcher(this.sendChecks, MAX_BATCH);
    this.scripts = new LuaScriptManager(redis);
    this.script = this.scripts.registerScript(SCRIPT_NAME, SOURCE);
    this.protocol = new LimiterProtocol(new KeySpace('ratelimit', resolved.prefix), this.ruleList, this.algorithm, this.blockMs);
    this.minCapacity = Math.min(...this.ruleList.map((r) => r.capacity));
  }

  /** The rules in force, with each one's capacity and the period it applies to. */
  get rules(): readonly Readonly<ResolvedRule>[] {
    return this.ruleList;
  }

  /** Checks `id` against every rule and, when all admit it, consumes `cost` from each. */
  async limit(id: string, options: LimitOptions = {}): Promise<RateLimitResult> {
    assertOptions('options', options, LIMIT_KEYS);
    const cost = this.checkCost(options.cost);
    const { requestId, nowMs } = options;
    if (requestId !== undefined) assertNonEmptyString('options.requestId', requestId, 256);
    const cached = this.refusals !== undefined && nowMs === undefined && cost > 0 ? this.refusals.get(id, cost) : undefined;
    if (cached) return cached;
    const result =
      this.batcher && requestId === undefined && nowMs === undefined
        ? await this.batcher.add({ keys: this.protocol.keys(id), cost })
        : await this.call(id, { cost, mode: 'limit', nowMs, requestId });
    if (this.refusals !== undefined && !result.allowed && result.error === undefined && nowMs === undefined) {
      this.refusals.remember(id, cost, result);
    }
    return result;
  }

  /** Answers what `limit(id, options)` would, consuming nothing and writing nothing. */
  async peek(id: string, options: Omit<LimitOptions, 'requestId'> = {}): Promise<RateLimitResult> {
    assertOptions('options', options, PEEK_KEYS);
    return this.call(id, { cost: this.checkCost(options.cost), mode: 'peek', nowMs: options.nowMs });
  }

  /** Forgets everything recorded for `id` (every rule and any block). */
  async reset(id: string): Promise<void> {
    const keys = this.protocol.keys(id);
    this.refusals?.forget(id);
    const timeoutMs = this.timeoutMs;
    try {
      await withDeadline(this.scripts.client.del(...keys), timeoutMs, () => new RedisUnavailableError(`reset of "${id}": no reply within ${timeoutMs} ms (outcome unknown)`));
    } catch (err) {
      if (err instanceof RedisUnavailableError) throw err;
      throw new RedisUnavailableError(`reset of "${id}" failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private checkCost(cost: number | undefined): number {
    if (cost === undefined) return 1;
    assertInteger('options.cost', cost, { min: -this.minCapacity, max: this.minCapacity });
    return cost;
  }

  /** One check as its own script call. */
  private async call(id: string, check: CheckCall): Promise<RateLimitResult> {
    const keys = this.protocol.checkKeys(id, check.requestId);
    if (check.nowMs !== undefined) assertFiniteNumber('options.nowMs', check.nowMs, { min: 0, max: MAX_MS });
    let reply: unknown;
    try {
      reply = await this.run(keys, this.protocol.checkArgs(check));
    } catch (err) {
      return this.fallback(err);
    }
    return this.protocol.decodeCheck(reply);
  }

  private run(keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.scripts.executeScript(this.script, { keys, args, timeoutMs: this.timeoutMs });
  }

  /**
   * Sends the plain `limit` checks of one tick as one batch call, which the script decides one after the
   * other as if each came alone.
   */
  private readonly sendChecks = async (checks: QueuedCheck[]): Promise<RateLimitResult[]> => {
    // A lone check goes as a plain call: no batch reply to unwrap.
    const lone = checks.length === 1 ? checks[0]! : undefined;
    const keys = lone ? lone.keys : checks.flatMap((check) => check.keys);
    const args = lone ? this.protocol.checkArgs({ cost: lone.cost, mode: 'limit' }) : this.protocol.batchArgs(checks.map((check) => check.cost));
    let reply: unknown;
    try {
      reply = await this.run(keys, args);
    } catch (err) {
      const result = this.fallback(err);
      return checks.map(() => result);
    }
    return lone ? [this.protocol.decodeCheck(reply)] : this.protocol.decodeBatch(reply);
  };

  /** What a failed call answers under `onRedisError`; a script `ERR` (a bug or bad input) always reaches the caller. */
  private fallback(err: unknown): RateLimitResult {
    const policy = this.onRedisError;
    if (policy === 'throw' || !isOutage(err)) throw err;
    const rule = this.ruleList[0]!;
    const allowed = policy === 'allow';
    return {
      allowed,
      remaining: allowed ? rule.capacity : 0,
      limit: rule.capacity,
      resetMs: 0,
      retryAfterMs: allowed ? 0 : DENY_RETRY_MS,
      windowMs: rule.periodMs,
      rule: 0,
      // isOutage holds only for CyRedisError subclasses.
      error: err as CyRedisError,
    };
  }
}
