import { and, desc, eq, gt, inArray, isNull, notInArray } from 'drizzle-orm';
import type { z } from '@hono/zod-openapi';
import type { ExposureSchema } from '../../protocol/api-types.js';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import { exposures, leases, nodes, users } from '../db/schema/index.js';
import { AppError, notFound } from '../lib/errors.js';
import { assertUsersExist } from './allow-list.js';
import { audit } from './audit.js';
import { assertAllowed, authorize, can, type ExposureResource, type NodePrincipal, type UserPrincipal } from './authz.js';
import { revoking, type Revocations } from './lease-revocation.js';
import { assertMayCreateExposure } from './member-limits.js';
import { lockActorAndTarget, recheckAdminUnderLock } from './owner-lock.js';

type ExposureRow = typeof exposures.$inferSelect;
type Exposure = z.infer<typeof ExposureSchema>;

/** What the policy needs to know about exposure `name` (`row` undefined: it does not exist). */
export function exposureResource(name: string, row: Pick<ExposureRow, 'ownerId' | 'allow'> | undefined): ExposureResource {
  return row ? { name, ownerId: row.ownerId, allow: row.allow } : { name, ownerId: null, allow: [] };
}

async function views(db: Db, rows: ExposureRow[]): Promise<Exposure[]> {
  const userIds = [...new Set(rows.map((r) => r.ownerId))];
  const nodeIds = [...new Set(rows.flatMap((r) => [r.pinnedNodeId, r.currentNodeId]).filter((x): x is string => !!x))];
  const owners = userIds.length ? await db.select({ id: users.id, name: users.name }).from(users).where(inArray(users.id, userIds)) : [];
  const ns = nodeIds.length ? await db.select({ id: nodes.id, name: nodes.name }).from(nodes).where(inArray(nodes.id, nodeIds)) : [];
  const uname = new Map(owners.map((u) => [u.id, u.name]));
  const nname = new Map(ns.map((n) => [n.id, n.name]));
  return rows.map((r) => ({
    name: r.name,
    owner: uname.get(r.ownerId) ?? 'unknown',
    allow: r.allow,
    pinned_node: r.pinnedNodeId ? (nname.get(r.pinnedNodeId) ?? null) : null,
    node: r.online && r.currentNodeId ? (nname.get(r.currentNodeId) ?? null) : null,
    online: r.online,
    port: r.online ? r.onlinePort : null,
    created_at: r.createdAt.toISOString(),
  }));
}

async function find(db: Db, name: string): Promise<ExposureRow | undefined> {
  const [row] = await db.select().from(exposures).where(eq(exposures.name, name)).limit(1);
  return row;
}

/** Exposures the caller may see, by name. */
export async function listExposures(deps: Pick<Deps, 'db'>, p: UserPrincipal): Promise<Exposure[]> {
  const rows = await deps.db.select().from(exposures).orderBy(exposures.name);
  return views(
    deps.db,
    rows.filter((r) => can(p, 'exposure.read', exposureResource(r.name, r))),
  );
}

export async function getExposure(deps: Pick<Deps, 'db'>, p: UserPrincipal, name: string): Promise<Exposure> {
  const row = await find(deps.db, name);
  assertAllowed(p, 'exposure.read', exposureResource(name, row));
  return (await views(deps.db, [row!]))[0]!;
}

/**
 * Creates exposure `name` (owned by the caller) or replaces its allow list; `node` pins it
 * (admins). Users taken off the allow list lose their open leases at once. A new one past the
 * member cap is CONFLICT (services/member-limits.ts), checked in the inserting transaction.
 */
