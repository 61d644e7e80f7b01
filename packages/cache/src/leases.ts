// Stampede protection for getOrSet: one load per key at a time in this process (shared promise) and across
// processes (a lease in Redis), with waiters woken over the bus, leased writes that a delete can beat, and
// the loader's soft and hard timeouts.
import { InvalidArgumentError, withDeadline } from '@cyredis/core';
import type { Coherence } from './coherence.js';
import { LoaderTimeoutError } from './errors.js';
import {
  decodeLease,
  decodeLeasedSet,
  encodeLease,
  encodeLeasedSet,
  encodeRelease,
  type CacheKeys,
  type WriteSettings,
} from './protocol.js';
import { absorbOutage, type Transport } from './transport.js';
import type { Loader, LoaderContext, Values } from './values.js';

/** Without the bus, a waiter polls at least this often (ms) for the value another process is loading. */
const POLL_WITHOUT_BUS_MS = 50;

/** Where a `getOrSetWithStatus` value came from. */
export type CacheStatus = 'hit' | 'stale' | 'miss-loaded' | 'l1-hit';

/** A `getOrSetWithStatus` answer. */
export interface CacheResult<T> {
  /** The value, from wherever `status` says. */
  value: T;
  /**
   * `l1-hit`: this process's L1; `hit`: Redis (also a value another process loaded while this call waited);
   * `stale`: a value past its TTL, within `graceMs` (the loader failed, passed `softTimeoutMs`, or another
   * process is loading); `miss-loaded`: this call's loader (or one it joined in this process) returned it.
   */
  status: CacheStatus;
}

/** What `Leases` needs of the cache's settings. */
export interface LeaseOptions {
  write: WriteSettings;
  /** How long a loader may hold a key's lease, in ms. */
  leaseMs: number;
  onError: ((error: Error) => void) | undefined;
  /** A loader's TTL (from `ctx.setTtl`), checked and jittered like any other; throws on bad input. */
  ttl: (ttlMs: number, argument: string) => number;
}

/** One load's settings, from the `getOrSet` call that starts it (callers that join it share its outcome). */
export interface LoadRequest {
  /** TTL of the stored value in ms, unless the loader sets one. */
  ttlMs: number;
  /** A hit with less than this many ms to live is reloaded in the background. */
  swrMs: number;
  tags: readonly string[];
  /** Serve the stale value once the loader ran this long (undefined: never). */
  softMs: number | undefined;
  /** Give up (and free the lease) this long after the call started (undefined: never). */
  hardMs: number | undefined;
}

/** The loader's context: what it decided about its value. */
class LoadContext implements LoaderContext {
  skipped = false;

  constructor(
    public ttlMs: number,
    private readonly ttl: (ttlMs: number, argument: string) => number,
  ) {}

  setTtl(ttlMs: number): void {
    this.ttlMs = this.ttl(ttlMs, 'ctx.setTtl');
  }

  skipCache(): void {
    this.skipped = true;
  }
}

/** The lease side of `getOrSet`, once the L1 tier and a plain hit could not answer. */
export class Leases<T> {
  private tokens = 0;
  private readonly loading = new Map<string, Promise<CacheResult<T>>>();

  constructor(
    private readonly transport: Transport,
    private readonly keys: CacheKeys,
    private readonly coherence: Coherence<T>,
    private readonly values: Values<T>,
    private readonly options: LeaseOptions,
  ) {}

