import type { Clock } from '../shared/clock.js';

/**
 * A token bucket of `perMinute` tokens, full at first and refilled continuously up to
 * `perMinute`: one connection's key exchanges (node/rekey-limit.ts) or in-band renewals
 * (node/leases/lease-renewal.ts) against their --max-*-per-minute flag.
 */
export class PerMinuteLimit {
  readonly #perMinute: number;
  readonly #clock: Clock;
  #tokens: number;
  #at: number;

  constructor(perMinute: number, clock: Clock) {
    this.#perMinute = perMinute;
    this.#clock = clock;
    this.#tokens = perMinute;
    this.#at = clock.now().getTime();
  }

  /** Takes a token; false when there was none (the caller refuses, or disconnects). */
  take(): boolean {
    const now = this.#clock.now().getTime();
    // The clock is the wall clock: a step back (NTP, a VM resumed) refills nothing, rather than
    // taking an hour's tokens for an hour's step and refusing (disconnecting) every renewal and
    // re-key of every connection until the deficit is made up.
    const elapsed = Math.max(0, now - this.#at);
    this.#tokens = Math.min(this.#perMinute, this.#tokens + (elapsed / 60_000) * this.#perMinute) - 1;
    this.#at = now;
    return this.#tokens >= 0;
  }
}
