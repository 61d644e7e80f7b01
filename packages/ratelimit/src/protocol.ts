// rate_limiter.lua's calls as typed encoders and decoders: the only code that knows their KEYS order, ARGV positions and reply packings.
import { CyRedisError, toArray, toNumber, type KeySpace } from '@cyredis/core';
import type { RateLimitAlgorithm, RateLimitResult, ResolvedRule, RuleUsage } from './options.js';

/** One `limit` or `peek` check, as the rich call takes it. */
export interface CheckCall {
  /** Units to consume: an integer, negative refunds, 0 consumes nothing. */
  cost: number;
  /** `limit` decides and consumes; `peek` decides and writes nothing. */
  mode: 'limit' | 'peek';
  /** The caller's time in ms since the epoch; absent: the server's clock. */
  nowMs?: number;
  /** Makes a resent `limit` idempotent (its key must be among the call's keys: `checkKeys`). */
  requestId?: string;
}

/** The seed's public call (the contract of the shipped script): one rule, one key, a bare integer reply. */
export interface SeedCall {
  limit: number;
  windowSeconds: number;
  /** Seconds since the epoch; absent: the server's clock. */
  currentTimeSeconds?: number;
  burst?: number;
}

/** What the seed call answers. */
export interface SeedReply {
  allowed: boolean;
  /** When admitted, the capacity left for this call (one less remains after it); 0 when limited. */
  capacityLeft: number;
}

/** The key name part of each algorithm's rule keys (`<prefix>:ratelimit:{<id>}:sw0`). */
const KEY_TAG: Record<RateLimitAlgorithm, string> = { 'sliding-window': 'sw', gcra: 'gcra', 'fixed-window': 'fw' };

/**
 * The calls of one limiter: its rules, algorithm and block are fixed, so everything but the per-call fields
 * is worked out once here.
 */
export class LimiterProtocol {
  private readonly first: { limit: number; windowSeconds: number; capacity: number };
  /** Rules 2..n as the triples that follow ARGV[9]. */
  private readonly moreRules: number[] = [];
  private readonly suffixes: string[];

  /** Whether a plain `limit` of cost 1 can take the short form (one rule, no block, no policy). */
  private readonly short: boolean;
  /**
   * The commonest call, a plain `limit` at server time, built once as the text the script reads, so a check
   * neither builds an array nor converts numbers (`checkArgs` callers and the script manager only read it):
   * the compact form (limit, window, algorithm) when the burst is the limit, else the short form. Each
   * argument costs Redis about 1k instructions to read.
   */
  private readonly plainAtServerTime: readonly string[];
  /** ARGV[10]: whether KEYS carry the policy key. */
  private readonly policyFlag: '1' | '';
  /** The rule keys and the block key's suffixes: what `reset` deletes. */
  private readonly stateSuffixes: string[];

  constructor(
    private readonly space: KeySpace,
    private readonly rules: readonly ResolvedRule[],
    private readonly algorithm: RateLimitAlgorithm,
    private readonly blockMs: number,
    policies = false,
  ) {
    const [first, ...rest] = rules;
    this.first = { limit: first!.limit, windowSeconds: first!.windowMs / 1000, capacity: first!.capacity };
    for (const r of rest) this.moreRules.push(r.limit, r.windowMs / 1000, r.capacity);
    this.stateSuffixes = rules.map((_, i) => `${KEY_TAG[algorithm]}${i}`);
    if (blockMs > 0) this.stateSuffixes.push('block');
    this.suffixes = policies ? [...this.stateSuffixes, 'policy'] : this.stateSuffixes;
    this.policyFlag = policies ? '1' : '';
    this.short = !policies && blockMs === 0 && rest.length === 0;
    this.plainAtServerTime =
      first!.capacity === first!.limit
        ? [String(first!.limit), String(first!.windowMs / 1000), algorithm]
        : [String(first!.limit), String(first!.windowMs / 1000), '', String(first!.capacity), algorithm];
  }

