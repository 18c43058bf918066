import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEARTBEAT_RETRY_MAX_MS, heartbeatRetryDelay } from './heartbeat-retry.js';

describe('heartbeatRetryDelay', () => {
  it('1 s, doubling, up to its bound, whatever the interval', () => {
    assert.deepEqual([1, 2, 3, 4, 50, 10_000].map((n) => heartbeatRetryDelay(n, 15_000)), [1000, 2000, 4000, 4000, 4000, 4000]);
    assert.equal(HEARTBEAT_RETRY_MAX_MS, 4000);
  });
  it('at least the Retry-After, within the bound', () => {
    assert.equal(heartbeatRetryDelay(1, 15_000, 2000), 2000);
    assert.equal(heartbeatRetryDelay(3, 15_000, 2000), 4000);
    assert.equal(heartbeatRetryDelay(1, 15_000, 300_000), 4000);
  });
  it('never longer than the interval itself', () => {
    assert.equal(heartbeatRetryDelay(1, 100), 100);
    assert.equal(heartbeatRetryDelay(5, 2500, 3000), 2500);
  });
});
