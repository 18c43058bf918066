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

  /** Takes a token; false when there was none (the caller refuses, or disconnects): a refused take costs nothing, so a flood owes nothing after it. */
  take(): boolean {
    const now = this.#clock.now().getTime();
    this.#tokens = refilled(this.#tokens, this.#at, now, this.#perMinute);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}

/**
 * A bucket of `perMinute` that held `tokens` at `at`, at `now` (ms): refilled continuously, at
 * most full. The clock is the wall clock: a step back (NTP, a VM resumed) refills nothing, rather
 * than taking an hour's tokens for an hour's step (refusing every renewal, re-key or connection
 * it limits until the deficit is made up). Shared with node/auth/rate-limit.ts.
 */
export function refilled(tokens: number, at: number, now: number, perMinute: number): number {
  return Math.min(perMinute, tokens + (Math.max(0, now - at) / 60_000) * perMinute);
}
