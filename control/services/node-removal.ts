import { and, asc, count, eq, gt, isNull, sql } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import { egressTargets, enrollmentTokens, exposures, leases, nodes } from '../db/schema/index.js';
import { AppError, notFound } from '../lib/errors.js';
import { audit } from './audit.js';
import { assertAllowed, type UserPrincipal } from './authz.js';
import { credentialNotice } from './nodes.js';
import { REVOCATIONS_CHANNEL } from './lease-revocation.js';
import { recheckAdminUnderLock } from './owner-lock.js';

/** The credential hash a removed node's held polls are evicted for (matches no credential: hashes are hex). */
const REMOVED = 'removed';

/** Names a refusal lists, at most. */
const LISTED = 10;

const listed = (names: readonly string[]) => (names.length > LISTED ? `${names.slice(0, LISTED).join(', ')} and more` : names.join(', '));

/**
 * Removes the relay named `name` (an admin): its row goes, and with it its credential (every
 * request of the relay is 401 from now on, and a poll it holds ends at once, on every replica:
 * it fails closed, closing every connection, node/relay.ts), its leases and connection records
 * (the audit keeps what happened), and its unused enrollment tokens (one made for it cannot bring
 * it back). Exposures online there go offline. Refused with 409 CONFLICT while an exposure is
 * pinned to it or an egress target is on it: those are grants an admin placed there, and
 * removing them with the relay would widen (an unpinned exposure) or end (a target) them behind
 * the admin's back.
 */
export async function removeNode(
  deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>,
  p: UserPrincipal,
  name: string,
): Promise<{ id: string; leases: number }> {
  assertAllowed(p, 'node.delete');
  const now = deps.clock.now();
  const removed = await deps.db.transaction(async (tx) => {
    await recheckAdminUnderLock(tx, p, 'node.delete');
    // Locked: an enrollment under this name, a heartbeat or a lease for it waits, then finds it gone.
    const [node] = await tx.select({ id: nodes.id, address: nodes.address }).from(nodes).where(eq(nodes.name, name)).for('update');
    if (!node) throw notFound(`relay "${name}"`);
    const pinned = (await tx.select({ name: exposures.name }).from(exposures).where(eq(exposures.pinnedNodeId, node.id)).orderBy(asc(exposures.name)).limit(LISTED + 1)).map((r) => r.name);
    const targets = (await tx.select({ name: egressTargets.name }).from(egressTargets).where(eq(egressTargets.nodeId, node.id)).orderBy(asc(egressTargets.name)).limit(LISTED + 1)).map((r) => r.name);
    if (pinned.length > 0 || targets.length > 0) {
      const what = [
        pinned.length ? `exposures pinned to it (${listed(pinned)}: pin them elsewhere or unpin them, tunnel exposures create NAME --node)` : '',
        targets.length ? `egress targets on it (${listed(targets)}: move or delete them, tunnel admin egress put|rm)` : '',
      ].filter(Boolean);
      throw new AppError('CONFLICT', `relay "${name}" still has ${what.join(' and ')}; nothing was removed`);
    }
    const [live] = await tx
      .select({ n: count() })
      .from(leases)
      .where(and(eq(leases.nodeId, node.id), isNull(leases.revokedAt), gt(leases.expiresAt, now)));
    const withdrawn = await tx
      .update(enrollmentTokens)
      .set({ usedAt: now })
      .where(and(eq(enrollmentTokens.name, name), isNull(enrollmentTokens.usedAt), gt(enrollmentTokens.expiresAt, now)))
      .returning({ id: enrollmentTokens.id });
    await tx.update(exposures).set({ online: false, statusAt: now }).where(eq(exposures.currentNodeId, node.id));
    await tx.delete(nodes).where(eq(nodes.id, node.id));
    const leaseCount = Number(live?.n ?? 0);
    await audit(tx, now, {
      type: 'node.removed',
      actor: p.userId,
      subject: node.id,
      data: { name, address: node.address, live_leases: leaseCount, enrollment_tokens_withdrawn: withdrawn.length },
    });
    // Other replicas end the polls the relay holds there (as for a credential replaced by enrolling again).
    await tx.execute(sql`select pg_notify(${REVOCATIONS_CHANNEL}, ${credentialNotice(node.id, REMOVED)})`);
    return { id: node.id, leases: leaseCount };
  });
  deps.revocationHub?.evict(removed.id, REMOVED);
  return removed;
}
