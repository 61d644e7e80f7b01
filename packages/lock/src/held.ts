// Lists the locks a manager's prefix holds now: SCAN on every master with MATCH on the prefix, each found key read through its own script's status, paged by an opaque cursor.
import {
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  classifyError,
  clientKeyPrefix,
  escapeId,
  InvalidArgumentError,
  isCluster,
  withDeadline,
  type RedisClient,
} from '@cyredis/core';
import type { Redis } from 'ioredis';
import { hashTagOf, parseLockKey } from './keys.js';
import { decodeFairStatus, decodeStatusReply, MAX_PERMITS } from './protocol.js';
import type { LockNodes } from './quorum.js';

/** The lock primitives a manager makes. */
export type LockKind = 'mutex' | 'semaphore' | 'readWrite' | 'fair';

/** The last part of each kind's key, `<prefix>:lock:{<name>}:<suffix>` (see `LockKeys`). */
export const KIND_SUFFIX = { mutex: 'lock', semaphore: 'semaphore', readWrite: 'rw', fair: 'fair' } as const satisfies Record<LockKind, string>;
const KIND_OF_SUFFIX = new Map<string, LockKind>(Object.entries(KIND_SUFFIX).map(([kind, suffix]) => [suffix, kind as LockKind]));

/** One live lease of a held lock. */
export interface LockHolder {
  /** The holder's unique value (what `acquire` was given as `owner`, or its random UUID). */
  owner: string;
  /** Lease left, in ms. */
  ttlMs: number;
  /** Permits held: a semaphore's count; 1 for every other kind. */
  count: number;
  /** A read-write lock's side: `read` or `write`; absent for other kinds. */
  mode?: 'read' | 'write';
}

/** A lock held now, as `LockManager.listHeld` reports it. */
export interface HeldLock {
  /** The resource (mutex) or name (semaphore, read-write or fair lock) the lock was taken on. */
  resource: string;
  /** Which primitive it is. */
  kind: LockKind;
  /** The one holder of a mutex or fair lock, or a read-write lock's writer; absent when several may hold it. */
  owner?: string;
  /** Every live lease (one for a mutex or fair lock). */
  holders: LockHolder[];
  /** Until the last live lease ends, in ms. */
  ttlMs: number;
  /** The token of the newest lease (the holder's, for a mutex or fair lock). */
  fencingToken: bigint;
  /** A semaphore's permits. */
  permits?: number;
  /** A fair lock's places taken in line. */
  waiting?: number;
}

/** Options of `LockManager.listHeld`. */
export interface ListHeldOptions {
  /** Most locks in one page: 1 to 1000. Default 100. */
  limit?: number;
  /** Where to go on: the `cursor` of the previous page. Default: the start. */
  cursor?: string;
  /** A Redis glob pattern (`*`, `?`, `[…]`) on resource names, e.g. `orders:*`. Default: every name. */
  match?: string;
}

/** One page of `LockManager.listHeld`. */
export interface HeldLocksPage {
  /** Locks held when their key was read, in key order within each SCAN step. */
  locks: HeldLock[];
  /** Pass it to get the next page; absent when the listing is complete. */
  cursor?: string;
}

const LIST_OPTIONS = ['limit', 'cursor', 'match'] as const;
/** SCAN calls one page makes at most, so a page over a large keyspace with few locks still returns soon. */
const MAX_SCAN_CALLS = 50;

/** One master to scan: a node of the manager (its index) and the connection to that master. */
interface Target {
  node: number;
  server: Redis;
  /** What the server's key names start with: the client's keyPrefix, then the manager's prefix and `:lock:`. */
  start: string;
}

/** A key the scan found and understood. */
interface Found {
  /** As the server names it. */
  fullKey: string;
  /** As the manager's client names it (without its keyPrefix). */
  key: string;
  resource: string;
  kind: LockKind;
}

/** Where a listing stands: the master, its SCAN cursor, and the last key returned from that SCAN step. */
interface Position {
  target: number;
  scan: string;
  after?: string;
}