  /** The keys of one id as a check takes them: one per rule, then the block key, then the policy key. */
  keys(id: string): string[] {
    return this.space.keys(id, this.suffixes);
  }

  /** The keys holding what an id consumed (rules, block): `reset` deletes exactly these, never its policy. */
  stateKeys(id: string): string[] {
    return this.space.keys(id, this.stateSuffixes);
  }

  /** The hash holding an id's policy: allow/deny list entries and its override (see POLICY KEY in the script). */
  policyKey(id: string): string {
    return this.space.key(id, 'policy');
  }

  /** KEYS of one check: the id's keys, then the request key when there is a request id. */
  checkKeys(id: string, requestId?: string): string[] {
    const keys = this.keys(id);
    if (requestId !== undefined) keys.push(this.space.key(id, `req:${requestId}`));
    return keys;
  }

  /**
   * One call per rule reading that rule alone for `usage`: its key and a rich `peek` of cost 0 with that
   * rule first and no block or policy, so the reply's remaining and reset are the rule's own.
   */
  usageCalls(id: string): { keys: string[]; args: (string | number)[] }[] {
    const keys = this.keys(id);
    return this.rules.map((r, i) => ({
      keys: [keys[i]!],
      args: [r.limit, r.windowMs / 1000, '', r.capacity, this.algorithm, 0, 'peek', 0, '', ''],
    }));
  }

  /** The reply of rule `index`'s `usageCalls` call. */
  decodeUsage(reply: unknown, index: number): RuleUsage {
    const fields = toArray(reply);
    const rule = this.rules[index];
    if (rule === undefined) throw new CyRedisError(`unexpected usage of rule ${index} of ${this.rules.length}`);
    const remaining = toNumber(fields[1]);
    return { rule: index, limit: rule.capacity, used: rule.capacity - remaining, remaining, resetMs: Math.ceil(toNumber(fields[2]) / 1000), windowMs: rule.periodMs };
  }

  /** ARGV of one check (the rich call). */
  checkArgs(call: CheckCall): readonly (string | number)[] {
    const { limit, windowSeconds, capacity } = this.first;
    const time = call.nowMs === undefined ? '' : call.nowMs / 1000;
    // The compact or short form: the rest at their defaults.
    if (this.short && call.cost === 1 && call.mode === 'limit' && call.requestId === undefined) {
      return time === '' ? this.plainAtServerTime : [limit, windowSeconds, time, capacity, this.algorithm];
    }
    const args = [limit, windowSeconds, time, capacity, this.algorithm, call.cost, call.mode, this.blockMs, call.requestId ?? '', this.policyFlag];
    return this.moreRules.length === 0 ? args : args.concat(this.moreRules);
  }

  /**
   * ARGV of a batch of `limit` checks at server time, one cost each (their KEYS: each check's `keys`, one
   * group after another, no request keys).
   */
  batchArgs(costs: readonly number[]): (string | number)[] {
    const { limit, windowSeconds, capacity } = this.first;
    const args: (string | number)[] = [limit, windowSeconds, '', capacity, this.algorithm, costs.length, 'batch', this.blockMs, '', this.policyFlag];
    for (const n of this.moreRules) args.push(n);
    for (const cost of costs) args.push(cost);
    return args;
  }

  /**
   * The reply of one check: `{allowed, remaining, reset µs, retry-after µs (-1 never), binding rule}`, and
   * with policies `{…, listed 0|1|2, capacity, period µs}` (the override's, when there is one).
   */
  decodeCheck(reply: unknown): RateLimitResult {
    // The compact form answers one string, 'allowed remaining reset' and, when refused, ' retry-after'.
    const fields = typeof reply === 'string' ? compactFields(reply) : toArray(reply);
    const index = toNumber(fields[4]);
    const rule = this.rules[index];
    if (rule === undefined) throw new CyRedisError(`unexpected reply: rule ${index} of ${this.rules.length}`);
    const retryUs = toNumber(fields[3]);
    const result: RateLimitResult = {
      allowed: fields[0] === 1,
      remaining: toNumber(fields[1]),
      limit: rule.capacity,
      resetMs: Math.ceil(toNumber(fields[2]) / 1000),
      retryAfterMs: retryUs < 0 ? Infinity : Math.ceil(retryUs / 1000),
      windowMs: rule.periodMs,
      rule: index,
    };
    if (fields.length < 8) return result;
    result.limit = toNumber(fields[6]);
    result.windowMs = toNumber(fields[7]) / 1000;
    const listed = toNumber(fields[5]);
    if (listed !== 0) result.listed = listed === 1 ? 'allow' : 'deny';
    return result;
  }

