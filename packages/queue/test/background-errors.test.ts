import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CyRedisError, JobQueue, Worker, type Codec } from '../src/index.js';

/**
 * A JSON codec that refuses the data "poison" and, the first time it meets it, cuts `client` off, so the
 * dead-lettering that follows fails for real (the connection is closed).
 */
function poisonCodec(client: { disconnect(): void }): Codec<string> {
  let tripped = false;
  return {
    encode: (value) => JSON.stringify(value),
    decode: (text) => {
      const value = JSON.parse(text) as string;
      if (value !== 'poison') return value;
      if (!tripped) client.disconnect();
      tripped = true;
      throw new Error('poisoned data');
    },
  };
}

describe.each(topologies)('background failures of the queue on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('fetch returns a failed dead-lettering of undecodable data in `errors`, and the job stays leased', async () => {
    await new JobQueue<string>(redis, 'q', { prefix }).push('poison');
    const client = connect(topology);
    try {
      const queue = new JobQueue<string>(client, 'q', { prefix, codec: poisonCodec(client) });
      const result = await queue.fetch(10);
      expect(result.jobs).toEqual([]);
      expect(result.errors).toHaveLength(1);
      expect(result.errors![0]).toBeInstanceOf(CyRedisError);
      expect(result.errors![0]!.message).toMatch(/^could not dead-letter job "[^"]+", whose data cannot be decoded/);
      const watcher = new JobQueue<string>(redis, 'q', { prefix });
      expect(await watcher.deadJobs()).toEqual([]);
      expect((await watcher.stats()).processing).toBe(1);
    } finally {
      client.disconnect();
    }
  });

  it('a fetch with nothing failing carries no `errors` field', async () => {
    const queue = new JobQueue<string>(redis, 'q', { prefix });
    await queue.push('fine');
    expect(Object.keys(await queue.fetch(10))).toEqual(['waitMs', 'jobs']);
  });

  it('the Worker emits the failed dead-lettering as `error`', async () => {
    await new JobQueue<string>(redis, 'q', { prefix }).push('poison');
    const client = connect(topology);
    const queue = new JobQueue<string>(client, 'q', { prefix, codec: poisonCodec(client) });
    const worker = new Worker(queue, () => undefined, { blockMs: 100 });
    const errors: unknown[] = [];
    worker.on('error', (err) => errors.push(err));
    try {
      const deadLetter = await waitFor(() => errors.find((e) => e instanceof Error && e.message.startsWith('could not dead-letter job')));
      expect(deadLetter).toBeInstanceOf(CyRedisError);
    } finally {
      await worker.close({ timeoutMs: 0 });
      client.disconnect();
    }
  });
});
