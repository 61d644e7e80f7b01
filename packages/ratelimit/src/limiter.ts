// The rate limiter's API (limit, peek, reset) and its transport: batching, deadlines and what an outage answers.
import { EventEmitter } from 'node:events';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertRedisClient,
  assertRegistryPage,
  assertTimeoutMs,
  classifyError,
  DEFAULT_PREFIX,
  InvalidArgumentError,
  isCluster,
  isOutage,
  KeySpace,
  listRegistered,
  listRegistry,
  LuaScriptManager,
  MAX_TIMEOUT_MS,
  NameRecorder,
  readPackageLua,
  RedisUnavailableError,
  registryKey,
  scriptName,
  TickBatcher,
  withDeadline,
  type CyRedisError,
  type RedisClient,
  type RegisteredScript,
  type RegistryEntry,
  type RegistryListOptions,
  type RegistryPage,
} from '@cyredis/core';
import { decodeDefinition, definitionKey, definitionOf, DefinitionRecorder } from './definition.js';
import { Insurance } from './insurance.js';
import {
  MAX_MS,
  resolveOptions,
  resolveOverride,
  type LimitOptions,
  type OnRedisError,
  type OverrideOptions,
  type RateLimitAlgorithm,
  type RateLimiterOptions,
  type RateLimitResult,
  type RateLimitUsage,
  type RecordedRefusal,
  type ResolvedRule,
} from './options.js';
import { IdList, type PolicyStore } from './policies.js';
import { encodeOverride, LimiterProtocol, POLICY_FIELDS, type CheckCall } from './protocol.js';
import { RefusalCache } from './refusals.js';
import { LIMIT, PEEK, RESET, settleCheck, type RateLimiterEvents } from './tracing.js';

const SCRIPT_NAME = scriptName('ratelimit', 'rate_limiter');
const SOURCE = readPackageLua(import.meta.url, 'rate_limiter');
/** `retryAfterMs` of a refusal made up by `onRedisError: 'deny'`. */
const DENY_RETRY_MS = 1000;
const LIMIT_KEYS = ['cost', 'requestId', 'nowMs', 'waitMs'] as const;
const PEEK_KEYS = ['cost', 'nowMs'] as const;
/** The largest |cost| the script takes (2^40). */
const MAX_COST = 2 ** 40;
/** Checks per batch call: bounds the script's run time, and leaves several batches in flight so Node and Redis overlap. */
const MAX_BATCH = 16;
/** The registry kind of named limiters (`<prefix>:registry:ratelimit`). */
const REGISTRY_KIND = 'ratelimit';
/** An id is written to the refusal log at most this often, so a refused flood costs few writes. */
const REFUSAL_REFRESH_MS = 1000;
/** A refusal older than this leaves the log. */
const REFUSAL_TTL_MS = 60 * 60 * 1000;
const OPEN_KEYS = ['prefix', 'timeoutMs'] as const;
const DEFAULT_OPEN_TIMEOUT_MS = 1000;

/** Options of `RateLimiter.open`. */
export interface RateLimiterOpenOptions {
  /** The prefix the limiter was created with. Default `'cyredis'`. */
  prefix?: string;
  /** Deadline of the definition's read and of every call of the opened limiter, in ms. Default 1000. */
  timeoutMs?: number;
}

/** A plain `limit` check waiting for its tick's batch. */
interface QueuedCheck {
  id: string;
  keys: string[];
  cost: number;
}

/** The sorted set of refused ids under `prefix` (no hash tag: one slot on a cluster). */
function refusalKey(prefix: string): string {
  return `${prefix}:ratelimit:refused`;
}

/** The name `open` gives the limiter it is constructing (the constructor is synchronous, so nothing else sees it). */
let openingName: string | undefined;

/** Resolves after `ms` (a wait for capacity: the limiter sleeps to the retry-after, it never polls). */
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Rate limits ids against one or more rules on Redis or Redis Cluster, one script call per check. A refused
 * call is a result (`allowed: false`), never an exception.
 */
