// The demo's second process: a worker for the queue section's `reports` queue, which prints nothing.
import { JobQueue, Worker } from '@cyredis/queue';
import { Redis } from 'ioredis';

const [url, prefix] = process.argv.slice(2) as [string, string];
const redis = new Redis(url);
const queue = new JobQueue<{ rows: number }, { pages: number }>(redis, 'reports', { prefix });
const worker = new Worker(queue, async (job) => {
  await job.updateProgress(50);
  await job.log(`rendering ${job.data.rows} rows in process ${process.pid}`);
  return { pages: Math.ceil(job.data.rows / 40) };
});
process.on('SIGTERM', () => void worker.close().then(() => redis.quit()));
