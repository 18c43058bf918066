import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rateLimits } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { preparedPerDb } from '../db/prepared.js';

/** The counter's upsert; prepared, as it runs on every lease issuance and login. */
const countQuery = preparedPerDb((db) =>
  db
    .insert(rateLimits)
    .values({ key: sql.placeholder('key'), windowStart: sql.placeholder('windowStart'), count: 1 })
    .onConflictDoUpdate({
      target: rateLimits.key,
      set: {
        // Compare with `excluded` rather than a bound Date: the postgres-js driver cannot bind a
        // raw Date inside sql`` (PGlite can), so every rate-limited route failed on Postgres.
        count: sql`case when ${rateLimits.windowStart} = excluded.window_start then ${rateLimits.count} + 1 else 1 end`,
        windowStart: sql`excluded.window_start`,
      },
    })
    .returning({ count: rateLimits.count })
    .prepare('rate_limit_count'),
);

/**
 * Fixed-window counter in the database, so every replica sees the same count.
 * Throws RATE_LIMITED once `limit` hits within `windowSeconds` for `key`.
 */
export async function rateLimit(db: Db, now: Date, key: string, limit: number, windowSeconds = 60): Promise<void> {
  const windowStart = new Date(Math.floor(now.getTime() / (windowSeconds * 1000)) * windowSeconds * 1000);
  const [row] = await countQuery(db).execute({ key, windowStart });
  if (row && row.count > limit) {
    const retryAfter = Math.max(1, Math.ceil((windowStart.getTime() + windowSeconds * 1000 - now.getTime()) / 1000));
    throw new AppError('RATE_LIMITED', 'too many attempts; wait and try again', {
      retryable: true,
      headers: { 'retry-after': String(retryAfter) },
    });
  }
}
