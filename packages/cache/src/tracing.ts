// The cache's tracing channels and typed events: what each operation publishes and what it fills in.
import { Operation, type OperationContext } from '@cyredis/core';
import type { CacheResult } from './leases.js';

/**
 * `cyredis:cache:get`: `name` (the cache's), `key`; then `outcome` `hit` (with `tier` `l1` or `l2`) or `miss`.
 */
export const GET = new Operation('cache', 'get');
/** `cyredis:cache:getMany`: `name`, `count` (keys asked for). */
export const GET_MANY = new Operation('cache', 'getMany');
/**
 * `cyredis:cache:getOrSet` (`getOrSet` and `getOrSetWithStatus`): `name`, `key`; then `outcome` `hit` (with
 * `tier`), `stale` or `miss`, and `loaded` (whether this call's loader, or one it joined, ran).
 */
export const GET_OR_SET = new Operation('cache', 'getOrSet');
/** `cyredis:cache:load`: one run of a loader, `name` (its duration is the loader's). */
export const LOAD = new Operation('cache', 'load');
/** `cyredis:cache:set`: `name`, `key`. */
export const SET = new Operation('cache', 'set');
/** `cyredis:cache:setMany`: `name`, `count`. */
export const SET_MANY = new Operation('cache', 'setMany');
/** `cyredis:cache:has`: `name`, `key`; `outcome` `hit` or `miss`. */
export const HAS = new Operation('cache', 'has');
/** `cyredis:cache:delete`: `name`, `key`; `outcome` `deleted` or `absent`. */
export const DELETE = new Operation('cache', 'delete');
/** `cyredis:cache:deleteMany`: `name`, `count`. */
export const DELETE_MANY = new Operation('cache', 'deleteMany');
/** `cyredis:cache:deleteByTag`: `name`, `key` (the tag). */
export const DELETE_BY_TAG = new Operation('cache', 'deleteByTag');
/** `cyredis:cache:clear`: `name`. */
export const CLEAR = new Operation('cache', 'clear');

/** A `get` or `has`: hit or miss. */
export function settleFound(ctx: OperationContext, value: unknown): void {
  ctx.outcome = value === undefined || value === false ? 'miss' : 'hit';
  if (ctx.outcome === 'miss') delete ctx.tier;
}

/** A `getOrSet`: its status as outcome, tier and whether a loader ran. */
export function settleStatus(ctx: OperationContext, result: CacheResult<unknown>): void {
  const status = result.status;
  ctx.outcome = status === 'l1-hit' ? 'hit' : status === 'miss-loaded' ? 'miss' : status;
  if (status === 'l1-hit') ctx.tier = 'l1';
  else if (status === 'hit') ctx.tier = 'l2';
  ctx.loaded = status === 'miss-loaded';
}

/** A `delete`: whether the entry existed. */
export function settleDeleted(ctx: OperationContext, existed: boolean): void {
  ctx.outcome = existed ? 'deleted' : 'absent';
}

/** Why entries left the cache, as the `invalidated` event says. */
export type InvalidationReason = 'delete' | 'tag' | 'clear' | 'remote';

/** The events a `SmartCache` emits, with their arguments (failures go to the `onError` option, as before). */
export interface SmartCacheEvents {
  /**
   * Entries were removed or dropped from L1: by this instance's `delete`/`deleteMany` (`keys`: those asked for),
   * `deleteByTag` (`tag`: the keys removed), `clear` (`keys` undefined: all), or another process's write, delete
   * or clear seen on the bus (`remote`; needs L1). Emitted only while someone listens.
   */
  invalidated: [keys: readonly string[] | undefined, reason: InvalidationReason];
}
