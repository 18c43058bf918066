import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEARTBEAT_RETRY_MAX_MS, heartbeatRetryDelay as delayWith } from './heartbeat-retry.js';
import { OUTAGE_MERGE_MS } from '../control/services/database-outages.js';

/** The largest draw there is (the largest number below 1): the delay with all of its jitter. */
const TOP = 1 - Number.EPSILON / 2;
/** The delay before its jitter (the draw at its top). */
const heartbeatRetryDelay = (failures: number, intervalMs: number, retryAfterMs?: number) => delayWith(failures, intervalMs, retryAfterMs, () => TOP);

describe('heartbeatRetryDelay', () => {
  it('1 s, doubling, up to its bound, whatever the interval', () => {
    assert.deepEqual([1, 2, 3, 4, 50, 10_000].map((n) => heartbeatRetryDelay(n, 15_000)), [1000, 2000, 4000, 4000, 4000, 4000]);
    assert.equal(HEARTBEAT_RETRY_MAX_MS, 4000);
  });
  it('at least one and a half times the Retry-After (room to spread above it), within the bound', () => {
    assert.equal(heartbeatRetryDelay(1, 15_000, 2000), 3000);
    assert.equal(heartbeatRetryDelay(3, 15_000, 2000), 4000);
    assert.equal(heartbeatRetryDelay(1, 15_000, 300_000), 4000);
  });
  it('drawn between half and all of it, never under the Retry-After; a draw out of [0, 1) counts as 0', () => {
    assert.equal(delayWith(3, 15_000, undefined, () => 0), 2000);
    assert.equal(delayWith(3, 15_000, undefined, () => 0.5), 3000);
    assert.equal(delayWith(3, 15_000, 3500, () => 0), 3500, 'the Retry-After holds');
    assert.equal(delayWith(1, 15_000, 300_000, () => 0), 3000, 'a Retry-After past the bound: between three quarters and all of the bound');
    for (const bad of [NaN, -1, 1, 2, Infinity]) assert.equal(delayWith(3, 15_000, undefined, () => bad), 2000, String(bad));
    const throws = () => {
      throw new Error('injected: a draw that throws');
    };
    assert.equal(delayWith(3, 15_000, undefined, throws), 2000, 'a draw that throws counts as 0 too');
    // Spread: 100 relays' draws land over the whole half-window, and never past the outage merge.
    const delays = Array.from({ length: 100 }, (_, i) => delayWith(10, 15_000, undefined, () => (i < 99 ? i / 99 : TOP)));
    assert.equal(Math.min(...delays), 2000);
    assert.equal(Math.max(...delays), 4000);
    assert.ok(HEARTBEAT_RETRY_MAX_MS < OUTAGE_MERGE_MS);
  });
  it("an outage's Retry-After (the control plane's 2 s, the same for every relay) spreads the retries above it, not on it", () => {
    for (const failures of [1, 2]) {
      const delays = Array.from({ length: 100 }, (_, i) => delayWith(failures, 15_000, 2000, () => (i < 99 ? i / 99 : TOP)));
      assert.equal(Math.min(...delays), 2000, 'never under the Retry-After');
      assert.ok(Math.max(...delays) > 2999 && Math.max(...delays) <= 3000, String(Math.max(...delays)));
      assert.ok(new Set(delays).size > 90, 'spread, not one value');
    }
  });
  it('never longer than the interval itself', () => {
    assert.equal(heartbeatRetryDelay(1, 100), 100);
    assert.equal(heartbeatRetryDelay(5, 2500, 3000), 2500);
  });
});
