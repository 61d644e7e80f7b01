// The rate limiter: checks ids against one or more rules in one script call, with every option it takes.
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOneOf,
  assertOptions,
  assertPositiveMs,
  assertRedisClient,
  CyRedisError,
  InvalidArgumentError,
  isCluster,
  KeySpace,
  LuaScriptManager,
  readPackageLua,
  RedisUnavailableError,
  ScriptError,
  TickBatcher,
  toArray,
  toNumber,
  withDeadline,
  type RedisClient,
  type RegisteredScript,
} from '@cyredis/core';
import { ScriptArgs } from './protocol.js';

/** How a rule counts: exact sliding window (default), GCRA, or fixed window. */
export type RateLimitAlgorithm = 'sliding-window' | 'gcra' | 'fixed-window';
/** What `limit` and `peek` answer when Redis fails or is slower than `timeoutMs`. */
export type OnRedisError = 'throw' | 'allow' | 'deny';

/** One limit: `limit` units per `windowMs`, with an optional `burst`. */
export interface RateLimitRule {
  /** Admissions (sum of costs) per window: an integer from 1 to 2^40. */
  limit: number;
  /** Window length in ms (> 0, resolution 1 µs). */
  windowMs: number;
  /**
   * Capacity above `limit` for short bursts (integer ≥ limit). The rule then admits at most `burst` in any
   * interval of `windowMs × burst / limit`, so the long-run rate stays `limit` per window. Default: `limit`.
   */
  burst?: number;
}

/** Options every limiter takes, whatever its rules. */
export interface RateLimiterCommonOptions {
  /** Default `'sliding-window'` (exact). `'gcra'` and `'fixed-window'` keep O(1) memory per key. */
  algorithm?: RateLimitAlgorithm;
  /** Key prefix; keys are `<prefix>:ratelimit:{<id>}:…`. Default `'cyredis'`. */
  prefix?: string;
  /** Once refused, the id stays refused this many ms (checked and set in the same script call). */
  blockMs?: number;
  /**
   * Give up waiting for Redis after this many ms (1 to 2^31 − 1) and apply `onRedisError`. Default 1000, so
   * no call waits for a server that is down (ioredis alone queues a call through its reconnects).
   */
  timeoutMs?: number;
  /** What a call answers when Redis is unreachable, errs or is slower than `timeoutMs`. Default `'throw'`. */
  onRedisError?: OnRedisError;
  /**
   * Remember refused ids in this process and answer them without Redis until their `retryAfterMs` has
   * passed. `true` keeps up to 10 000 ids. Default off.
   */
  cacheRefusals?:
    | boolean
    | {
        /** Refused ids remembered at most. Default 10 000. */
        maxEntries?: number;
      };
  /**
   * Send the `limit` checks made in the same tick (without `requestId` or `nowMs`) as one script call,
   * decided one after the other. Single-node clients only; default true.
   */
  batch?: boolean;
}

/** One rule given inline: `{ limit, windowMs, burst? }`. */
export interface InlineRuleOptions extends RateLimiterCommonOptions, RateLimitRule {
  /** Not with an inline rule: give `limit` and `windowMs`, or `rules`, never both. */
  rules?: never;
}

/** Several rules on one id, checked and consumed together (all or nothing) in one script call. */
export interface RuleListOptions extends RateLimiterCommonOptions {
  /** 1 to 16 rules. */
  rules: readonly RateLimitRule[];
  /** Not with `rules`: each rule has its own. */
  limit?: never;
  /** Not with `rules`: each rule has its own. */
  windowMs?: never;
  /** Not with `rules`: each rule has its own. */
  burst?: never;
}

/** Options of `new RateLimiter(…)`: one rule inline, or `rules` (never both). */
export type RateLimiterOptions = InlineRuleOptions | RuleListOptions;

/** Options of `limit` and `peek`. */
export interface LimitOptions {
  /** Units this call consumes: an integer, at most the smallest capacity; negative refunds. Default 1. */
  cost?: number;
  /** Makes a resent call idempotent: the same id within the longest period gets the first answer again. */
  requestId?: string;
  /** The current time in ms since the epoch; default: the Redis server's clock. */
  nowMs?: number;
}

