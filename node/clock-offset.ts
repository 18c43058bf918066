import { CERT_BACKDATE_SECONDS } from '../protocol/lease-claims-check.js';
import { instantMs } from '../protocol/patterns.js';
import type { Logger } from '../shared/logger.js';

/**
 * How far this relay's clock is from the control plane's, estimated from each heartbeat answer's
 * `server_time`. The relay judges leases and certificates by its own clock, offline: a lease's
 * `nbf` with CERT_BACKDATE_SECONDS of tolerance, its `exp` exactly. A clock an hour behind
 * accepts expired leases for an hour more; one ahead refuses fresh ones as expired (and cuts
 * connections before their lease ends); one behind by more than the tolerance refuses fresh
 * ones as not yet valid. Nobody was told.
 */

/**
 * The offset past which the relay warns (ms): half the tolerance a lease's start is given, so
 * the operator hears of a drifting clock before fresh leases are refused as not yet valid, and
 * while a lease outlives its expiry here by half a minute at most. Not a flag: the tolerance it
 * is measured against is fixed, and a stricter alert can be set on tunnel_node_clock_offset_seconds.
 */
export const CLOCK_SKEW_BOUND_MS = (CERT_BACKDATE_SECONDS * 1000) / 2;
/**
 * How far under the bound the offset must be, for certain, for the warning to end (ms): a clock
 * that hovers at the bound is not reported at every heartbeat.
 */
export const CLOCK_SKEW_HYSTERESIS_MS = 5000;

/** One estimate: the control plane's clock minus this relay's (ms), give or take `uncertaintyMs`. */
export interface ClockOffset {
  /** Positive: this relay's clock is behind the control plane's. */
  offsetMs: number;
  /** Half the round trip: the server read its clock somewhere within it. */
  uncertaintyMs: number;
}

/**
 * The offset from one exchange: the server's time against the midpoint of the request's sending
 * and its answer's arrival (this relay's clock, ms), give or take half the round trip. Undefined
 * when the times cannot be used: not finite, or the answer arriving before the request left (this
 * clock was set back meanwhile).
 */
export function estimateClockOffset(sentMs: number, receivedMs: number, serverMs: number): ClockOffset | undefined {
  if (!Number.isFinite(sentMs) || !Number.isFinite(receivedMs) || !Number.isFinite(serverMs) || receivedMs < sentMs) return undefined;
  const uncertaintyMs = (receivedMs - sentMs) / 2;
  return { offsetMs: serverMs - (sentMs + uncertaintyMs), uncertaintyMs };
}

/** /healthz's part of it (within `heartbeat`). */
export interface ClockSkewStatus {
  /** The last estimate (ms, rounded; positive: this relay is behind), null before the first. */
  clock_offset_ms: number | null;
  /** True from a warning until the offset is back within the bound. */
  clock_skewed: boolean;
}

/**
 * The episodes of a skewed clock: one warning when an estimate is past the bound for certain
 * (|offset| minus its uncertainty), one info line when one is back under it for certain (|offset|
 * plus its uncertainty, CLOCK_SKEW_HYSTERESIS_MS under the bound). An estimate too uncertain to
 * say either changes nothing.
 */
export class ClockSkewWatch {
  readonly #logger: Logger;
  #last: ClockOffset | undefined;
  #skewed = false;
  /** The last answer's server_time could not be read (said once until one can). */
  #unreadable = false;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /**
   * One answered heartbeat: `serverTime` as the control plane sent it (anything: an RFC 3339
   * instant is read, the rest is said once and ignored), `sentMs` and `receivedMs` by this relay's clock.
   */
  note(serverTime: unknown, sentMs: number, receivedMs: number): void {
    const serverMs = instantMs(serverTime);
    if (serverMs === undefined) {
      if (!this.#unreadable) this.#logger.warn('the heartbeat answer\'s server_time is not a readable time: this relay\'s clock offset is not estimated', {});
      this.#unreadable = true;
      return;
    }
    this.#unreadable = false;
    const est = estimateClockOffset(sentMs, receivedMs, serverMs);
    if (!est) return;
    this.#last = est;
    const fields = {
      offsetMs: Math.round(est.offsetMs),
      uncertaintyMs: Math.round(est.uncertaintyMs),
      boundMs: CLOCK_SKEW_BOUND_MS,
      thisClock: est.offsetMs > 0 ? 'behind' : 'ahead',
    };
    const size = Math.abs(est.offsetMs);
    if (!this.#skewed && size - est.uncertaintyMs > CLOCK_SKEW_BOUND_MS) {
      this.#skewed = true;
      this.#logger.warn(
        'this host\'s clock is off from the control plane\'s: leases and certificates are judged by it (expired ones accepted while it is behind, fresh ones refused while it is ahead); fix the host\'s time sync (NTP, chrony)',
        fields,
      );
    } else if (this.#skewed && size + est.uncertaintyMs <= CLOCK_SKEW_BOUND_MS - CLOCK_SKEW_HYSTERESIS_MS) {
      this.#skewed = false;
      this.#logger.info('this host\'s clock agrees with the control plane\'s again', fields);
    }
  }

  /** The last estimate's offset (ms, unrounded), undefined before the first. */
  get offsetMs(): number | undefined {
    return this.#last?.offsetMs;
  }

  status(): ClockSkewStatus {
    return { clock_offset_ms: this.#last ? Math.round(this.#last.offsetMs) : null, clock_skewed: this.#skewed };
  }
}
