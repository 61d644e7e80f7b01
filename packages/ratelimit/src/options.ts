// The limiter's public option and result types, and how the constructor's options are checked and resolved.
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOneOf,
  assertOptions,
  assertPositiveMs,
  InvalidArgumentError,
  MAX_TIMEOUT_MS,
  type CyRedisError,
} from '@cyredis/core';

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
  /**
   * Key prefix; keys are `<prefix>:ratelimit:{<id>}:…`. Default `'cyredis'`. Limiters with the same prefix
   * share their counts, so give each limiter its own.
   */
  prefix?: string;
  /**
   * A name for tools: a named limiter records it in the prefix's registry on first use and then at most once
   * a minute while in use (`RateLimiter.list`); a name unused for a day disappears from it. 1 to 256 bytes.
   * Default: none (not listed).
   */
  name?: string;
  /**
   * Record the ids this limiter refuses in Redis, so `recentRefusals()` in any process shows every process's
   * refusals: at most `maxEntries` ids (default 1000), each written at most once a second, dropped after an
   * hour. Default off.
   */
  recordRefusals?:
    | boolean
    | {
        /** Ids kept at most, the most recently refused. Default 1000. */
        maxEntries?: number;
      };
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
   * Send the `limit` checks made in the same tick while others are in flight (without `requestId` or
   * `nowMs`) as one script call, decided one after the other; a check made while none is in flight goes at
   * once. Single-node clients only; default true.
   */
  batch?: boolean;
  /**
   * Read each id's policy from Redis in the same script call as its check: its allow/deny list entry
   * (`allowList`, `denyList`) and its override (`setOverride`). Costs one more key read per check. Every
   * process limiting the same ids should set it alike. Default false.
   */
  policies?: boolean;
  /**
   * An in-process limiter that decides while Redis is unreachable (instead of `onRedisError`): GCRA in this
   * process's memory, `limit` per `windowMs` (default: the first rule's) with `burst` (default `limit`), for
   * at most `maxIds` ids (default 10 000, least recently used forgotten first). Each process counts alone, so
   * n processes admit up to n times as much during an outage. Not with `onRedisError`.
   */
  insurance?: InsuranceOptions;
}

/** Options of `insurance`. */
export interface InsuranceOptions {
  /** Admissions per window in this process while Redis is unreachable: an integer ≥ 1. */
  limit: number;
  /** Default: the first rule's `windowMs`. */
  windowMs?: number;
  /** Back-to-back admissions from idle (integer ≥ limit). Default `limit`. */
  burst?: number;
  /** Ids remembered at most. Default 10 000. */
  maxIds?: number;
}

/** What `setOverride` takes: one rule for a one-rule limiter, or `rules`, one per rule of the limiter. */
export type OverrideOptions =
  | {
      /** The id's limit (≥ 1) for the limiter's one rule. */
      limit: number;
      /** Its window in ms; the limiter's when left out. */
      windowMs?: number;
      /** Its burst, as in the limiter's options. */
      burst?: number;
      /** Not with `limit`: give one or the other. */
      rules?: never;
    }
  | {
      /** One rule per rule of the limiter, in the same order. */
      rules: readonly RateLimitRule[];
    };

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
  /**
   * When refused, wait up to this many ms for capacity: sleeps until `retryAfterMs` and tries again (no
   * polling), as long as the wait fits; then answers the last result. Default 0 (answer at once). Not with
   * `requestId` or `nowMs`.
   */
  waitMs?: number;
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
   * When refused: ms after which the same call is admitted (rounded up); 0 when allowed. `Infinity` when no
   * wait admits it: a deny-listed id, a cost above an override's capacity, or (from the middleware) a request
   * whose cost exceeds the capacity.
   */
  retryAfterMs: number;
  /** Period of the binding rule in ms: at most `limit` units in any such interval (sliding window). */
  windowMs: number;
  /** Index of the binding rule in `rules` (0 for a single rule). */
  rule: number;
  /** Set when the answer comes from `onRedisError` or `insurance` rather than from Redis. */
  error?: CyRedisError;
  /** Set when the id is on the allow list (admitted, nothing consumed) or the deny list (refused for good). */
  listed?: 'allow' | 'deny';
}

/** One rule's state for an id, as `usage` reads it (nothing consumed). */
export interface RuleUsage {
  /** Index of the rule in `rules`. */
  rule: number;
  /** The rule's capacity (`burst`, or `limit`). */
  limit: number;
  /** Units counted against the rule now (`limit − remaining`). */
  used: number;
  /** Units the id may still consume under this rule. */
  remaining: number;
  /** Ms until the rule is back to full capacity if nothing more is consumed. */
  resetMs: number;
  /** The rule's period in ms. */
  windowMs: number;
}