export class RateLimiter extends EventEmitter<RateLimiterEvents> {
  /** The algorithm every rule uses. */
  readonly algorithm: RateLimitAlgorithm;
  /** How long an id stays refused once limited, in ms (0: no block). */
  readonly blockMs: number;
  /** Deadline of each Redis call, in ms. */
  readonly timeoutMs: number;
  /** What a Redis failure answers. */
  readonly onRedisError: OnRedisError;
  /** The name given in the options (listed by `RateLimiter.list`), if any. */
  readonly name: string | undefined;
  /** Records `name` in the prefix's registry; absent without a name and on an opened limiter. */
  private readonly registry: NameRecorder | undefined;
  /** Records the limiter's definition next to its registry entry; present exactly when `registry` is. */
  private readonly definition: DefinitionRecorder | undefined;
  /** Records refused ids in Redis; absent unless `recordRefusals`. */
  private readonly refusalLog: NameRecorder | undefined;
  private readonly scripts: LuaScriptManager;
  private readonly script: RegisteredScript;
  private readonly ruleList: ResolvedRule[];
  private readonly protocol: LimiterProtocol;
  private readonly minCapacity: number;
  private readonly refusals: RefusalCache | undefined;
  /** Absent when batching is off. */
  private readonly batcher: TickBatcher<QueuedCheck, RateLimitResult> | undefined;
  private readonly insurance: Insurance | undefined;
  /** `limit` checks waiting for Redis; with none, a new check skips the batcher. */
  private inFlight = 0;
  /** Whether each check reads the id's policy (allow/deny lists, override) from Redis. */
  readonly policies: boolean;
  /** Ids every check admits without consuming (needs `policies`); shared through Redis. */
  readonly allowList: IdList;
  /** Ids every check refuses with `retryAfterMs: Infinity` (needs `policies`); shared through Redis. */
  readonly denyList: IdList;

  constructor(redis: RedisClient, options: RateLimiterOptions) {
    super();
    assertRedisClient('redis', redis);
    const resolved = resolveOptions(options);
    this.algorithm = resolved.algorithm;
    this.ruleList = resolved.rules;
    this.blockMs = resolved.blockMs;
    this.timeoutMs = resolved.timeoutMs;
    this.onRedisError = resolved.onRedisError;
    // An opened limiter carries its name for traces and tools but records nothing: reading is not using.
    this.name = resolved.name ?? openingName;
    const prefix = resolved.prefix ?? DEFAULT_PREFIX;
    if (resolved.name !== undefined) {
      this.registry = new NameRecorder(redis, registryKey(prefix, REGISTRY_KIND), {}, this.backgroundError);
      this.definition = new DefinitionRecorder(redis, definitionKey(prefix, REGISTRY_KIND), resolved.name, definitionOf(resolved), this.backgroundError);
    }
    if (resolved.maxRecordedRefusals !== undefined) {
      const bounds = { refreshMs: REFUSAL_REFRESH_MS, ttlMs: REFUSAL_TTL_MS, maxEntries: resolved.maxRecordedRefusals };
      this.refusalLog = new NameRecorder(redis, refusalKey(prefix), bounds, this.backgroundError);
    }
    this.refusals = resolved.maxRefusals === undefined ? undefined : new RefusalCache(resolved.maxRefusals, this.blockMs > 0);
    // A batch may mix ids, whose keys live in different slots on a cluster.
    if (resolved.batch && !isCluster(redis)) this.batcher = new TickBatcher(this.sendChecks, MAX_BATCH);
    this.scripts = new LuaScriptManager(redis);
    this.script = this.scripts.registerScript(SCRIPT_NAME, SOURCE);
    this.policies = resolved.policies;
    this.protocol = new LimiterProtocol(new KeySpace('ratelimit', resolved.prefix), this.ruleList, this.algorithm, this.blockMs, this.policies);
    this.minCapacity = Math.min(...this.ruleList.map((r) => r.capacity));
    if (resolved.insurance) this.insurance = new Insurance(resolved.insurance.rule, resolved.insurance.maxIds);
    this.allowList = new IdList(POLICY_FIELDS.allow, this.policyStore);
    this.denyList = new IdList(POLICY_FIELDS.deny, this.policyStore);
  }

