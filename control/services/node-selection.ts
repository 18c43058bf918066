import { and, count, desc, eq, gt, isNull } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import type { exposures} from '../db/schema/index.js';
import { leases, nodes } from '../db/schema/index.js';

type NodeRow = typeof nodes.$inferSelect;

/**
 * The oldest last heartbeat with which a relay is online at `now`: `nodeOnlineWindow` seconds
 * before it, not counting time in which this replica could not reach its database
 * (services/database-outages.ts).
 */
export function onlineSince(deps: Pick<Deps, 'settings' | 'databaseOutages'>, now: Date): Date {
  return deps.databaseOutages.onlineSince(now, deps.settings.nodeOnlineWindow);
}

/** Whether a relay is online: its last heartbeat no older than `since` (`onlineSince`). */
export function isOnline(node: Pick<NodeRow, 'lastSeenAt'>, since: Date): boolean {
  return node.lastSeenAt !== null && node.lastSeenAt.getTime() >= since.getTime();
}

/** Active expose leases per node: the load measure for placing a new exposure. */
export async function activeExposuresByNode(db: Db, now: Date): Promise<Map<string, number>> {
  const rows = await db
    .select({ nodeId: leases.nodeId, n: count() })
    .from(leases)
    .where(and(eq(leases.kind, 'expose'), gt(leases.expiresAt, now), isNull(leases.revokedAt)))
    .groupBy(leases.nodeId);
  return new Map(rows.map((r) => [r.nodeId, r.n]));
}

/**
 * Where an expose lease goes: the exposure's pinned node if set (online or not: the operator
 * asked for it), else the online node with the fewest active exposures (ties: by name).
 * Nodes in `avoid` (relays the client just failed to reach: a crashed relay still looks online
 * until its heartbeat goes stale) are left out while any other online node remains.
 */
export async function pickExposeNode(
  db: Db,
  now: Date,
  /** The oldest last heartbeat of an online relay (onlineSince). */
  since: Date,
  exposure: Pick<typeof exposures.$inferSelect, 'pinnedNodeId' | 'currentNodeId' | 'online'>,
  avoid: readonly string[] = [],
): Promise<NodeRow | undefined> {
  if (exposure.pinnedNodeId) {
    const [n] = await db.select().from(nodes).where(eq(nodes.id, exposure.pinnedNodeId)).limit(1);
    return n;
  }
  // Reconnects stay where the exposure lives now, so make-before-break works on one relay.
  const all = await db.select().from(nodes);
  const alive = all.filter((n) => isOnline(n, since));
  const preferred = alive.filter((n) => !avoid.includes(n.id));
  const online = preferred.length ? preferred : alive;
  if (exposure.currentNodeId && exposure.online) {
    const current = online.find((n) => n.id === exposure.currentNodeId);
    if (current) return current;
  }
  const load = await activeExposuresByNode(db, now);
  return online.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0) || a.name.localeCompare(b.name))[0];
}

/** How long after its expose lease was issued an exposure counts as connecting (its relay's report may lag). */
export const CONNECTING_GRACE_SECONDS = 15;

/**
 * Where an open lease goes, and the port X has bound there: the node X is connected to, as its
 * relay reported (and that relay is alive). Right after X got its expose lease the report may
 * not have arrived yet: an expose lease issued within the grace period, with no offline report
 * since, counts as connecting. Anything else is offline (undefined): abandoned expose leases
 * of a X that went away do not make an exposure look online.
 */
export async function exposureCurrentNode(
  db: Db,
  now: Date,
  /** The oldest last heartbeat of an online relay (onlineSince). */
  since: Date,
  exposure: Pick<typeof exposures.$inferSelect, 'name' | 'online' | 'currentNodeId' | 'onlinePort' | 'statusAt'>,
): Promise<{ node: NodeRow; port: number | null } | undefined> {
  if (exposure.online && exposure.currentNodeId) {
    const [n] = await db.select().from(nodes).where(eq(nodes.id, exposure.currentNodeId)).limit(1);
    if (n && isOnline(n, since)) return { node: n, port: exposure.onlinePort };
  }
  const leasedAfter = Math.max(now.getTime() - CONNECTING_GRACE_SECONDS * 1000, exposure.statusAt && !exposure.online ? exposure.statusAt.getTime() : 0);
  const [l] = await db
    .select({ lease: leases, node: nodes })
    .from(leases)
    .innerJoin(nodes, eq(nodes.id, leases.nodeId))
    .where(
      and(
        eq(leases.kind, 'expose'),
        eq(leases.exposure, exposure.name),
        gt(leases.expiresAt, now),
        isNull(leases.revokedAt),
        gt(leases.createdAt, new Date(leasedAfter)),
      ),
    )
    .orderBy(desc(leases.createdAt))
    .limit(1);
  if (!l || !isOnline(l.node, since)) return undefined;
  return { node: l.node, port: l.lease.port };
}
