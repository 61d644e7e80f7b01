// TickBatcher: the operations started in one tick, sent together in as few calls as the batch size allows.
import { CyRedisError } from './errors.js';
import { assertInteger } from './validate.js';

/** Sends operations together; resolves with one result per operation, in order. */
export type BatchSend<I, R> = (items: I[]) => Promise<ArrayLike<R>>;

interface Pending<I, R> {
  item: I;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

/** What a posted item's result and error go to: nobody asked for them. */
const ignore = (): void => undefined;

/**
 * Groups the operations started in one tick into few calls: they are collected and sent at the end of the
 * tick (a lone one as it is), or as soon as `maxBatch` are waiting, so the server runs one call while the
 * client collects the next. At many calls in flight this is what saves the client's and the server's
 * per-command cost; each operation still takes one round trip.
 */
export class TickBatcher<I, R> {
  private pending: Pending<I, R>[] = [];

  constructor(
    private readonly send: BatchSend<I, R>,
    /** Operations per call at most. */
    readonly maxBatch: number,
  ) {
    assertInteger('maxBatch', maxBatch, { min: 1 });
  }

  /** Runs `item` with the others of this tick; settles with its own result or the call's error. */
  add(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => this.enqueue({ item, resolve, reject }));
  }

  /**
   * Runs `item` with the others of this tick for a caller that wants no result: no promise is made for it
   * (a hot path's saving), so a `send` that takes such items must report its own failures.
   */
  post(item: I): void {
    this.enqueue({ item, resolve: ignore, reject: ignore });
  }

  private enqueue(pending: Pending<I, R>): void {
    const waiting = this.pending.push(pending);
    if (waiting === 1) process.nextTick(this.flush);
    else if (waiting === this.maxBatch) this.dispatch(this.take());
  }

  private take(): Pending<I, R>[] {
    const pending = this.pending;
    this.pending = [];
    return pending;
  }

  private readonly flush = (): void => {
    if (this.pending.length > 0) this.dispatch(this.take());
  };

  private dispatch(batch: Pending<I, R>[]): void {
    const items = new Array<I>(batch.length);
    for (let i = 0; i < batch.length; i++) items[i] = batch[i]!.item;
    this.call(items).then(
      (results) => {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  }

  /** `send`, with a synchronous throw turned into a rejection and a short reply refused. */
  private async call(items: I[]): Promise<ArrayLike<R>> {
    const results = await this.send(items);
    if (results.length !== items.length) {
      throw new CyRedisError(`batch reply has ${results.length} results for ${items.length} operations`);
    }
    return results;
  }
}
