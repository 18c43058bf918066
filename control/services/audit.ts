import { and, asc, desc, eq, gt, gte, like, lt, lte, sql, type Placeholder, type SQL } from 'drizzle-orm';
import type { PgInsertValue } from 'drizzle-orm/pg-core';
import type { Db } from '../db/client.js';
import { auditEvents } from '../db/schema/index.js';
import { databaseAhead } from '../db/database-clock.js';

export type AuditType =
  | 'auth.login'
  | 'auth.login_failed'
  | 'auth.refresh_reuse'
  | 'auth.refresh_after_end'
  | 'auth.logout'
  | 'auth.session_idle'
  | 'auth.device_approved'
  | 'auth.device_denied'
  | 'setup.admin_created'
  | 'user.created'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.role_changed'
  | 'service_token.created'
  | 'service_token.revoked'
  | 'service_token.updated'
  | 'service_token.pruned'
  | 'node.enrollment_token_created'
  | 'node.enrollment_tokens_withdrawn'
  | 'node.enrolled'
  | 'node.removed'
  | 'exposure.put'
  | 'exposure.deleted'
  | 'egress_target.put'
  | 'egress_target.deleted'
  | 'lease.issued'
  | 'lease.revoked'
  | 'relay.conn_open'
  | 'relay.conn_close'
  | 'relay.exposure_online'
  | 'relay.exposure_offline'
  | 'relay.auth_fail'
  | 'relay.events_rejected'
  | 'audit.pruned';

export interface AuditEvent {
  type: AuditType;
  actor?: string | null;
  subject?: string | null;
  data?: Record<string, unknown>;
}

/**
 * How far ahead of the database's clock an audit event may be dated, at most (as a relay's
 * reported times may be ahead of the control plane's, services/nodes.ts reportedTime).
 */
export const AUDIT_AHEAD_MAX_MS = 3600_000;

/**
 * An audit event's date, as SQL: `at` (the writer's clock: a date, or a prepared statement's
 * placeholder for one), but no later than the database's clock plus AUDIT_AHEAD_MAX_MS. The log
 * is pruned from its front in (tx, seq) order (history-prune.ts oldestAuditRun), so an event dated
 * in the future (a replica whose clock ran a year ahead) held back the pruning of every event after
 * it until that date was past the retention, and the log grew all that time. The database's clock
 * is the one clock every replica writes beside; a date is only ever moved back to it, never
 * forward. Every audit row is dated by it: audit(), auditAll(), and the lease statement's
 * `lease.issued` row (lease-insert.ts insertedLease).
 */
export function auditDate(at: Date | Placeholder): SQL {
  return sql`least(${at instanceof Date ? at.toISOString() : at}::timestamptz, ${databaseAhead(AUDIT_AHEAD_MAX_MS)})`;
}

/** The row of an audit event, dated by auditDate. */
function auditRow(at: Date, e: AuditEvent): PgInsertValue<typeof auditEvents> {
  return { at: auditDate(at), type: e.type, actor: e.actor ?? null, subject: e.subject ?? null, data: e.data ?? {} };
}

/** Appends an audit event. Pass a transaction to make it part of the same change. */
export async function audit(db: Pick<Db, 'insert'>, at: Date, e: AuditEvent): Promise<void> {
  await db.insert(auditEvents).values(auditRow(at, e));
}

/** Appends audit events in one statement, in the order given (a relay's event batch); none: nothing. */
export async function auditAll(db: Pick<Db, 'insert'>, events: { at: Date; e: AuditEvent }[]): Promise<void> {
  if (events.length) await db.insert(auditEvents).values(events.map(({ at, e }) => auditRow(at, e)));
}

export interface AuditQuery {
  after?: number;
  before?: number;
  order: 'asc' | 'desc';
  limit: number;
  actor?: string;
  /** An event type, or a prefix ending in a dot (`lease.`). */
  type?: string;
  subject?: string;
  since?: Date;
  until?: Date;
}

/**
 * Gives audit rows whose `tx` lies ahead of this cluster's transaction ids (a database restored
 * with pg_dump or moved from another cluster keeps the old cluster's ids, which may be far
 * higher) this transaction's id: oldest-first paging reads only rows below the oldest running
 * transaction (listAudit), so such rows stayed hidden, and every new row sorted before them, until
 * the new cluster's ids caught up. They keep their order among themselves (by seq) and come after
 * every row with a lower id, none of which a poller can have passed. Run at start; a no-op (an
 * index range scan) on a database that was never moved. Returns how many rows it moved.
 */
export async function reclaimFutureAuditIds(db: Pick<Db, 'execute'>): Promise<number> {
  const res = await db.execute(sql`update audit_events set tx = pg_current_xact_id() where tx > pg_current_xact_id()`);
  const r = res as unknown as { count?: number; affectedRows?: number };
  return Number(r.count ?? r.affectedRows ?? 0);
}