  /** The reply of a batch: one check's reply per check, in order. */
  decodeBatch(reply: unknown): RateLimitResult[] {
    return toArray(reply).map((r) => this.decodeCheck(r));
  }
}

/** The compact form's string reply as the rich reply's first five fields (one rule, so rule 0; retry-after 0 when absent). */
function compactFields(reply: string): number[] {
  const parts = reply.split(' ');
  if (parts.length !== 3 && parts.length !== 4) throw new CyRedisError(`unexpected reply: ${reply}`);
  return [toNumber(parts[0]), toNumber(parts[1]), toNumber(parts[2]), parts.length === 4 ? toNumber(parts[3]) : 0, 0];
}

/** The fields of the policy hash (POLICY KEY in the script). */
export const POLICY_FIELDS = { allow: 'allow', deny: 'deny', rules: 'rules' } as const;

/** An override's rules as the policy hash's `rules` field holds them: `limit window_s burst`, `;` between rules. */
export function encodeOverride(rules: readonly ResolvedRule[]): string {
  return rules.map((r) => `${r.limit} ${r.windowMs / 1000} ${r.capacity}`).join(';');
}

/**
 * ARGV of the seed call. The limiter never makes it (it needs the rich reply); it is here so the contract
 * test drives the public format through the same typed layer as the rest.
 */
export function encodeSeedCall(call: SeedCall): (string | number)[] {
  const args: (string | number)[] = [call.limit, call.windowSeconds, call.currentTimeSeconds ?? ''];
  if (call.burst !== undefined) args.push(call.burst);
  return args;
}

/** The seed call's reply: N ≥ 1 admitted with N the capacity left for the call, 0 limited. */
export function decodeSeedReply(reply: unknown): SeedReply {
  const capacityLeft = toNumber(reply);
  return { allowed: capacityLeft > 0, capacityLeft };
}

/** One entry of a sliding-window log: an admitted call's time (µs since the epoch) and its units. */
export interface WindowLogEntry {
  timeUs: number;
  cost: number;
}

/** A sliding-window key as the script stores it (see STORAGE in the script's header). */
export interface WindowLog {
  /** Units held by the entries from the oldest live one on. */
  used: number;
  /** Bytes of the string, including the room left for appends. */
  size: number;
  /** Entries from the oldest live one (as the last write left it) to the newest. */
  entries: WindowLogEntry[];
}

const LOG_MAGIC = 'W1';
const LOG_HEADER_BYTES = 30;

/**
 * Reads a sliding-window key (`GETBUFFER`): a 30-byte header (`W1`, head, tail and size as big-endian
 * uint32, units used and the newest time as big-endian doubles), then entries of one double (the time, one
 * unit) or two (minus the units, then the time).
 */
export function decodeWindowLog(value: Buffer): WindowLog {
  if (value.length < LOG_HEADER_BYTES || value.toString('latin1', 0, 2) !== LOG_MAGIC) throw new CyRedisError('not a sliding-window log');
  const head = value.readUInt32BE(2);
  const tail = value.readUInt32BE(6);
  const entries: WindowLogEntry[] = [];
  for (let at = head; at < tail; at += 8) {
    const v = value.readDoubleBE(at);
    if (v >= 0) {
      entries.push({ timeUs: v, cost: 1 });
    } else {
      at += 8;
      entries.push({ timeUs: value.readDoubleBE(at), cost: -v });
    }
  }
  return { used: value.readDoubleBE(14), size: value.readUInt32BE(10), entries };
}
