import { FaultProxy, RedisServer, sleep } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { underLoad } from '../src/scenario.js';
import { workloads } from '../src/workloads.js';

// Network faults between the client and one server, through the test's TCP proxy.
let server: RedisServer;
let proxy: FaultProxy;
let client: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  proxy = await FaultProxy.start(server.address);
  client = server.client({ port: proxy.port });
  client.on('error', () => undefined);
});
afterEach(async () => {
  client.disconnect();
  await proxy.close();
});

describe.each(workloads)('$name under network faults', (w) => {
  it('added latency (150 ms each way): slower, no caller error', async () => {
    const report = await underLoad(w, client, async (load) => {
      proxy.latencyMs = 150;
      await load.resumed(20);
      proxy.heal();
    });
    expect(report.failed).toBe(0);
  });

  it('replies lost, then every connection reset (the call may have run): promises hold on resend', async () => {
    await underLoad(w, client, async () => {
      proxy.dropReplies = true;
      await sleep(200);
      proxy.resetAll();
      proxy.heal();
    });
  });

  it('connections refused for a while: typed errors at most, traffic resumes', async () => {
    await underLoad(w, client, async () => {
      proxy.refuseConnections = true;
      proxy.resetAll();
      await sleep(1_500);
      proxy.heal();
    });
  });

  it('server paused with SIGSTOP past every lease (2.5 s), then resumed: promises hold', async () => {
    await underLoad(w, client, async () => {
      server.pause();
      await sleep(2_500);
      server.resume();
    });
  });
});