/**
 * The one query of a page of listAudit. `cursorTx`, oldest first after a cursor: the cursor row's
 * tx, null when that row is gone (pruned, or a seq drawn by an insert rolled back), undefined
 * when its id was never drawn. Filters by actor, type (a prefix: a
 * LIKE, which the type index's text_pattern_ops serves) and subject use their indexes (migration
 * 0006): newest first among a year of lease events, one user's page reads that user's rows only
 * (audit-indexes.test).
 */
export function auditPage(db: Pick<Db, 'select'>, q: AuditQuery, cursorTx?: string | null) {
  const conds: SQL[] = [];
  if (q.before !== undefined) conds.push(lt(auditEvents.seq, q.before));
  if (q.actor) conds.push(eq(auditEvents.actor, q.actor));
  if (q.type) conds.push(q.type.endsWith('.') ? like(auditEvents.type, `${q.type.replace(/_/g, '\\_')}%`) : eq(auditEvents.type, q.type));
  if (q.subject) conds.push(eq(auditEvents.subject, q.subject));
  if (q.since) conds.push(gte(auditEvents.at, q.since));
  if (q.until) conds.push(lte(auditEvents.at, q.until));
  let order: SQL[];
  if (q.order === 'desc') {
    if (q.after !== undefined) conds.push(gt(auditEvents.seq, q.after));
    order = [desc(auditEvents.seq)];
  } else {
    conds.push(sql`${auditEvents.tx} < pg_snapshot_xmin(pg_current_snapshot())`);
    // A cursor whose row is gone: pruned (cursorTx null), and every row before it with it (the
    // log is pruned from its front, history-prune.ts), so the page starts at the oldest row left;
    // or never drawn (undefined: above the id sequence), so the rows with a greater id.
    if (typeof cursorTx === 'string') conds.push(sql`(${auditEvents.tx}, ${auditEvents.seq}) > (${cursorTx}::xid8, ${q.after})`);
    else if (q.after !== undefined && cursorTx === undefined) conds.push(gt(auditEvents.seq, q.after));
    order = [asc(auditEvents.tx), asc(auditEvents.seq)];
  }
  return db
    .select({ seq: auditEvents.seq, at: auditEvents.at, type: auditEvents.type, actor: auditEvents.actor, subject: auditEvents.subject, data: auditEvents.data })
    .from(auditEvents)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(...order)
    .limit(q.limit);
}

/**
 * Audit events, filtered and paged by cursor (the policy decided at the route: admins).
 *
 * Oldest first (`order: 'asc'`) is how an exporter tails the log, and it must never page past an
 * event that commits later. `seq` is drawn when a row is inserted, not when its transaction
 * commits, and the writers (the lease hot path among them) do not take turns, so seq N+1 can be
 * visible while N is still uncommitted. Oldest first therefore goes by (tx, seq), `tx` being the
 * inserting transaction's 64-bit id, and reads only rows whose `tx` is below the xmin of the
 * statement's own snapshot (`pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction
 * still running). Every transaction below it has ended, so the rows there are final: committed and
 * visible, or never to be; and any transaction that commits later has an id at or above it, so its
 * rows sort after every row a page returned. (Comparing a row's tx with the horizon but paging by
 * seq would not do: a transaction with an older id can draw a later seq.) A cursor is the `id`
 * (seq) of the last event read; its row gives the tx to resume from. A long transaction holds the
 * horizon back: pages end early (even empty) and the poller asks again. On PGlite there is one
 * connection and no writer beside the reader, so the horizon is every committed row.
 *
 * Newest first (`order: 'desc'`, `before`: the console browsing) stays by seq over everything
 * committed: it shows the latest events at once, and an event that commits late may turn up
 * below the top of a list already read.
 */
export async function listAudit(db: Pick<Db, 'select'>, q: AuditQuery) {
  let cursorTx: string | null | undefined;
  if (q.order !== 'desc' && q.after !== undefined) {
    const [at] = await db
      .select({ tx: auditEvents.tx, drawn: sql<boolean>`${q.after} <= coalesce(pg_sequence_last_value(pg_get_serial_sequence('audit_events', 'seq')::regclass), 0)` })
      .from(sql`(select 1) as one`)
      .leftJoin(auditEvents, eq(auditEvents.seq, q.after));
    cursorTx = at?.tx ?? (at?.drawn ? null : undefined);
  }
  const rows = await auditPage(db, q, cursorTx);
  return {
    events: rows.map((r) => ({ id: String(r.seq), at: r.at.toISOString(), type: r.type, actor: r.actor, subject: r.subject, data: r.data })),
    next_cursor: rows.length === q.limit ? String(rows[rows.length - 1]!.seq) : null,
  };
}
