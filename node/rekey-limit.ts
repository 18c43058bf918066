import type { Clock } from '../shared/clock.js';
import type { Limits } from './config.js';

/**
 * One connection's key exchanges against --max-rekeys-per-minute. Every key exchange costs the
 * relay a signature and a key agreement (about 2.7 ms of CPU): a peer that re-keys as fast as it
 * can would hold a core. A bucket of rekeysPerMinute, refilled continuously; the first exchange
 * is free.
 */
export class RekeyLimit {
  readonly #limits: Pick<Limits, 'rekeysPerMinute'>;
  readonly #clock: Clock;
  #tokens: number;
  #at = -1;

  constructor(limits: Pick<Limits, 'rekeysPerMinute'>, clock: Clock) {
    this.#limits = limits;
    this.#clock = clock;
    this.#tokens = limits.rekeysPerMinute;
  }

  /** A key exchange completed (ssh2's 'handshake'); false when the peer re-keys too often. */
  exchanged(): boolean {
    const perMinute = this.#limits.rekeysPerMinute;
    const now = this.#clock.now().getTime();
    if (this.#at < 0) {
      this.#at = now;
      return true;
    }
    this.#tokens = Math.min(perMinute, this.#tokens + ((now - this.#at) / 60_000) * perMinute) - 1;
    this.#at = now;
    return this.#tokens >= 0;
  }
}
