import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy, REDIS_SERVER_MISSING, RedisServer, sleep, startIndependent, waitFor } from '../src/index.js';

describe('RedisServer', () => {
  it('says how to install redis-server when it is missing', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(RedisServer.start()).rejects.toThrow(REDIS_SERVER_MISSING);
    } finally {
      process.env.PATH = path;
    }
  });

  it('pauses, resumes, crashes and restarts a server by PID', async () => {
    const [server] = await startIndependent(1);
    // A timeout long enough for a loaded machine; the paused server never answers, whatever the timeout.
    const client = server!.client({ commandTimeout: 1_000, maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    try {
      await waitFor(async () => (await client.ping().catch(() => 'x')) === 'PONG');
      server!.pause();
      await expect(client.ping()).rejects.toThrow(/timed out/);
      server!.resume();
      await waitFor(async () => (await client.ping().catch(() => 'x')) === 'PONG');
      const pid = server!.pid;
      await server!.kill();
      await expect(server!.command('PING')).rejects.toThrow();
      await server!.restart();
      expect(server!.pid).not.toBe(pid);
      expect(await server!.command('PING')).toBe('PONG');
    } finally {
      client.disconnect();
      await server!.stop();
    }
  });
});

describe('FaultProxy', () => {
  let server: RedisServer;
  let proxy: FaultProxy;

  beforeAll(async () => {
    server = await RedisServer.start();
    proxy = await FaultProxy.start(server.address);
  });
  afterAll(async () => {
    await proxy.close();
    await server.stop();
  });

  it('adds latency, drops replies (the command still runs), resets and refuses connections', async () => {
    const client = server.client({ port: proxy.port, maxRetriesPerRequest: 1, commandTimeout: 1_000 });
    client.on('error', () => undefined);
    try {
      expect(await client.ping()).toBe('PONG');
      proxy.latencyMs = 120;
      const start = performance.now();
      await client.ping();
      expect(performance.now() - start).toBeGreaterThanOrEqual(200);
      proxy.heal();

      proxy.dropReplies = true;
      await expect(client.incr('proxy:counter')).rejects.toThrow(/timed out/);
      proxy.heal();
      expect(await server.command('GET', 'proxy:counter')).toBe('1');

      proxy.refuseConnections = true;
      proxy.resetAll();
      expect(proxy.connectionCount).toBe(0);
      await sleep(50);
      expect(proxy.connectionCount).toBe(0);
      proxy.heal();
      await waitFor(async () => (await client.ping().catch(() => 'x')) === 'PONG');
    } finally {
      client.disconnect();
    }
  });
});
