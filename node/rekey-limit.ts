import type { Clock } from '../shared/clock.js';
import type { Limits } from './config.js';
import { PerMinuteLimit } from './per-minute-limit.js';

/**
 * One connection's key exchanges against --max-rekeys-per-minute. Every key exchange costs the
 * relay a signature and a key agreement (about 2.7 ms of CPU): a peer that re-keys as fast as it
 * can would hold a core. A bucket of rekeysPerMinute, refilled continuously; the first exchange
 * is free.
 */
export class RekeyLimit {
  readonly #bucket: PerMinuteLimit;
  #first = true;

  constructor(limits: Pick<Limits, 'rekeysPerMinute'>, clock: Clock) {
    this.#bucket = new PerMinuteLimit(limits.rekeysPerMinute, clock);
  }

  /** A key exchange completed (ssh2's 'handshake'); false when the peer re-keys too often. */
  exchanged(): boolean {
    if (this.#first) {
      this.#first = false;
      return true;
    }
    return this.#bucket.take();
  }
}
