import { sql } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import { rateLimits } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { preparedPerDb } from '../db/prepared.js';
import { COUNT_ON_CONFLICT, pruneRateLimits, rateWindow, retryAfterSeconds } from './rate-limit.js';
import type { NodePrincipal } from './authz.js';

/** The fixed window of both counters (seconds). */
const WINDOW_SECONDS = 60;

/**
 * Both counters of one relay in one statement: its batches (+1) and its events (+n) this
 * window. Rows in a fixed order (batches, then events), so two requests of one relay take their
 * row locks in the same order.
 */
const countQuery = preparedPerDb((db) =>
  db
    .insert(rateLimits)
    .values([
      { key: sql.placeholder('batchesKey'), windowStart: sql.placeholder('windowStart'), count: 1 },
      { key: sql.placeholder('eventsKey'), windowStart: sql.placeholder('windowStart'), count: sql.placeholder('events') },
    ])
    .onConflictDoUpdate(COUNT_ON_CONFLICT)
    .returning({ key: rateLimits.key, count: rateLimits.count })
    .prepare('relay_event_limit_count'),
);

/**
 * Counts one event batch of `events` events (the envelope's, valid or not) against the relay's
 * per-minute bounds (`relayEventBatchLimit` batches, `relayEventLimit` events; in the database,
 * so shared by every replica), and refuses it, RATE_LIMITED (429, Retry-After: the end of the
 * window), over either. A relay's reporter sends one batch per flush interval (1 s by default)
 * and more only for a backlog, each up to 32 KiB; a compromised relay sent batches of up to
 * 1,000 events back to back, each an audit row kept for the audit retention, and kept the
 * embedded database's one connection busy for everyone. A refused batch costs this statement
 * only (its events are not read).
 */
export async function countEventBatch(
  deps: Pick<Deps, 'db' | 'clock' | 'settings' | 'metrics'>,
  node: NodePrincipal,
  events: number,
): Promise<void> {
  const now = deps.clock.now();
  await pruneRateLimits(deps.db, now);
  const windowStart = rateWindow(now, WINDOW_SECONDS);
  const batchesKey = `relay-batches:${node.nodeId}`;
  const eventsKey = `relay-events:${node.nodeId}`;
  const rows = await countQuery(deps.db).execute({ batchesKey, eventsKey, windowStart, events });
  const count = (key: string) => rows.find((r) => r.key === key)?.count ?? 0;
  const over =
    count(batchesKey) > deps.settings.relayEventBatchLimit ? 'batches' : count(eventsKey) > deps.settings.relayEventLimit ? 'events' : undefined;
  if (!over) return;
  deps.metrics.inc('tunnel_control_relay_event_batches_limited_total', 'Relay event batches refused (429) over the per-relay bounds, by bound', { bound: over });
  const limit = over === 'batches' ? `${deps.settings.relayEventBatchLimit} batches` : `${deps.settings.relayEventLimit} events`;
  throw new AppError('RATE_LIMITED', `this relay sent more than ${limit} a minute; send again after Retry-After`, {
    retryable: true,
    headers: { 'retry-after': String(retryAfterSeconds(windowStart, now, WINDOW_SECONDS)) },
  });
}