/** Escapes Redis glob characters, so the text matches only itself. */
function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * The masters of every node in a stable order (a cluster's by address), so a cursor names the same master
 * on the next page. A cluster client that has not connected yet knows no masters: a PING connects it.
 */
async function scanTargets(nodes: LockNodes, prefix: string, timeoutMs: number): Promise<Target[]> {
  const out: Target[] = [];
  for (const [node, client] of nodes.clients.entries()) {
    const start = `${clientKeyPrefix(client)}${prefix}:lock:`;
    for (const server of await masters(client, timeoutMs)) out.push({ node, server, start });
  }
  return out;
}

async function masters(client: RedisClient, timeoutMs: number): Promise<Redis[]> {
  if (!isCluster(client)) return [client];
  if (client.nodes('master').length === 0) await command(client.ping(), timeoutMs);
  const address = (r: Redis) => `${r.options.host ?? ''}:${String(r.options.port ?? '')}`;
  return [...client.nodes('master')].sort((a, b) => (address(a) < address(b) ? -1 : address(a) > address(b) ? 1 : 0));
}

function command<T>(call: Promise<T>, timeoutMs: number): Promise<T> {
  return withDeadline(call, timeoutMs, () => new Error(`no reply within ${timeoutMs} ms`)).catch((err: unknown) => {
    throw classifyError(err, { label: 'listing of held locks' });
  });
}

function encodeCursor(at: Position): string {
  const parts = [String(at.target), at.scan];
  if (at.after !== undefined) parts.push(Buffer.from(at.after).toString('base64url'));
  return parts.join('.');
}

function decodeCursor(cursor: string | undefined, targets: number): Position {
  if (cursor === undefined) return { target: 0, scan: '0' };
  const match = /^(\d+)\.(\d+)(?:\.([A-Za-z0-9_-]+))?$/.exec(cursor);
  const target = match ? Number(match[1]) : NaN;
  if (!match || target >= targets) throw new InvalidArgumentError('options.cursor', 'is not a cursor this listing returned (or the servers changed since)');
  return { target, scan: match[2]!, ...(match[3] === undefined ? {} : { after: Buffer.from(match[3], 'base64url').toString() }) };
}

/** The key's resource and kind, or undefined for a key of no lock kind. */
function parseKey(target: Target, fullKey: string, keyPrefixLength: number): Found | undefined {
  if (!fullKey.startsWith(target.start)) return undefined;
  const parsed = parseLockKey(fullKey.slice(target.start.length));
  const kind = parsed && KIND_OF_SUFFIX.get(parsed.suffix);
  if (kind === undefined) return undefined;
  return { fullKey, key: fullKey.slice(keyPrefixLength), resource: parsed!.name, kind };
}

/**
 * What a listing keeps of the keys SCAN found for `match`. A name without a hash tag sits alone in its key's
 * only braces, `…:lock:{<escaped name>}:<suffix>`, so MATCH on `…:lock:*{<escaped match>}:*` (`scanPattern`)
 * picks exactly the names `match` matches, as it always did. The key of a name with a tag starts with the
 * tag, `…:lock:{<tag>}:{<escaped name>}:<suffix>`, where a wildcard may also span the tag: those names are
 * tested again, alone.
 */
function namesMatching(match: string | undefined): (found: Found) => boolean {
  if (match === undefined) return () => true;
  const glob = globRegExp(escapeId(match));
  return (found) => hashTagOf(found.resource) === undefined || glob.test(escapeId(found.resource));
}

function scanPattern(start: string, match: string | undefined): string {
  return `${globLiteral(start)}*{${match === undefined ? '*' : escapeId(match)}}:*`;
}

/** A Redis glob (`*`, `?`, `[…]` with `^` and ranges, `\` escapes) as a RegExp of the whole text. */
function globRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') source += '[\\s\\S]*';
    else if (c === '?') source += '[\\s\\S]';
    else if (c === '\\' && i + 1 < glob.length) source += literal(glob[++i]!);
    else if (c !== '[') source += literal(c);
    else {
      let j = i + 1;
      const negate = glob[j] === '^';
      if (negate) j++;
      let set = '';
      for (; j < glob.length && glob[j] !== ']'; j++) {
        if (glob[j] === '\\' && j + 1 < glob.length) set += inSet(glob[++j]!);
        else if (glob[j + 1] === '-' && j + 2 < glob.length) {
          const [from, to] = [glob[j]!, glob[j + 2]!].sort();
          set += `${inSet(from!)}-${inSet(to!)}`;
          j += 2;
        } else set += inSet(glob[j]!);
      }
      // Redis: `[^]` takes any one character, `[]` none.
      source += negate ? `[^${set}]` : set === '' ? '(?!)' : `[${set}]`;
      i = j;
    }
  }
  return new RegExp(`^${source}$`);
}

const literal = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
const inSet = (c: string): string => c.replace(/[\\\][^-]/g, '\\$&');

/**
 * The lock at `found` when it is held now, else undefined. With Redlock a lock lives on several nodes: it
 * is listed from the first node that holds it for the quorum's owner only, so a full listing shows it once.
 */