  /** The rules in force, with each one's capacity and the period it applies to. */
  get rules(): readonly Readonly<ResolvedRule>[] {
    return this.ruleList;
  }

  /**
   * Checks `id` against every rule and, when all admit it, consumes `cost` from each. With `waitMs`, a
   * refusal sleeps until its `retryAfterMs` and checks again while that fits in `waitMs`.
   */
  limit(id: string, options?: LimitOptions): Promise<RateLimitResult> {
    if (!LIMIT.active) return this.limitNow(id, options);
    return LIMIT.run(() => ({ name: this.name, key: id }), () => this.limitNow(id, options), settleCheck);
  }

  private limitNow(id: string, options: LimitOptions | undefined): Promise<RateLimitResult> {
    // `limit(id)`, the commonest call: cost 1 and no wait, so nothing to check but the id and no loop.
    if (options === undefined) {
      this.recordUse();
      return this.limitOnce(id, 1, undefined, undefined);
    }
    return this.limitWaiting(id, options);
  }

  private async limitWaiting(id: string, options: LimitOptions): Promise<RateLimitResult> {
    assertOptions('options', options, LIMIT_KEYS);
    this.recordUse();
    const cost = this.checkCost(options.cost);
    const { requestId, nowMs, waitMs = 0 } = options;
    if (requestId !== undefined) assertNonEmptyString('options.requestId', requestId, 256);
    assertFiniteNumber('options.waitMs', waitMs, { min: 0, max: MAX_TIMEOUT_MS });
    if (waitMs > 0 && (requestId !== undefined || nowMs !== undefined)) {
      // A resent request id gets its first answer again, and a fixed time gets the same answer.
      throw new InvalidArgumentError('options.waitMs', 'cannot be combined with requestId or nowMs');
    }
    let result = await this.limitOnce(id, cost, requestId, nowMs);
    const deadline = performance.now() + waitMs;
    while (!result.allowed && this.worthWaiting(result, deadline)) {
      await sleep(Math.max(result.retryAfterMs, 1));
      result = await this.limitOnce(id, cost, undefined, undefined);
    }
    return result;
  }

  /** Refreshes the registry entry and the stored definition of a named limiter (each at most once a minute). */
  private recordUse(): void {
    if (this.registry === undefined) return;
    this.registry.record(this.name!);
    this.definition!.record();
  }

  /** Whether a refusal's retry-after fits before `deadline` (a made-up `onRedisError` answer never does). */
  private worthWaiting(result: RateLimitResult, deadline: number): boolean {
    if (result.error !== undefined && this.insurance === undefined) return false;
    return performance.now() + result.retryAfterMs <= deadline;
  }

  private async limitOnce(id: string, cost: number, requestId: string | undefined, nowMs: number | undefined): Promise<RateLimitResult> {
    const cached = this.refusals !== undefined && nowMs === undefined && cost > 0 ? this.refusals.get(id, cost) : undefined;
    if (cached) return cached;
    // A check made while none is in flight goes at once: waiting for the tick's batch would only delay it.
    const batched = this.batcher !== undefined && this.inFlight > 0 && requestId === undefined && nowMs === undefined;
    this.inFlight++;
    let result: RateLimitResult;
    try {
      result = batched ? await this.batcher.add({ id, keys: this.protocol.keys(id), cost }) : await this.call(id, { cost, mode: 'limit', nowMs, requestId });
    } finally {
      this.inFlight--;
    }
    if (!result.allowed && result.error === undefined) {
      this.refusalLog?.record(id);
      if (this.refusals !== undefined && nowMs === undefined && Number.isFinite(result.retryAfterMs)) this.refusals.remember(id, cost, result);
      if (this.listenerCount('refused') > 0) this.emit('refused', id, result);
    }
    return result;
  }