  /** The cached value or the loader's; callers of this process asking for one key share one load. */
  getOrLoad(key: string, loader: Loader<T>, request: LoadRequest): Promise<CacheResult<T>> {
    let pending = this.loading.get(key);
    if (pending === undefined) {
      pending = this.lookupOrLoad(key, loader, request, this.deadline(request)).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** Redis is unreachable: the loader's value, not stored (rejects past the deadline, the loader runs on). */
  async loadWithoutRedis(key: string, loader: Loader<T>, request: LoadRequest, deadline = this.deadline(request)): Promise<CacheResult<T>> {
    const loaded = this.values.load(loader, new LoadContext(request.ttlMs, this.options.ttl));
    return { value: await this.beforeDeadline(key, request, deadline, loaded), status: 'miss-loaded' };
  }

  /** When a call started now must give up (`performance.now()` time; Infinity without `hardMs`). */
  private deadline(request: LoadRequest): number {
    return request.hardMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + request.hardMs;
  }

  /**
   * Looks up `key`, taking its lease when there is no fresh hit (or the hit is due for a refresh); loads when
   * the lease is ours, serves a stale value or waits for the holder's write otherwise.
   */
  private async lookupOrLoad(key: string, loader: Loader<T>, request: LoadRequest, deadline: number): Promise<CacheResult<T>> {
    const { graceMs, origin } = this.options.write;
    const lease = { graceMs, token: `${origin}:${++this.tokens}`, leaseMs: this.options.leaseMs, refreshBelowMs: request.swrMs, withTtl: this.coherence.hasL1 };
    const keys = this.keys.forEntry(key, true);
    for (;;) {
      const generation = this.coherence.generation;
      const start = performance.now();
      let reply;
      try {
        reply = decodeLease(await this.transport.call(encodeLease(Date.now(), lease), keys));
      } catch (err) {
        absorbOutage(err, this.options.onError);
        return this.loadWithoutRedis(key, loader, request, deadline);
      }
      const { text, freshMs, acquired, leasePttlMs } = reply;
      const value = this.coherence.fromLookup(key, text, freshMs, generation, start);
      if (value !== undefined) {
        if (acquired) void this.load(key, loader, request, lease.token, null, deadline).catch((err: unknown) => this.options.onError?.(err as Error));
        return { value, status: 'hit' };
      }
      if (acquired) return this.load(key, loader, request, lease.token, text, deadline);
      // Another process is loading: serve a stale value if there is one, else wait to hear it was written.
      if (text !== null) return { value: this.values.decode(text), status: 'stale' };
      if (!this.coherence.started) {
        await this.coherence.listen();
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new LoaderTimeoutError(key, request.hardMs!);
      const leaseLeft = Math.max(1, leasePttlMs);
      const wait = this.coherence.listening ? leaseLeft : Math.min(leaseLeft, POLL_WITHOUT_BUS_MS);
      await this.coherence.waitForChange(key, Math.min(wait, Math.ceil(left)));
    }
  }

  /**
   * Runs the loader under our lease and writes its value (unless the loader skipped the cache). A stale
   * value is served when the loader fails or passes `softMs` (the load then goes on and writes when done);
   * past the deadline the lease is released and the call rejects with `LoaderTimeoutError`.
   */
  private load(key: string, loader: Loader<T>, request: LoadRequest, token: string, stale: string | null, deadline: number): Promise<CacheResult<T>> {
    const state = { timedOut: false };
    const result = this.loadAndWrite(key, loader, request, token, stale, state);
    const outcome = request.softMs !== undefined && stale !== null ? this.staleAfter(result, request.softMs, stale) : result;
    if (deadline === Number.POSITIVE_INFINITY) return outcome;
    return withDeadline(outcome, Math.max(0, deadline - performance.now()), () => {
      state.timedOut = true;
      this.release(key, token);
      return new LoaderTimeoutError(key, request.hardMs!);
    });
  }

  /** The loader's value, written under our lease; the stale value (if any) when the loader fails. */
  private async loadAndWrite(key: string, loader: Loader<T>, request: LoadRequest, token: string, stale: string | null, state: { timedOut: boolean }): Promise<CacheResult<T>> {
    const ctx = new LoadContext(request.ttlMs, this.options.ttl);
    let value: T;
    let text: string;
    try {
      value = await this.values.load(loader, ctx);
      text = this.values.encode(value);
    } catch (err) {
      if (!state.timedOut) this.release(key, token);
      if (stale !== null && !(err instanceof InvalidArgumentError)) return { value: this.values.decode(stale), status: 'stale' };
      throw err;
    }
    // Past the hard timeout the lease was given back: another caller may be loading now.
    if (state.timedOut) return { value, status: 'miss-loaded' };
    if (ctx.skipped) this.release(key, token);
    else {
      try {
        await this.writeLeased(key, value, { text, ttlMs: ctx.ttlMs, tags: request.tags }, token);
      } catch (err) {
        absorbOutage(err, this.options.onError);
      }
    }
    return { value, status: 'miss-loaded' };
  }

  /** `result`, or the stale value once `softMs` passed first (the load goes on; a later failure is reported). */
  private staleAfter(result: Promise<CacheResult<T>>, softMs: number, stale: string): Promise<CacheResult<T>> {
    return new Promise<CacheResult<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        result.catch((err: unknown) => this.options.onError?.(err as Error));
        resolve({ value: this.values.decode(stale), status: 'stale' });
      }, softMs);
      result.then(
        (outcome) => {
          clearTimeout(timer);
          resolve(outcome);
        },
        (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** Rejects with `LoaderTimeoutError` when `promise` has not settled by the deadline (the loader runs on). */
  private beforeDeadline(key: string, request: LoadRequest, deadline: number, promise: Promise<T>): Promise<T> {
    if (deadline === Number.POSITIVE_INFINITY) return promise;
    return withDeadline(promise, Math.max(0, deadline - performance.now()), () => new LoaderTimeoutError(key, request.hardMs!));
  }

  /** Frees our lease (if we still hold it), waking the callers waiting for the value; failures go to `onError`. */
  private release(key: string, token: string): void {
    const { channel, origin } = this.options.write;
    this.transport.call(encodeRelease(Date.now(), token, channel, origin), this.keys.forEntry(key, true)).catch(
      (err: unknown) => this.options.onError?.(err as Error),
    );
  }

  /** A write under a lease is a SET call of its own: the script checks the token for that one entry. */
  private async writeLeased(key: string, value: T, write: { text: string; ttlMs: number; tags: readonly string[] }, token: string): Promise<void> {
    const generation = this.coherence.beforeWrite([key]);
    const start = performance.now();
    const args = encodeLeasedSet(Date.now(), this.options.write, write, token);
    if (decodeLeasedSet(await this.transport.call(args, this.keys.forEntry(key, true)))) {
      this.coherence.remember(key, value, start + write.ttlMs, generation);
    }
  }
}
