import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoff, renewalDelayMs } from './lease-timing.js';

describe('renewalDelayMs: when a lease is renewed, whatever its times', () => {
  const lease = (not_before: string, expires_at: string, created_at = not_before) => ({ not_before, expires_at, created_at });
  it('at 2/3 of an hour-long lease, counted from its issue', () => {
    assert.equal(renewalDelayMs(lease('2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z'), 2 / 3), 40 * 60_000);
    // Backdated a minute (the control plane's not_before): 39 minutes after its issue.
    assert.equal(renewalDelayMs(lease('2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', '2026-01-01T00:01:00.000Z'), 2 / 3), 39 * 60_000);
  });

  it("this machine's clock plays no part (one running an hour ahead renewed a fresh lease every second)", () => {
    const mocked = Date.now;
    Date.now = () => Date.parse('2026-01-01T02:00:00.000Z');
    try {
      assert.equal(renewalDelayMs(lease('2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z'), 2 / 3), 40 * 60_000);
    } finally {
      Date.now = mocked;
    }
  });

  it("a lease that ends in 2100 waits a timer's longest (no overflow to 1 ms, a renewal loop)", () => {
    assert.equal(renewalDelayMs(lease('2026-01-01T00:00:00.000Z', '2100-01-01T00:00:00.000Z'), 2 / 3), 2 ** 31 - 1);
  });

  it('a lease issued past its renewal point, or with unreadable times: 1 s', () => {
    assert.equal(renewalDelayMs(lease('2025-01-01T00:00:00.000Z', '2025-01-01T01:00:00.000Z', '2025-01-01T00:50:00.000Z'), 2 / 3), 1_000);
    assert.equal(renewalDelayMs(lease('nonsense', '2026-01-01T01:00:00.000Z'), 2 / 3), 1_000);
    assert.equal(renewalDelayMs(lease('2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', 'nonsense'), 2 / 3), 1_000);
  });
});

describe('backoff: the wait before a session tries again', () => {
  it('is at least 250 ms and at most the cap, however many failures (no overflow past 2^16 doublings)', () => {
    for (const failures of [1, 2, 10, 17, 1000, Number.MAX_SAFE_INTEGER]) {
      for (let i = 0; i < 50; i++) {
        const w = backoff(failures, 30_000);
        assert.ok(w >= 250 && w <= 30_000, `${failures} failures: ${w} ms`);
      }
    }
  });
});
