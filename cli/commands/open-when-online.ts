import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, EXIT } from '../errors.js';

/** CliError code of a channel open whose connection to the relay closed before the relay answered. */
export const CONNECTION_CLOSED = 'connection_closed';
/**
 * CliError code of a channel open the relay refused as `busy`: a limit of the connection (its
 * pending opens: 32 by default, which the connections waiting for a reconnect all make at
 * once), of the exposure or the relay, or a relay draining. "Try again later", it says.
 */
export const RELAY_BUSY = 'relay_busy';

export interface RetryPlan {
  /** Until when (ms, `now()`'s clock) the local connection may wait in all. */
  deadline: number;
  /** The first pause after a refusal; each next one doubles, up to maxPauseMs. */
  firstPauseMs: number;
  maxPauseMs: number;
  now: () => number;
  wait: (ms: number) => Promise<void>;
}

export const OFFLINE_RETRY = { firstPauseMs: 250, maxPauseMs: 2_000 } as const;

/**
 * A plan on the monotonic clock: a wall clock set back (NTP, a resumed laptop) must not stretch the
 * wait. `signal` aborted ends a pause at once (wait() rejects, its timer cleared).
 */
export function retryPlan(waitMs: number, signal?: AbortSignal): RetryPlan {
  const now = () => performance.now();
  return { deadline: now() + waitMs, ...OFFLINE_RETRY, now, wait: (ms) => sleep(ms, undefined, { ref: false, signal }) };
}

/** Whether a failed open may succeed a moment later on the same or the next connection. */
function transient(err: unknown): boolean {
  return err instanceof CliError && (err.exitCode === EXIT.EXPOSURE_OFFLINE || err.code === CONNECTION_CLOSED || err.code === RELAY_BUSY);
}

/**
 * Opens a channel for one local connection of `tunnel open --listen`: on the open connection, or
 * the next one (`next`, which waits while the supervisor reconnects). A refusal because the
 * exposure is offline or the relay is busy, or a connection that closed before the relay answered, is tried again
 * after a pause (250 ms, doubling up to 2 s) until the deadline: when a relay restarts, or X's
 * `tunnel expose` reconnects, Y is often back first, and X a moment later. Any other refusal,
 * and the last transient one, is the caller's to report.
 */
export async function openWhenOnline<C, T>(next: (timeoutMs: number) => Promise<C>, open: (c: C) => Promise<T>, plan: RetryPlan): Promise<T> {
  let pause = plan.firstPauseMs;
  for (;;) {
    const c = await next(Math.max(0, plan.deadline - plan.now()));
    try {
      return await open(c);
    } catch (err) {
      if (!transient(err) || plan.now() + pause > plan.deadline) throw err;
    }
    await plan.wait(pause);
    pause = Math.min(pause * 2, plan.maxPauseMs);
  }
}
