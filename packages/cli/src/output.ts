// What commands print: aligned tables and key–value lists for people, JSON for scripts; durations and times read and written.
import { CliError, EXIT } from './errors.js';

/** A JSON text of `value` (bigints as strings, so fencing tokens keep every digit). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** A cell as text: empty for undefined, JSON for objects. */
function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return toJson(value).replace(/\s*\n\s*/g, ' ');
}

/** Rows as an aligned table under `headers`; a line saying so when there are none. */
export function table(headers: readonly string[], rows: readonly (readonly unknown[])[], empty = '(none)'): string {
  if (rows.length === 0) return empty;
  const text = rows.map((row) => row.map(cell));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(headers.map((h) => h.toUpperCase())), ...text.map(line)].join('\n');
}

/** `label: value` lines, labels aligned; undefined values left out. */
export function fields(pairs: readonly (readonly [string, unknown])[]): string {
  const shown = pairs.filter(([, v]) => v !== undefined);
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${cell(v)}`).join('\n');
}

/** A time in ms since the epoch as an ISO date, or undefined. */
export function time(ms: number | undefined): string | undefined {
  return ms === undefined || ms === 0 ? undefined : new Date(ms).toISOString();
}

/** A duration in ms as people read it: `850ms`, `12s`, `3m20s`, `2h5m`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  const m = Math.floor(s / 60);
  return `${Math.floor(m / 60)}h${m % 60 ? `${m % 60}m` : ''}`;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Reads `90s`, `15m`, `1h`, `7d`, `250ms` or a bare number of ms. */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new CliError(`${flag}: expected a duration such as 30s, 15m, 1h or 7d, got "${text}"`, EXIT.usage);
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
}

/** Reads a whole number within bounds. */
export function parseCount(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) throw new CliError(`${flag}: expected a whole number from ${min} to ${max}, got "${text}"`, EXIT.usage);
  return n;
}