/** What `usage` answers: every rule's state, and what a `limit` of cost 1 would answer now. */
export interface RateLimitUsage {
  /** One entry per rule of the limiter (its own rules: an override's counts show in `next`). */
  rules: RuleUsage[];
  /** `peek(id)`: what a `limit(id)` of cost 1 would answer now, with the block, lists and override applied. */
  next: RateLimitResult;
}

/** One id in `recentRefusals`. */
export interface RecordedRefusal {
  /** The refused id. */
  id: string;
  /** When it was last refused (ms since the epoch, the refusing process's clock). */
  refusedAtMs: number;
}

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

/** The constructor's options, checked, with every default filled in. */
export interface ResolvedOptions {
  algorithm: RateLimitAlgorithm;
  rules: ResolvedRule[];
  prefix: string | undefined;
  name: string | undefined;
  /** Refused ids kept in Redis at most; absent when `recordRefusals` is off. */
  maxRecordedRefusals: number | undefined;
  blockMs: number;
  timeoutMs: number;
  onRedisError: OnRedisError;
  /** Refused ids remembered at most; absent when `cacheRefusals` is off. */
  maxRefusals: number | undefined;
  batch: boolean;
  policies: boolean;
  /** The in-process fallback's rule and size; absent without `insurance`. */
  insurance: { rule: ResolvedRule; maxIds: number } | undefined;
}

const MAX_INT = 2 ** 40;
const ALGORITHMS: readonly RateLimitAlgorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
/** Longest duration the script keeps exact (µs as doubles up to 2^52), in ms: block, caller time. */
export const MAX_MS = 2 ** 52 / 1000;
const DEFAULT_TIMEOUT_MS = 1000;
const DEFAULT_MAX_REFUSALS = 10_000;
const DEFAULT_MAX_RECORDED_REFUSALS = 1000;
/** Rules per limiter: each is a key and a few µs of script time on every check. */
const MAX_RULES = 16;
const RULE_KEYS = ['limit', 'windowMs', 'burst'] as const;
const OPTION_KEYS = [...RULE_KEYS, 'rules', 'algorithm', 'prefix', 'name', 'recordRefusals', 'blockMs', 'timeoutMs', 'onRedisError', 'cacheRefusals', 'batch', 'policies', 'insurance'] as const;
const DEFAULT_MAX_INSURED_IDS = 10_000;

function resolveRule(name: string, rule: Partial<RateLimitRule>, algorithm: RateLimitAlgorithm): ResolvedRule {
  assertOptions(name, rule, RULE_KEYS, false);
  assertInteger(`${name}.limit`, rule.limit, { min: 1, max: MAX_INT });
  assertPositiveMs(`${name}.windowMs`, rule.windowMs);
  const capacity = rule.burst ?? rule.limit;
  assertInteger(`${name}.burst`, capacity, { min: rule.limit, max: MAX_INT });
  // Rounded exactly as the script rounds the seconds it is sent, so a rule the script would refuse is refused here.
  const windowUs = Math.floor((rule.windowMs / 1000) * 1e6 + 0.5);
  if (windowUs < 1 || windowUs * capacity > 2 ** 52) throw new InvalidArgumentError(`${name}.windowMs`, 'out of range');
  // `periodMs` describes the rule (the `rules` getter, `windowMs` of results): GCRA spaces units by whole µs,
  // the others stretch the window by burst.
  const periodUs = algorithm === 'gcra' ? capacity * Math.ceil(windowUs / rule.limit) : Math.ceil((windowUs * capacity) / rule.limit);
  return { limit: rule.limit, windowMs: rule.windowMs, capacity, periodMs: periodUs / 1000 };
}

function resolveRules(options: RateLimiterOptions, algorithm: RateLimitAlgorithm): ResolvedRule[] {
  const rules: readonly RateLimitRule[] | undefined = options.rules;
  if (rules === undefined) {
    const { limit, windowMs, burst } = options;
    return [resolveRule('options', burst === undefined ? { limit, windowMs } : { limit, windowMs, burst }, algorithm)];
  }
  const given: unknown = rules;
  if (!Array.isArray(given) || given.length === 0 || given.length > MAX_RULES) {
    throw new InvalidArgumentError('options.rules', `must be an array of 1 to ${MAX_RULES} rules`);
  }
  if (options.limit !== undefined || options.windowMs !== undefined || options.burst !== undefined) {
    throw new InvalidArgumentError('options.rules', 'give either rules or limit/windowMs/burst, not both');
  }
  return rules.map((r, i) => resolveRule(`options.rules[${i}]`, r, algorithm));
}

