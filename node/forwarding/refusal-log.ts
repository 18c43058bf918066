import type { Clock } from '../../shared/clock.js';
import { PerMinuteLimit } from '../per-minute-limit.js';

/**
 * Refusals of one connection's requests logged a minute (node/forwarding/request-refusals.ts,
 * node/refused-channel-types.ts), a token bucket refilled continuously. Every refusal is counted
 * in `tunnel_node_refused_requests_total`; past this it is not logged. A member pipelining channel
 * opens the relay refuses (a host outside its lease, a `session`) had each logged: 12,000 lines
 * and 2 MB of log a second from one connection, which journald's rate limit answers by dropping
 * the relay's other lines (revocations, refused authentications) with them.
 */
export const REFUSALS_LOGGED_PER_MINUTE = 60;

export class RefusalLog {
  readonly #bucket: PerMinuteLimit;
  #skipped = 0;

  constructor(clock: Clock, perMinute = REFUSALS_LOGGED_PER_MINUTE) {
    this.#bucket = new PerMinuteLimit(perMinute, clock);
  }

  /**
   * Whether to log this refusal: undefined when not (it is only counted); else the fields to log
   * with it, `notLogged` being how many refusals went unlogged since the last line.
   */
  take(): { notLogged?: number } | undefined {
    if (!this.#bucket.take()) {
      this.#skipped++;
      return undefined;
    }
    const notLogged = this.#skipped;
    this.#skipped = 0;
    return notLogged > 0 ? { notLogged } : {};
  }
}
