import { boolean, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { users } from './users.js';
import { nodes } from './nodes.js';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const exposures = pgTable('exposures', {
  name: text('name').primaryKey(),
  ownerId: text('owner_id')
    .notNull()
    .references(() => users.id, { onDelete: 'cascade' }),
  allow: jsonb('allow').$type<string[]>().notNull(),
  pinnedNodeId: text('pinned_node_id').references(() => nodes.id, { onDelete: 'set null' }),
  /** The node that last reported X online for this exposure, and since when. */
  currentNodeId: text('current_node_id').references(() => nodes.id, { onDelete: 'set null' }),
  online: boolean('online').notNull().default(false),
  onlinePort: integer('online_port'),
  statusAt: ts('status_at'),
  createdAt: ts('created_at').notNull(),
  updatedAt: ts('updated_at').notNull(),
});
