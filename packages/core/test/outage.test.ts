import { RedisServer } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  classifyError,
  CyRedisError,
  InvalidArgumentError,
  isOutage,
  LuaScriptManager,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
} from '../src/index.js';

describe('classifyError', () => {
  it('passes cyredis errors through unchanged', () => {
    const invalid = new InvalidArgumentError('x', 'bad');
    expect(classifyError(invalid, { label: 'call' })).toBe(invalid);
    const timeout = new RedisTimeoutError('s', 5);
    expect(classifyError(timeout, { label: 'call' })).toBe(timeout);
  });

  it('turns anything that is not a reply into RedisUnavailableError, keeping the cause', () => {
    const closed = new Error('Connection is closed.');
    const error = classifyError(closed, { label: 'reset of "a" failed' });
    expect(error).toBeInstanceOf(RedisUnavailableError);
    expect(error).not.toBeInstanceOf(RedisTimeoutError);
    expect(error.message).toBe('reset of "a" failed: Connection is closed.');
    expect(error.cause).toBe(closed);
    expect(classifyError('a string', { label: 'x' }).message).toBe('x: a string');
  });

  it('turns a command timeout into RedisTimeoutError only when the deadline is known', () => {
    const timedOut = new Error('Command timed out');
    expect(classifyError(timedOut, { label: 'call', scriptName: 'cyredis:x:y', timeoutMs: 50 })).toMatchObject({
      name: 'RedisTimeoutError',
      scriptName: 'cyredis:x:y',
      timeoutMs: 50,
    });
    expect(classifyError(timedOut, { label: 'call' })).not.toBeInstanceOf(RedisTimeoutError);
  });
});

describe('isOutage', () => {
  it('counts no reply and refusing server states, never a script ERR or a non-cyredis error', () => {
    expect(isOutage(new RedisUnavailableError('down'))).toBe(true);
    expect(isOutage(new RedisTimeoutError('s', 1))).toBe(true);
    for (const state of ['BUSY Redis is busy', 'OOM command not allowed', 'READONLY replica', 'LOADING', 'CLUSTERDOWN']) {
      expect(isOutage(new ScriptError('s', state)), state).toBe(true);
    }
    expect(isOutage(new ScriptError('s', 'ERR cache: bad ttl'))).toBe(false);
    expect(isOutage(new InvalidArgumentError('x', 'bad'))).toBe(false);
    expect(isOutage(new CyRedisError('other'))).toBe(false);
    expect(isOutage(new TypeError('codec bug'))).toBe(false);
    expect(isOutage(new Error('Connection is closed.'))).toBe(false);
  });
});

describe.each(topologies)('classifyError on real failures (%s)', (topology) => {
  it('a script error reply becomes ScriptError with its code; a server state too', async () => {
    const client = connect(topology);
    const scripts = new LuaScriptManager(client);
    try {
      let caught: unknown;
      await client.eval("return redis.error_reply('ERR core: refused')", 1, 'k{t}').catch((err: unknown) => (caught = err));
      const error = classifyError(caught, { label: 'script "t"', scriptName: 't' });
      expect(error).toMatchObject({ name: 'ScriptError', code: 'ERR', scriptName: 't' });
      expect(isOutage(error)).toBe(false);
      // The manager classifies the same way.
      scripts.registerScript('busy', "return redis.error_reply('BUSY pretend')");
      const busy = await scripts.executeScript('busy', { keys: ['k{t}'] }).catch((err: unknown) => err);
      expect(busy).toMatchObject({ name: 'ScriptError', code: 'BUSY' });
      expect(isOutage(busy)).toBe(true);
    } finally {
      await client.quit();
    }
  });
});

describe('classifyError on connection failures', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('MaxRetriesPerRequestError, a closed connection and an offline queue that is off are outages', async () => {
    const down = await RedisServer.start();
    await down.stop();
    const retrying = down.client({ maxRetriesPerRequest: 1, retryStrategy: () => 10 });
    const offline = down.client({ enableOfflineQueue: false, retryStrategy: () => null });
    const closed = server.client();
    for (const c of [retrying, offline, closed]) c.on('error', () => undefined);
    try {
      await closed.ping();
      closed.disconnect();
      const failures = await Promise.all([retrying.ping(), offline.ping(), closed.ping()].map((p) => p.then(() => 'no error', (err: unknown) => err)));
      expect((failures[0] as Error).name).toBe('MaxRetriesPerRequestError');
      for (const failure of failures) {
        const error = classifyError(failure, { label: 'ping' });
        expect(error).toBeInstanceOf(RedisUnavailableError);
        expect(error.cause).toBe(failure);
        expect(isOutage(error)).toBe(true);
      }
    } finally {
      retrying.disconnect();
      offline.disconnect();
    }
  });

  it('a commandTimeout becomes RedisTimeoutError when given its deadline', async () => {
    const client = server.client({ commandTimeout: 50 });
    client.on('error', () => undefined);
    try {
      server.pause();
      const failure = await client.ping().then(() => 'no error', (err: unknown) => err);
      server.resume();
      const error = classifyError(failure, { label: 'ping', timeoutMs: 50 });
      expect(error).toBeInstanceOf(RedisTimeoutError);
      expect(isOutage(error)).toBe(true);
    } finally {
      server.resume();
      client.disconnect();
    }
  });
});
