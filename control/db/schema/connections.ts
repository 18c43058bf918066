import { bigint, index, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { nodes } from './nodes.js';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * SSH connections to relays, as the relays report them (conn_open / conn_close events): who is
 * connected where right now, since when, and what moved. One row per relay session; closed rows
 * are kept for a while for the console and then pruned.
 */
export const connections = pgTable(
  'connections',
  {
    nodeId: text('node_id')
      .notNull()
      .references(() => nodes.id, { onDelete: 'cascade' }),
    sessionId: text('session_id').notNull(),
    leaseId: text('lease_id'),
    remote: text('remote'),
    openedAt: ts('opened_at').notNull(),
    closedAt: ts('closed_at'),
    bytesIn: bigint('bytes_in', { mode: 'number' }),
    bytesOut: bigint('bytes_out', { mode: 'number' }),
  },
  (t) => [
    primaryKey({ columns: [t.nodeId, t.sessionId] }),
    index('connections_lease_idx').on(t.leaseId),
    index('connections_closed_idx').on(t.closedAt),
  ],
);
