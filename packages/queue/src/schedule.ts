// Schedulers' repeat rules: their checks, their stored text and the next occurrence (the calendar lives here, not in Lua).
import { assertInteger, assertOptions, InvalidArgumentError } from '@cyredis/core';
import { Cron } from 'croner';

/** When a scheduler makes a job: a cron pattern (optionally in a time zone), or every `everyMs`. */
export interface RepeatOptions {
  /** A cron pattern: 5 fields (minute hour day month weekday), or 6 with seconds first. */
  cron?: string;
  /** The IANA time zone the pattern is read in (e.g. `Europe/Paris`). Default UTC. Only with `cron`. */
  tz?: string;
  /** Every this many ms (1 ms to a year), at multiples of it since the epoch, so every process agrees. */
  everyMs?: number;
}

const REPEAT_OPTIONS = ['cron', 'tz', 'everyMs'] as const;
const MAX_EVERY_MS = 31_536_000_000;
const MAX_PATTERN = 256;

/** A checked repeat rule, with only the fields it uses. Throws `InvalidArgumentError` naming the bad field. */
export function checkRepeat(name: string, value: RepeatOptions): RepeatOptions {
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError(name, 'must be { cron, tz? } or { everyMs }');
  assertOptions(name, value, REPEAT_OPTIONS);
  const { cron, tz, everyMs } = value;
  if ((cron === undefined) === (everyMs === undefined)) throw new InvalidArgumentError(name, 'must have exactly one of cron and everyMs');
  if (everyMs !== undefined) {
    if (tz !== undefined) throw new InvalidArgumentError(`${name}.tz`, 'only goes with cron');
    assertInteger(`${name}.everyMs`, everyMs, { min: 1, max: MAX_EVERY_MS });
    return { everyMs };
  }
  if (typeof cron !== 'string' || cron.length === 0 || cron.length > MAX_PATTERN) {
    throw new InvalidArgumentError(`${name}.cron`, `must be a cron pattern of 1 to ${MAX_PATTERN} characters`);
  }
  if (tz !== undefined) checkTimeZone(`${name}.tz`, tz);
  let pattern: Cron;
  try {
    pattern = new Cron(cron, tz === undefined ? { timezone: 'UTC' } : { timezone: tz });
  } catch (err) {
    throw new InvalidArgumentError(`${name}.cron`, `is not a valid cron pattern: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (pattern.nextRun() === null) throw new InvalidArgumentError(`${name}.cron`, 'has no future occurrence');
  return tz === undefined ? { cron } : { cron, tz };
}

function checkTimeZone(name: string, tz: unknown): void {
  if (typeof tz !== 'string' || tz.length === 0) throw new InvalidArgumentError(name, 'must be an IANA time zone name');
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new InvalidArgumentError(name, `is not a known time zone: ${tz}`);
  }
}

/** The rule as the script stores it (compared as text: the same rule is the same text). */
export function repeatSpec(repeat: RepeatOptions): string {
  return JSON.stringify(repeat.everyMs === undefined ? { cron: repeat.cron, tz: repeat.tz } : { everyMs: repeat.everyMs });
}

/** A stored rule back; undefined for text this package did not write. */
export function parseSpec(text: string): RepeatOptions | undefined {
  try {
    const value = JSON.parse(text) as RepeatOptions;
    if (typeof value.everyMs === 'number') return { everyMs: value.everyMs };
    if (typeof value.cron === 'string') return typeof value.tz === 'string' ? { cron: value.cron, tz: value.tz } : { cron: value.cron };
  } catch {
    // Not ours: no rule.
  }
  return undefined;
}

/** The first occurrence strictly after `afterMs` (ms since the epoch), or undefined when there is none. */
export function nextRunAt(repeat: RepeatOptions, afterMs: number): number | undefined {
  if (repeat.everyMs !== undefined) return (Math.floor(afterMs / repeat.everyMs) + 1) * repeat.everyMs;
  const next = new Cron(repeat.cron!, { timezone: repeat.tz ?? 'UTC' }).nextRun(new Date(afterMs));
  return next === null ? undefined : next.getTime();
}

/** The prefix of a scheduler's job ids: `repeat:<scheduler id>:<run ms>`. */
export const REPEAT_PREFIX = 'repeat:';

/** The scheduler id and tick of a scheduler's job id, or undefined for other jobs. */
export function repeatJob(jobId: string): { id: string; runMs: number } | undefined {
  if (!jobId.startsWith(REPEAT_PREFIX)) return undefined;
  const cut = jobId.lastIndexOf(':');
  const runMs = Number(jobId.slice(cut + 1));
  if (cut <= REPEAT_PREFIX.length || !Number.isSafeInteger(runMs)) return undefined;
  return { id: jobId.slice(REPEAT_PREFIX.length, cut), runMs };
}
