import { spreadWait } from './retry-jitter.js';

/**
 * When a relay sends its heartbeat again after one failed, instead of at the next interval.
 *
 * The control plane counts a relay online for 30 s after its last heartbeat (its
 * nodeOnlineWindow), twice the default interval: one heartbeat lost to a control plane that could
 * not answer (its database restarting, a replica killed) left the relay's next one to land exactly
 * at the window's edge, and for the few milliseconds before it did the relay and every exposure
 * on it read offline (Y's opens refused 409 EXPOSURE_OFFLINE, seen in the lab's Postgres restart).
 * Retried soon, the heartbeat lands as soon as the control plane answers again.
 */

/** The first retry's delay (ms). */
export const HEARTBEAT_RETRY_FIRST_MS = 1000;
/**
 * The longest wait between retries (ms), whatever the interval. Under the control plane's
 * OUTAGE_MERGE_MS (control/services/database-outages.ts): the refused retries of a relay talking
 * to a replica are enough for that replica to see its database outage as one.
 */
export const HEARTBEAT_RETRY_MAX_MS = 4000;

/**
 * The delay before retrying after `failures` heartbeats failed in a row (1 for the first): 1 s,
 * then doubling, at least one and a half times the control plane's Retry-After when it sent one, at most
 * HEARTBEAT_RETRY_MAX_MS and never longer than the interval itself; then drawn between half of
 * that and all of it (`random`, in [0, 1); anything else counts as 0: drawShare), but never under the
 * Retry-After: a thousand relays whose heartbeats failed together (the control plane's database
 * restarting) do not all ask again in the same millisecond, every 4 s.
 */
export function heartbeatRetryDelay(failures: number, intervalMs: number, retryAfterMs?: number, random: () => number = Math.random): number {
  const backoff = HEARTBEAT_RETRY_FIRST_MS * 2 ** Math.min(Math.max(0, failures - 1), 10);
  // Room above a Retry-After (half of it again): the control plane sends the same one to every
  // relay, and a ceiling equal to it would leave every relay's retry on it, together.
  const delay = Math.min(Math.max(backoff, (retryAfterMs ?? 0) * 1.5), HEARTBEAT_RETRY_MAX_MS, intervalMs);
  return spreadWait(delay, random, retryAfterMs);
}
