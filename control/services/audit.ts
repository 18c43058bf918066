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
  | 'relay.auth_fail';

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
