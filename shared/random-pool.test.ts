/**
 * The random pool (shared/random-pool.ts) hands out every byte once: draws never share bytes,
 * across refills too, a draw already handed out never changes, and a count it cannot honour
 * (over the pool, negative, not an integer) is refused without disturbing later draws.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomPool } from './random-pool.js';

interface Drawn {
  view: Buffer;
  copy: Buffer;
}

/** Throws if two draws share a byte of the same memory, or a draw changed since it was made. */
function assertDisjointAndUnchanged(drawn: Drawn[]): void {
  const byBuffer = new Map<ArrayBufferLike, [number, number][]>();
  for (const { view, copy } of drawn) {
    assert.ok(view.equals(copy), 'a draw changed after it was handed out');
    const ranges = byBuffer.get(view.buffer) ?? [];
    ranges.push([view.byteOffset, view.byteOffset + view.length]);
    byBuffer.set(view.buffer, ranges);
  }
  for (const ranges of byBuffer.values()) {
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0] >= ranges[i - 1]![1], `draws overlap: ${JSON.stringify(ranges.slice(i - 1, i + 1))}`);
  }
}

describe('randomPool', () => {
  it('hands out each byte once, across refills, and never changes a draw', () => {
    const draw = randomPool(64);
    const drawn: Drawn[] = [];
    const sizes = [0, 1, 64, 63, 2, 17, 32, 32, 33, 31, 64, 1, 5, 60, 4, 0, 64, 64];
    for (let round = 0; round < 20; round++) {
      for (const n of sizes) {
        const view = draw(n);
        assert.equal(view.length, n);
        drawn.push({ view, copy: Buffer.from(view) });
      }
    }
    assertDisjointAndUnchanged(drawn);
    assert.ok(new Set(drawn.map((d) => d.view.buffer)).size > 20, 'the pool was replaced many times');
  });

  it('refuses a count it cannot honour, and draws as before after it', () => {
    const draw = randomPool(64);
    const drawn: Drawn[] = [];
    const take = (n: number) => {
      const view = draw(n);
      drawn.push({ view, copy: Buffer.from(view) });
    };
    take(10);
    for (const n of [65, -1, -10, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      assert.throws(() => draw(n), RangeError, String(n));
      take(10);
    }
    assertDisjointAndUnchanged(drawn);
  });

  it('gives random bytes: 2,000 draws of 16 bytes, all different', () => {
    const draw = randomPool(4096);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(draw(16).toString('hex'));
    assert.equal(seen.size, 2000);
  });
});
