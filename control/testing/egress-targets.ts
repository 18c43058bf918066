import assert from 'node:assert/strict';
import type { LeaseTarget } from '../../protocol/lease-claims.js';
import { egressTargetsBytes } from '../../protocol/lease-size.js';

/** A host name of exactly `n` characters (1 to 253; labels of at most 63), starting with `first`. */
export function hostOf(n: number, first = 'h'): string {
  const labels: string[] = [];
  let left = n;
  while (left > 0) {
    const len = Math.min(63, left - (labels.length ? 1 : 0));
    labels.push(labels.length ? 'h'.repeat(len) : first + 'h'.repeat(len - 1));
    left -= len + (labels.length > 1 ? 1 : 0);
  }
  const host = labels.join('.');
  assert.equal(host.length, n);
  return host;
}

/**
 * `count` targets on `port` whose JSON in a lease takes exactly `bytes` (protocol/lease-size.ts
 * egressTargetsBytes): hosts as long as needed (none longer than 253 characters), the first 36 all different.
 */
export function targetsOfBytes(count: number, bytes: number, port = 65535): LeaseTarget[] {
  const one = egressTargetsBytes([{ host: '', port }]) - 2; // `{"host":"","port":N}`
  const hosts = bytes - 2 - (count - 1) - count * one;
  const base = Math.floor(hosts / count);
  assert.ok(base >= 1 && Math.ceil(hosts / count) <= 253, `${count} targets cannot take ${bytes} bytes`);
  const targets = Array.from({ length: count }, (_, i) => ({ host: hostOf(base + (i < hosts % count ? 1 : 0), 'abcdefghijklmnopqrstuvwxyz0123456789'[i % 36]), port }));
  assert.equal(egressTargetsBytes(targets), bytes);
  return targets;
}
