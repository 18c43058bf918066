import { lt, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { turnsEvery } from './replica-turns.js';
import { rateLimits } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { preparedPerDb } from '../db/prepared.js';

/** Fixed windows of this many seconds unless a caller says otherwise. */
const WINDOW_SECONDS = 60;

/** The start of the fixed window `now` falls in. */
export function rateWindow(now: Date, windowSeconds = WINDOW_SECONDS): Date {
  return new Date(Math.floor(now.getTime() / (windowSeconds * 1000)) * windowSeconds * 1000);
}

/**
 * The counter's upsert on conflict: the inserted count (1 for an attempt, n for a relay's n
 * events) more in the same window, else a new window at it. For every statement that counts
 * (this file's, the caller lookup that counts in the same statement, http/authenticate.ts, and a
 * relay's event batches, relay-event-limit.ts).
 */
export const COUNT_ON_CONFLICT = {
  target: rateLimits.key,
  set: {
    // Compare with `excluded` rather than a bound Date: the postgres-js driver cannot bind a
    // raw Date inside sql`` (PGlite can), so every rate-limited route failed on Postgres.
    count: sql`case when ${rateLimits.windowStart} = excluded.window_start then ${rateLimits.count} + excluded.count else excluded.count end`,
    windowStart: sql`excluded.window_start`,
  },
};

/** Seconds until the window that started at `windowStart` is over (at least 1): a 429's Retry-After. */
export function retryAfterSeconds(windowStart: Date, now: Date, windowSeconds = WINDOW_SECONDS): number {
  return Math.max(1, Math.ceil((windowStart.getTime() + windowSeconds * 1000 - now.getTime()) / 1000));
}

/** Throws RATE_LIMITED when `count` (the counter after this attempt) is over `limit`. */
export function assertUnderLimit(count: number | undefined, limit: number, windowStart: Date, now: Date, windowSeconds = WINDOW_SECONDS): void {
  if (count !== undefined && count > limit) {
    throw new AppError('RATE_LIMITED', 'too many attempts; wait and try again', {
      retryable: true,
      headers: { 'retry-after': String(retryAfterSeconds(windowStart, now, windowSeconds)) },
    });
  }
}

/** The counter's upsert; prepared, as it runs on every login attempt. */
const countQuery = preparedPerDb((db) =>
  db
    .insert(rateLimits)
    .values({ key: sql.placeholder('key'), windowStart: sql.placeholder('windowStart'), count: 1 })
    .onConflictDoUpdate(COUNT_ON_CONFLICT)
    .returning({ count: rateLimits.count })
    .prepare('rate_limit_count'),
);

/** Counters whose window started this long ago are over (every window is a minute or so) and deleted. */
const STALE_AFTER_MS = 3600_000;
/** How often one replica deletes them, at most. */
const PRUNE_EVERY_MS = 60_000;
const pruneTurn = turnsEvery(PRUNE_EVERY_MS);

/**
 * Deletes counters whose window is long over, at most once a minute per replica (the caller's
 * request waits for that one statement). Every source address, account name tried and user gets
 * a row; without this they stayed forever, so whoever could reach the login form could grow the
 * table without end. The per-user lease counters go too, when their window is over.
 */
export async function pruneRateLimits(db: Db, now: Date): Promise<void> {
  if (!pruneTurn(db, now)) return;
  await db.delete(rateLimits).where(lt(rateLimits.windowStart, new Date(now.getTime() - STALE_AFTER_MS)));
}

/**
 * Fixed-window counter in the database, so every replica sees the same count.
 * Throws RATE_LIMITED once `limit` hits within `windowSeconds` for `key`.
 */
export async function rateLimit(db: Db, now: Date, key: string, limit: number, windowSeconds = WINDOW_SECONDS): Promise<void> {
  await pruneRateLimits(db, now);
  const windowStart = rateWindow(now, windowSeconds);
  const [row] = await countQuery(db).execute({ key, windowStart });
  assertUnderLimit(row?.count, limit, windowStart, now, windowSeconds);
}
