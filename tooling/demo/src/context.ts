import type { Redis } from 'ioredis';

export interface DemoContext {
  redis: Redis;
  /** Prefix for every key the demo writes, so it never meets a user's data. */
  prefix: string;
  log: (line: string) => void;
}
