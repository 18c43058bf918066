import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../shared/clock.js';
import { RekeyLimit } from './rekey-limit.js';

describe('RekeyLimit', () => {
  it('the first exchange is free; then rekeysPerMinute back to back, and the next is refused', () => {
    const r = new RekeyLimit({ rekeysPerMinute: 3 }, new ManualClock(0));
    assert.equal(r.exchanged(), true);
    assert.deepEqual([r.exchanged(), r.exchanged(), r.exchanged()], [true, true, true]);
    assert.equal(r.exchanged(), false);
  });

  it('refills continuously, up to rekeysPerMinute', () => {
    const clock = new ManualClock(0);
    const r = new RekeyLimit({ rekeysPerMinute: 2 }, clock);
    r.exchanged();
    assert.deepEqual([r.exchanged(), r.exchanged()], [true, true]);
    clock.advance(30_000); // one token back
    assert.equal(r.exchanged(), true);
    assert.equal(r.exchanged(), false);
    clock.advance(10 * 60_000); // a long quiet spell refills only to the limit
    assert.deepEqual([r.exchanged(), r.exchanged()], [true, true]);
    assert.equal(r.exchanged(), false);
  });
});
