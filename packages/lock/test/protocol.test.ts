import { readFileSync } from 'node:fs';
import { CyRedisError, LuaScriptManager, type RegisteredScript, type ScriptArg } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeBatch,
  decodeFairEnded,
  decodeFairReply,
  decodeFairStatus,
  decodePermitReply,
  decodeReleaseReply,
  decodeReply,
  decodeResizeReply,
  decodeStatusReply,
  encodeArgs,
  encodeBatch,
  encodeFairArgs,
  encodeSemaphoreArgs,
  encodeSemaphoreBatch,
  splitSemaphoreBatch,
  type BatchableRequest,
  type BatchableSemaphoreRequest,
  type FairRequest,
  type LockReply,
  type LockRequest,
  type SemaphoreRequest,
} from '../src/protocol.js';

const SOURCE = readFileSync(new URL('../lua/distributed_lock.lua', import.meta.url), 'utf8');
const SEMAPHORE = readFileSync(new URL('../lua/semaphore.lua', import.meta.url), 'utf8');
const FAIR = readFileSync(new URL('../lua/fair_lock.lua', import.meta.url), 'utf8');

describe.each(topologies)('the protocol module against distributed_lock.lua on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  let script: RegisteredScript;
  let prefix: string;
  let key: string;

  /** One operation through the encoder, the shipped script and the decoder. */
  const run = async (request: LockRequest): Promise<LockReply> =>
    decodeReply(request, await scripts.executeScript(script, { keys: [request.key], args: encodeArgs(request) }));
  /** The seed's full-reply form of a lease operation or release, decoded by the same decoder. */
  const runFull = async (request: LockRequest, args: ScriptArg[]): Promise<LockReply> =>
    decodeReply(request, await scripts.executeScript(script, { keys: [request.key], args }));

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript('cyredis:lock:protocol-test', SOURCE);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    // One hash tag, so a batch of several keys stays in one slot on the cluster.
    key = `${prefix}{protocol}:a`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('runs every single-key operation: acquire, wait, extend, fence, status, release, force', async () => {
    const acquired = await run({ operation: 'acquire', key, owner: 'x', ttlMs: 5_000 });
    expect(acquired).toEqual({ state: 'granted', owner: 'x', ttlMs: 5_000, token: expect.any(BigInt) as bigint });
    const token = acquired.token;
    expect(token).toBeGreaterThan(0n);

    const refused = await run({ operation: 'acquire', key, owner: 'y', ttlMs: 5_000 });
    expect({ ...refused, ttlMs: 0 }).toEqual({ state: 'refused', owner: 'x', ttlMs: 0, token });
    expect(refused.ttlMs).toBeGreaterThan(0);
    expect(refused.ttlMs).toBeLessThanOrEqual(5_000);

    const waited = await run({ operation: 'wait', key, owner: 'y', ttlMs: 5_000 });
    expect([waited.state, waited.owner, waited.token]).toEqual(['refused', 'x', token]);
    // A refused wait asked for a release message: field x (the key's expiry) turned negative.
    expect(Number(await redis.hget(key, 'x'))).toBeLessThan(0);

    expect(await run({ operation: 'extend', key, owner: 'x', ttlMs: 9_000 })).toEqual({ state: 'granted', owner: 'x', ttlMs: 9_000, token });
    const notExtended = await run({ operation: 'extend', key, owner: 'y', ttlMs: 9_000 });
    expect([notExtended.state, notExtended.owner, notExtended.token]).toEqual(['refused', 'x', token]);

    const fenced = await run({ operation: 'fence', key, owner: 'x', floor: token + 40n });
    expect([fenced.state, fenced.owner, fenced.token]).toEqual(['granted', 'x', token + 40n]);
    expect((await run({ operation: 'fence', key, owner: 'y', floor: token + 90n })).state).toBe('refused');

    const status = await run({ operation: 'status', key });
    expect([status.state, status.owner, status.token]).toEqual(['granted', 'x', token + 40n]);
    expect(status.ttlMs).toBeGreaterThan(0);
    expect(status.ttlMs).toBeLessThanOrEqual(9_000);

    expect(await run({ operation: 'release', key, owner: 'y' })).toMatchObject({ state: 'refused', owner: 'x' });
    expect(await run({ operation: 'release', key, owner: 'x' })).toEqual({ state: 'granted', owner: 'x', ttlMs: 0, token: token + 40n });
    // Idempotent while the key is kept.
    expect(await run({ operation: 'release', key, owner: 'x' })).toEqual({ state: 'granted', owner: 'x', ttlMs: 0, token: token + 40n });
    expect(await run({ operation: 'status', key })).toEqual({ state: 'refused', owner: '', ttlMs: 0, token: token + 40n });

    const next = await run({ operation: 'acquire', key, owner: 'y', ttlMs: 5_000 });
    expect(next.token).toBeGreaterThan(token + 40n);
    expect(await run({ operation: 'force', key })).toEqual({ state: 'granted', owner: 'y', ttlMs: 0, token: next.token });
    expect(await run({ operation: 'force', key })).toEqual({ state: 'refused', owner: '', ttlMs: 0, token: next.token });
  });

  it('decodes the compact replies to what the full replies say', async () => {
    // The same operations on two keys: compact codes (what the client sends) and the full mode names.
    const other = `${prefix}{protocol}:b`;
    const steps: [LockRequest, ScriptArg[]][] = [
      [{ operation: 'acquire', key, owner: 'x', ttlMs: 4_000 }, ['x', 4_000, 'acquire']],
      [{ operation: 'wait', key, owner: 'x', ttlMs: 6_000 }, ['x', 6_000, 'wait']],
      [{ operation: 'extend', key, owner: 'x', ttlMs: 7_000 }, ['x', 7_000, 'extend']],
      [{ operation: 'release', key, owner: 'x' }, ['x', 0, 'release']],
      [{ operation: 'release', key, owner: 'x' }, ['x', 0, 'release']],
      [{ operation: 'extend', key, owner: 'x', ttlMs: 7_000 }, ['x', 7_000, 'extend']],
    ];
    for (const [request, fullArgs] of steps) {
      const compact = await run(request);
      const full = await runFull({ ...request, key: other }, fullArgs);
      expect({ ...compact, token: 0n }, request.operation).toEqual({ ...full, token: 0n });
    }
  });

  it('runs a batch of every batchable operation and decodes one result per request', async () => {
    // The client batches only on a single node; on a cluster the batch form works within one slot.
    const b = `${prefix}{protocol}:b`;
    const requests: BatchableRequest[] = [
      { operation: 'acquire', key, owner: 'x', ttlMs: 3_000 },
      { operation: 'wait', key: b, owner: 'y', ttlMs: 3_000 },
      { operation: 'wait', key: b, owner: 'z', ttlMs: 3_000 },
      { operation: 'extend', key, owner: 'x', ttlMs: 8_000 },
      { operation: 'status', key },
      { operation: 'release', key, owner: 'x' },
      { operation: 'force', key: b },
      { operation: 'status', key: b },
    ];
    const { keys, args } = encodeBatch(requests);
    const results = decodeBatch(requests, await scripts.executeScript(script, { keys, args }));
    const t = results[0]!.token;
    expect(results).toEqual([
      { state: 'granted', owner: 'x', ttlMs: 3_000, token: t },
      { state: 'granted', owner: 'y', ttlMs: 3_000, token: t },
      { state: 'refused', owner: 'y', ttlMs: 3_000, token: t },
      { state: 'granted', owner: 'x', ttlMs: 8_000, token: t },
      { state: 'granted', owner: 'x', ttlMs: 8_000, token: t },
      { state: 'granted', owner: 'x', ttlMs: 0, token: t },
      { state: 'granted', owner: 'y', ttlMs: 0, token: t },
      { state: 'refused', owner: '', ttlMs: 0, token: t },
    ]);
  });

  it('refuses a reply that does not fit the request', async () => {
    const status: LockRequest = { operation: 'status', key };
    // A bare token answers only compact operations.
    expect(() => decodeReply(status, 5)).toThrow(CyRedisError);
    expect(() => decodeReply({ operation: 'fence', key, owner: 'x', floor: 1n }, 5)).toThrow(CyRedisError);
    expect(() => decodeReply(status, [1, 'x', 5])).toThrow(CyRedisError);
    expect(() => decodeReply(status, [1, 'x', 'ttl', 5])).toThrow(CyRedisError);
    expect(() => decodeReply({ operation: 'acquire', key, owner: 'x', ttlMs: 10 }, 'not a token')).toThrow(CyRedisError);
    expect(() => decodeBatch([status, status], [[0, '', 0, 0]])).toThrow(/1 results for 2 operations/);
    // The script's own reply for a status on a free key is the full form.
    expect(await run(status)).toEqual({ state: 'refused', owner: '', ttlMs: 0, token: 0n });
  });
});

