import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../shared/clock.js';
import { PerMinuteLimit } from './per-minute-limit.js';

describe('PerMinuteLimit', () => {
  it('a wall clock stepped back takes no tokens away', () => {
    const clock = new ManualClock(3600_000);
    const l = new PerMinuteLimit(60, clock);
    assert.equal(l.take(), true);
    clock.advance(-3600_000); // NTP steps the clock back an hour
    assert.equal(l.take(), true, 'refused right after the step');
    clock.advance(1000);
    assert.equal(l.take(), true, 'refused a second after the step');
  });
});
