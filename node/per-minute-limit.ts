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
    this.#tokens = Math.min(this.#perMinute, this.#tokens + ((now - this.#at) / 60_000) * this.#perMinute) - 1;
    this.#at = now;
    return this.#tokens >= 0;
  }
}