describe.each(topologies)('the protocol module against semaphore.lua on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  let script: RegisteredScript;
  let prefix: string;
  let key: string;

  const call = async (request: SemaphoreRequest): Promise<unknown> =>
    scripts.executeScript(script, { keys: [request.key], args: encodeSemaphoreArgs(request) });

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript('cyredis:lock:semaphore-protocol-test', SEMAPHORE);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    key = `${prefix}{semaphore}:s`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('runs every operation: acquire, wait, extend, fence, status, resize, release', async () => {
    const take = (owner: string, count: number, operation: 'acquire' | 'wait' = 'acquire'): SemaphoreRequest => ({
      operation,
      key,
      owner,
      ttlMs: 5_000,
      count,
      permits: 3,
    });
    const a = decodePermitReply(take('a', 2), await call(take('a', 2)));
    expect(a).toEqual({ state: 'granted', count: 2, ttlMs: 5_000, token: expect.any(BigInt) as bigint });
    const token = a.state === 'granted' ? a.token : 0n;
    const refused = decodePermitReply(take('b', 2, 'wait'), await call(take('b', 2, 'wait')));
    expect({ ...refused, waitMs: 0 }).toEqual({ state: 'refused', available: 1, waitMs: 0, permits: 3 });
    expect(refused.state === 'refused' && refused.waitMs).toBeGreaterThan(0);
    const extend: SemaphoreRequest = { operation: 'extend', key, owner: 'a', ttlMs: 8_000 };
    expect(decodePermitReply(extend, await call(extend))).toEqual({ state: 'granted', count: 2, ttlMs: 8_000, token });
    const notHeld: SemaphoreRequest = { operation: 'extend', key, owner: 'b', ttlMs: 8_000 };
    expect(decodePermitReply(notHeld, await call(notHeld))).toEqual({ state: 'refused', available: 0, waitMs: 0, permits: 0 });
    // fence raises a live lease's token (never lowers it) and keeps its lease; refused for a non-holder.
    const fence = (owner: string, floor: bigint): SemaphoreRequest => ({ operation: 'fence', key, owner, floor });
    const lower = decodePermitReply(fence('a', 1n), await call(fence('a', 1n)));
    expect({ ...lower, ttlMs: 0 }).toEqual({ state: 'granted', count: 2, ttlMs: 0, token });
    expect(lower.state === 'granted' && lower.ttlMs).toBeGreaterThan(7_000);
    const raised = decodePermitReply(fence('a', token + 5n), await call(fence('a', token + 5n)));
    expect(raised.state === 'granted' && raised.token).toBe(token + 5n);
    expect(decodePermitReply(fence('b', token + 9n), await call(fence('b', token + 9n)))).toEqual({ state: 'refused', available: 0, waitMs: 0, permits: 0 });
    const fenced = token + 5n;
    const status = decodeStatusReply(await call({ operation: 'status', key, permits: 3 }));
    expect({ ...status, holders: status.holders.map((h) => ({ ...h, ttlMs: 0 })) }).toEqual({
      permits: 3,
      available: 1,
      token: fenced,
      holders: [{ owner: 'a', count: 2, ttlMs: 0 }],
    });
    expect(decodeResizeReply(await call({ operation: 'resize', key, permits: 4 }))).toEqual({ permits: 4, available: 2 });
    expect(decodeReleaseReply(await call({ operation: 'release', key, owner: 'a' }))).toBe(true);
    expect(decodeReleaseReply(await call({ operation: 'release', key, owner: 'a' }))).toBe(false);
    expect(decodeStatusReply(await call({ operation: 'status', key, permits: 3 }))).toEqual({ permits: 4, available: 4, token: fenced, holders: [] });
    // A granted acquire answers with its token alone (the count and ttl are the request's own).
    const raw = await call(take('z', 1));
    expect(typeof raw).toBe('number');
    expect(decodePermitReply(take('z', 1), raw)).toEqual({ state: 'granted', count: 1, ttlMs: 5_000, token: BigInt(raw as number) });
  });

  it('runs the batch form: operations in order, an error of its own failing one operation only', async () => {
    const other = `${prefix}{semaphore}:t`;
    const take = (k: string, owner: string, count: number): BatchableSemaphoreRequest => ({ operation: 'acquire', key: k, owner, ttlMs: 5_000, count, permits: 3 });
    const requests: BatchableSemaphoreRequest[] = [
      take(key, 'a', 2),
      take(key, 'b', 2),
      take(other, 'a', 1),
      take(key, 'a', 1),
      { operation: 'extend', key, owner: 'a', ttlMs: 8_000 },
      { operation: 'release', key: other, owner: 'a' },
    ];
    const { keys, args } = encodeSemaphoreBatch(requests);
    expect(args).toHaveLength(6 * requests.length);
    const replies = splitSemaphoreBatch(requests, await scripts.executeScript(script, { keys, args }));
    const a = decodePermitReply(requests[0]!, replies[0]);
    expect(a).toMatchObject({ state: 'granted', count: 2 });
    expect(decodePermitReply(requests[1]!, replies[1])).toMatchObject({ state: 'refused', available: 1, permits: 3 });
    expect(decodePermitReply(requests[2]!, replies[2])).toMatchObject({ state: 'granted', count: 1 });
    // 'a' holds 2 on key and asks for 1: that operation alone is an error.
    expect(replies[3]).toBeInstanceOf(Error);
    expect(String(replies[3])).toMatch(/holds 2 permit/);
    expect(decodePermitReply(requests[4]!, replies[4])).toMatchObject({ state: 'granted', count: 2, ttlMs: 8_000 });
    expect(decodeReleaseReply(replies[5])).toBe(true);
    expect(() => splitSemaphoreBatch(requests, replies.slice(1))).toThrow(CyRedisError);
  });

  it('deletes the key with the last lease only when nothing in it is needed any more', async () => {
    const take = (owner: string, permits = 3, extra: Partial<SemaphoreRequest> = {}): SemaphoreRequest =>
      ({ operation: 'acquire', key, owner, ttlMs: 5_000, count: 1, permits, ...extra }) as SemaphoreRequest;
    const release = (owner: string, permits?: number): SemaphoreRequest =>
      permits === undefined ? { operation: 'release', key, owner } : { operation: 'release', key, owner, permits };
    const exists = async () => redis.exists(key);
    const granted = async (request: SemaphoreRequest) => {
      const reply = decodePermitReply(request, await call(request));
      expect(reply.state).toBe('granted');
      return reply.state === 'granted' ? reply.token : 0n;
    };
    // The releaser names the key's permits: gone at once, and the next token is still greater.
    const first = await granted(take('a'));
    await granted(take('b'));
    expect(decodeReleaseReply(await call(release('a', 3)))).toBe(true);
    expect(await exists()).toBe(1);
    expect(decodeReleaseReply(await call(release('b', 3)))).toBe(true);
    expect(await exists()).toBe(0);
    expect(await granted(take('a'))).toBeGreaterThan(first);
    // Permits unknown (a raw release), or other than the key's (a resize by someone else): kept.
    expect(decodeReleaseReply(await call(release('a')))).toBe(true);
    expect(await exists()).toBe(1);
    await granted(take('a'));
    expect(decodeResizeReply(await call({ operation: 'resize', key, permits: 4 }))).toEqual({ permits: 4, available: 3 });
    expect(decodeReleaseReply(await call(release('a', 3)))).toBe(true);
    expect(await exists()).toBe(1);
    expect(decodeStatusReply(await call({ operation: 'status', key, permits: 3 })).permits).toBe(4);
    await redis.del(key);
    // A token fenced ahead of the server clock (Redlock) is kept for the next grant to exceed.
    const token = await granted(take('a'));
    const floor = token + 10_000_000_000n;
    expect(decodePermitReply({ operation: 'fence', key, owner: 'a', floor }, await call({ operation: 'fence', key, owner: 'a', floor }))).toMatchObject({ token: floor });
    expect(decodeReleaseReply(await call(release('a', 3)))).toBe(true);
    expect(await exists()).toBe(1);
    expect(await granted(take('b'))).toBeGreaterThan(floor);
    await redis.del(key);
    // A writer holding readers back (read-write form) keeps its mark.
    const rw = (owner: string, count: number, operation: 'acquire' | 'wait' = 'acquire'): SemaphoreRequest => ({
      operation, key, owner, ttlMs: 5_000, count, permits: 10, writerPreference: true,
    });
    await granted(rw('r1', 1));
    expect(decodePermitReply(rw('w', 10, 'wait'), await call(rw('w', 10, 'wait')))).toMatchObject({ state: 'refused' });
    expect(decodeReleaseReply(await call(release('r1', 10)))).toBe(true);
    expect(await exists()).toBe(1);
    expect(decodePermitReply(rw('r2', 1), await call(rw('r2', 1)))).toMatchObject({ state: 'refused' });
    await redis.del(key);
    // The batch form follows the same rule.
    await granted(take('a'));
    const batch: BatchableSemaphoreRequest[] = [
      { operation: 'release', key, owner: 'a', permits: 3 },
      { operation: 'acquire', key: `${prefix}{semaphore}:t`, owner: 'a', ttlMs: 5_000, count: 1, permits: 3 },
    ];
    const { keys, args } = encodeSemaphoreBatch(batch);
    const replies = splitSemaphoreBatch(batch, await scripts.executeScript(script, { keys, args }));
    expect(decodeReleaseReply(replies[0])).toBe(true);
    expect(await exists()).toBe(0);
  });

  it('runs the read-write form: a waiting writer holds new readers back until it is granted', async () => {
    const rw = (owner: string, count: number, operation: 'acquire' | 'wait' = 'acquire'): SemaphoreRequest => ({
      operation,
      key,
      owner,
      ttlMs: 5_000,
      count,
      permits: 10,
      writerPreference: true,
    });
    const take = async (request: SemaphoreRequest) => decodePermitReply(request, await call(request));
    expect(await take(rw('r1', 1))).toMatchObject({ state: 'granted', count: 1 });
    expect(await take(rw('w', 10, 'wait'))).toMatchObject({ state: 'refused', available: 9, permits: 10 });
    expect(await take(rw('r2', 1))).toMatchObject({ state: 'refused', available: 9 });
    expect(decodeReleaseReply(await call({ operation: 'release', key, owner: 'r1' }))).toBe(true);
    expect(await take(rw('w', 10, 'wait'))).toMatchObject({ state: 'granted', count: 10 });
    expect(decodeReleaseReply(await call({ operation: 'release', key, owner: 'w' }))).toBe(true);
    expect(await take(rw('r2', 1))).toMatchObject({ state: 'granted', count: 1 });
  });

  it('refuses a reply that does not fit the request', () => {
    const extend: SemaphoreRequest = { operation: 'extend', key, owner: 'a', ttlMs: 1_000 };
    expect(() => decodePermitReply(extend, 5)).toThrow(CyRedisError);
    expect(() => decodePermitReply(extend, [0, 'x', 0, 0])).toThrow(CyRedisError);
    expect(() => decodeReleaseReply('OK')).toThrow(CyRedisError);
    expect(() => decodeStatusReply([1, 2])).toThrow(CyRedisError);
    expect(() => decodeStatusReply([1, 2, 3, 'a', 1])).toThrow(CyRedisError);
    expect(() => decodeResizeReply([1])).toThrow(CyRedisError);
  });
});

