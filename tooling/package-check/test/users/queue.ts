import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LuaScriptManager } from '@cyredis/core';
import { JobQueue, Worker } from '@cyredis/queue';

interface Email {
  to: string;
}
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = process.env.KEY_PREFIX ?? 'user';
const queue = new JobQueue<Email>(redis, 'emails', { maxRetries: 1, backoff: { baseMs: 10, maxMs: 100 }, prefix });
const id = await queue.push({ to: 'a@example.com' }, { id: 'job_1', priority: 5 });
const jobs = await queue.pop(10, { leaseMs: 30_000 });
if (id !== 'job_1' || jobs.length !== 1 || jobs[0]?.data.to !== 'a@example.com') throw new Error(JSON.stringify(jobs));
if ((await queue.complete(jobs[0])) !== true) throw new Error('complete');
const done: string[] = [];
const worker = new Worker(queue, (job) => {
  done.push(job.id);
  return Promise.resolve();
}, { concurrency: 2, leaseMs: 10_000 });
await queue.pushBulk([{ data: { to: 'b' } }, { data: { to: 'c' }, priority: 9 }]);
const deadline = Date.now() + 10_000;
while (done.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
await worker.close();
if (done.length !== 2) throw new Error(`worker ran ${done.length}`);

const lua = readFileSync(fileURLToPath(import.meta.resolve('@cyredis/queue/lua/job_queue.lua')), 'utf8');
const scripts = new LuaScriptManager(redis);
const raw = scripts.registerScript('job_queue', lua);
const keys = ['queue', 'processing', 'failed', 'dead'].map((k) => `${prefix}:{q}:${k}`);
const now = Math.floor(Date.now() / 1000);
await scripts.executeScript(raw, { keys, args: ['PUSH', now, 'job_123', 'job_data', 5, 3, 0] });
const popped = await scripts.executeScript<unknown[]>(raw, { keys, args: ['POP', now, 5] });
if (!JSON.stringify(popped).includes('job_123')) throw new Error(`raw POP: ${JSON.stringify(popped)}`);
await (queue as unknown as { close?: () => Promise<void> }).close?.();
redis.disconnect();