async function heldAt(nodes: LockNodes, target: Target, found: Found): Promise<HeldLock | undefined> {
  const { resource, kind, key } = found;
  if (kind === 'mutex') {
    const results = await nodes.runAll({ operation: 'status', key });
    nodes.assertReachable(resource, results);
    const status = nodes.statusOf(results);
    if (!status.locked || status.owner === undefined) return undefined;
    if (results.findIndex((r) => r.state === 'granted' && r.owner === status.owner) !== target.node) return undefined;
    const { owner, ttlMs, fencingToken } = status;
    return { resource, kind, owner, holders: [{ owner, ttlMs, count: 1 }], ttlMs, fencingToken };
  }
  const node = nodes.at(target.node);
  if (kind === 'fair') {
    const state = decodeFairStatus(await node.runFair({ operation: 'status', key }));
    if (state.state !== 'granted') return undefined;
    const { owner, ttlMs, token: fencingToken, waiting } = state;
    return { resource, kind, owner, holders: [{ owner, ttlMs, count: 1 }], ttlMs, fencingToken, waiting };
  }
  // The permits argument applies only to a key holding none, which then has no holders either.
  const state = decodeStatusReply(await node.runSemaphore({ operation: 'status', key, permits: 1 }));
  if (state.holders.length === 0) return undefined;
  const ttlMs = Math.max(...state.holders.map((h) => h.ttlMs));
  if (kind === 'semaphore') {
    return { resource, kind, holders: state.holders.map((h) => ({ ...h })), ttlMs, fencingToken: state.token, permits: state.permits };
  }
  // A read-write lock's writer holds every permit.
  const holders = state.holders.map((h): LockHolder => ({ owner: h.owner, ttlMs: h.ttlMs, count: 1, mode: h.count === MAX_PERMITS ? 'write' : 'read' }));
  const writer = holders.find((h) => h.mode === 'write')?.owner;
  return { resource, kind, ...(writer === undefined ? {} : { owner: writer }), holders, ttlMs, fencingToken: state.token };
}

/**
 * A page of the locks held under `prefix`: SCAN (MATCH on the prefix, never KEYS) on each master of each
 * node, the found keys in key order per SCAN step, each read with its script's status. Reads only (a fair
 * lock's status drops places in line that already ended, as any call on it does). As with SCAN, a lock held
 * during the whole listing appears at least once; one taken or released meanwhile may or may not.
 */
export async function listHeldLocks(nodes: LockNodes, prefix: string, timeoutMs: number, options: ListHeldOptions = {}): Promise<HeldLocksPage> {
  assertOptions('options', options, LIST_OPTIONS);
  const { limit = 100, cursor, match } = options;
  assertInteger('options.limit', limit, { min: 1, max: 1000 });
  if (cursor !== undefined) assertNonEmptyString('options.cursor', cursor);
  if (match !== undefined) assertNonEmptyString('options.match', match);
  const targets = await scanTargets(nodes, prefix, timeoutMs);
  const keep = namesMatching(match);
  let at = decodeCursor(cursor, targets.length);
  const locks: HeldLock[] = [];
  // Enough keys per step to fill the page when most keys are locks, few enough not to read many more.
  const count = Math.min(1000, Math.max(100, 4 * limit));
  for (let calls = 0; calls < MAX_SCAN_CALLS && at.target < targets.length && locks.length < limit; calls++) {
    const target = targets[at.target]!;
    const pattern = scanPattern(target.start, match);
    const [next, keys] = await command(target.server.scan(at.scan, 'MATCH', pattern, 'COUNT', count), timeoutMs);
    const keyPrefixLength = clientKeyPrefix(nodes.clients[target.node]!).length;
    const after = at.after;
    const found = keys
      .map((k) => parseKey(target, k, keyPrefixLength))
      .filter((f): f is Found => f !== undefined && (after === undefined || f.fullKey > after) && keep(f))
      .sort((a, b) => (a.fullKey < b.fullKey ? -1 : 1));
    const held = await Promise.all(found.map((f) => heldAt(nodes, target, f)));
    let last: string | undefined;
    for (let i = 0; i < found.length; i++) {
      const lock = held[i];
      if (lock === undefined) continue;
      // The page filled up inside this step: the next page runs the same step again, after the last key returned.
      if (locks.length === limit) return { locks, cursor: encodeCursor({ target: at.target, scan: at.scan, after: last! }) };
      locks.push(lock);
      last = found[i]!.fullKey;
    }
    at = next === '0' ? { target: at.target + 1, scan: '0' } : { target: at.target, scan: next };
  }
  return at.target < targets.length ? { locks, cursor: encodeCursor(at) } : { locks };
}
