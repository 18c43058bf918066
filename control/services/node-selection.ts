import { and, count, desc, eq, gt, isNull, inArray } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { exposures} from '../db/schema/index.js';
import { leases, nodes } from '../db/schema/index.js';

type NodeRow = typeof nodes.$inferSelect;

export function isOnline(node: Pick<NodeRow, 'lastSeenAt'>, now: Date, windowSeconds: number): boolean {
  return node.lastSeenAt !== null && now.getTime() - node.lastSeenAt.getTime() <= windowSeconds * 1000;
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
 */
export async function pickExposeNode(
  db: Db,
  now: Date,
  windowSeconds: number,
  exposure: typeof exposures.$inferSelect,
): Promise<NodeRow | undefined> {
  if (exposure.pinnedNodeId) {
    const [n] = await db.select().from(nodes).where(eq(nodes.id, exposure.pinnedNodeId)).limit(1);
    return n;
  }
  // Reconnects stay where the exposure lives now, so make-before-break works on one relay.
  const all = await db.select().from(nodes);
  const online = all.filter((n) => isOnline(n, now, windowSeconds));
  if (exposure.currentNodeId && exposure.online) {
    const current = online.find((n) => n.id === exposure.currentNodeId);
    if (current) return current;
  }
  const load = await activeExposuresByNode(db, now);
  return online.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0) || a.name.localeCompare(b.name))[0];
}

/**
 * Where an open lease goes, and the port X has bound there: the node X is connected to (as its
 * relay reported), else the node of the newest active expose lease for the exposure.
 */
export async function exposureCurrentNode(
  db: Db,
  now: Date,
  exposure: typeof exposures.$inferSelect,
): Promise<{ node: NodeRow; port: number | null } | undefined> {
  let nodeId: string | null = exposure.online ? exposure.currentNodeId : null;
  let port: number | null = exposure.online ? exposure.onlinePort : null;
  if (!nodeId || port === null) {
    const [l] = await db
      .select({ nodeId: leases.nodeId, port: leases.port })
      .from(leases)
      .where(
        and(eq(leases.kind, 'expose'), eq(leases.exposure, exposure.name), gt(leases.expiresAt, now), isNull(leases.revokedAt)),
      )
      .orderBy(desc(leases.createdAt))
      .limit(1);
    if (!nodeId && l) {
      nodeId = l.nodeId;
      port = l.port;
    } else if (l && l.nodeId === nodeId) port ??= l.port;
  }
  if (!nodeId) return undefined;
  const [n] = await db.select().from(nodes).where(inArray(nodes.id, [nodeId])).limit(1);
  return n ? { node: n, port } : undefined;
}
