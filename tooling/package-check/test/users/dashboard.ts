import { Redis } from 'ioredis';
import { JobQueue } from '@cyredis/queue';
import { serveDashboard } from '@cyredis/dashboard';
import { CyredisAdapter } from '@cyredis/dashboard/bull-board';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = process.env.KEY_PREFIX ?? 'user';
const queue = new JobQueue<{ to: string }>(redis, 'emails', { prefix });
await queue.push({ to: 'a@example.com' }, { id: 'a' });

const dashboard = await serveDashboard({ redis, prefix, queues: ['emails'], port: 0, readOnly: true });
const page = await fetch(dashboard.url);
if (page.status !== 200 || !(await page.text()).includes('assets/app.js')) throw new Error('page');
const script = await fetch(new URL('assets/app.js', dashboard.url));
if (!(await script.text()).includes('EventSource')) throw new Error('script');
const queues = (await (await fetch(new URL('api/queues', dashboard.url))).json()) as { name: string; counts: { waiting: number } }[];
if (queues[0]?.counts.waiting !== 1) throw new Error(JSON.stringify(queues));
const refused = await fetch(new URL('api/queues/emails/pause', dashboard.url), { method: 'POST', headers: { 'x-cyredis-dashboard': '1' } });
if (refused.status !== 403) throw new Error(`read-only: ${refused.status}`);
await dashboard.close();

const adapter = new CyredisAdapter(queue);
const counts = await adapter.getJobCounts();
if (adapter.getName() !== 'emails' || counts.waiting !== 1) throw new Error(JSON.stringify(counts));
await queue.remove('a');
redis.disconnect();
