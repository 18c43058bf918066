import { AppError } from '../lib/errors.js';

/** Sources remembered at most; past it the oldest windows are forgotten first. */
const MAX_SOURCES = 10_000;

/**
 * Credentials a stranger can send for free and the control plane can only tell wrong by asking the
 * database (a relay's node credential, a refresh token, a device code) are counted per source
 * (http/client-address.ts `clientSource`) when they miss; a source that missed `limit` times in
 * a window of `windowMs` is refused (RATE_LIMITED, with Retry-After) before any lookup until the
 * window is over, so it cannot make the database work at its own rate. Kept in this replica's
 * memory on purpose: counting in the database (as login does) would cost the very query it
 * saves. N replicas let a source miss N times the limit. At most MAX_SOURCES sources are
 * remembered (about 1 MB); an attacker with more addresses than that makes the oldest forgotten.
 */
export class MissThrottle {
  readonly #windows = new Map<string, { start: number; count: number }>();

  constructor(
    readonly limit: number,
    readonly windowMs = 60_000,
    readonly maxSources = MAX_SOURCES,
  ) {}

  /** Throws RATE_LIMITED when `source` has used up its misses in the current window. */
  check(source: string, now: Date): void {
    const w = this.#windows.get(source);
    if (!w) return;
    const t = now.getTime();
    if (!this.#live(w, t)) {
      this.#windows.delete(source);
      return;
    }
    if (w.count >= this.limit) {
      const retryAfter = Math.max(1, Math.ceil((w.start + this.windowMs - t) / 1000));
      throw new AppError('RATE_LIMITED', 'too many attempts with credentials that are not valid; wait and try again', {
        retryable: true,
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  }

  /** Counts one miss of `source`. */
  miss(source: string, now: Date): void {
    const t = now.getTime();
    const w = this.#windows.get(source);
    if (w && this.#live(w, t)) {
      w.count++;
      return;
    }
    this.#windows.delete(source);
    if (this.#windows.size >= this.maxSources) this.#forget(t);
    this.#windows.set(source, { start: t, count: 1 });
  }

  /** How many sources are remembered (for tests). */
  get size(): number {
    return this.#windows.size;
  }

  /** Whether `w` is the current window at `t` (not over, and not from a clock that went back). */
  #live(w: { start: number }, t: number): boolean {
    return t >= w.start && t - w.start < this.windowMs;
  }

  /** Forgets windows that are over, oldest first (insertion order is start order), or else the oldest one. */
  #forget(t: number): void {
    for (const [k, w] of this.#windows) {
      if (this.#live(w, t) && this.#windows.size < this.maxSources) return;
      this.#windows.delete(k);
    }
  }
}

/**
 * Runs `lookup` for `source` under `throttle`: refused before it when the source is over its
 * misses; a miss (`lookup` throwing an AppError whose code `isMiss` names) is counted.
 */
export async function throttledLookup<T>(
  throttle: MissThrottle,
  source: string,
  now: Date,
  isMiss: (code: string) => boolean,
  lookup: () => Promise<T>,
): Promise<T> {
  throttle.check(source, now);
  try {
    return await lookup();
  } catch (err) {
    if (err instanceof AppError && isMiss(err.code)) throttle.miss(source, now);
    throw err;
  }
}
