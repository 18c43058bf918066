import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drawShare } from './retry-jitter.js';

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
