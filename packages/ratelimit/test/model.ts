import type { RateLimitAlgorithm, RateLimitRule } from '../src/index.js';

/**
 * A brute-force reference of the script's decisions: every admitted call is kept in a plain list (sliding
 * window) or the state is a number or two (GCRA, fixed window), with the same integer µs arithmetic.
 */
export interface Decision {
  allowed: boolean;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
  rule: number;
}

interface RuleModel {
  capacity: number;
  /** Decides for `cost` at `now` (µs); `commit` applies it. */
  inspect(now: number, cost: number, peek: boolean): { ok: boolean; rem: number; resetAt: number; retryAt: number; commit: () => void };
  /** Remaining after a commit (refunds change it). */
  after?: (now: number) => { rem: number; resetAt: number };
}

export const toUs = (ms: number): number => Math.floor((ms / 1000) * 1e6 + 0.5);

function sliding(limit: number, windowUs: number, capacity: number): RuleModel {
  const period = Math.ceil((windowUs * capacity) / limit);
  let entries: { t: number; c: number }[] = [];
  return {
    capacity,
    inspect(now, cost, peek) {
      const last = entries.at(-1);
      const t = last && last.t > now ? last.t : now;
      const live = entries.filter((e) => e.t > t - period);
      if (!peek) entries = live;
      const used = live.reduce((sum, e) => sum + e.c, 0);
      const newest = live.at(-1);
      if (cost <= 0 || used + cost <= capacity) {
        const consumed = cost > 0 && !peek;
        return {
          ok: true,
          rem: Math.max(capacity - used - (consumed ? cost : 0), 0),
          resetAt: consumed ? t + period : newest ? newest.t + period : now,
          retryAt: 0,
          commit: () => {
            if (cost > 0) {
              entries.push({ t, c: cost });
              return;
            }
            let left = -cost;
            while (left > 0 && entries.length > 0) {
              const e = entries.at(-1)!;
              if (e.c > left) {
                e.c -= left;
                left = 0;
              } else {
                entries.pop();
                left -= e.c;
              }
            }
          },
        };
      }
      const deficit = used + cost - capacity;
      let retryAt = newest!.t + period;
      let paid = 0;
      for (const e of live.slice(0, Math.min(deficit, 128))) {
        paid += e.c;
        if (paid >= deficit) {
          retryAt = e.t + period;
          break;
        }
      }
      return { ok: false, rem: Math.max(capacity - used, 0), resetAt: newest!.t + period, retryAt, commit: () => undefined };
    },
    after(now) {
      const used = entries.reduce((sum, e) => sum + e.c, 0);
      const newest = entries.at(-1);
      return { rem: Math.max(capacity - used, 0), resetAt: newest ? newest.t + period : now };
    },
  };
}

function gcra(limit: number, windowUs: number, capacity: number): RuleModel {
  const emit = Math.ceil(windowUs / limit);
  const tau = capacity * emit;
  let tat = 0;
  return {
    capacity,
    inspect(now, cost, peek) {
      const base = Math.max(tat, now);
      const next = cost > 0 ? base + cost * emit : Math.max(base + cost * emit, now);
      if (next - now <= tau) {
        const shown = peek ? base : next;
        return { ok: true, rem: Math.floor((now + tau - shown) / emit), resetAt: shown, retryAt: 0, commit: () => (tat = next) };
      }
      return { ok: false, rem: Math.floor((now + tau - base) / emit), resetAt: base, retryAt: next - tau, commit: () => undefined };
    },
  };
}

function fixed(limit: number, windowUs: number, capacity: number): RuleModel {
  const period = Math.ceil((windowUs * capacity) / limit);
  let stored: { idx: number; count: number } | undefined;
  return {
    capacity,
    inspect(now, cost, peek) {
      let idx = Math.floor(now / period);
      let count = 0;
      if (stored && stored.idx >= idx) ({ idx, count } = stored);
      const next = Math.max(count + cost, 0);
      const resetAt = (idx + 1) * period;
      if (cost <= 0 || next <= capacity) {
        return { ok: true, rem: Math.max(capacity - (peek ? count : next), 0), resetAt, retryAt: 0, commit: () => (stored = { idx, count: next }) };
      }
      return { ok: false, rem: Math.max(capacity - count, 0), resetAt, retryAt: resetAt, commit: () => undefined };
    },
  };
}

const MODELS = { 'sliding-window': sliding, gcra, 'fixed-window': fixed };

export class LimiterModel {
  private readonly rules: RuleModel[];

  constructor(algorithm: RateLimitAlgorithm, rules: readonly RateLimitRule[]) {
    this.rules = rules.map((r) => MODELS[algorithm](r.limit, toUs(r.windowMs), r.burst ?? r.limit));
  }

  decide(nowMs: number, cost: number, peek = false): Decision {
    const now = toUs(nowMs);
    const looks = this.rules.map((r) => r.inspect(now, cost, peek));
    const allowed = looks.every((l) => l.ok);
    if (allowed && cost !== 0 && !peek) {
      looks.forEach((l, i) => {
        l.commit();
        const after = this.rules[i]!.after;
        if (cost < 0 && after) Object.assign(l, after(now));
      });
    }
    let bind = 0;
    let retry = 0;
    if (allowed) {
      looks.forEach((l, i) => {
        if (l.rem < looks[bind]!.rem) bind = i;
      });
    } else {
      let latest = -1;
      looks.forEach((l, i) => {
        if (!l.ok && l.retryAt > latest) [bind, latest] = [i, l.retryAt];
      });
      retry = latest - now;
    }
    const b = looks[bind]!;
    return {
      allowed,
      remaining: b.rem,
      resetMs: Math.ceil(Math.max(b.resetAt - now, 0) / 1000),
      retryAfterMs: Math.ceil(Math.max(retry, 0) / 1000),
      rule: bind,
    };
  }
}