  /** Answers what `limit(id, options)` would, consuming nothing and writing nothing. */
  peek(id: string, options: Omit<LimitOptions, 'requestId'> = {}): Promise<RateLimitResult> {
    if (!PEEK.active) return this.peekNow(id, options);
    return PEEK.run(() => ({ name: this.name, key: id }), () => this.peekNow(id, options), settleCheck);
  }

  private async peekNow(id: string, options: Omit<LimitOptions, 'requestId'>): Promise<RateLimitResult> {
    assertOptions('options', options, PEEK_KEYS);
    this.recordUse();
    return this.call(id, { cost: this.checkCost(options.cost), mode: 'peek', nowMs: options.nowMs });
  }

  /**
   * Reads what `id` has consumed under each rule, and what a `limit` of cost 1 would answer now, consuming
   * nothing and writing nothing (one read per rule plus a `peek`, sent together).
   */
  async usage(id: string): Promise<RateLimitUsage> {
    assertNonEmptyString('id', id);
    const calls = this.protocol.usageCalls(id);
    const [next, ...replies] = await Promise.all([this.peek(id), ...calls.map((c) => this.run(c.keys, c.args))]);
    return { rules: replies.map((reply, i) => this.protocol.decodeUsage(reply, i)), next };
  }

  /**
   * The ids refused most recently by any process using this prefix with `recordRefusals`, newest first
   * (`limit` 1 to 1000, default 100; `offset`). Needs `recordRefusals`.
   */
  async recentRefusals(page: RegistryPage = {}): Promise<RecordedRefusal[]> {
    if (this.refusalLog === undefined) throw new InvalidArgumentError('options.recordRefusals', 'recentRefusals needs a limiter created with recordRefusals');
    const key = this.refusalLog.key;
    const checked = assertRegistryPage(page);
    const entries = await this.command('refusal listing', (client) => listRegistry(client, key, checked, REFUSAL_TTL_MS));
    return entries.map((e) => ({ id: e.name, refusedAtMs: e.lastSeenMs }));
  }

  /**
   * The named limiters used under a prefix within the last day, most recently used first, from the
   * registry (one key, no keyspace scan; on a cluster it lives in one slot). Options: `prefix`, `limit`
   * (1 to 1000, default 100), `offset`, `timeoutMs` (default 1000).
   */
  static list(redis: RedisClient, options: RegistryListOptions = {}): Promise<RegistryEntry[]> {
    return listRegistered(redis, REGISTRY_KIND, options);
  }

  /**
   * The named limiter as some process defined it (algorithm, rules, `blockMs`, `policies`, `recordRefusals`),
   * for read-only use: `usage`, `peek`, `reset`, `recentRefusals`. A named limiter stores its definition on
   * first use and then at most once a minute while in use, next to its registry entry; undefined when `name`
   * was not used under the prefix within a day. When processes define one name differently, each rewrites
   * its own on its next refresh, so this answers the one written most recently. The opened limiter records
   * nothing (it is not listed as used), answers `onRedisError: 'throw'` and does not batch. One read, under
   * `timeoutMs`: `RedisUnavailableError` when Redis does not answer, `CyRedisError` when the stored
   * definition comes from an incompatible version.
   */
  static async open(redis: RedisClient, name: string, options: RateLimiterOpenOptions = {}): Promise<RateLimiter | undefined> {
    assertRedisClient('redis', redis);
    assertNonEmptyString('name', name, 256);
    assertOptions('options', options, OPEN_KEYS);
    const { prefix = DEFAULT_PREFIX, timeoutMs = DEFAULT_OPEN_TIMEOUT_MS } = options;
    assertTimeoutMs('options.timeoutMs', timeoutMs);
    const key = definitionKey(prefix, REGISTRY_KIND);
    let raw: string | null;
    try {
      raw = await withDeadline(redis.hget(key, name), timeoutMs, () => new Error(`no reply within ${timeoutMs} ms`));
    } catch (err) {
      throw classifyError(err, { label: `definition of rate limiter "${name}"` });
    }
    const stored = decodeDefinition(name, raw);
    if (stored === undefined) return undefined;
    const { recordRefusals, ...rest } = stored;
    openingName = name;
    try {
      return new RateLimiter(redis, { ...rest, prefix, timeoutMs, batch: false, ...(recordRefusals > 0 ? { recordRefusals: { maxEntries: recordRefusals } } : {}) });
    } finally {
      openingName = undefined;
    }
  }

