import { boolean, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const nodes = pgTable('nodes', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  address: text('address').notNull(),
  hostKey: text('host_key').notNull(),
  tokenHash: text('token_hash').notNull().unique(),
  enrolledAt: ts('enrolled_at').notNull(),
  lastSeenAt: ts('last_seen_at'),
  nativeCrypto: boolean('native_crypto'),
  egressDriver: text('egress_driver'),
  version: text('version'),
  connections: integer('connections'),
});

export const enrollmentTokens = pgTable('enrollment_tokens', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  tokenHash: text('token_hash').notNull().unique(),
  createdBy: text('created_by'),
  createdAt: ts('created_at').notNull(),
  expiresAt: ts('expires_at').notNull(),
  usedAt: ts('used_at'),
});

export const egressTargets = pgTable('egress_targets', {
  name: text('name').primaryKey(),
  nodeId: text('node_id')
    .notNull()
    .references(() => nodes.id, { onDelete: 'cascade' }),
  host: text('host').notNull(),
  port: integer('port').notNull(),
  allow: jsonb('allow').$type<string[]>().notNull(),
  createdAt: ts('created_at').notNull(),
});