/** The answer to one check. */
export interface RateLimitResult {
  /** Whether the call was admitted (and counted). */
  allowed: boolean;
  /** Units left after this call in the binding rule (the one with the least left, or the one refusing). */
  remaining: number;
  /** Capacity of the binding rule (`burst`, or `limit` without burst). */
  limit: number;
  /** Ms until the binding rule is back to full capacity if nothing more is consumed. */
  resetMs: number;
  /**
   * When refused: ms after which the same call is admitted (rounded up); 0 when allowed. `Infinity` only from
   * the middleware, for a request whose cost exceeds the capacity.
   */
  retryAfterMs: number;
  /** Period of the binding rule in ms: at most `limit` units in any such interval (sliding window). */
  windowMs: number;
  /** Index of the binding rule in `rules` (0 for a single rule). */
  rule: number;
  /** Set when the answer comes from `onRedisError` rather than from Redis. */
  error?: CyRedisError;
}

const SCRIPT_NAME = 'cyredis:ratelimit:rate_limiter';
const SOURCE = readPackageLua(import.meta.url, 'rate_limiter');
const MAX_INT = 2 ** 40;
const ALGORITHMS: readonly RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
const SHORT: Record<RateLimitAlgorithm, string> = { 'sliding-window': 'sw', gcra: 'gcra', 'fixed-window': 'fw' };
const DENY_RETRY_MS = 1000;
/** Longest duration the script keeps exact (µs as doubles up to 2^52), in ms: block, caller time. */
const MAX_MS = 2 ** 52 / 1000;
const DEFAULT_TIMEOUT_MS = 1000;
/** `setTimeout` fires at once past this. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** Rules per limiter: each is a key and a few µs of script time on every check. */
const MAX_RULES = 16;
const RULE_KEYS = ['limit', 'windowMs', 'burst'] as const;
const OPTION_KEYS = [...RULE_KEYS, 'rules', 'algorithm', 'prefix', 'blockMs', 'timeoutMs', 'onRedisError', 'cacheRefusals', 'batch'] as const;
const LIMIT_KEYS = ['cost', 'requestId', 'nowMs'] as const;
const PEEK_KEYS = ['cost', 'nowMs'] as const;
/** Checks per batch call: bounds the script's run time, and leaves several batches in flight so Node and Redis overlap. */
const MAX_BATCH = 16;

/** A rule as the limiter applies it. */
export interface ResolvedRule {
  /** Admitted units per window over the long run. */
  limit: number;
  /** The window, in ms. */
  windowMs: number;
  /** `burst`, or `limit` without burst. */
  capacity: number;
  /** The period the capacity applies to, in ms (as the script computes it). */
  periodMs: number;
}

interface Rule extends ResolvedRule {
  /** `resetMs` of a call that consumed from a fresh period: the script's short reply. */
  fullResetMs: number;
}

interface QueuedCheck {
  keys: string[];
  cost: number;
}

interface CachedRefusal {
  atMs: number;
  untilMs: number;
  cost: number;
  result: RateLimitResult;
}

