// Allow and deny lists kept in Redis (each id's policy hash), shared by every process whose limiter sets `policies`.
import { assertNonEmptyString, InvalidArgumentError, type RedisClient } from '@cyredis/core';

/** What a list needs from its limiter: where an id's policy lives and how to run one command with a deadline. */
export interface PolicyStore {
  /** Throws unless the limiter reads policies in its checks. */
  assertPolicies(): void;
  policyKey(id: string): string;
  /** Runs one Redis command under the limiter's `timeoutMs`; `what` names it in errors. */
  command<T>(what: string, run: (client: RedisClient) => Promise<T>): Promise<T>;
  /** Called once an id's policy changed, so this process's cache of refusals forgets it. */
  changed(id: string): void;
}

/**
 * The ids on one list: on the allow list a check admits without consuming anything; on the deny list it
 * refuses with `retryAfterMs: Infinity` (deny wins when an id is on both).
 */
export class IdList {
  constructor(
    private readonly field: 'allow' | 'deny',
    private readonly store: PolicyStore,
  ) {}

  /** Puts `ids` on the list; every process's next check of them sees it. */
  async add(...ids: string[]): Promise<void> {
    this.check(ids);
    await Promise.all(ids.map((id) => this.store.command(`${this.field} list add of "${id}"`, (client) => client.hset(this.store.policyKey(id), this.field, '1'))));
    for (const id of ids) this.store.changed(id);
  }

  /** Takes `ids` off the list (ids not on it are ignored). */
  async remove(...ids: string[]): Promise<void> {
    this.check(ids);
    await Promise.all(ids.map((id) => this.store.command(`${this.field} list removal of "${id}"`, (client) => client.hdel(this.store.policyKey(id), this.field))));
    for (const id of ids) this.store.changed(id);
  }

  /** Whether `id` is on the list. */
  async has(id: string): Promise<boolean> {
    this.check([id]);
    return (await this.store.command(`${this.field} list lookup of "${id}"`, (client) => client.hexists(this.store.policyKey(id), this.field))) === 1;
  }

  private check(ids: unknown[]): void {
    this.store.assertPolicies();
    ids.forEach((id, i) => {
      if (typeof id !== 'string') throw new InvalidArgumentError(`ids[${i}]`, `a ${this.field} list entry must be a string, got ${id === null ? 'null' : typeof id}`);
      assertNonEmptyString(`ids[${i}]`, id);
    });
  }
}
