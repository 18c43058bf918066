import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../shared/clock.js';
import { RefusalLog } from './refusal-log.js';

describe('RefusalLog', () => {
  it('logs perMinute refusals back to back, then none; the next line logged says how many were not', () => {
    const clock = new ManualClock(0);
    const log = new RefusalLog(clock, 3);
    assert.deepEqual([log.take(), log.take(), log.take()], [{}, {}, {}]);
    for (let i = 0; i < 10; i++) assert.equal(log.take(), undefined);
    clock.advance(20_000); // one token back
    assert.deepEqual(log.take(), { notLogged: 10 });
    assert.equal(log.take(), undefined);
  });

  it('a flood owes nothing: once the minute refilled the bucket, perMinute refusals are logged again', () => {
    const clock = new ManualClock(0);
    const log = new RefusalLog(clock, 3);
    for (let i = 0; i < 100_000; i++) log.take();
    clock.advance(60_000);
    assert.deepEqual(log.take(), { notLogged: 99_997 });
    assert.deepEqual([log.take(), log.take(), log.take()], [{}, {}, undefined]);
  });
});
