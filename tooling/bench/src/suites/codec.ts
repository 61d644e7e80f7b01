import { isDeepStrictEqual } from 'node:util';
import { defaultCodec } from '@cyredis/core';
import { Packr } from 'msgpackr';
import type { BenchCase, BenchGroup, BenchSuite } from '../harness.js';

/**
 * The value codec (core's `defaultCodec`, used by the cache and the queue) against msgpackr with its record
 * and structured-clone extensions, as BullMQ ships it, on typical job payloads: size and encode + decode
 * speed. Our scripts store and return text (replies are read as UTF-8), so a binary codec needs base64 to
 * pass through them; both msgpackr forms are measured. Plain JSON is the lossy reference the queue had.
 */

interface Contender {
  name: string;
  encode: (value: unknown) => string | Buffer;
  decode: (stored: string | Buffer) => unknown;
}

// One Packr per process, no shared structures: each message carries its own record definitions, as a job
// read by another process (that never saw earlier messages) must.
const packr = new Packr({ useRecords: true, structuredClone: true });

const contenders: Contender[] = [
  { name: 'core defaultCodec (text)', encode: (v) => defaultCodec.encode(v), decode: (s) => defaultCodec.decode(s as string) },
  { name: 'msgpackr records + structuredClone (binary)', encode: (v) => packr.pack(v), decode: (s) => packr.unpack(s as Buffer) as unknown },
  {
    name: 'msgpackr records + structuredClone, base64 text',
    encode: (v) => packr.pack(v).toString('base64'),
    decode: (s) => packr.unpack(Buffer.from(s as string, 'base64')) as unknown,
  },
  { name: 'JSON (lossy: Dates come back strings)', encode: (v) => JSON.stringify(v), decode: (s) => JSON.parse(s as string) as unknown },
];

const at = new Date(1_767_225_600_000);

/**
 * The payloads: a small job, a ~1 KB job and an array of 100 records, each with Dates; and the small and
 * ~1 KB jobs without them (plain JSON data, the case where the default codec skips its tagging pass).
 */
function payloads(): [string, unknown][] {
  const small = { orderId: 'order-123', userId: 42, amount: 19.99, createdAt: at, tags: ['new', 'paid'] };
  const kilobyte = {
    id: 'evt-0001',
    type: 'invoice.paid',
    createdAt: at,
    dueAt: new Date(at.getTime() + 86_400_000),
    customer: { id: 'cus_81', name: 'Ada Lovelace', email: 'ada@example.com', address: { line1: '12 Analytical Row', city: 'London', postcode: 'N1 7AA', country: 'GB' } },
    lines: Array.from({ length: 8 }, (_, i) => ({ sku: `SKU-${1000 + i}`, description: `Line item number ${i}`, quantity: i + 1, unitPrice: 4.5 * (i + 1) })),
    note: 'Thank you for your business. '.repeat(6),
    flags: { retried: false, manual: true, priority: 3 },
  };
  const records = Array.from({ length: 100 }, (_, i) => ({ id: i, name: `user${i}`, score: i * 1.5, active: i % 2 === 0, seenAt: new Date(at.getTime() + i) }));
  const plainSmall = { ...small, createdAt: at.getTime() };
  const plainKilobyte = { ...kilobyte, createdAt: at.getTime(), dueAt: at.getTime() + 86_400_000 };
  return [
    ['small object with a Date', small],
    [`~${defaultCodec.encode(kilobyte).length}-byte object with Dates`, kilobyte],
    ['array of 100 records with Dates', records],
    ['small object, no Dates', plainSmall],
    [`~${defaultCodec.encode(plainKilobyte).length}-byte object, no Dates`, plainKilobyte],
  ];
}

function byteLength(stored: string | Buffer): number {
  return typeof stored === 'string' ? Buffer.byteLength(stored) : stored.length;
}

/** Encode + decode round trips per second, for `durationMs` of one CPU after a short warm-up. */
function roundTrips(c: Contender, value: unknown, durationMs: number): number {
  const run = (ms: number) => {
    const deadline = performance.now() + ms;
    let n = 0;
    while (performance.now() < deadline) {
      for (let k = 0; k < 64; k++) c.decode(c.encode(value));
      n += 64;
    }
    return n;
  };
  run(Math.min(100, durationMs / 5));
  const start = performance.now();
  const n = run(durationMs);
  return (n / (performance.now() - start)) * 1000;
}

const suite: BenchSuite = {
  name: 'codec',
  groups: ({ durationMs }) => {
    const groups: BenchGroup[] = [];
    for (const [label, value] of payloads()) {
      // Every lossless contender must give the Dates back as Dates.
      for (const c of contenders.slice(0, 3)) {
        if (!isDeepStrictEqual(c.decode(c.encode(value)), value)) throw new Error(`${c.name} does not round-trip the ${label}`);
      }
      const speed: BenchCase[] = contenders.map((c) => ({
        name: c.name,
        unit: 'round trips/s',
        higherIsBetter: true,
        sample: () => Promise.resolve(roundTrips(c, value, durationMs)),
      }));
      const size: BenchCase[] = contenders.map((c) => ({
        name: c.name,
        unit: 'bytes',
        higherIsBetter: false,
        sample: () => Promise.resolve(byteLength(c.encode(value))),
      }));
      groups.push({ title: `${label}: encode + decode (round trips/s)`, cases: speed }, { title: `${label}: stored size (bytes)`, cases: size });
    }
    return Promise.resolve(groups);
  },
};

export default suite;
