import { randomBytes } from 'node:crypto';

/** A fresh key prefix, so tests sharing one server never see each other's keys. */
export function randomPrefix(label = 't'): string {
  return `${label}${randomBytes(6).toString('hex')}`;
}
