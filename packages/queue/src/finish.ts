// FinishWatcher: wakes `waitUntilFinished` callers on their jobs' events, with one stream reader per queue.
import type { Codec, RedisClient } from '@cyredis/core';
import { EventReader, isAfter } from './events.js';
import { decodeOr, type StreamEvent } from './protocol.js';

/** How a watched job ended, as its event tells. */
export interface Finished<R> {
  state: 'completed' | 'dead' | 'removed';
  returnValue?: R;
  failedReason?: string;
}

type Waiter<R> = (finished: Finished<R>) => void;

/** The longest single blocking read of the watcher's connection. */
const BLOCK_MS = 5000;

/**
 * Passes `completed`, `dead` and `removed` events to the callers watching those jobs. The reader (a
 * connection of its own) runs only while someone watches, from the event id a caller's lookup returned.
 */
export class FinishWatcher<R> {
  private readonly waiters = new Map<string, Set<Waiter<R>>>();
  private reader: EventReader | undefined;
  /** Where the running reader started. */
  private startedAt = '0-0';

  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly codec: Codec<R>,
  ) {}

  /** Calls `waiter` when the job finishes or is removed; returns the function that stops watching. */
  watch(jobId: string, waiter: Waiter<R>): () => void {
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(waiter);
    return () => {
      set.delete(waiter);
      if (set.size === 0) this.waiters.delete(jobId);
      if (this.waiters.size === 0) this.stop();
    };
  }

  /**
   * Makes sure events after `fromId` are read: starts the reader there, or, when it runs already, says
   * whether it started at or before `fromId` (false: the caller must look at its job again).
   */
  start(fromId: string): boolean {
    if (this.reader) return !isAfter(this.startedAt, fromId);
    this.startedAt = fromId;
    this.reader = new EventReader(this.redis, this.key, fromId, BLOCK_MS, (_, events) => this.dispatch(events), () => undefined);
    return true;
  }

  private stop(): void {
    const reader = this.reader;
    this.reader = undefined;
    void reader?.close();
  }

  private dispatch(events: StreamEvent[]): void {
    for (const e of events) {
      if (e.name !== 'completed' && e.name !== 'dead' && e.name !== 'removed') continue;
      const set = this.waiters.get(e.jobId);
      if (!set) continue;
      const finished: Finished<R> = { state: e.name, failedReason: e.fields.f, returnValue: decodeOr(this.codec, e.fields.r) };
      for (const waiter of [...set]) waiter(finished);
    }
  }
}
