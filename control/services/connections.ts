import { and, desc, eq, gt, isNull, lt, lte, or, sql, type SQL } from 'drizzle-orm';
import { alias, type AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import { connections, exposures, leases, nodes, users } from '../db/schema/index.js';
import type { ConnectionEvent } from '../../protocol/api-types.js';
import { assertAllowed, can, isAdmin, type UserPrincipal } from './authz.js';
import { isOnline, onlineSince } from './node-selection.js';
import { databaseAgo } from '../db/database-clock.js';


/** `leases` again, as the in-band renewals of a connection's lease (renewsLease). */
export const renewal = alias(leases, 'renewal');

/**
 * `renewal` continues the grant of `leases` (a connection's lease) in band: a relay connection
 * renews with `lease-renew@tunnel` (no event reaches the control plane), presenting the same
 * user's certificate for the same key on the same relay (`nodeId`). `leases` renews itself. The
 * rule `live` in GET /v1/connections and the history prune's stale connections share.
 */
export function renewsLease(nodeId: AnyPgColumn): SQL {
  return and(eq(renewal.userId, leases.userId), eq(renewal.sshKey, leases.sshKey), eq(renewal.nodeId, nodeId))!;
}
/** Closed connections are kept this long for the console and `GET /v1/connections?state=all`. */
export const CLOSED_RETENTION_MS = 7 * 86400 * 1000;

type Tx = Pick<Db, 'insert' | 'update' | 'delete'>;

/**
 * Applies one relay event to the connections table: conn_open adds the session, conn_close
 * closes it with its byte counts (adding it closed if the open event was lost). Other event
 * types are ignored. Replays are harmless (the key is node + session).
 */
export async function recordConnectionEvent(tx: Tx, nodeId: string, e: ConnectionEvent, at: Date): Promise<void> {
  if (!e.session_id || (e.type !== 'conn_open' && e.type !== 'conn_close')) return;
  if (e.type === 'conn_open') {
    await tx
      .insert(connections)
      .values({ nodeId, sessionId: e.session_id, leaseId: e.lease_id ?? null, remote: e.remote ?? null, openedAt: at })
      .onConflictDoNothing();
    return;
  }
  const closed = { closedAt: at, bytesIn: e.bytes_in ?? null, bytesOut: e.bytes_out ?? null };
  await tx
    .insert(connections)
    .values({ nodeId, sessionId: e.session_id, leaseId: e.lease_id ?? null, remote: e.remote ?? null, openedAt: at, ...closed })
    .onConflictDoUpdate({ target: [connections.nodeId, connections.sessionId], set: closed });
}

/**
 * Closes the connections a node reported open before `startedAt`, its current run's start: the
 * run that opened them ended without reporting their close (it crashed or was killed). They are
 * marked closed at `startedAt` (the latest they can have lasted), byte counts unknown.
 */
export async function closeConnectionsOfEarlierRun(tx: Tx, nodeId: string, startedAt: Date): Promise<void> {
  await tx
    .update(connections)
    .set({ closedAt: startedAt })
    .where(and(eq(connections.nodeId, nodeId), isNull(connections.closedAt), lt(connections.openedAt, startedAt)));
}

/**
 * Drops connections closed longer than the retention ago by the database's clock (cheap: an index
 * range on closed_at). By this replica's, one whose clock ran a week ahead deleted connections
 * closed minutes ago, and with them what names their lease (history-prune.ts keeps lease rows as
 * long as closed connections are kept).
 */
export async function pruneConnections(tx: Tx): Promise<void> {
  await tx.delete(connections).where(lt(connections.closedAt, databaseAgo(CLOSED_RETENTION_MS)));
}

export interface ConnectionFilter {
  state: 'open' | 'all';
  user?: string | undefined;
  exposure?: string | undefined;
  node?: string | undefined;
  kind?: 'expose' | 'open' | 'egress' | undefined;
  limit: number;
}

export interface ConnectionView {
  node: string;
  session_id: string;
  lease_id: string | null;
  kind: 'expose' | 'open' | 'egress' | null;
  user: string | null;
  exposure: string | null;
  targets: { host: string; port: number }[] | null;
  remote: string | null;
  opened_at: string;
  closed_at: string | null;
  bytes_in: number | null;
  bytes_out: number | null;
  /**
   * The lease the connection holds now, as far as the control plane can tell: the newest valid
   * lease renewing its own (renewsLease; its own while that is the newest), null when none is.
   * `lease_id` stays the one it opened with (a renewal in band sends no event).
   */
  current_lease_id: string | null;
  /** Open as last reported, on a relay that is online, under a lease that is still valid (or renewed in band by one that is). */
  live: boolean;
}

/**
 * The connections `p` may see, newest first: admins all; a member those under their own leases
 * and those to exposures they own (the policy's `connection.read`, also applied in SQL so the
 * limit counts only visible rows). An exposure's owner sees connections only under leases issued
 * after it was created, so a name taken over after a delete shows nothing of the old one.
 */
export async function listConnections(
  deps: Pick<Deps, 'db' | 'clock' | 'settings' | 'databaseOutages'>,
  p: UserPrincipal,
  f: ConnectionFilter,
): Promise<ConnectionView[]> {
  assertAllowed(p, 'connection.list');
  const now = deps.clock.now();
  const conds: SQL[] = [];
  if (!isAdmin(p)) conds.push(or(eq(leases.userId, p.userId), eq(exposures.ownerId, p.userId))!);
  if (f.state === 'open') conds.push(isNull(connections.closedAt));
  if (f.user) conds.push(eq(users.name, f.user));
  if (f.exposure) conds.push(eq(leases.exposure, f.exposure));
  if (f.node) conds.push(eq(nodes.name, f.node));
  if (f.kind) conds.push(eq(leases.kind, f.kind));
  // A connection renewed in band (lease-renew@tunnel: no event reaches the control plane) holds
  // a later lease of the same user for the same key on the same relay, not the one it opened
  // with: it is live while one of those is (history-prune.ts goes by the same rule), and holds
  // the newest of them (`tunnel leases` shows that one connected).
  const heldNow = deps.db
    .select({ id: renewal.id })
    .from(renewal)
    .where(and(renewsLease(connections.nodeId), isNull(renewal.revokedAt), gt(renewal.expiresAt, now)))
    .orderBy(desc(renewal.expiresAt), desc(renewal.id))
    .limit(1);
  const rows = await deps.db
    .select({ c: connections, node: nodes, lease: leases, user: users.name, exposureOwner: exposures.ownerId, currentLeaseId: sql<string | null>`(${heldNow})` })
    .from(connections)
    .innerJoin(nodes, eq(nodes.id, connections.nodeId))
    .leftJoin(leases, eq(leases.id, connections.leaseId))
    .leftJoin(users, eq(users.id, leases.userId))
    .leftJoin(exposures, and(eq(exposures.name, leases.exposure), lte(exposures.createdAt, leases.createdAt)))
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(connections.openedAt))
    .limit(f.limit);
  const since = onlineSince(deps, now);
  return rows
    .filter((r) => can(p, 'connection.read', { leaseUserId: r.lease?.userId ?? null, exposureOwnerId: r.exposureOwner }))
    .map((r) => connectionView(r, since));
}

type ConnectionRow = {
  c: typeof connections.$inferSelect;
  node: typeof nodes.$inferSelect;
  lease: typeof leases.$inferSelect | null;
  user: string | null;
  /** The newest valid lease of the connection's user, key and relay (its own or an in-band renewal). */
  currentLeaseId: string | null;
};

function connectionView({ c, node, lease, user, currentLeaseId }: ConnectionRow, since: Date): ConnectionView {
  const leaseValid = !!lease && currentLeaseId !== null;
  return {
    node: node.name,
    session_id: c.sessionId,
    lease_id: c.leaseId,
    kind: lease?.kind ?? null,
    user,
    exposure: lease?.exposure ?? null,
    targets: lease?.targets ?? null,
    remote: c.remote,
    opened_at: c.openedAt.toISOString(),
    closed_at: c.closedAt?.toISOString() ?? null,
    bytes_in: c.bytesIn,
    bytes_out: c.bytesOut,
    current_lease_id: lease ? currentLeaseId : null,
    live: c.closedAt === null && isOnline(node, since) && leaseValid,
  };
}