  /** Forgets everything `id` consumed (every rule and any block); its policy (lists, override) stays. */
  reset(id: string): Promise<void> {
    return RESET.run(() => ({ name: this.name, key: id }), () => this.resetNow(id));
  }

  private async resetNow(id: string): Promise<void> {
    const keys = this.protocol.stateKeys(id);
    this.refusals?.forget(id);
    await this.command(`reset of "${id}"`, (client) => client.del(...keys));
  }

  /**
   * Gives `id` its own limits, stored in Redis and seen by every process's next check (needs `policies`):
   * `{ limit, windowMs?, burst? }` on a one-rule limiter (`windowMs` defaults to the limiter's), or `{ rules }`
   * with one rule per rule of the limiter. What the id consumed so far still counts.
   */
  async setOverride(id: string, override: OverrideOptions): Promise<void> {
    assertNonEmptyString('id', id);
    this.policyStore.assertPolicies();
    const rules = resolveOverride(override, this.ruleList, this.algorithm);
    await this.command(`override of "${id}"`, (client) => client.hset(this.protocol.policyKey(id), POLICY_FIELDS.rules, encodeOverride(rules)));
    this.refusals?.forget(id);
  }

  /** Puts `id` back on the limiter's own rules. */
  async removeOverride(id: string): Promise<void> {
    assertNonEmptyString('id', id);
    this.policyStore.assertPolicies();
    await this.command(`override removal of "${id}"`, (client) => client.hdel(this.protocol.policyKey(id), POLICY_FIELDS.rules));
    this.refusals?.forget(id);
  }

  /** One Redis command under `timeoutMs`; a failure or a missing reply rejects with `RedisUnavailableError`. */
  private async command<T>(what: string, run: (client: RedisClient) => Promise<T>): Promise<T> {
    const timeoutMs = this.timeoutMs;
    try {
      return await withDeadline(run(this.scripts.client), timeoutMs, () => new RedisUnavailableError(`${what}: no reply within ${timeoutMs} ms (outcome unknown)`));
    } catch (err) {
      if (err instanceof RedisUnavailableError) throw err;
      throw new RedisUnavailableError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** Tells `error` listeners of a failed background write; with none, the failure is dropped as before. */
  private readonly backgroundError = (error: unknown): void => {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  };

  private readonly policyStore: PolicyStore = {
    assertPolicies: () => {
      if (!this.policies) throw new InvalidArgumentError('options.policies', 'allow/deny lists and overrides need a limiter created with policies: true');
    },
    policyKey: (id) => this.protocol.policyKey(id),
    command: (what, run) => this.command(what, run),
    changed: (id) => this.refusals?.forget(id),
  };

  private checkCost(cost: number | undefined): number {
    if (cost === undefined) return 1;
    // With policies an override may raise the capacity: the script refuses (for good) what exceeds the id's.
    const bound = this.policies ? MAX_COST : this.minCapacity;
    assertInteger('options.cost', cost, { min: -bound, max: bound });
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
      return this.fallback(err, id, check.cost, check.mode === 'peek');
    }
    return this.protocol.decodeCheck(reply);
  }

  private run(keys: string[], args: readonly (string | number)[]): Promise<unknown> {
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
      return checks.map((check) => this.fallback(err, check.id, check.cost));
    }
    return lone ? [this.protocol.decodeCheck(reply)] : this.protocol.decodeBatch(reply);
  };

  /**
   * What a failed call answers: `insurance` decides in this process, else `onRedisError`; a script `ERR` (a
   * bug or bad input) always reaches the caller.
   */
  private fallback(err: unknown, id: string, cost: number, peek = false): RateLimitResult {
    const policy = this.onRedisError;
    // isOutage holds only for CyRedisError subclasses.
    if (this.insurance && isOutage(err)) return this.insurance.limit(id, cost, err as CyRedisError, peek);
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
