// Lock key names: a name's own hash tag decides its slot, so names that share a tag share a slot; readable back.
import { KeySpace, unescapeId } from '@cyredis/core';

/**
 * The hash tag Redis finds in `text`: between its first `{` and the first `}` after that, when not empty;
 * undefined when Redis hashes the whole text.
 */
export function hashTagOf(text: string): string | undefined {
  const open = text.indexOf('{');
  if (open < 0) return undefined;
  const close = text.indexOf('}', open + 1);
  return close > open + 1 ? text.slice(open + 1, close) : undefined;
}

/**
 * The keys of a manager's locks. A name without a hash tag: `<prefix>:lock:{<escaped name>}:<suffix>`, its
 * own slot. A name with one (`{acct}:1`, Redis's rule): `<prefix>:lock:{<tag>}:{<escaped name>}:<suffix>`,
 * so it hashes on the tag as any key of the application's with that tag does, and every lock name that
 * carries the tag falls in one slot (one script call for `acquireMany` on a cluster). The escaped name
 * (`escapeId`: no braces left) keeps every key unique and the name readable back; the two forms never meet,
 * as a key of the first holds one `}` and of the second two.
 */
export class LockKeys {
  private readonly space: KeySpace;

  constructor(prefix: string | undefined) {
    this.space = new KeySpace('lock', prefix);
  }

  /** First part of every key (validated: no braces). */
  get prefix(): string {
    return this.space.prefix;
  }

  /** The key of `name`'s lock of the kind `suffix`; `argument` names `name` when it is refused. */
  key(name: string, suffix: string, argument: string): string {
    const tag = this.space.tag(name, argument);
    const own = hashTagOf(name);
    return own === undefined ? `${this.space.prefix}:lock:${tag}:${suffix}` : `${this.space.prefix}:lock:{${own}}:${tag}:${suffix}`;
  }
}

/**
 * Reads a lock key back: `rest` is what follows `<prefix>:lock:` in it. The name and the suffix, or
 * undefined for a key no `LockKeys` builds.
 */
export function parseLockKey(rest: string): { name: string; suffix: string } | undefined {
  const close = rest.lastIndexOf('}');
  const open = rest.lastIndexOf('{', close);
  if (open < 0 || rest[close + 1] !== ':') return undefined;
  const name = unescapeId(rest.slice(open + 1, close));
  const suffix = rest.slice(close + 2);
  // A tagged name's key starts with its tag; anything else before the name is not a key of ours.
  const own = hashTagOf(name);
  const expected = own === undefined ? '' : `{${own}}:`;
  return rest.slice(0, open) === expected && name.length > 0 ? { name, suffix } : undefined;
}
