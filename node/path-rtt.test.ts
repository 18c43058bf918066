import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PathRtt } from './path-rtt.js';

describe('PathRtt', () => {
  it('is unknown (Infinity) until a round trip is added, then the smallest of the last four', () => {
    const p = new PathRtt();
    assert.equal(p.ms, Infinity);
    p.add(3);
    p.add(1);
    assert.equal(p.ms, 1);
    for (const ms of [5, 6, 7, 8]) p.add(ms);
    assert.equal(p.ms, 5, 'four replies after the 1 ms one, it is gone: a path that became longer shows');
  });

  it('ignores what is not a round trip (NaN, Infinity, negative)', () => {
    const p = new PathRtt();
    for (const ms of [NaN, Infinity, -1]) p.add(ms);
    assert.equal(p.ms, Infinity);
    p.add(2);
    p.add(-5);
    assert.equal(p.ms, 2);
  });
});
