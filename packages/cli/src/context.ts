// What a command runs with: the global options, one lazily opened Redis connection, output, confirmation and Ctrl-C.
import { createInterface } from 'node:readline/promises';
import type { RedisClient, RegistryEntry, RegistryListOptions } from '@cyredis/core';
import { connect, type ConnectionSettings } from './connection.js';
import { CliError, EXIT } from './errors.js';
import { toJson } from './output.js';

/** The options every command takes (see `cyredis --help`). */
export interface GlobalOptions extends ConnectionSettings {
  /** The key prefix the objects were created with. */
  prefix: string;
  /** Print JSON instead of tables. */
  json: boolean;
}

/** Something text is written to (a stream, or a test's buffer). */
export interface Sink {
  /** Writes `text` as it is. */
  write(text: string): unknown;
}

/** Where a run reads and writes, and how it learns of Ctrl-C: the process's own, or a test's. */
export interface Io {
  /** Receives the command's output. */
  stdout: Sink;
  /** Receives error messages and prompts. */
  stderr: Sink;
  /** Answers prompts. */
  stdin: NodeJS.ReadableStream;
  /** Whether a person is at a terminal to answer a prompt. */
  interactive: boolean;
  /** Resolves on Ctrl-C (SIGINT) or SIGTERM; only a command that follows something listens for them. */
  interrupted(): Promise<void>;
}

/** Registry entries pages of `REGISTRY_PAGE`; a registry holds at most 10 000 names. */
const REGISTRY_PAGE = 1000;
const REGISTRY_MAX_PAGES = 10;

/** One run of one command. */
export class Context {
  private client: Promise<RedisClient> | undefined;
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  constructor(
    /** The global options as given (with defaults filled in). */
    readonly options: GlobalOptions,
    /** Streams and signals of this run. */
    readonly io: Io,
  ) {}

  /** The connection, opened on first use; an unreachable server rejects at once. */
  redis(): Promise<RedisClient> {
    this.client ??= connect(this.options);
    return this.client;
  }

  /** Prints `value` as JSON with `--json`, else what `human` renders. */
  print<T>(value: T, human: (value: T) => string): void {
    this.io.stdout.write(`${this.options.json ? toJson(value) : human(value)}\n`);
  }

  /** Prints one line as it comes (an event as it happens): one JSON document per line with `--json`. */
  stream<T>(value: T, human: (value: T) => string): void {
    this.io.stdout.write(`${this.options.json ? JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) : human(value)}\n`);
  }

  /**
   * Goes on only when the destructive `action` is confirmed: `--yes`, or `y` at the prompt on a terminal.
   * Throws `CliError` (exit code 6) otherwise; without a terminal it never waits for an answer.
   */
  async confirm(action: string, yes: boolean): Promise<void> {
    if (yes) return;
    if (!this.io.interactive) throw new CliError(`refusing to ${action} without --yes (no terminal to ask)`, EXIT.notConfirmed);
    const prompt = createInterface({ input: this.io.stdin, output: this.io.stderr as NodeJS.WritableStream });
    try {
      const answer = await prompt.question(`Really ${action}? [y/N] `);
      if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(`did not ${action}: not confirmed`, EXIT.notConfirmed);
    } finally {
      prompt.close();
    }
  }

  /** Runs `cleanup` when the command ends (closing what a package object opened). */
  onClose(cleanup: () => Promise<unknown>): void {
    this.cleanups.push(cleanup);
  }

  /**
   * Whether `name` is in a registry (`JobQueue.list`, `RateLimiter.list`, `SmartCache.list`) under the
   * prefix: reads it a page at a time (at most 10 000 names).
   */
  async isRegistered(list: (redis: RedisClient, options: RegistryListOptions) => Promise<RegistryEntry[]>, name: string): Promise<boolean> {
    const redis = await this.redis();
    for (let page = 0; page < REGISTRY_MAX_PAGES; page++) {
      const entries = await list(redis, { prefix: this.options.prefix, limit: REGISTRY_PAGE, offset: page * REGISTRY_PAGE, timeoutMs: this.options.timeoutMs });
      if (entries.some((e) => e.name === name)) return true;
      if (entries.length < REGISTRY_PAGE) return false;
    }
    return false;
  }

  /** Closes what the command opened, then the connection. */
  async close(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) await cleanup().catch(() => undefined);
    const client = await this.client?.catch(() => undefined);
    if (client !== undefined) await client.quit().catch(() => client.disconnect());
  }
}
