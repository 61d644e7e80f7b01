import 'reflect-metadata';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { SkipThrottle, Throttle, ThrottlerGuard, ThrottlerModule, type ThrottlerOptions, type ThrottlerStorage } from '@nestjs/throttler';
import { randomPrefix } from '@cyredis/testing';
import { connect, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CyRedisThrottlerStorage } from '../src/nestjs-throttler.js';

// A NestJS application (Express platform) with @nestjs/throttler's guard on CyRedisThrottlerStorage. The
// decorators are applied as plain calls, so the test needs no decorator compilation.

/** `@Get(path)` (and more method decorators) on `Class.prototype[name]`. */
function decorate(target: object, name: string, ...decorators: MethodDecorator[]): void {
  const descriptor = Object.getOwnPropertyDescriptor(target, name)!;
  for (const d of decorators) d(target, name, descriptor);
}

class AppController {
  open(): string {
    return 'open';
  }
  strict(): string {
    return 'strict';
  }
  free(): string {
    return 'free';
  }
}
Controller()(AppController);
decorate(AppController.prototype, 'open', Get('open'));
decorate(AppController.prototype, 'strict', Get('strict'), Throttle({ default: { limit: 1, ttl: 60_000 } }));
decorate(AppController.prototype, 'free', Get('free'), SkipThrottle());

// The storage is typed as Nest's own interface here: it must fit it.
async function startApp(storage: ThrottlerStorage, throttlers: ThrottlerOptions[]): Promise<{ app: INestApplication; url: string }> {
  class AppModule {}
  Module({
    imports: [ThrottlerModule.forRoot({ throttlers, storage })],
    controllers: [AppController],
    providers: [{ provide: APP_GUARD, useClass: ThrottlerGuard }],
  })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const { port } = (app.getHttpServer() as Server).address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}` };
}

describe.each(topologies)('@nestjs/throttler with CyRedisThrottlerStorage on %s', (topology) => {
  let redis: Redis | Cluster;
  let other: Redis | Cluster;

  beforeAll(() => {
    redis = connect(topology);
    other = connect(topology);
  });
  afterAll(async () => {
    await redis.quit();
    await other.quit();
  });

  it('limits per route and client, answers 429 with Retry-After, honours @Throttle and @SkipThrottle', async () => {
    const { app, url } = await startApp(new CyRedisThrottlerStorage(redis, { prefix: randomPrefix() }), [{ name: 'default', ttl: 60_000, limit: 3 }]);
    try {
      const replies = [];
      for (let i = 0; i < 4; i++) replies.push(await fetch(`${url}/open`));
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 429]);
      expect(await replies[0]!.text()).toBe('open');
      expect(replies[0]!.headers.get('x-ratelimit-limit')).toBe('3');
      expect(replies[0]!.headers.get('x-ratelimit-remaining')).toBe('2');
      expect(Number(replies[0]!.headers.get('x-ratelimit-reset'))).toBeGreaterThanOrEqual(59);
      // Refused: blocked for blockDuration (Nest's default: the ttl), said in Retry-After.
      expect(Number(replies[3]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
      // @Throttle on the route: 1 per minute.
      expect([(await fetch(`${url}/strict`)).status, (await fetch(`${url}/strict`)).status]).toEqual([200, 429]);
      // @SkipThrottle: never counted.
      for (let i = 0; i < 5; i++) expect((await fetch(`${url}/free`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('several named throttlers each count; two application instances share the budget', async () => {
    const prefix = randomPrefix();
    const throttlers = [
      { name: 'short', ttl: 60_000, limit: 4 },
      { name: 'long', ttl: 3_600_000, limit: 2 },
    ];
    const a = await startApp(new CyRedisThrottlerStorage(redis, { prefix }), throttlers);
    const b = await startApp(new CyRedisThrottlerStorage(other, { prefix }), throttlers);
    try {
      const first = await fetch(`${a.url}/open`);
      expect(first.status).toBe(200);
      expect(first.headers.get('x-ratelimit-remaining-short')).toBe('3');
      expect(first.headers.get('x-ratelimit-remaining-long')).toBe('1');
      expect((await fetch(`${b.url}/open`)).status).toBe(200);
      const refused = await fetch(`${b.url}/open`);
      expect(refused.status).toBe(429);
      // The long throttler refuses: blocked for its ttl (an hour).
      expect(Number(refused.headers.get('retry-after-long'))).toBeGreaterThan(3_000);
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });

  it('blockDuration keeps a client refused longer than the window would', async () => {
    const storage = new CyRedisThrottlerStorage(redis, { prefix: randomPrefix(), algorithm: 'gcra' });
    const { app, url } = await startApp(storage, [{ name: 'default', ttl: 1000, limit: 1, blockDuration: 120_000 }]);
    try {
      expect((await fetch(`${url}/open`)).status).toBe(200);
      const refused = await fetch(`${url}/open`);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(119);
    } finally {
      await app.close();
    }
  });

  it('refuses bad storage options, naming them', () => {
    // @ts-expect-error -- not an option
    expect(() => new CyRedisThrottlerStorage(redis, { ttl: 5 })).toThrow(expect.objectContaining({ argument: 'options.ttl' }) as Error);
  });
});