export async function putExposure(
  deps: Pick<Deps, 'db' | 'clock' | 'settings'>,
  p: UserPrincipal,
  name: string,
  body: { allow: string[]; node?: string | null; expect_allow?: string[] },
): Promise<{ exposure: Exposure; created: boolean }> {
  const now = deps.clock.now();
  let pinnedNodeId: string | null | undefined;
  if (body.node !== undefined) {
    assertAllowed(p, 'exposure.pin');
    if (body.node === null) pinnedNodeId = null;
    else {
      const [n] = await deps.db.select().from(nodes).where(eq(nodes.name, body.node)).limit(1);
      if (!n) throw notFound(`node "${body.node}"`);
      pinnedNodeId = n.id;
    }
  }
  const allow = [...new Set(body.allow)].sort();
  // The new allow list and the revocation of the leases it no longer allows commit together.
  const { row, created } = await revoking(deps, async (tx, revoke) => {
    // The caller's row locked first (as a lease's insert takes it, then the exposure's) and the
    // policy asked again with its role now (owner-lock.ts): an admin demoted or disabled
    // meanwhile cannot put itself on another's allow list; a disable waits for a create, or the
    // create waits for it and is refused; the member's cap counts under the lock.
    const { actor } = await lockActorAndTarget(tx, p, null);
    if (body.node !== undefined) assertAllowed(actor, 'exposure.pin');
    const [existing] = await tx.select().from(exposures).where(eq(exposures.name, name)).limit(1).for('update');
    if (existing) {
      assertAllowed(actor, 'exposure.update', exposureResource(name, existing));
      if (body.expect_allow !== undefined) assertAllowListAsRead(name, existing.allow, body.expect_allow);
      await assertUsersExist(tx, allow, existing.allow);
      const [u] = await tx
        .update(exposures)
        .set({ allow, updatedAt: now, ...(pinnedNodeId !== undefined ? { pinnedNodeId } : {}) })
        .where(eq(exposures.name, name))
        .returning();
      await audit(tx, now, { type: 'exposure.put', actor: p.userId, subject: name, data: { allow, created: false } });
      if (existing.allow.some((n) => !allow.includes(n))) await revokeOpenersNotAllowed(revoke, u!, p.userId);
      return { row: u!, created: false };
    }
    if (body.expect_allow !== undefined) throw new AppError('CONFLICT', `exposure "${name}" does not exist (deleted since its allow list was read, or never made); nothing was changed`);
    assertAllowed(actor, 'exposure.create', exposureResource(name, undefined));
    await assertMayCreateExposure(deps, tx, actor, name);
    await assertUsersExist(tx, allow);
    const [ins] = await tx
      .insert(exposures)
      .values({ name, ownerId: p.userId, allow, pinnedNodeId: pinnedNodeId ?? null, createdAt: now, updatedAt: now })
      .onConflictDoNothing()
      .returning();
    if (!ins) throw new AppError('CONFLICT', `"${name}" was created concurrently; retry`, { retryable: true });
    await audit(tx, now, { type: 'exposure.put', actor: p.userId, subject: name, data: { allow, created: true } });
    return { row: ins, created: true };
  });
  return { exposure: (await views(deps.db, [row]))[0]!, created };
}

/**
 * An edit of the allow list the caller read (`expect_allow`), checked under the exposure's row
 * lock: refused when the list is another by now, so a user taken off it meanwhile stays off.
 */
function assertAllowListAsRead(name: string, now: readonly string[], read: readonly string[]): void {
  const a = [...new Set(now)].sort();
  const b = [...new Set(read)].sort();
  if (a.length === b.length && a.every((n, i) => n === b[i])) return;
  throw new AppError('CONFLICT', `the allow list of "${name}" changed since it was read (now: ${a.join(', ') || 'nobody'}); nothing was changed`);
}

/**
 * Revokes the leases on `exp` that the policy no longer allows (users taken off the allow list
 * lose their open leases; owner and admins keep theirs): the grant they were issued under is gone.
 */
function revokeOpenersNotAllowed(revoke: Revocations, exp: ExposureRow, actor: string): Promise<string[]> {
  const res = exposureResource(exp.name, exp);
  return revoke.noLongerAllowed({ exposure: exp.name, kind: 'open' }, (p) => can(p, 'lease.issue.open', res), actor, 'allow_list_changed');
}

/**
 * Deletes an exposure and revokes every lease on it, in one transaction. The row goes first: a
 * lease being written on it holds the delete back until it committed, and the revocation after it
 * then sees that lease (services/lease-insert.ts). Before it, for another user's exposure, the
 * acting admin's row is locked and its role asked again (owner-lock.ts `recheckAdminUnderLock`).
 */
export async function deleteExposure(deps: Pick<Deps, 'db' | 'clock'>, p: UserPrincipal, name: string): Promise<void> {
  const resource = exposureResource(name, await find(deps.db, name));
  assertAllowed(p, 'exposure.delete', resource);
  await revoking(deps, async (tx, revoke) => {
    await recheckAdminUnderLock(tx, p, 'exposure.delete', resource);
    await tx.delete(exposures).where(eq(exposures.name, name));
    await revoke.leases({ exposure: name }, p.userId, 'exposure_deleted');
    await audit(tx, deps.clock.now(), { type: 'exposure.deleted', actor: p.userId, subject: name });
  });
}

