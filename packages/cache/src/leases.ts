// Stampede protection for getOrSet: one load per key at a time in this process (shared promise) and across
// processes (a lease in Redis), with waiters woken over the bus and leased writes that a delete can beat.
import { InvalidArgumentError } from '@cyredis/core';
import type { Coherence } from './coherence.js';
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
import type { Loader, Values } from './values.js';

/** Without the bus, a waiter polls at least this often (ms) for the value another process is loading. */
const POLL_WITHOUT_BUS_MS = 50;

/** What `Leases` needs of the cache's settings. */
export interface LeaseOptions {
  write: WriteSettings;
  /** How long a loader may hold a key's lease, in ms. */
  leaseMs: number;
  onError: ((error: Error) => void) | undefined;
}

/** The lease side of `getOrSet`, once the L1 tier and a plain hit could not answer. */
export class Leases<T> {
  private tokens = 0;
  private readonly loading = new Map<string, Promise<T>>();

  constructor(
    private readonly transport: Transport,
    private readonly keys: CacheKeys,
    private readonly coherence: Coherence<T>,
    private readonly values: Values<T>,
    private readonly options: LeaseOptions,
  ) {}

  /** The cached value or the loader's; callers of this process asking for one key share one load. */
  getOrLoad(key: string, loader: Loader<T>, ttlMs: number, refreshBelowMs: number): Promise<T> {
    let pending = this.loading.get(key);
    if (pending === undefined) {
      pending = this.lookupOrLoad(key, loader, ttlMs, refreshBelowMs).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  /**
   * Looks up `key`, taking its lease when there is no fresh hit (or the hit is due for a refresh); loads when
   * the lease is ours, serves a stale value or waits for the holder's write otherwise.
   */
  private async lookupOrLoad(key: string, loader: Loader<T>, ttlMs: number, refreshBelowMs: number): Promise<T> {
    const { graceMs, origin } = this.options.write;
    const request = { graceMs, token: `${origin}:${++this.tokens}`, leaseMs: this.options.leaseMs, refreshBelowMs, withTtl: this.coherence.hasL1 };
    const keys = this.keys.forEntry(key, true);
    for (;;) {
      const generation = this.coherence.generation;
      const start = performance.now();
      let reply;
      try {
        reply = decodeLease(await this.transport.call(encodeLease(Date.now(), request), keys));
      } catch (err) {
        absorbOutage(err, this.options.onError);
        return this.values.load(loader);
      }
      const { text, freshMs, acquired, leasePttlMs } = reply;
      const value = this.coherence.fromLookup(key, text, freshMs, generation, start);
      if (value !== undefined) {
        if (acquired) this.load(key, loader, ttlMs, request.token, null).catch((err: unknown) => this.options.onError?.(err as Error));
        return value;
      }
      if (acquired) return this.load(key, loader, ttlMs, request.token, text);
      // Another process is loading: serve a stale value if there is one, else wait to hear it was written.
      if (text !== null) return this.values.decode(text);
      if (!this.coherence.started) {
        await this.coherence.listen();
        continue;
      }
      const leaseLeft = Math.max(1, leasePttlMs);
      await this.coherence.waitForChange(key, this.coherence.listening ? leaseLeft : Math.min(leaseLeft, POLL_WITHOUT_BUS_MS));
    }
  }

  /** Runs the loader under our lease and writes its value; on failure releases the lease (stale served if any). */
  private async load(key: string, loader: Loader<T>, ttlMs: number, token: string, stale: string | null): Promise<T> {
    let value: T;
    let text: string;
    try {
      value = await this.values.load(loader);
      text = this.values.encode(value);
    } catch (err) {
      const { channel, origin } = this.options.write;
      this.transport.call(encodeRelease(Date.now(), token, channel, origin), this.keys.forEntry(key, true)).catch(
        (releaseErr: unknown) => this.options.onError?.(releaseErr as Error),
      );
      if (stale !== null && !(err instanceof InvalidArgumentError)) return this.values.decode(stale);
      throw err;
    }
    try {
      await this.writeLeased(key, value, text, ttlMs, token);
    } catch (err) {
      absorbOutage(err, this.options.onError);
    }
    return value;
  }

  /** A write under a lease is a SET call of its own: the script checks the token for that one entry. */
  private async writeLeased(key: string, value: T, text: string, ttlMs: number, token: string): Promise<void> {
    const generation = this.coherence.beforeWrite([key]);
    const start = performance.now();
    const args = encodeLeasedSet(Date.now(), this.options.write, text, ttlMs, token);
    if (decodeLeasedSet(await this.transport.call(args, this.keys.forEntry(key, true)))) {
      this.coherence.remember(key, value, start + ttlMs, generation);
    }
  }
}
