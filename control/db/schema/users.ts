import { sql } from 'drizzle-orm';
import { boolean, index, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const users = pgTable('users', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  role: text('role', { enum: ['admin', 'member'] }).notNull(),
  /** scrypt hash in PHC-like form; null for users who only use service tokens. */
  passwordHash: text('password_hash'),
  disabled: boolean('disabled').notNull().default(false),
  /**
   * One more at every disable (services/users.ts `disableUser`). What a sign-in of the user issued
   * that is checked later, not kept as a row the disable revokes, carries the generation it was
   * issued at and is void at another: the device approval page's ticket (routes/device-page.ts),
   * which must not approve once the user was disabled, also after they are enabled again.
   */
  generation: integer('generation').notNull().default(0),
  createdAt: ts('created_at').notNull(),
});

/** Rotating refresh tokens; `familyId` groups a login's rotations so reuse revokes them all. */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: text('id').primaryKey(),
    familyId: text('family_id').notNull(),
    userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull().unique(),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    /** Set when this token was exchanged for a new one. */
    rotatedAt: ts('rotated_at'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [
    index('refresh_tokens_family_idx').on(t.familyId),
    index('refresh_tokens_expires_idx').on(t.expiresAt),
    // The live console tokens, oldest first: what the sweep of abandoned console sessions reads
    // (auth/idle-sessions.ts idleConsoleTokens, whose WHERE repeats this predicate word for word;
    // 'cfam' is auth/sessions.ts CONSOLE_FAMILY). Without it the sweep read every row of the table,
    // each rotation's among them, or every console one.
    index('refresh_tokens_console_live_idx')
      .on(t.createdAt, t.id)
      .where(sql`starts_with(family_id, 'cfam_') and rotated_at is null and revoked_at is null`),
  ],
);

export const serviceTokens = pgTable('service_tokens', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  tokenHash: text('token_hash').notNull().unique(),
  scopes: jsonb('scopes').$type<string[]>().notNull(),
  createdAt: ts('created_at').notNull(),
  expiresAt: ts('expires_at'),
  revokedAt: ts('revoked_at'),
});

/** RFC 8628 device authorizations. */
export const deviceCodes = pgTable('device_codes', {
  id: text('id').primaryKey(),
  deviceCodeHash: text('device_code_hash').notNull().unique(),
  userCode: text('user_code').notNull().unique(),
  clientName: text('client_name'),
  /** The address that started the authorization (shown on the approval page; null before migration 0003). */
  requesterAddress: text('requester_address'),
  status: text('status', { enum: ['pending', 'approved', 'denied', 'consumed'] }).notNull(),
  userId: text('user_id').references(() => users.id, { onDelete: 'cascade' }),
  intervalSeconds: integer('interval_seconds').notNull(),
  lastPolledAt: ts('last_polled_at'),
  createdAt: ts('created_at').notNull(),
  expiresAt: ts('expires_at').notNull(),
}, (t) => [index('device_codes_expires_idx').on(t.expiresAt)]);

/** Small key/value settings, e.g. the hash of the one-time setup code. */
export const settings = pgTable('settings', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});
