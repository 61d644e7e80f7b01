import { InvalidArgumentError } from '@cyredis/core';
import { randomPrefix, RedisServer, testCertificates } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aclRules } from '../src/acl.js';
import { underLoad } from '../src/scenario.js';
import { workloads } from '../src/workloads.js';

let server: RedisServer;
let admin: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  admin = server.client();
});
afterAll(async () => {
  admin.disconnect();
  await server.stop();
});

// Ids a hostile or careless caller may send; each pair must stay two separate objects.
const hostile: [string, string][] = [
  ['a', 'a}'],
  ['{a}', 'a'],
  ['a}{b', 'a'],
  ['x:y', 'x'],
  ['with space', 'with'],
  ['ünïcødé ✓ 🚀', 'unicode'],
  ['%7B', '{'],
  ['k'.repeat(10_240), 'k'.repeat(10_239)],
];

describe.each(workloads)('$name and hostile input', (w) => {
  it('runs under an ACL user limited to its prefix and the commands it needs', async () => {
    const prefix = randomPrefix(w.name);
    const user = `app-${prefix}`;
    await admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>secret', ...aclRules(prefix));
    const client = server.client({ username: user, password: 'secret' });
    client.on('error', () => undefined);
    try {
      const report = await underLoad(w, client, () => Promise.resolve(), { prefix });
      expect(report.failed).toBe(0);
      await expect(client.get('not-our-key')).rejects.toThrow(/NOPERM/);
      await expect(client.script('FLUSH')).rejects.toThrow(/NOPERM/);
    } finally {
      client.disconnect();
    }
  });

  it.each(hostile)('keeps id %# apart from its look-alike', async (a, b) => {
    const client = server.client();
    try {
      await w.isolated(client, randomPrefix(w.name), a, b);
      await w.isolated(client, randomPrefix(w.name), b, a);
    } catch (err) {
      // A package may cap id length below 10 KB; refusing such an id up front is as safe as isolating it.
      if (!(err instanceof InvalidArgumentError && a.length > 1_000)) throw err;
    } finally {
      client.disconnect();
    }
  });

  it('works over a TLS connection the user passes in', async () => {
    const tls = await RedisServer.start({ tls: testCertificates() });
    const client = tls.client();
    try {
      const report = await underLoad(w, client, () => Promise.resolve());
      expect(report.failed).toBe(0);
    } finally {
      client.disconnect();
      await tls.stop();
    }
  });
});
