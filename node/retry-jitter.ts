/**
 * The random draw that spreads the relay's retries (JWKS refresh, heartbeat), with one rule for
 * what an injected draw may be.
 *
 * A draw is used as it is when it is a finite number in [0, 1), what Math.random returns.
 * Anything else (NaN, ±Infinity, a negative number, 1 or more, something that is not a number,
 * or a throw from the injected function) counts as 0: the least wait the caller allows (its
 * floor, its Retry-After), so a broken draw costs the spread and nothing else: never a retry
 * sooner than the caller's floor (setTimeout(NaN) fires after 1 ms) and never one later than its
 * bound. The two callers used to differ: the JWKS cache clamped a draw of 7 to 1 (the longest
 * wait), the heartbeat took 1 as a draw and 7 as 0.
 */
export function drawShare(random: () => number): number {
  let drawn: unknown;
  try {
    drawn = random();
  } catch {
    return 0;
  }
  return typeof drawn === 'number' && Number.isFinite(drawn) && drawn >= 0 && drawn < 1 ? drawn : 0;
}

/**
 * A retry's wait, drawn (drawShare) between half and all of `ceilingMs`, but never under
 * `leastMs` (a Retry-After the server sent) as far as the ceiling goes: the ceiling is the
 * caller's bound, which a Retry-After does not lift. Relays whose requests failed together (a
 * control plane restarting) then ask again over half a ceiling, not in the same millisecond.
 * A Retry-After at or past the ceiling would leave no room and put every relay's retry on the
 * ceiling, together again (a control plane whose database restarts answers 503 with
 * `Retry-After: 2`): the wait is then drawn between three quarters and all of the ceiling, which
 * comes before that Retry-After anyway. A caller that wants its retries above a Retry-After
 * leaves room for them in its ceiling (heartbeatRetryDelay).
 */
export function spreadWait(ceilingMs: number, random: () => number, leastMs = 0): number {
  const least = Math.min(leastMs, ceilingMs);
  const lo = least >= ceilingMs ? ceilingMs * 0.75 : Math.max(ceilingMs / 2, least);
  return lo + drawShare(random) * (ceilingMs - lo);
}