describe.each(topologies)('the protocol module against fair_lock.lua on %s', (topology) => {
  let redis: Redis | Cluster;
  let scripts: LuaScriptManager;
  let script: RegisteredScript;
  let prefix: string;
  let key: string;

  const call = async (request: FairRequest): Promise<unknown> => scripts.executeScript(script, { keys: [request.key], args: encodeFairArgs(request) });

  beforeAll(() => {
    redis = connect(topology);
    scripts = new LuaScriptManager(redis);
    script = scripts.registerScript('cyredis:lock:fair-protocol-test', FAIR);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    key = `${prefix}{fair}:f`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('runs every operation: acquire, wait, leave, extend, status, release, force', async () => {
    const op = (operation: 'acquire' | 'wait' | 'extend', owner: string, ttlMs = 5_000): FairRequest => ({ operation, key, owner, ttlMs });
    const lease = async (request: FairRequest) => decodeFairReply(request, await call(request));
    const a = await lease(op('acquire', 'a'));
    expect(a).toEqual({ state: 'granted', owner: 'a', ttlMs: 5_000, token: expect.any(BigInt) as bigint });
    const b = await lease(op('wait', 'b'));
    expect({ ...b, ttlMs: 0 }).toEqual({ state: 'refused', owner: 'a', ttlMs: 0, token: a.token });
    expect(await lease(op('wait', 'c'))).toMatchObject({ state: 'refused', owner: 'a' });
    expect(decodeFairStatus(await call({ operation: 'status', key }))).toMatchObject({ state: 'granted', owner: 'a', token: a.token, waiting: 2 });
    const leave: FairRequest = { operation: 'leave', key, owner: 'c' };
    expect(decodeFairEnded(leave, await call(leave))).toBe(true);
    expect(decodeFairEnded(leave, await call(leave))).toBe(false);
    expect(await lease(op('extend', 'a', 8_000))).toEqual({ state: 'granted', owner: 'a', ttlMs: 8_000, token: a.token });
    const release: FairRequest = { operation: 'release', key, owner: 'a' };
    expect(decodeFairEnded(release, await call(release))).toBe(true);
    // Free, but b is first in line: a plain acquire by another owner is refused, b's is granted.
    expect(await lease(op('acquire', 'd'))).toMatchObject({ state: 'refused', owner: '' });
    const granted = await lease(op('wait', 'b'));
    expect(granted).toMatchObject({ state: 'granted', owner: 'b' });
    expect(granted.token).toBeGreaterThan(a.token);
    const force: FairRequest = { operation: 'force', key };
    expect(decodeFairEnded(force, await call(force))).toBe(true);
    expect(decodeFairStatus(await call({ operation: 'status', key }))).toEqual({ state: 'refused', owner: '', ttlMs: 0, token: granted.token, waiting: 0 });
  });

  it('refuses a reply that does not fit the request', () => {
    const release: FairRequest = { operation: 'release', key, owner: 'a' };
    expect(() => decodeFairEnded(release, 'OK')).toThrow(CyRedisError);
    expect(() => decodeFairReply(release, 7)).toThrow(CyRedisError);
    expect(() => decodeFairStatus([1, 'a', 5, 7])).toThrow(CyRedisError);
  });
});
