import { and, asc, desc, eq, gt, gte, like, lt, lte, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { auditEvents } from '../db/schema/index.js';

export type AuditType =
  | 'auth.login'
  | 'auth.login_failed'
  | 'auth.refresh_reuse'
  | 'auth.logout'
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
  | 'node.enrolled'
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

/** The row of an audit event (for callers that insert it as part of a larger statement). */
export function auditRow(at: Date, e: AuditEvent): typeof auditEvents.$inferInsert {
  return { at, type: e.type, actor: e.actor ?? null, subject: e.subject ?? null, data: e.data ?? {} };
}

/** Appends an audit event. Pass a transaction to make it part of the same change. */
export async function audit(db: Pick<Db, 'insert'>, at: Date, e: AuditEvent): Promise<void> {
  await db.insert(auditEvents).values(auditRow(at, e));
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

/** Audit events, filtered and paged by cursor (the policy decided at the route: admins). */
export async function listAudit(db: Pick<Db, 'select'>, q: AuditQuery) {
  const conds: SQL[] = [];
  if (q.after !== undefined) conds.push(gt(auditEvents.seq, q.after));
  if (q.before !== undefined) conds.push(lt(auditEvents.seq, q.before));
  if (q.actor) conds.push(eq(auditEvents.actor, q.actor));
  if (q.type) conds.push(q.type.endsWith('.') ? like(auditEvents.type, `${q.type.replace(/_/g, '\\_')}%`) : eq(auditEvents.type, q.type));
  if (q.subject) conds.push(eq(auditEvents.subject, q.subject));
  if (q.since) conds.push(gte(auditEvents.at, q.since));
  if (q.until) conds.push(lte(auditEvents.at, q.until));
  const rows = await db
    .select()
    .from(auditEvents)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(q.order === 'desc' ? desc(auditEvents.seq) : asc(auditEvents.seq))
    .limit(q.limit);
  return {
    events: rows.map((r) => ({ id: String(r.seq), at: r.at.toISOString(), type: r.type, actor: r.actor, subject: r.subject, data: r.data })),
    next_cursor: rows.length === q.limit ? String(rows[rows.length - 1]!.seq) : null,
  };
}
