import { randomFillSync } from 'node:crypto';

/**
 * CSPRNG bytes for small draws taken often (packet padding, certificate serials and nonces): one
 * `randomFillSync` per pool instead of one per draw (issue 11). Every byte is handed out once; a
 * used-up pool is replaced, never refilled, so a draw already handed out (a view) never changes.
 */
export function randomPool(bytes: number): (n: number) => Buffer {
  let pool = Buffer.alloc(0);
  let offset = 0;
  return (n) => {
    // An integer count only: a negative one would move the offset back over bytes already handed
    // out, and NaN would leave it NaN, every later draw then empty.
    if (!(Number.isInteger(n) && n >= 0 && n <= bytes)) throw new RangeError(`random pool: 0 to ${bytes} bytes per draw, not ${n}`);
    if (offset + n > pool.length) {
      pool = randomFillSync(Buffer.allocUnsafeSlow(bytes));
      offset = 0;
    }
    const out = pool.subarray(offset, offset + n);
    offset += n;
    return out;
  };
}
