import { sql } from 'drizzle-orm';
import { bigserial, customType, index, jsonb, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { users } from './users.js';
import { nodes } from './nodes.js';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** A 64-bit transaction id (`xid8`: epoch and xid, never wraps), as its decimal text. */
const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => 'xid8' });

export const leases = pgTable(
  'leases',
  {
    id: text('id').primaryKey(),
    kind: text('kind', { enum: ['expose', 'open', 'egress'] }).notNull(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    nodeId: text('node_id')
      .notNull()
      .references(() => nodes.id, { onDelete: 'cascade' }),
    exposure: text('exposure'),
    port: integer('port'),
    targets: jsonb('targets').$type<{ host: string; port: number }[]>(),
    sshKey: text('ssh_key').notNull(),
    serial: text('serial').notNull(),
    serviceTokenId: text('service_token_id'),
    /** The login session (refresh-token family, the access token's `sid`) it was issued through; null for a service token's. */
    sessionId: text('session_id'),
    notBefore: ts('not_before').notNull(),
    expiresAt: ts('expires_at').notNull(),
    revokedAt: ts('revoked_at'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    index('leases_user_idx').on(t.userId, t.expiresAt),
    index('leases_node_kind_idx').on(t.nodeId, t.kind, t.expiresAt),
    index('leases_exposure_idx').on(t.exposure, t.expiresAt),
    // Ending a login session (logout, refresh-token reuse) revokes its leases through this.
    index('leases_session_idx').on(t.sessionId, t.expiresAt),
    // Pruning leases long expired (services/history-prune.ts) finds them through this, not a scan of the table.
    index('leases_expires_idx').on(t.expiresAt),
    // A connection's in-band renewals (services/connections.ts renewsLease: same user, key and
    // relay, still valid) are found through this, for GET /v1/connections's live and the history
    // prune's stale connections; leases_user_idx alone read every lease of the user per connection.
    index('leases_user_key_idx').on(t.userId, t.sshKey, t.nodeId, t.expiresAt),
  ],
);

/** Append-only revocation feed; relays resume from the last `seq` they saw. */
export const revocations = pgTable(
  'revocations',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    leaseId: text('lease_id').notNull(),
    nodeId: text('node_id').notNull(),
    expiresAt: ts('expires_at').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('revocations_node_idx').on(t.nodeId, t.seq)],
);

export const auditEvents = pgTable(
  'audit_events',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    at: ts('at').notNull(),
    type: text('type').notNull(),
    actor: text('actor'),
    subject: text('subject'),
    data: jsonb('data').$type<Record<string, unknown>>().notNull(),
    /**
     * The inserting transaction's id. `seq` is drawn at insert, not at commit, so oldest-first
     * paging goes by (tx, seq) below the oldest transaction still running (services/audit.ts).
     */
    tx: xid8('tx')
      .notNull()
      .default(sql`pg_current_xact_id()`),
  },
  // The audit log's filters (GET /v1/audit, the console): by actor, type (text_pattern_ops: a
  // prefix such as `user.` is a LIKE whatever the database's collation) or subject, newest first,
  // without reading a year of lease events to find one user's.
  (t) => [
    index('audit_events_at_idx').on(t.at),
    index('audit_events_tx_idx').on(t.tx, t.seq),
    index('audit_events_actor_idx').on(t.actor, t.seq),
    index('audit_events_type_idx').on(t.type.op('text_pattern_ops'), t.seq),
    index('audit_events_subject_idx').on(t.subject, t.seq),
  ],
);

/** Fixed-window counters shared by every replica (login and token endpoints). */
export const rateLimits = pgTable('rate_limits', {
  key: text('key').primaryKey(),
  windowStart: ts('window_start').notNull(),
  count: integer('count').notNull(),
});
