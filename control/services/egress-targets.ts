import { and, eq, sql } from 'drizzle-orm';
import type { z } from '@hono/zod-openapi';
import type { EgressTargetPutSchema, EgressTargetSchema } from '../../protocol/api-types.js';
import type { Deps } from '../deps.js';
import { egressTargets, leases, nodes } from '../db/schema/index.js';
import { notFound } from '../lib/errors.js';
import { assertUsersExist } from './allow-list.js';
import { audit } from './audit.js';
import { assertAllowed, can, type UserPrincipal } from './authz.js';
import { lockActorAndTarget, recheckAdminUnderLock } from './owner-lock.js';
import { revoking } from './lease-revocation.js';

type Row = typeof egressTargets.$inferSelect;
export type EgressTargetView = z.infer<typeof EgressTargetSchema>;

const view = (t: Row, node: string): EgressTargetView => ({
  name: t.name,
  node,
  host: t.host,
  port: t.port,
  allow: t.allow,
  created_at: t.createdAt.toISOString(),
});

/** Egress leases whose targets include `t`'s host:port on its node (leases record host:port, not names). */
const leasesReaching = (t: Pick<Row, 'nodeId' | 'host' | 'port'>) =>
  and(eq(leases.kind, 'egress'), eq(leases.nodeId, t.nodeId), sql`${leases.targets} @> ${JSON.stringify([{ host: t.host, port: t.port }])}::jsonb`);

/**
 * Defines or redefines an egress target. A grant that shrinks takes effect at once: when the
 * target moves (node, host or port) every egress lease that reached the old one is revoked; users
 * taken off its allow list lose their egress leases to it.
 */
export async function putEgressTarget(
  deps: Pick<Deps, 'db' | 'clock'>,
  p: UserPrincipal,
  name: string,
  body: z.infer<typeof EgressTargetPutSchema>,
): Promise<EgressTargetView> {
  assertAllowed(p, 'egress_target.put');
  const [node] = await deps.db.select().from(nodes).where(eq(nodes.name, body.node)).limit(1);
  if (!node) throw notFound(`node "${body.node}"`);
  const now = deps.clock.now();
  const values = { nodeId: node.id, host: body.host, port: body.port, allow: [...new Set(body.allow)].sort() };
  // The new definition and the revocation of the leases it no longer allows commit together.
  const row = await revoking(deps, async (tx, revoke) => {
    // Asked again with the admin's role now, its row locked (owner-lock.ts): one demoted or
    // disabled meanwhile cannot leave an allow list naming itself.
    assertAllowed((await lockActorAndTarget(tx, p, null)).actor, 'egress_target.put');
    const [before] = await tx.select().from(egressTargets).where(eq(egressTargets.name, name)).limit(1).for('update');
    await assertUsersExist(tx, values.allow, before?.allow);
    const [row] = await tx
      .insert(egressTargets)
      .values({ name, ...values, createdAt: now })
      .onConflictDoUpdate({ target: egressTargets.name, set: values })
      .returning();
    await audit(tx, now, { type: 'egress_target.put', actor: p.userId, subject: name, data: { ...values } });
    if (before) {
      if (before.nodeId !== row!.nodeId || before.host !== row!.host || before.port !== row!.port) {
        await revoke.leases({ where: leasesReaching(before) }, p.userId, 'egress_target_changed');
      } else if (before.allow.some((n) => !row!.allow.includes(n))) {
        const res = { name, allow: row!.allow };
        await revoke.noLongerAllowed({ where: leasesReaching(before) }, (u) => can(u, 'lease.issue.egress', res), p.userId, 'allow_list_changed');
      }
    }
    return row!;
  });
  return view(row, node.name);
}

/** The egress targets the caller may see (and use). */
export async function listEgressTargets(deps: Pick<Deps, 'db'>, p: UserPrincipal): Promise<EgressTargetView[]> {
  const rows = await deps.db
    .select({ t: egressTargets, node: nodes.name })
    .from(egressTargets)
    .innerJoin(nodes, eq(nodes.id, egressTargets.nodeId))
    .orderBy(egressTargets.name);
  return rows.filter((r) => can(p, 'egress_target.read', r.t)).map((r) => view(r.t, r.node));
}

/**
 * Deletes an egress target and revokes every egress lease that reaches it; the admin's row
 * locked first and its role asked again (owner-lock.ts `recheckAdminUnderLock`).
 */
export async function deleteEgressTarget(deps: Pick<Deps, 'db' | 'clock'>, p: UserPrincipal, name: string): Promise<void> {
  assertAllowed(p, 'egress_target.delete');
  await revoking(deps, async (tx, revoke) => {
    await recheckAdminUnderLock(tx, p, 'egress_target.delete');
    const deleted = await tx.delete(egressTargets).where(eq(egressTargets.name, name)).returning();
    if (!deleted.length) throw notFound(`egress target "${name}"`);
    await audit(tx, deps.clock.now(), { type: 'egress_target.deleted', actor: p.userId, subject: name });
    await revoke.leases({ where: leasesReaching(deleted[0]!) }, p.userId, 'egress_target_deleted');
  });
}
