import calculateSlot from 'cluster-key-slot';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOneOf,
  assertPositiveMs,
  escapeId,
  InvalidArgumentError,
  KeySpace,
  MAX_ID_LENGTH,
  pairsToRecord,
  toBigInt,
  toNumber,
  toOptionalString,
  unescapeId,
} from '../src/index.js';

describe('KeySpace', () => {
  it('puts every key of one object under one hash tag with the prefix and kind', () => {
    const ks = new KeySpace('rl');
    expect(ks.key('user:123', 'w')).toBe('cyredis:rl:{user:123}:w');
    expect(ks.keys('user:123', ['a', 'b'])).toEqual(['cyredis:rl:{user:123}:a', 'cyredis:rl:{user:123}:b']);
    expect(new KeySpace('lock', 'app').key('x', 'l')).toBe('app:lock:{x}:l');
  });

  it('escapes braces so no id moves its keys to another slot or meets another id', () => {
    const ks = new KeySpace('c');
    fc.assert(
      fc.property(fc.string({ minLength: 1, unit: 'binary' }), fc.string({ minLength: 1, unit: 'binary' }), (a, b) => {
        const [ka1, ka2] = ks.keys(a, ['x', 'y:z']);
        expect(calculateSlot(ka1!)).toBe(calculateSlot(ka2!));
        expect(calculateSlot(ka1!)).toBe(calculateSlot(ks.tag(a)));
        if (a !== b) {
          expect(ks.key(a, 'x')).not.toBe(ks.key(b, 'x'));
          expect(escapeId(a)).not.toBe(escapeId(b));
        }
      }),
    );
    expect(ks.key('a}b{c%', 'x')).toBe('cyredis:c:{a%7Db%7Bc%25}:x');
  });

  it('unescapeId gives back the id escapeId was given', () => {
    const unit = fc.constantFrom('%', '{', '}', '7', 'B', 'D', '2', '5', 'a');
    fc.assert(
      fc.property(fc.string({ unit }), (id) => {
        expect(unescapeId(escapeId(id))).toBe(id);
      }),
    );
    expect(unescapeId('a%7Db%7Bc%25')).toBe('a}b{c%');
    expect(unescapeId('%257B')).toBe('%7B');
  });

  it('refuses empty and over-long ids and prefixes with braces', () => {
    const ks = new KeySpace('c');
    expect(() => ks.key('', 'x')).toThrow(InvalidArgumentError);
    expect(() => ks.key('x'.repeat(MAX_ID_LENGTH + 1), 'x', 'userId')).toThrow(/userId/);
    expect(ks.key('x'.repeat(10_240), 'x')).toHaveLength(10_240 + 'cyredis:c:{}:x'.length);
    expect(() => new KeySpace('c', 'a{b')).toThrow(InvalidArgumentError);
    expect(() => new KeySpace('c', '')).toThrow(InvalidArgumentError);
  });
});

describe('validators', () => {
  it('accept good values and name the argument on bad ones', () => {
    expect(() => assertNonEmptyString('name', 'ok')).not.toThrow();
    expect(() => assertInteger('limit', 3, { min: 1 })).not.toThrow();
    expect(() => assertPositiveMs('ttlMs', 0.5)).not.toThrow();
    const bad: [() => void, string][] = [
      [() => assertNonEmptyString('name', ''), 'name'],
      [() => assertNonEmptyString('name', 3), 'name'],
      [() => assertInteger('limit', 1.5), 'limit'],
      [() => assertInteger('limit', 0, { min: 1 }), 'limit'],
      [() => assertInteger('limit', 11, { max: 10 }), 'limit'],
      [() => assertFiniteNumber('n', Number.NaN), 'n'],
      [() => assertFiniteNumber('n', Number.NEGATIVE_INFINITY), 'n'],
      [() => assertFiniteNumber('n', '1'), 'n'],
      [() => assertPositiveMs('ttlMs', 0), 'ttlMs'],
      [() => assertPositiveMs('ttlMs', -1), 'ttlMs'],
      [() => assertOneOf('mode', 'x', ['a', 'b']), 'mode'],
    ];
    for (const [fn, argument] of bad) {
      expect(fn).toThrow(InvalidArgumentError);
      try {
        fn();
      } catch (err) {
        expect((err as InvalidArgumentError).argument).toBe(argument);
        expect((err as Error).message.startsWith(`${argument}:`)).toBe(true);
      }
    }
  });
});

describe('reply parsing', () => {
  it('reads numbers, bigints, optional strings and field pairs', () => {
    expect(toNumber(3)).toBe(3);
    expect(toNumber('2.5')).toBe(2.5);
    expect(() => toNumber('x')).toThrow();
    expect(toBigInt('9007199254740993')).toBe(9007199254740993n);
    expect(toBigInt(7)).toBe(7n);
    expect(toOptionalString(null)).toBeUndefined();
    expect(toOptionalString('v')).toBe('v');
    expect(pairsToRecord(['a', '1', 'b', 2])).toEqual({ a: '1', b: '2' });
    expect(() => pairsToRecord(['a'])).toThrow();
  });
});
