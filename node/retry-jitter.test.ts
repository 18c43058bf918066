import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drawShare, spreadWait } from './retry-jitter.js';

describe('drawShare', () => {
  it('a finite draw in [0, 1) is used as it is', () => {
    for (const d of [0, Number.MIN_VALUE, 0.25, 0.5, 0.999_999, 1 - Number.EPSILON / 2]) assert.equal(drawShare(() => d), d, String(d));
  });
  it('anything else counts as 0, all alike: NaN, infinities, negative, 1 or more, not a number, a throw', () => {
    const bad: (() => number)[] = [
      () => NaN,
      () => Infinity,
      () => -Infinity,
      () => -0.1,
      () => -Number.MIN_VALUE,
      () => 1,
      () => 7,
      () => '0.5' as unknown as number,
      () => undefined as unknown as number,
      () => {
        throw new Error('injected: a draw that throws');
      },
    ];
    for (const f of bad) assert.equal(drawShare(f), 0, String(f));
  });
});

describe('spreadWait', () => {
  it('between half and all of the ceiling, never under the Retry-After as far as the ceiling goes', () => {
    assert.deepEqual([0, 0.5, 0.75].map((d) => spreadWait(1000, () => d)), [500, 750, 875]);
    assert.equal(spreadWait(1000, () => 0, 800), 800, 'the Retry-After holds');
    assert.equal(spreadWait(1000, () => 0.75, 800), 950, 'drawn between the Retry-After and the ceiling');
    assert.equal(spreadWait(1000, () => 0, 60_000), 750, 'a Retry-After past the ceiling: three quarters of it at least');
    assert.equal(spreadWait(1000, () => 0, 1000), 750, 'one at the ceiling too');
    assert.equal(spreadWait(1000, () => 0.5, 60_000), 875);
    assert.ok(spreadWait(1000, () => 1 - Number.EPSILON / 2, 60_000) <= 1000);
    assert.equal(spreadWait(1000, () => NaN), 500, 'a bad draw: half');
    assert.ok(spreadWait(1000, () => 1 - Number.EPSILON / 2) <= 1000);
  });
});
