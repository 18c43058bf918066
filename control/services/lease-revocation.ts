import { and, eq, gt, inArray, isNull, sql, type SQL } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import { auditEvents, leases, revocations, serviceTokens, users } from '../db/schema/index.js';
import { auditRow } from './audit.js';
import { parseScopes, type UserPrincipal } from './authz.js';

/**
 * Revoking leases: marking them and appending them to their relays' revocation feeds, and, after
 * a grant shrank, finding the active leases it no longer allows.
 */

type LeaseRow = typeof leases.$inferSelect;

/** The NOTIFY channel of revocations; the payload is the comma-separated ids of the nodes concerned. */
export const REVOCATIONS_CHANNEL = 'tunnel_revocations';
/** pg_advisory_xact_lock key that orders revocation feed inserts (arbitrary constant, 'trev'). */
const REVOCATION_FEED_LOCK = 0x74726576;
/** NOTIFY payloads must stay under 8000 bytes; beyond this, '*' (every node's polls read again). */
const MAX_NOTIFY_PAYLOAD = 4000;

/** Which active leases, for `revokeLeases`. Every condition given must hold. */
export interface LeaseSelector {
  ids?: string[];
  userId?: string;
  exposure?: string;
  kind?: LeaseRow['kind'];
  nodeId?: string;
  serviceTokenId?: string;
  /** The login session (refresh-token family) the leases were issued through. */
  sessionId?: string;
  /** Further SQL on `leases` (for grants that need a subquery). */
  where?: SQL;
}

/**
 * Revokes the active leases `where` selects: marks them and appends them to their nodes'
 * revocation feeds, in one transaction, so every relay closes their connections within the
 * feed's bound. Already revoked or expired leases are left alone. Returns the revoked ids.
 */
export async function revokeLeases(
  deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>,
  where: LeaseSelector,
  actor: string | null,
  reason?: string,
): Promise<string[]> {
  const now = deps.clock.now();
  const conds = selectorConditions(where, now);
  const revoked = await deps.db.transaction(async (tx) => {
    const revoked = await tx
      .update(leases)
      .set({ revokedAt: now })
      .where(and(...conds))
      .returning({ id: leases.id, nodeId: leases.nodeId, expiresAt: leases.expiresAt });
    if (revoked.length) {
      // Feed entries are numbered in commit order: a relay that read up to seq N must never see
      // a smaller seq commit later (it would skip it). Revokers take turns from here to commit.
      await tx.execute(sql`select pg_advisory_xact_lock(${REVOCATION_FEED_LOCK})`);
      await tx
        .insert(revocations)
        .values(revoked.map((r) => ({ leaseId: r.id, nodeId: r.nodeId, expiresAt: r.expiresAt, createdAt: now })));
      await tx
        .insert(auditEvents)
        .values(revoked.map((r) => auditRow(now, { type: 'lease.revoked', actor, subject: r.id, ...(reason ? { data: { reason } } : {}) })));
      // Other replicas hear it at commit and wake their relays' long polls (services/revocation-hub.ts).
      const nodeIds = [...new Set(revoked.map((r) => r.nodeId))].join(',');
      await tx.execute(sql`select pg_notify(${REVOCATIONS_CHANNEL}, ${nodeIds.length <= MAX_NOTIFY_PAYLOAD ? nodeIds : '*'})`);
    }
    return revoked;
  });
  // Committed: this replica's waiting polls get the entries at once.
  const byNode = new Map<string, { lease_id: string; exp: number }[]>();
  for (const r of revoked) {
    const list = byNode.get(r.nodeId) ?? [];
    list.push({ lease_id: r.id, exp: Math.floor(r.expiresAt.getTime() / 1000) });
    byNode.set(r.nodeId, list);
  }
  for (const [nodeId, list] of byNode) deps.revocationHub?.publish(nodeId, list);
  return revoked.map((r) => r.id);
}

function selectorConditions(where: LeaseSelector, now: Date): SQL[] {
  const conds = [isNull(leases.revokedAt), gt(leases.expiresAt, now)];
  if (where.ids) conds.push(inArray(leases.id, where.ids));
  if (where.userId) conds.push(eq(leases.userId, where.userId));
  if (where.exposure) conds.push(eq(leases.exposure, where.exposure));
  if (where.kind) conds.push(eq(leases.kind, where.kind));
  if (where.nodeId) conds.push(eq(leases.nodeId, where.nodeId));
  if (where.serviceTokenId) conds.push(eq(leases.serviceTokenId, where.serviceTokenId));
  if (where.sessionId) conds.push(eq(leases.sessionId, where.sessionId));
  if (where.where) conds.push(where.where);
  return conds;
}

/**
 * After a grant shrank: asks `stillAllowed` again, for every active lease `where` selects, with
 * the principal it was issued to as that principal is now (the user's role, the service token's
 * current scopes), and revokes the leases it no longer allows.
 */
export async function revokeNoLongerAllowed(
  deps: Pick<Deps, 'db' | 'clock'>,
  where: LeaseSelector,
  stillAllowed: (p: UserPrincipal, lease: LeaseRow) => boolean,
  actor: string | null,
  reason: string,
): Promise<string[]> {
  const rows = await deps.db
    .select({ lease: leases, user: users, scopes: serviceTokens.scopes })
    .from(leases)
    .innerJoin(users, eq(users.id, leases.userId))
    .leftJoin(serviceTokens, eq(serviceTokens.id, leases.serviceTokenId))
    .where(and(...selectorConditions(where, deps.clock.now())));
  const gone = rows
    .filter((r) => {
      const p: UserPrincipal = {
        kind: 'user',
        userId: r.user.id,
        name: r.user.name,
        role: r.user.role,
        scopes: r.lease.serviceTokenId ? parseScopes(r.scopes ?? []) : null,
        serviceTokenId: r.lease.serviceTokenId,
      };
      return !stillAllowed(p, r.lease);
    })
    .map((r) => r.lease.id);
  return gone.length ? revokeLeases(deps, { ids: gone }, actor, reason) : [];
}
