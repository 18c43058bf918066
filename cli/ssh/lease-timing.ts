/** When a lease session renews its lease and when it tries again after a failure (cli/ssh/lease-session.ts). */
import { randomInt } from 'node:crypto';

/** A timer's longest wait (Node fires a longer one after 1 ms, with a TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long after it arrived a lease (`not_before` to `expires_at`, issued at `created_at`, all
 * three the control plane's times) is renewed: at `renewAt` of its life, counted from when the
 * control plane issued it, so this machine's clock plays no part (one running ahead by over a
 * third of a lease's life had every renewal look overdue: a renewal a second). At least 1 s (a
 * lease already past that point, or with times that do not parse, is renewed in a second, not in
 * a loop), at most a timer's longest wait (a lease that ends in 2100 is renewed in 24 days, not at
 * once and again and again).
 */
export function renewalDelayMs(lease: { not_before: string; expires_at: string; created_at: string }, renewAt: number): number {
  const start = new Date(lease.not_before).getTime();
  const end = new Date(lease.expires_at).getTime();
  const wait = start + (end - start) * renewAt - new Date(lease.created_at).getTime();
  return Number.isFinite(wait) ? Math.min(MAX_TIMER_MS, Math.max(1_000, wait)) : 1_000;
}

/** Exponential backoff with full jitter: 0.5 s, 1 s, 2 s ... capped. */
export function backoff(failures: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, 500 * 2 ** Math.min(failures - 1, 16));
  return Math.max(250, randomInt(0, ceiling + 1));
}