/** `maxEntries` of a `boolean | { maxEntries }` option (`cacheRefusals`, `recordRefusals`); undefined when off. */
function resolveMaxEntries(name: string, option: boolean | { maxEntries?: number } | undefined, fallback: number): number | undefined {
  const given: unknown = option ?? false;
  if (typeof given === 'object') assertOptions(name, given, ['maxEntries'], false);
  else if (typeof given !== 'boolean') throw new InvalidArgumentError(name, 'must be a boolean or { maxEntries }');
  const maxEntries = typeof option === 'object' ? (option.maxEntries ?? fallback) : fallback;
  assertInteger(`${name}.maxEntries`, maxEntries, { min: 1 });
  return given === false ? undefined : maxEntries;
}

/** Checks every option (unknown keys refused, naming the nearest valid one) and fills in the defaults. */
export function resolveOptions(options: RateLimiterOptions): ResolvedOptions {
  assertOptions('options', options, OPTION_KEYS, false);
  const algorithm = options.algorithm ?? 'sliding-window';
  assertOneOf('options.algorithm', algorithm, ALGORITHMS);
  const rules = resolveRules(options, algorithm);
  const blockMs = options.blockMs ?? 0;
  assertFiniteNumber('options.blockMs', blockMs, { min: 0, max: MAX_MS });
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  assertFiniteNumber('options.timeoutMs', timeoutMs, { min: 1, max: MAX_TIMEOUT_MS });
  const onRedisError = options.onRedisError ?? 'throw';
  assertOneOf('options.onRedisError', onRedisError, ['throw', 'allow', 'deny'] as const);
  const maxRefusals = resolveMaxEntries('options.cacheRefusals', options.cacheRefusals, DEFAULT_MAX_REFUSALS);
  const maxRecordedRefusals = resolveMaxEntries('options.recordRefusals', options.recordRefusals, DEFAULT_MAX_RECORDED_REFUSALS);
  if (options.name !== undefined) assertNonEmptyString('options.name', options.name, 256);
  const policies = options.policies ?? false;
  if (typeof policies !== 'boolean') throw new InvalidArgumentError('options.policies', 'must be a boolean');
  const insurance = resolveInsurance(options, rules[0]!);
  return { algorithm, rules, prefix: options.prefix, name: options.name, maxRecordedRefusals, blockMs, timeoutMs, onRedisError, maxRefusals, batch: options.batch !== false, policies, insurance };
}

function resolveInsurance(options: RateLimiterOptions, first: ResolvedRule): ResolvedOptions['insurance'] {
  const given = options.insurance;
  if (given === undefined) return undefined;
  assertOptions('options.insurance', given, ['limit', 'windowMs', 'burst', 'maxIds'], false);
  if (options.onRedisError !== undefined) throw new InvalidArgumentError('options.insurance', 'decides during outages instead of onRedisError: give one of them');
  const { limit, windowMs = first.windowMs, burst, maxIds = DEFAULT_MAX_INSURED_IDS } = given;
  assertInteger('options.insurance.maxIds', maxIds, { min: 1 });
  const rule = resolveRule('options.insurance', burst === undefined ? { limit, windowMs } : { limit, windowMs, burst }, 'gcra');
  return { rule, maxIds };
}

/**
 * The rules of an override for a limiter whose rules are `current`: `{ limit, windowMs?, burst? }` (one-rule
 * limiters; `windowMs` defaults to the limiter's) or `{ rules }` with one rule per rule of the limiter.
 */
export function resolveOverride(override: OverrideOptions, current: readonly ResolvedRule[], algorithm: RateLimitAlgorithm): ResolvedRule[] {
  assertOptions('override', override, ['limit', 'windowMs', 'burst', 'rules'], false);
  if (override.rules === undefined) {
    if (current.length !== 1) throw new InvalidArgumentError('override', `this limiter has ${current.length} rules: give rules, one per rule`);
    const { limit, windowMs = current[0]!.windowMs, burst } = override;
    return [resolveRule('override', burst === undefined ? { limit, windowMs } : { limit, windowMs, burst }, algorithm)];
  }
  const rules: unknown = override.rules;
  if (!Array.isArray(rules) || rules.length !== current.length) {
    throw new InvalidArgumentError('override.rules', `must be an array of ${current.length} rule(s), one per rule of the limiter`);
  }
  if ('limit' in override || 'windowMs' in override || 'burst' in override) {
    throw new InvalidArgumentError('override.rules', 'give either rules or limit/windowMs/burst, not both');
  }
  return override.rules.map((r, i) => resolveRule(`override.rules[${i}]`, r, algorithm));
}
