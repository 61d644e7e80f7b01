// Live state of the shown queues: one QueueEvents per queue feeds the counts, the throughput per minute and
// the job updates pushed to every open page over server-sent events, so no page polls Redis.
import type { ServerResponse } from 'node:http';
import { QueueEvents, type JobQueue, type QueueStats } from '@cyredis/queue';
import { head, toJson } from './http.js';

/** Minutes of throughput kept and shown. */
export const THROUGHPUT_MINUTES = 15;
const MINUTE_MS = 60_000;
/** Least time between two reads of one queue's counts while its events keep coming. */
const COUNTS_EVERY_MS = 250;
/** Queues followed at most: each reader holds its own connection to Redis. */
export const MAX_FOLLOWED = 100;
/** A comment line this often keeps proxies from closing an idle event stream. */
const KEEPALIVE_MS = 15_000;

const JOB_EVENTS = ['added', 'delayed', 'waiting', 'active', 'progress', 'completed', 'retrying', 'dead', 'removed', 'stalled'] as const;
const QUEUE_EVENTS = ['paused', 'resumed', 'drained'] as const;

/** Jobs finished per minute over the last `THROUGHPUT_MINUTES`, oldest minute first. */
export interface Throughput {
  /** Jobs completed in each minute. */
  completed: number[];
  /** Jobs dead-lettered in each minute. */
  dead: number[];
}

/** Completions and deaths counted by the minute they happened (the event's stream id is its server time). */
class MinuteCounts {
  private readonly completed = new Map<number, number>();
  private readonly dead = new Map<number, number>();

  add(kind: 'completed' | 'dead', eventId: string): void {
    const minute = Math.floor(Number(eventId.split('-')[0]) / MINUTE_MS);
    const counts = this[kind];
    counts.set(minute, (counts.get(minute) ?? 0) + 1);
    for (const m of counts.keys()) if (m <= minute - THROUGHPUT_MINUTES) counts.delete(m);
  }

  read(nowMs: number): Throughput {
    const last = Math.floor(nowMs / MINUTE_MS);
    const minutes = Array.from({ length: THROUGHPUT_MINUTES }, (_, i) => last - THROUGHPUT_MINUTES + 1 + i);
    return { completed: minutes.map((m) => this.completed.get(m) ?? 0), dead: minutes.map((m) => this.dead.get(m) ?? 0) };
  }
}

/** One followed queue: its reader, its minute counts, and a pending counts read. */
interface Followed {
  events: QueueEvents;
  minutes: MinuteCounts;
  countsTimer: NodeJS.Timeout | undefined;
}

/** Follows queues on demand and pushes what changes to the connected pages. */
export class LiveQueues {
  private readonly followed = new Map<string, Followed>();
  private readonly clients = new Set<ServerResponse>();
  private keepalive: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly queueOf: (name: string) => JobQueue,
    private readonly prefix: string | undefined,
  ) {}

  /**
   * Starts following `name` (once): its reader starts `THROUGHPUT_MINUTES` back in the stream, so the
   * throughput is filled from the events Redis still holds. Past `MAX_FOLLOWED` queues, later ones show
   * counts read on request only.
   */
  follow(name: string): void {
    if (this.closed || this.followed.has(name) || this.followed.size >= MAX_FOLLOWED) return;
    const start = `${Date.now() - THROUGHPUT_MINUTES * MINUTE_MS}-0`;
    const events = new QueueEvents(this.queueOf(name).redis, name, { prefix: this.prefix, lastEventId: start, blockMs: 5000 });
    const entry: Followed = { events, minutes: new MinuteCounts(), countsTimer: undefined };
    this.followed.set(name, entry);
    // A failed read is retried by the reader itself; the page keeps its last counts meanwhile.
    events.on('error', () => undefined);
    events.on('completed', (e) => entry.minutes.add('completed', e.id));
    events.on('dead', (e) => entry.minutes.add('dead', e.id));
    for (const kind of JOB_EVENTS) {
      events.on(kind, (e: { id: string; jobId: string }) => {
        this.broadcast('job', { queue: name, jobId: e.jobId, event: kind });
        this.countsSoon(name, entry);
      });
    }
    for (const kind of QUEUE_EVENTS) events.on(kind, () => this.countsSoon(name, entry));
  }

  /** Jobs finished per minute of a followed queue (zeros for one not followed yet). */
  throughput(name: string): Throughput {
    return (this.followed.get(name)?.minutes ?? new MinuteCounts()).read(Date.now());
  }

  /** Turns the reply into an event stream that gets every later update, until the page goes away. */
  subscribe(res: ServerResponse): void {
    head(res, 200, { 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': connected\n\n');
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
    this.keepalive ??= setInterval(() => {
      for (const client of this.clients) client.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  /** Stops every reader and ends every event stream. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.keepalive);
    for (const client of this.clients) client.end();
    this.clients.clear();
    const readers = [...this.followed.values()];
    this.followed.clear();
    for (const entry of readers) clearTimeout(entry.countsTimer);
    await Promise.all(readers.map((entry) => entry.events.close()));
  }

  /** Reads the queue's counts once the burst of events settles a little, and sends them with the throughput. */
  private countsSoon(name: string, entry: Followed): void {
    if (entry.countsTimer !== undefined || this.clients.size === 0) return;
    entry.countsTimer = setTimeout(() => {
      entry.countsTimer = undefined;
      const queue = this.queueOf(name);
      Promise.all([queue.stats(), queue.isPaused()])
        .then(([counts, paused]: [QueueStats, boolean]) => this.broadcast('counts', { queue: name, counts, paused, throughput: this.throughput(name) }))
        // The next event tries again; a page keeps the counts it has.
        .catch(() => undefined);
    }, COUNTS_EVERY_MS);
  }

  private broadcast(type: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const frame = `event: ${type}\ndata: ${toJson(data)}\n\n`;
    for (const client of this.clients) client.write(frame);
  }
}