function checkRule(name: string, rule: Partial<RateLimitRule>, algorithm: RateLimitAlgorithm): Rule {
  assertOptions(name, rule, RULE_KEYS, false);
  assertInteger(`${name}.limit`, rule.limit, { min: 1, max: MAX_INT });
  assertPositiveMs(`${name}.windowMs`, rule.windowMs);
  const capacity = rule.burst ?? rule.limit;
  assertInteger(`${name}.burst`, capacity, { min: rule.limit, max: MAX_INT });
  // Rounded exactly as the script rounds the seconds it is sent.
  const windowUs = Math.floor((rule.windowMs / 1000) * 1e6 + 0.5);
  if (windowUs < 1 || windowUs * capacity > 2 ** 52) throw new InvalidArgumentError(`${name}.windowMs`, 'out of range');
  // The same arithmetic as the script: GCRA spaces units by whole µs, the others stretch the window by burst.
  const periodUs = algorithm === 'gcra' ? capacity * Math.ceil(windowUs / rule.limit) : Math.ceil((windowUs * capacity) / rule.limit);
  return { limit: rule.limit, windowMs: rule.windowMs, capacity, periodMs: periodUs / 1000, fullResetMs: Math.ceil(periodUs / 1000) };
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
  private readonly space: KeySpace;
  private readonly ruleList: Rule[];
  private readonly suffixes: string[];
  private readonly args: ScriptArgs;
  private readonly minCapacity: number;
  private readonly refusals: Map<string, CachedRefusal> | undefined;
  private readonly maxRefusals: number;
  /** Absent when batching is off. */
  private readonly batcher: TickBatcher<QueuedCheck, RateLimitResult> | undefined;

  constructor(redis: RedisClient, options: RateLimiterOptions) {
    assertRedisClient('redis', redis);
    assertOptions('options', options, OPTION_KEYS, false);
    this.algorithm = options.algorithm ?? 'sliding-window';
    assertOneOf('options.algorithm', this.algorithm, ALGORITHMS);
    const rules: readonly RateLimitRule[] | undefined = options.rules;
    if (rules !== undefined) {
      const given: unknown = rules;
      if (!Array.isArray(given) || given.length === 0 || given.length > MAX_RULES) {
        throw new InvalidArgumentError('options.rules', `must be an array of 1 to ${MAX_RULES} rules`);
      }
      if (options.limit !== undefined || options.windowMs !== undefined || options.burst !== undefined) {
        throw new InvalidArgumentError('options.rules', 'give either rules or limit/windowMs/burst, not both');
      }
      this.ruleList = rules.map((r, i) => checkRule(`options.rules[${i}]`, r, this.algorithm));
    } else {
      const { limit, windowMs, burst } = options;
      this.ruleList = [checkRule('options', burst === undefined ? { limit, windowMs } : { limit, windowMs, burst }, this.algorithm)];
    }
    this.blockMs = options.blockMs ?? 0;
    assertFiniteNumber('options.blockMs', this.blockMs, { min: 0, max: MAX_MS });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    assertFiniteNumber('options.timeoutMs', this.timeoutMs, { min: 1, max: MAX_TIMEOUT_MS });
    this.onRedisError = options.onRedisError ?? 'throw';
    assertOneOf('options.onRedisError', this.onRedisError, ['throw', 'allow', 'deny'] as const);
    const cache = options.cacheRefusals ?? false;
    if (typeof cache === 'object') assertOptions('options.cacheRefusals', cache, ['maxEntries'], false);
    else if (typeof cache !== 'boolean') throw new InvalidArgumentError('options.cacheRefusals', 'must be a boolean or { maxEntries }');
    this.maxRefusals = typeof cache === 'object' ? (cache.maxEntries ?? 10_000) : 10_000;
    assertInteger('options.cacheRefusals.maxEntries', this.maxRefusals, { min: 1 });
    this.refusals = cache === false ? undefined : new Map();
    // A batch may mix ids, whose keys live in different slots on a cluster.
    if (options.batch !== false && !isCluster(redis)) this.batcher = new TickBatcher(this.sendChecks, MAX_BATCH);

    this.space = new KeySpace('ratelimit', options.prefix);
    this.scripts = new LuaScriptManager(redis);
    this.script = this.scripts.registerScript(SCRIPT_NAME, SOURCE);
    const short = SHORT[this.algorithm];
    this.suffixes = this.ruleList.map((_, i) => `${short}${i}`);
    if (this.blockMs > 0) this.suffixes.push('block');
    this.args = new ScriptArgs(this.ruleList, this.algorithm, this.blockMs);
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
    if (options.requestId !== undefined) assertNonEmptyString('options.requestId', options.requestId, 256);
    const cached = this.refusals !== undefined && options.nowMs === undefined && cost > 0 ? this.cachedRefusal(id, cost) : undefined;
    if (cached) return cached;
    const result =
      this.batcher && options.requestId === undefined && options.nowMs === undefined
        ? await this.batcher.add({ keys: this.space.keys(id, this.suffixes), cost })
        : await this.call(id, cost, 'limit', options);
    if (this.refusals !== undefined && !result.allowed && result.error === undefined && options.nowMs === undefined) {
      this.remember(id, cost, result);
    }
    return result;
  }

  /** Answers what `limit(id, options)` would, consuming nothing and writing nothing. */
  async peek(id: string, options: Omit<LimitOptions, 'requestId'> = {}): Promise<RateLimitResult> {
    assertOptions('options', options, PEEK_KEYS);
    return this.call(id, this.checkCost(options.cost), 'peek', options);
  }

  /** Forgets everything recorded for `id` (every rule and any block). */
  async reset(id: string): Promise<void> {
    const keys = this.space.keys(id, this.suffixes);
    this.refusals?.delete(id);
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

  private async call(id: string, cost: number, mode: 'limit' | 'peek', options: LimitOptions): Promise<RateLimitResult> {
    const keys = this.space.keys(id, this.suffixes);
    if (options.nowMs !== undefined) assertFiniteNumber('options.nowMs', options.nowMs, { min: 0, max: MAX_MS });
    const requestId = mode === 'limit' ? options.requestId : undefined;
    if (requestId !== undefined) keys.push(this.space.key(id, `req:${requestId}`));
    const args = this.args.check(cost, mode, options.nowMs, requestId);
    let reply: unknown;
    try {
      reply = await this.run(keys, args);
    } catch (err) {
      return this.fallback(err);
    }
    return this.toResult(reply);
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
    const lone = checks.length === 1;
    const args = lone ? this.args.check(checks[0]!.cost, 'limit') : this.args.batch(checks);
    const keys = lone ? checks[0]!.keys : checks.flatMap((check) => check.keys);
    let reply: unknown;
    try {
      reply = await this.run(keys, args);
    } catch (err) {
      const result = this.fallback(err);
      return checks.map(() => result);
    }
    if (checks.length === 1) return [this.toResult(reply)];
    return toArray(reply).map((r) => this.toResult(r));
  };

  private toResult(reply: unknown): RateLimitResult {
    if (typeof reply === 'number') {
      const first = this.ruleList[0]!;
      return { allowed: true, remaining: reply, limit: first.capacity, resetMs: first.fullResetMs, retryAfterMs: 0, windowMs: first.periodMs, rule: 0 };
    }
    const r = toArray(reply);
    const rule = this.ruleList[toNumber(r[4])]!;
    return {
      allowed: r[0] === 1,
      remaining: toNumber(r[1]),
      limit: rule.capacity,
      resetMs: Math.ceil(toNumber(r[2]) / 1000),
      retryAfterMs: Math.ceil(toNumber(r[3]) / 1000),
      windowMs: rule.periodMs,
      rule: toNumber(r[4]),
    };
  }

  private fallback(err: unknown): RateLimitResult {
    const policy = this.onRedisError;
    // A script `ERR` is a bug or bad input, not an outage: it always reaches the caller.
    const outage = err instanceof RedisUnavailableError || (err instanceof ScriptError && err.code !== 'ERR');
    if (policy === 'throw' || !outage || !(err instanceof CyRedisError)) throw err;
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
      error: err,
    };
  }

  private cachedRefusal(id: string, cost: number): RateLimitResult | undefined {
    const entry = this.refusals!.get(id);
    if (!entry) return undefined;
    const now = Date.now();
    if (now >= entry.untilMs) {
      this.refusals!.delete(id);
      return undefined;
    }
    // A refusal at cost c says nothing about a smaller cost, unless the id is blocked.
    if (cost < entry.cost && this.blockMs === 0) return undefined;
    const elapsed = now - entry.atMs;
    return { ...entry.result, retryAfterMs: Math.ceil(entry.untilMs - now), resetMs: Math.max(Math.ceil(entry.result.resetMs - elapsed), 0) };
  }

  private remember(id: string, cost: number, result: RateLimitResult): void {
    const refusals = this.refusals!;
    refusals.delete(id);
    if (refusals.size >= this.maxRefusals) refusals.delete(refusals.keys().next().value!);
    const now = Date.now();
    refusals.set(id, { atMs: now, untilMs: now + result.retryAfterMs, cost, result });
  }
}
