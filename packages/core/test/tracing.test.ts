import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it, vi } from 'vitest';
import { EventChannel, Operation, type OperationContext } from '../src/index.js';

/** Subscribes to every event of a tracing channel, recording the event names in order. */
function record(name: string): { events: string[]; contexts: OperationContext[]; stop: () => void } {
  const events: string[] = [];
  const contexts: OperationContext[] = [];
  const channel = diagnosticsChannel.tracingChannel<unknown, OperationContext>(name);
  const on = (event: string) => (ctx: OperationContext) => {
    events.push(event);
    if (event === 'start') contexts.push(ctx);
  };
  const handlers = { start: on('start'), end: on('end'), asyncStart: on('asyncStart'), asyncEnd: on('asyncEnd'), error: on('error') };
  channel.subscribe(handlers);
  return { events, contexts, stop: () => channel.unsubscribe(handlers) };
}

describe('Operation', () => {
  it('names its channel cyredis:<package>:<operation>', () => {
    expect(new Operation('ratelimit', 'limit').name).toBe('cyredis:ratelimit:limit');
  });

  it('makes no context object and passes none while nobody subscribes', async () => {
    const op = new Operation('test', 'idle');
    const context = vi.fn(() => ({ key: 'k' }));
    const settle = vi.fn();
    const fn = vi.fn((ctx: OperationContext | undefined) => Promise.resolve(ctx));
    expect(op.active).toBe(false);
    expect(await op.run(context, fn, settle)).toBeUndefined();
    // A subscriber that came and went leaves the channel as free as before.
    const r = record(op.name);
    r.stop();
    await op.run(context, fn, settle);
    expect(context).not.toHaveBeenCalled();
    expect(settle).not.toHaveBeenCalled();
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('publishes start, end, asyncStart and asyncEnd with the settled context', async () => {
    const op = new Operation('test', 'ok');
    const r = record(op.name);
    try {
      const got = await op.run(
        () => ({ key: 'k' }),
        (ctx) => Promise.resolve(ctx?.key),
        (ctx, result) => (ctx.outcome = `got ${result}`),
      );
      expect(got).toBe('k');
      expect(r.events).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
      expect(r.contexts[0]).toMatchObject({ key: 'k', outcome: 'got k', result: 'k' });
    } finally {
      r.stop();
    }
  });

  it('publishes error with the rejection and rejects as the call did', async () => {
    const op = new Operation('test', 'fails');
    const r = record(op.name);
    try {
      const boom = new Error('boom');
      await expect(op.run(() => ({ key: 'k' }), () => Promise.reject(boom), () => undefined)).rejects.toBe(boom);
      expect(r.events).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
      expect(r.contexts[0]!.error).toBe(boom);
      expect(r.contexts[0]!.outcome).toBeUndefined();
    } finally {
      r.stop();
    }
  });
});

describe('EventChannel', () => {
  it('builds a message only while someone subscribes', () => {
    const events = new EventChannel<{ n: number }>('test', 'happened');
    const make = vi.fn(() => ({ n: 1 }));
    events.publish(make);
    expect(make).not.toHaveBeenCalled();
    const got: unknown[] = [];
    const listener = (message: unknown) => got.push(message);
    diagnosticsChannel.subscribe(events.name, listener);
    events.publish(make);
    diagnosticsChannel.unsubscribe(events.name, listener);
    expect(got).toEqual([{ n: 1 }]);
    expect(make).toHaveBeenCalledTimes(1);
  });
});
