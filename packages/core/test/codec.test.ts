import { InvalidArgumentError } from '../src/index.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultCodec } from '../src/index.js';

const roundTrip = (value: unknown) => defaultCodec.decode(defaultCodec.encode(value));

/** The `leaf` at the bottom of a chain of `{ next }` objects. */
function deepLeaf(node: Record<string, unknown>): { n: number } {
  let at = node;
  while ('next' in at) at = at.next as Record<string, unknown>;
  return at.leaf as { n: number };
}

describe('defaultCodec', () => {
  it('round-trips Date, Map, Set, BigInt, Buffer and the numbers JSON loses', () => {
    const value = {
      when: new Date('2026-01-02T03:04:05.678Z'),
      invalid: new Date(Number.NaN),
      map: new Map<unknown, unknown>([['a', 1n], [2, new Set([new Date(0)])]]),
      set: new Set(['x', 'y']),
      big: -(2n ** 100n),
      buf: Buffer.from([0, 255, 1, 128]),
      nums: [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1.5],
      nested: [{ deep: new Map([['k', Buffer.from('v')]]) }],
      nil: null,
      text: 'plain "$t" text',
    };
    expect(roundTrip(value)).toEqual(value);
    expect(Object.is((roundTrip(-0) as number), -0)).toBe(true);
    expect(roundTrip('just a string')).toBe('just a string');
  });

  it('never mistakes user data for its own tags', () => {
    const tricky = { $t: 'D', v: '5', inner: { $t: 'B', v: 'AAAA' }, list: [{ $t: 'n', v: '1' }] };
    expect(roundTrip(tricky)).toEqual(tricky);
  });

  it('round-trips arbitrary JSON-like values', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(roundTrip(value)).toEqual(value);
      }),
    );
  });

  it('tags what plain-looking data hides, however deep (the plain JSON fast path bails out)', () => {
    const deep: Record<string, unknown> = { leaf: { n: -0, when: new Date(5) } };
    let nested = deep;
    for (let i = 0; i < 100; i++) nested = { next: nested };
    const value = {
      list: [1, 'a', null, true, { x: Number.NaN }],
      user: { inner: { $t: 'D', v: '1' } },
      instance: new (class Point {
        x = 1;
      })(),
      gone: undefined,
      nested,
    };
    const back = roundTrip(value) as typeof value;
    expect(back).toEqual({ ...value, instance: { x: 1 }, gone: undefined });
    expect(Object.hasOwn(back, 'gone')).toBe(false);
    expect(Object.is(deepLeaf(back.nested).n, -0)).toBe(true);
    expect(defaultCodec.encode({ a: [1, 'b'], c: { d: null } })).toBe('{"a":[1,"b"],"c":{"d":null}}');
  });

  it('refuses what it cannot encode with InvalidArgumentError', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    for (const bad of [undefined, () => 1, Symbol('s'), { f: () => 1 }, circular]) {
      expect(() => defaultCodec.encode(bad)).toThrow(InvalidArgumentError);
    }
  });
});
