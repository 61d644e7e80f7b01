import { RedisServer, startCluster, startPrivate, waitFor, type PrivateTopology } from '@cyredis/testing';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PubSubSubscriber, type SubscriberEvents } from '../src/index.js';

/** What one subscriber reported, in order. */
class Recorder {
  readonly messages: string[] = [];
  readonly log: string[] = [];
  readonly errors: Error[] = [];
  readonly events: Required<SubscriberEvents> = {
    message: (channel, message) => this.messages.push(`${channel}=${message}`),
    lost: () => this.log.push('lost'),
    resubscribed: () => this.log.push('resubscribed'),
    error: (error) => this.errors.push(error),
  };
}

// Each topology runs on private servers: CLIENT KILL TYPE pubsub and restarts would hit other suites.
describe.each(['single', 'cluster'] as const)('PubSubSubscriber on %s', (topology) => {
  let topo: PrivateTopology;
  let client: Redis | Cluster;
  const open: PubSubSubscriber[] = [];

  /** Every node's subscriber count for `channel`, summed (a cluster subscriber sits on one master). */
  async function numsub(channel: string): Promise<number> {
    const counts = await Promise.all(topo.nodes.map(async (node) => ((await node.command('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]));
    return counts.reduce((a, b) => a + b, 0);
  }

  async function everyNode(...args: string[]): Promise<void> {
    await Promise.all(topo.nodes.map((node) => node.command(...args)));
  }

  function make(recorder: Recorder): PubSubSubscriber {
    const subscriber = new PubSubSubscriber(client, recorder.events);
    open.push(subscriber);
    return subscriber;
  }

  beforeAll(async () => {
    topo = await startPrivate(topology);
    client = topo.client;
    client.on('error', () => undefined);
  }, 30_000);
  afterEach(() => {
    for (const subscriber of open.splice(0)) subscriber.close();
  });
  afterAll(() => topo.stop());

  it('delivers messages of subscribed channels only, and counts references per channel', async () => {
    const recorder = new Recorder();
    const subscriber = make(recorder);
    expect(subscriber.live).toBe(false);
    const [first, second] = await Promise.all([subscriber.subscribe('a'), subscriber.subscribe('a')]);
    expect([first, second]).toEqual([true, true]);
    expect(await subscriber.subscribe('b')).toBe(true);
    expect(subscriber.live).toBe(true);
    expect(subscriber.channelNames).toEqual(['a', 'b']);
    await client.publish('a', '1');
    await client.publish('elsewhere', 'x');
    await waitFor(() => recorder.messages.length === 1);
    // One of two references to 'a' gone: still subscribed.
    subscriber.unsubscribe('a');
    await client.publish('a', '2');
    await waitFor(() => recorder.messages.length === 2);
    subscriber.unsubscribe('a');
    await waitFor(async () => (await numsub('a')) === 0);
    await client.publish('a', '3');
    await client.publish('b', '4');
    await waitFor(() => recorder.messages.length === 3);
    expect(recorder.messages).toEqual(['a=1', 'a=2', 'b=4']);
    expect(subscriber.channelNames).toEqual(['b']);
    expect(recorder.log).toEqual([]);
  });

  it('resubscribes after CLIENT KILL TYPE pubsub and reports the loss, then the resubscribe', async () => {
    const recorder = new Recorder();
    const subscriber = make(recorder);
    await subscriber.subscribe('k');
    await everyNode('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor(() => recorder.log.includes('resubscribed'));
    expect(recorder.log).toEqual(['lost', 'resubscribed']);
    expect(subscriber.live).toBe(true);
    expect(await numsub('k')).toBe(1);
    await client.publish('k', 'after');
    await waitFor(() => recorder.messages.includes('k=after'));
    // Killed twice: reported twice.
    await everyNode('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor(() => recorder.log.length === 4);
    expect(recorder.log).toEqual(['lost', 'resubscribed', 'lost', 'resubscribed']);
  });

  it('resubscribes after the server it listens on restarts, reporting connection errors to the sink', async () => {
    const recorder = new Recorder();
    const subscriber = make(recorder);
    await subscriber.subscribe('r');
    // On a cluster, restart the master it listens on (back empty, but still knowing its cluster config).
    const nodes = topo.nodes;
    const counts = await Promise.all(nodes.map(async (node) => ((await node.command('PUBSUB', 'NUMSUB', 'r')) as [string, number])[1]));
    const listening = nodes[counts.indexOf(1)]!;
    await listening.kill();
    await waitFor(() => recorder.log.includes('lost'));
    expect(subscriber.live).toBe(false);
    // Reconnect attempts fail while the server is down, and land in the error sink.
    await waitFor(() => recorder.errors.length > 0);
    await listening.restart();
    await waitFor(() => recorder.log.includes('resubscribed'), { timeoutMs: 20_000 });
    expect(recorder.log).toEqual(['lost', 'resubscribed']);
    await waitFor(async () => {
      await client.publish('r', 'back');
      return recorder.messages.includes('r=back');
    }, { timeoutMs: 20_000 });
    expect(subscriber.live).toBe(true);
  });

  it('close unsubscribes everything and reports nothing more', async () => {
    const recorder = new Recorder();
    const subscriber = make(recorder);
    await subscriber.subscribe('c');
    expect(await numsub('c')).toBe(1);
    subscriber.close();
    expect(subscriber.live).toBe(false);
    expect(subscriber.channelNames).toEqual([]);
    await waitFor(async () => (await numsub('c')) === 0);
    await everyNode('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await client.publish('c', 'late');
    // A subscribe after close opens nothing.
    expect(await subscriber.subscribe('c')).toBe(false);
    expect(await numsub('c')).toBe(0);
    expect(recorder.messages).toEqual([]);
    expect(recorder.log).toEqual([]);
  });
});

describe('PubSubSubscriber whose connection gives up', () => {
  it('opens a new connection (single node, a client that never retries) and resubscribes once the server is back', async () => {
    const server = await RedisServer.start();
    const client = server.client({ retryStrategy: () => null });
    client.on('error', () => undefined);
    const recorder = new Recorder();
    const subscriber = new PubSubSubscriber(client, recorder.events);
    try {
      expect(await subscriber.subscribe('g')).toBe(true);
      await server.kill();
      await waitFor(() => recorder.log.includes('lost'));
      await server.restart();
      await waitFor(() => recorder.log.includes('resubscribed'), { timeoutMs: 20_000 });
      expect(recorder.log).toEqual(['lost', 'resubscribed']);
      expect(((await server.command('PUBSUB', 'NUMSUB', 'g')) as [string, number])[1]).toBe(1);
      expect(await server.command('PUBLISH', 'g', 'x')).toBe(1);
      await waitFor(() => recorder.messages.includes('g=x'));
    } finally {
      subscriber.close();
      client.disconnect();
      await server.stop();
    }
  });

  it('moves to another master when the cluster node it listens on is gone for good', async () => {
    const cluster = await startCluster({ masters: 3 });
    const client = cluster.client();
    client.on('error', () => undefined);
    const recorder = new Recorder();
    const subscriber = new PubSubSubscriber(client, recorder.events);
    const count = async (node: RedisServer) => ((await node.command('PUBSUB', 'NUMSUB', 'm')) as [string, number])[1];
    try {
      await subscriber.subscribe('m');
      const counts = await Promise.all(cluster.nodes.map(count));
      const gone = cluster.nodes[counts.indexOf(1)]!;
      const others = cluster.nodes.filter((node) => node !== gone);
      await gone.kill();
      await waitFor(() => recorder.log.includes('resubscribed'), { timeoutMs: 30_000 });
      expect(recorder.log).toEqual(['lost', 'resubscribed']);
      expect((await Promise.all(others.map(count))).reduce((a, b) => a + b, 0)).toBe(1);
      // A cluster forwards a PUBLISH to every node, so any live node reaches it.
      await others[0]!.command('PUBLISH', 'm', 'moved');
      await waitFor(() => recorder.messages.includes('m=moved'));
    } finally {
      subscriber.close();
      client.disconnect();
      await cluster.stop();
    }
  }, 60_000);
});
