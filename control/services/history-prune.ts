import { and, asc, eq, gt, inArray, isNull, lt, max, notExists, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { Logger } from '../../shared/logger.js';
import { auditEvents, connections, deviceCodes, leases, refreshTokens, revocations } from '../db/schema/index.js';
import { audit } from './audit.js';
import { databaseAgo } from '../db/database-clock.js';
import { CLOSED_RETENTION_MS, renewal, renewsLease } from './connections.js';
import { turnsEvery } from './replica-turns.js';

/**
 * Bounds the three tables every lease grows: `leases` (a row per lease, kept after it expired for
 * `GET /v1/leases` and the console) and `revocations` (the relays' feed, a row per revoked lease
 * and relay). Neither was ever deleted from, so a busy deployment grew them without end; every
 * lease also has its audit events (`lease.issued`, `lease.revoked`), which stay as long as the
 * audit log keeps its events.
 *
 * Every cutoff below is the database's clock (control/db/database-clock.ts databaseAgo, compared in
 * SQL), never this replica's: every replica writes beside that one clock, and a replica's own may
 * be days off (NTP broken on one machine). One whose clock ran over a week ahead deleted the rows
 * of leases still live (gone from GET /v1/leases, and no grant removal found them to revoke), of
 * refresh tokens and device authorizations still usable, and closed the connections open under
 * them; one over an hour ahead deleted the feed entries of leases still live at the relays, which
 * never heard of them. This replica's clock only spaces its turns (PRUNE_EVERY_MS) and dates what
 * a turn writes.
 *
 * - A lease row goes once it expired `LEASE_RETENTION_MS` ago (as long as closed connections are
 *   kept, so a connection in `GET /v1/connections?state=all` still names its lease), and no
 *   connection is reported open under it (an in-band renewed one may outlive it by weeks). Nothing
 *   decides on an expired lease: a relay refuses its certificate by its own expiry.
 * - A feed row goes once its lease expired `FEED_RETENTION_MS` ago: relays skip expired entries
 *   (once that long expired they are not even served, nodes.ts readFeed; until then they are, in
 *   case the relay's clock, which decides, lags), so such a row only costs the feed's index. The
 *   newest row stays, whatever its age (new rows keep counting from it either way: bigserial).
 *   A relay whose newest entries went has its cursor moved back to its last one left, or 0, at
 *   its next poll (readFeed checks a cursor against the relay's own last entry): harmless, none
 *   of its entries lie between, and its next one is numbered above every cursor.
 * - An audit event goes once it is `auditRetentionDays` old (`--audit-retention`, 365 by default;
 *   0 keeps them for good), and so is every event before it in the order oldest-first paging
 *   reads the log (oldestAuditRun). Each turn that deleted some writes an `audit.pruned` event
 *   saying how many and up to when, so a gap in the log is explained by the log itself.
 *
 * - A login's refresh token (each rotation writes a row: a CLI renewing its leases wrote about 24 a
 *   day, each kept for its 30 days) and a device authorization (a row per unauthenticated POST
 *   /v1/auth/device, rate-limited per address only) go once they expired `CREDENTIAL_RETENTION_MS`
 *   ago; both were kept for good. An expired refresh token gets invalid_grant whether or not its row
 *   is there: what goes is only its rotated rows' reuse signal (presenting one revokes its session),
 *   for tokens that could not be used anyway, and a session's newest token outlives the rest.
 *
 * - A connection still open as reported is closed (at the turn's time) once neither its lease nor
 *   a lease renewing it (the same user's, for the same key, on the same relay: in-band renewals
 *   are not reported) expired less than `STALE_OPEN_GRACE_MS` ago: no connection outlives its
 *   leases (the relay closes it), so its close event was lost (a relay's full event queue drops
 *   events), or the relay made it up. Closed connections are pruned after their retention, by the
 *   database's clock too (connections.ts pruneConnections, from a relay's events); open ones were
 *   kept for ever, and a relay could add them without end.
 *
 * Rows another transaction holds (locked, or referenced by a row being written) are skipped and
 * left for a later turn, never waited for, in every table: the heartbeat that pays for the turn
 * would wait with them, and a session's end (sessions.ts endSession, revokeAllSessions) updates
 * every unrevoked refresh token of a family or user, expired ones too, in its own order, so a
 * delete holding some of those rows while it waited for another deadlocked with it (Postgres
 * failed one of the two: a logout or a disable answered 500).
 *
 * At most `BATCH` rows of each per call and one call per `PRUNE_EVERY_MS` per replica and
 * database: the statement that pays for it (a relay's heartbeat) waits for two bounded deletes
 * at most, and a backlog drains over the following calls. A failure is logged, never passed on:
 * history that stays a while longer must not fail the relay's heartbeat.
 */
export const LEASE_RETENTION_MS = CLOSED_RETENTION_MS;
export const FEED_RETENTION_MS = 3600_000;
/** How long after they expired refresh tokens and device authorizations are kept. */
export const CREDENTIAL_RETENTION_MS = 86400_000;
export const PRUNE_EVERY_MS = 600_000;
export const BATCH = 1000;
/** How long after its lease expired a connection may still be reported open (its close event on the way). */
export const STALE_OPEN_GRACE_MS = 3600_000;

const pruneTurn = turnsEvery(PRUNE_EVERY_MS);

/** Deletes what is past its retention, when this replica has not for PRUNE_EVERY_MS; returns the rows deleted (undefined: not its turn). */
export async function pruneHistory(
  db: Db,
  now: Date,
  o: { auditRetentionDays: number; logger?: Logger },
): Promise<{ leases: number; revocations: number; audit: number; staleConnections: number; refreshTokens: number; deviceCodes: number } | undefined> {
  if (!pruneTurn(db, now)) return undefined;
  try {
    const staleOpen = staleOpenConnections(db);
    const closed = await db
      .update(connections)
      .set({ closedAt: now })
      .where(sql`(${connections.nodeId}, ${connections.sessionId}) in (${staleOpen})`)
      .returning({ sessionId: connections.sessionId });
    // A lease a connection is still reported open under stays: the connection's renewals are
    // found through it (leaseLive), so a tunnel expose renewing in band for longer than the
    // retention would otherwise be closed a week into it. Such a connection is closed above once
    // its renewals stop, and its lease goes at a later turn.
    const openUnder = db
      .select({ id: connections.sessionId })
      .from(connections)
      .where(and(eq(connections.leaseId, leases.id), isNull(connections.closedAt)));
    const gone = await db
      .delete(leases)
      .where(inArray(leases.id, db.select({ id: leases.id }).from(leases).where(and(lt(leases.expiresAt, databaseAgo(LEASE_RETENTION_MS)), notExists(openUnder))).limit(BATCH).for('update', { skipLocked: true })))
      .returning({ id: leases.id });
    const newest = db.select({ seq: max(revocations.seq) }).from(revocations);
    const stale = db
      .select({ seq: revocations.seq })
      .from(revocations)
      .where(and(lt(revocations.expiresAt, databaseAgo(FEED_RETENTION_MS)), sql`${revocations.seq} < (${newest})`))
      .limit(BATCH)
      .for('update', { skipLocked: true });
    const feed = await db.delete(revocations).where(inArray(revocations.seq, stale)).returning({ seq: revocations.seq });
    const refresh = await db
      .delete(refreshTokens)
      .where(inArray(refreshTokens.id, db.select({ id: refreshTokens.id }).from(refreshTokens).where(lt(refreshTokens.expiresAt, databaseAgo(CREDENTIAL_RETENTION_MS))).limit(BATCH).for('update', { skipLocked: true })))
      .returning({ id: refreshTokens.id });
    const devices = await db
      .delete(deviceCodes)
      .where(inArray(deviceCodes.id, db.select({ id: deviceCodes.id }).from(deviceCodes).where(lt(deviceCodes.expiresAt, databaseAgo(CREDENTIAL_RETENTION_MS))).limit(BATCH).for('update', { skipLocked: true })))
      .returning({ id: deviceCodes.id });
    let auditGone = 0;
    if (o.auditRetentionDays > 0) {
      const { seqs: old, cutoff } = await oldestAuditRun(db, o.auditRetentionDays * 86400_000);
      if (old.length) auditGone = (await db.delete(auditEvents).where(inArray(auditEvents.seq, old)).returning({ seq: auditEvents.seq })).length;
      if (auditGone > 0 && cutoff) {
        await audit(db, now, { type: 'audit.pruned', actor: null, data: { events: auditGone, before: cutoff.toISOString(), retention_days: o.auditRetentionDays } });
      }
    }
    return { leases: gone.length, revocations: feed.length, audit: auditGone, staleConnections: closed.length, refreshTokens: refresh.length, deviceCodes: devices.length };
  } catch (err) {
    o.logger?.error('pruning expired leases, feed entries, credentials and old audit events failed', { err });
    return undefined;
  }
}

/**
 * The seqs of at most BATCH audit events to prune: the leading run, in the order oldest-first
 * paging reads the log ((tx, seq) among rows whose transaction ended, services/audit.ts), of
 * events dated over `retentionMs` ago by the database's clock, and that cutoff (undefined when
 * the log has no ended row). Pruned from the front only, a cursor whose event is gone had
 * every event before it pruned too, so paging resumes at the oldest event left without showing
 * one again (services/audit.ts listAudit); pruned by date alone, events read before the cursor
 * and younger than it stayed, and were read a second time. Dates follow that order but for clock
 * skew between replicas, so an event waits for the few before it; one dated in the future holds
 * those after it until its own date passes (kept longer, not lost), but no date is written more
 * than AUDIT_AHEAD_MAX_MS past the database's clock (services/audit.ts), so not for longer.
 */
async function oldestAuditRun(db: Pick<Db, 'select'>, retentionMs: number): Promise<{ seqs: number[]; cutoff: Date | undefined }> {
  const cutoff = databaseAgo(retentionMs);
  const first = await db
    .select({
      seq: auditEvents.seq,
      old: sql<boolean>`${auditEvents.at} < ${cutoff}`,
      cutoffMs: sql<number>`(extract(epoch from ${cutoff}) * 1000)::float8`.mapWith(Number),
    })
    .from(auditEvents)
    .where(sql`${auditEvents.tx} < pg_snapshot_xmin(pg_current_snapshot())`)
    .orderBy(asc(auditEvents.tx), asc(auditEvents.seq))
    .limit(BATCH);
  const young = first.findIndex((r) => !r.old);
  const seqs = (young < 0 ? first : first.slice(0, young)).map((r) => r.seq);
  return { seqs, cutoff: first.length ? new Date(first[0]!.cutoffMs) : undefined };
}

/**
 * Connections still open as reported whose lease, and every lease renewing it in band
 * (lease-renew@tunnel: the same user's certificate for the same key, on the same relay; the relay
 * reports no event for it), expired over STALE_OPEN_GRACE_MS ago by the database's clock, or that
 * name no lease of their relay: at most BATCH of them. `renewal` ranges over the connection's lease
 * too (its own user, key and relay), so it is one join under NOT EXISTS, which the planner makes
 * an anti-join. An OR of the lease and an EXISTS for its renewals was a subplan run per open
 * connection that read every live lease of its relay: quadratic in the connections open (4,000 on
 * one relay: 24 s of Postgres, 53 s of PGlite, inside a relay's heartbeat; history-prune.test
 * reads the plan).
 */
export function staleOpenConnections(db: Pick<Db, 'select'>) {
  const leaseLive = db
    .select({ id: renewal.id })
    .from(leases)
    .innerJoin(renewal, renewsLease(leases.nodeId))
    .where(and(eq(leases.id, connections.leaseId), eq(leases.nodeId, connections.nodeId), gt(renewal.expiresAt, databaseAgo(STALE_OPEN_GRACE_MS))));
  return db
    .select({ nodeId: connections.nodeId, sessionId: connections.sessionId })
    .from(connections)
    .where(and(isNull(connections.closedAt), notExists(leaseLive)))
    .limit(BATCH)
    .for('update', { skipLocked: true });
}
