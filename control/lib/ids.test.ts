/** Ids and serials drawn from the random pool (shared/random-pool.ts): the lease id format, all different. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LEASE_ID_PREFIX, LEASE_ID_RE } from '../../protocol/lease-claims-check.js';
import { randomIds } from './ids.js';

describe('randomIds (control/lib/ids.ts) from the pool', () => {
  it('makes ids of a prefix and 32 lowercase hex digits, all different, and different serials', () => {
    const ids = Array.from({ length: 2000 }, () => randomIds.id(LEASE_ID_PREFIX));
    for (const id of ids) assert.match(id, LEASE_ID_RE);
    assert.equal(new Set(ids).size, ids.length);
    const serials = Array.from({ length: 2000 }, () => randomIds.serial());
    assert.equal(new Set(serials).size, serials.length);
  });
});
