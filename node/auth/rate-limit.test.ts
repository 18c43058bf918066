/**
 * The failed-authentication limiter per source address (a token bucket a minute): it refuses an
 * address that used up its failures, refills with time, and a wall clock stepped back (NTP, a VM
 * resumed) takes nothing away: it refused the address for as long as the step (an hour) before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../shared/clock.js';
import { AuthRateLimiter } from './rate-limit.js';

describe('AuthRateLimiter', () => {
  it('blocks an address once its failures a minute are used up, and frees it as they refill', () => {
    const clock = new ManualClock(0);
    const l = new AuthRateLimiter({ perMinute: 2, clock });
    l.recordFailure('192.0.2.1');
    assert.equal(l.blocked('192.0.2.1'), false);
    l.recordFailure('192.0.2.1');
    assert.equal(l.blocked('192.0.2.1'), true);
    assert.equal(l.blocked('192.0.2.2'), false, 'another address');
    clock.advance(30_000);
    assert.equal(l.blocked('192.0.2.1'), false, 'one failure refilled after half a minute');
  });

  it('a wall clock stepped back takes no failures away', () => {
    const clock = new ManualClock(3600_000 * 24);
    const l = new AuthRateLimiter({ perMinute: 5, clock });
    l.recordFailure('192.0.2.1');
    clock.advance(-3600_000);
    assert.equal(l.blocked('192.0.2.1'), false, 'blocked right after the step');
    l.recordFailure('192.0.2.1');
    assert.equal(l.blocked('192.0.2.1'), false, 'blocked after one more failure');
  });
});
