import { connect, topologies } from '@cyredis/testing/context';
import { describe, expect, it } from 'vitest';
import { clientKeyPrefix, duplicateClient, isCluster } from '../src/index.js';

describe.each(topologies)('client helpers on %s', (topology) => {
  it('read the keyPrefix and duplicate a working connection with the same options', async () => {
    const client = connect(topology, { keyPrefix: 'kp:' });
    const copy = duplicateClient(client);
    try {
      expect(isCluster(client)).toBe(topology === 'cluster');
      expect(clientKeyPrefix(client)).toBe('kp:');
      expect(clientKeyPrefix(copy)).toBe('kp:');
      expect(copy).not.toBe(client);
      expect(await copy.ping()).toBe('PONG');
    } finally {
      copy.disconnect();
      await client.quit();
    }
    const plain = connect(topology);
    expect(clientKeyPrefix(plain)).toBe('');
    await plain.quit();
  });
});