/** Exposure names a refused claim's log line lists, at most (the count says how many there were). */
const LOGGED_REFUSED_CLAIMS = 10;

/**
 * The subset of `names` that `node` may report online: those whose newest active expose lease was
 * issued for that node (issue 9, finding 2: a relay cannot take over someone else's exposure).
 * The newest, not any: an exposure X moved to another relay (pinned there, or X's relay looked
 * dead) leaves its older lease on the first relay active until it expires, and that relay could
 * otherwise take the exposure back from the relay X is on now, heartbeat after heartbeat. Claims
 * refused are logged on one line per report, not one per name (a heartbeat may name thousands).
 */
export async function onlineClaimsAllowed(
  deps: Pick<Deps, 'clock' | 'logger'> & { db: Pick<Db, 'selectDistinctOn'> },
  node: NodePrincipal,
  names: string[],
): Promise<Set<string>> {
  if (!names.length) return new Set();
  const now = deps.clock.now();
  const newest = await deps.db
    .selectDistinctOn([leases.exposure], { exposure: leases.exposure, nodeId: leases.nodeId })
    .from(leases)
    .where(activeExposeLeasesOf(names, now))
    .orderBy(leases.exposure, desc(leases.createdAt), desc(leases.id));
  const heldNames = new Set(newest.filter((l) => l.nodeId === node.nodeId).map((l) => l.exposure));
  const allowed = new Set<string>();
  const refused: string[] = [];
  for (const name of names) {
    const d = authorize(node, 'exposure.set_online', { exposure: name, holdsExposeLease: heldNames.has(name) });
    if (d.allow) allowed.add(name);
    else refused.push(name);
  }
  if (refused.length) {
    deps.logger.warn('node reported exposures it does not hold the newest expose lease for', {
      node: node.name,
      exposures: refused.slice(0, LOGGED_REFUSED_CLAIMS),
      refused: refused.length,
    });
  }
  return allowed;
}

function activeExposeLeasesOf(names: string[], now: Date) {
  return and(eq(leases.kind, 'expose'), inArray(leases.exposure, names), isNull(leases.revokedAt), gt(leases.expiresAt, now));
}

/**
 * A relay's report of the exposures it holds now (heartbeat: `complete`, the whole list, so the
 * rest of its exposures go offline; event: one exposure). Claims the node may not make are
 * ignored; a name listed more than once is written once, with its last port (a heartbeat of one
 * held name repeated thousands of times was as many updates: seconds of the database). `db` may
 * be a transaction.
 */
export async function setOnline(
  deps: Pick<Deps, 'db' | 'clock' | 'logger'>,
  node: NodePrincipal,
  held: { name: string; port: number | null }[],
  opts: { complete: boolean; db?: Pick<Db, 'update' | 'selectDistinctOn'> } = { complete: false },
): Promise<void> {
  const db = opts.db ?? deps.db;
  const now = deps.clock.now();
  const ports = new Map(held.map((e) => [e.name, e.port]));
  const allowed = await onlineClaimsAllowed({ ...deps, db }, node, [...ports.keys()]);
  for (const [name, port] of ports) if (allowed.has(name)) await markOnline(db, node, name, port, now);
  if (opts.complete) {
    await db
      .update(exposures)
      .set({ online: false, statusAt: now })
      .where(
        and(
          eq(exposures.currentNodeId, node.nodeId),
          eq(exposures.online, true),
          ...(allowed.size ? [notInArray(exposures.name, [...allowed])] : []),
        ),
      );
  }
}

/** Exposure `name` is online on `node`, at `port`: for a claim onlineClaimsAllowed allowed. */
export async function markOnline(db: Pick<Db, 'update'>, node: NodePrincipal, name: string, port: number | null, now: Date): Promise<void> {
  await db.update(exposures).set({ online: true, currentNodeId: node.nodeId, onlinePort: port, statusAt: now }).where(eq(exposures.name, name));
}

/** A relay reports that X left: offline, if this node is the one that holds it. */
export async function setOffline(deps: Pick<Deps, 'clock'>, db: Pick<Db, 'update'>, node: NodePrincipal, name: string): Promise<void> {
  await db
    .update(exposures)
    .set({ online: false, statusAt: deps.clock.now() })
    .where(and(eq(exposures.name, name), eq(exposures.currentNodeId, node.nodeId)));
}
