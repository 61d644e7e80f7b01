// Tracing channels and event channels: every public operation publishes here, at no cost while nobody listens.
import diagnosticsChannel, { type Channel, type TracingChannel } from 'node:diagnostics_channel';

/**
 * What an operation's tracing channel (`cyredis:<package>:<operation>`) carries: one object per call, made only
 * when the channel has a subscriber, passed to its `start`, `end`, `asyncStart`, `asyncEnd` and `error` events.
 * Each package documents which fields its operations fill in; the ones an operation does not use stay absent.
 */
export interface OperationContext {
  /** The instance's name: the limiter's (`undefined` when unnamed), the cache's or the queue's. */
  name?: string | undefined;
  /** The id, resource or key the call is about (a rate-limited id, a lock resource, a cache key, a job id). */
  key?: string | undefined;
  /** How many items a batch call carries (`getMany`, `pushBulk`, `ack`, …). */
  count?: number;
  /**
   * How the call ended, set before `asyncStart`: `admitted`/`refused` (ratelimit), `acquired`/`refused`/
   * `released`/`lost` (lock), `hit`/`miss`/`stale` (cache), `completed`/`retry`/`dead`/`lost` (queue).
   */
  outcome?: string;
  /** Where a cache hit came from: `l1` (this process's memory) or `l2` (Redis). */
  tier?: 'l1' | 'l2';
  /** Ms the call waited for capacity or a lock (lock `acquire`, ratelimit `limit` with `waitMs`). */
  waitedMs?: number;
  /** Runs of a job so far, this one included (queue `process`). */
  attempts?: number;
  /** The rule that decided (ratelimit: its index in `rules`). */
  rule?: number;
  /** Jobs whose completion was accepted (queue `ack`). */
  completed?: number;
  /** Whether a cache loader ran for this call (`getOrSet`). */
  loaded?: boolean;
  /**
   * Propagation fields (such as W3C `traceparent`) carried in a job's record: on queue `push`, a subscriber
   * of `start` may set it to have it stored with the job; on queue `process`, the ones the job was pushed with.
   */
  traceContext?: Record<string, string> | undefined;
  /** The object the call acts on, when there is one (the `Lock`, `Permit` or `Job`), to pair up calls. */
  target?: object;
  /** When the call started, on the `performance.now()` clock (set when the context is made). */
  startedAt?: number;
  /** What the call resolved with (set by Node before `asyncStart`). */
  result?: unknown;
  /** What the call rejected with (set by Node before the `error` event). */
  error?: unknown;
}

/**
 * One public operation's tracing channel. `run` costs one `hasSubscribers` check while nobody subscribes:
 * no context object is made and the call runs as it would without tracing. Hot paths check `active` first
 * and call the untraced body directly, so that not even the closures handed to `run` are made.
 */
export class Operation {
  /** The channel's name, `cyredis:<package>:<operation>`. */
  readonly name: string;
  /** The Node tracing channel (subscribe to it with `diagnostics_channel.tracingChannel(name)`). */
  readonly channel: TracingChannel<unknown, OperationContext>;

  constructor(pkg: string, operation: string) {
    this.name = `cyredis:${pkg}:${operation}`;
    this.channel = diagnosticsChannel.tracingChannel(this.name);
  }

  /** Whether anyone subscribes now. */
  get active(): boolean {
    return this.channel.hasSubscribers;
  }

  /**
   * Runs `fn`, traced when someone subscribes: `context()` is called then only, `fn` gets the context
   * (`undefined` while nobody subscribes), and `settle` (on success) or `fail` (on a rejection) fill in the
   * outcome before the `asyncStart` (or `error`) event.
   */
  run<R>(
    context: () => OperationContext,
    fn: (context: OperationContext | undefined) => Promise<R>,
    settle?: (context: OperationContext, result: R) => void,
    fail?: (context: OperationContext, error: unknown) => void,
  ): Promise<R> {
    if (!this.channel.hasSubscribers) return fn(undefined);
    const ctx = context();
    ctx.startedAt = performance.now();
    const traced = async (): Promise<R> => {
      let result: R;
      try {
        result = await fn(ctx);
      } catch (err) {
        fail?.(ctx, err);
        throw err;
      }
      settle?.(ctx, result);
      return result;
    };
    return this.channel.tracePromise(traced, ctx);
  }
}

/**
 * A plain diagnostics channel for one kind of event of a package (`cyredis:<package>:<event>`), such as a lost
 * lock lease or a cache invalidation: `publish` builds the message only while someone subscribes.
 */
export class EventChannel<M> {
  /** The channel's name, `cyredis:<package>:<event>`. */
  readonly name: string;
  private readonly channel: Channel<M>;

  constructor(pkg: string, event: string) {
    this.name = `cyredis:${pkg}:${event}`;
    this.channel = diagnosticsChannel.channel(this.name) as Channel<M>;
  }

  /** Whether anyone subscribes now. */
  get active(): boolean {
    return this.channel.hasSubscribers;
  }

  /** Publishes the message `make()` builds, when anyone subscribes. */
  publish(make: () => M): void {
    if (this.channel.hasSubscribers) this.channel.publish(make());
  }
}

/** The message of an `error` event channel: a background failure and the instance it happened in. */
export interface BackgroundError {
  /** The instance's name, when it has one. */
  name?: string | undefined;
  /** What was being done (`registry write`, `release`, …). */
  during: string;
  /** The failure. */
  error: unknown;
}
