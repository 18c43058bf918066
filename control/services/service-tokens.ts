import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { turnsEvery } from './replica-turns.js';
import type { z } from '@hono/zod-openapi';
import type { ServiceTokenCreateSchema, ServiceTokenSchema } from '../../protocol/api-types.js';
import type { Deps } from '../deps.js';
import { egressTargets, serviceTokens, users, type leases } from '../db/schema/index.js';
import { AppError, notFound, callerGone } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from './audit.js';
import { assertAllowed, can, scopeAllows, type UserPrincipal } from './authz.js';
import { revoking } from './lease-revocation.js';
import { assertMayCreateServiceToken } from './member-limits.js';
import { lockActorAndTarget, lockLiveOwner, recheckAdminUnderLock } from './owner-lock.js';

type Row = typeof serviceTokens.$inferSelect;
export type ServiceTokenView = z.infer<typeof ServiceTokenSchema>;

const view = (t: Row, user: string): ServiceTokenView => ({
  id: t.id,
  name: t.name,
  user,
  scopes: t.scopes,
  created_at: t.createdAt.toISOString(),
  expires_at: t.expiresAt ? t.expiresAt.toISOString() : null,
  revoked: t.revokedAt !== null,
});

/**
 * Creates a scoped service token for the caller (or, for admins, another user); the secret is
 * returned once. In one transaction: the owner's row locked (refused if disabled, as
 * authentication would: TOKEN_INVALID for the caller's own, NOT_FOUND for another's), and for
 * another's the acting admin's row too, its role and state checked again under that lock
 * (owner-lock.ts `lockActorAndTarget`); the member's cap checked under the lock, the insert and
 * its audit row. So a disable either finds the token and revokes it, or the create waits for it
 * and is refused; likewise a demotion or disable of the acting admin.
 */
export async function createServiceToken(
  deps: Pick<Deps, 'db' | 'clock' | 'ids' | 'settings'>,
  p: UserPrincipal,
  body: z.infer<typeof ServiceTokenCreateSchema>,
): Promise<ServiceTokenView & { token: string }> {
  const forOther = !!body.user && body.user !== p.name;
  if (forOther) {
    const [u] = await deps.db.select({ id: users.id }).from(users).where(eq(users.name, body.user!)).limit(1);
    assertAllowed(p, 'service_token.create', { userId: u?.id ?? '' });
  } else {
    assertAllowed(p, 'service_token.create', { userId: p.userId });
  }
  const token = deps.ids.secret('tnl_st');
  const now = deps.clock.now();
  const { row, owner } = await deps.db.transaction(async (tx) => {
    let owner: typeof users.$inferSelect | undefined;
    if (forOther) {
      // The acting admin's row too, and the policy asked again with its role now: an admin
      // demoted or disabled meanwhile is refused, not let through on the role it had.
      const locked = await lockActorAndTarget(tx, p, { name: body.user! });
      owner = locked.target?.disabled ? undefined : locked.target;
      if (!owner) throw notFound(`user "${body.user}"`);
      assertAllowed(locked.actor, 'service_token.create', { userId: owner.id });
    } else {
      owner = await lockLiveOwner(tx, { id: p.userId });
      if (!owner) throw callerGone();
      await assertMayCreateServiceToken(deps, tx, { ...p, role: owner.role });
    }
    const [row] = await tx
      .insert(serviceTokens)
      .values({
        id: deps.ids.id('st'),
        name: body.name,
        userId: owner.id,
        tokenHash: hashSecret(token),
        scopes: [...new Set(body.scopes)].sort(),
        createdAt: now,
        expiresAt: body.ttl_seconds ? new Date(now.getTime() + body.ttl_seconds * 1000) : null,
      })
      .returning();
    await audit(tx, now, { type: 'service_token.created', actor: p.userId, subject: row!.id, data: { user: owner.name, scopes: row!.scopes } });
    return { row: row!, owner };
  });
  await pruneDeadServiceTokens(deps.db, now, owner.id);
  return { ...view(row, owner.name), token };
}

/** Dead (revoked or expired) service tokens one user keeps, newest first; older ones go when they create another. */
export const DEAD_TOKENS_KEPT = 20;
/** Dead service tokens are deleted this long after they died, whoever owns them. */
export const DEAD_TOKEN_RETENTION_MS = 30 * 86400_000;
/** How often one replica deletes every user's long-dead tokens, at most. */
const PRUNE_ALL_EVERY_MS = 60_000;
const pruneAllTurn = turnsEvery(PRUNE_ALL_EVERY_MS);

/** When a token died: revoked, or expired, whichever came first (null: alive for good). */
const diedAt = sql`least(${serviceTokens.revokedAt}, ${serviceTokens.expiresAt})`;

/**
 * Deletes service tokens that can never be used again: `userId`'s dead ones past the newest
 * DEAD_TOKENS_KEPT, and (at most once a minute per replica) everyone's dead for longer than
 * DEAD_TOKEN_RETENTION_MS. Without it a member's create-and-revoke loop (the live cap counts only
 * live ones) grew the table without end, and every list, everyone's, reads the whole table. Their
 * history stays in the audit log (created, updated, revoked, and a `service_token.pruned` event
 * naming what went). A deleted row fails closed: access tokens minted from it and leases issued
 * through it need the row (http/authenticate.ts `serviceLive`, services/lease-insert.ts), and a
 * dead token's leases were revoked with it or expired with it.
 */
export async function pruneDeadServiceTokens(db: Db, now: Date, userId: string): Promise<void> {
  const at = sql`${now.toISOString()}::timestamptz`;
  const dead = sql`${diedAt} <= ${at}`;
  const overKept = db
    .select({ id: serviceTokens.id })
    .from(serviceTokens)
    .where(and(eq(serviceTokens.userId, userId), dead))
    .orderBy(sql`${diedAt} desc`, sql`${serviceTokens.id} desc`)
    .offset(DEAD_TOKENS_KEPT);
  const gone = await db
    .delete(serviceTokens)
    .where(and(eq(serviceTokens.userId, userId), inArray(serviceTokens.id, overKept)))
    .returning({ id: serviceTokens.id, userId: serviceTokens.userId });
  if (pruneAllTurn(db, now)) {
    const cutoff = sql`${new Date(now.getTime() - DEAD_TOKEN_RETENTION_MS).toISOString()}::timestamptz`;
    gone.push(...(await db.delete(serviceTokens).where(sql`${diedAt} < ${cutoff}`).returning({ id: serviceTokens.id, userId: serviceTokens.userId })));
  }
  const byUser = new Map<string, string[]>();
  for (const g of gone) byUser.set(g.userId, [...(byUser.get(g.userId) ?? []), g.id]);
  for (const [user, ids] of byUser) {
    await audit(db, now, { type: 'service_token.pruned', actor: null, subject: user, data: { service_tokens: ids.sort(), reason: 'dead' } });
  }
}

/** The service tokens the caller may see (their own; admins: everyone's). */
export async function listServiceTokens(deps: Pick<Deps, 'db'>, p: UserPrincipal): Promise<ServiceTokenView[]> {
  const rows = await deps.db
    .select({ t: serviceTokens, user: users.name })
    .from(serviceTokens)
    .innerJoin(users, eq(users.id, serviceTokens.userId))
    .orderBy(serviceTokens.createdAt);
  return rows.filter((r) => can(p, 'service_token.read', r.t)).map((r) => view(r.t, r.user));
}

async function findVisible(deps: Pick<Deps, 'db'>, p: UserPrincipal, id: string, action: 'service_token.revoke' | 'service_token.update') {
  const [r] = await deps.db
    .select({ t: serviceTokens, user: users.name })
    .from(serviceTokens)
    .innerJoin(users, eq(users.id, serviceTokens.userId))
    .where(eq(serviceTokens.id, id))
    .limit(1);
  if (!r) throw notFound(`service token ${id}`);
  assertAllowed(p, action, r.t);
  return r;
}

/**
 * Revokes a service token and every lease issued through it. Another user's (an admin's doing):
 * the admin's row locked first and its role asked again (owner-lock.ts `recheckAdminUnderLock`).
 */
export async function revokeServiceToken(deps: Pick<Deps, 'db' | 'clock'>, p: UserPrincipal, id: string): Promise<ServiceTokenView> {
  const r = await findVisible(deps, p, id, 'service_token.revoke');
  const now = deps.clock.now();
  // The token and its leases end together (services/lease-revocation.ts `revoking`).
  const row = await revoking(deps, async (tx, revoke) => {
    await recheckAdminUnderLock(tx, p, 'service_token.revoke', r.t);
    const [row] = await tx
      .update(serviceTokens)
      .set({ revokedAt: now })
      .where(and(eq(serviceTokens.id, id), isNull(serviceTokens.revokedAt)))
      .returning();
    if (row) await audit(tx, now, { type: 'service_token.revoked', actor: p.userId, subject: id });
    await revoke.leases({ serviceTokenId: id }, p.userId, 'service_token_revoked');
    return row;
  });
  return view(row ?? r.t, r.user);
}

/**
 * Replaces a service token's scopes. Access tokens minted from it follow at once (the guard reads
 * the scopes from here), and the leases it issued that the new scopes do not cover are revoked.
 * A revoked or expired token is CONFLICT; a deleted one (pruned) NOT_FOUND.
 */
export async function updateServiceTokenScopes(
  deps: Pick<Deps, 'db' | 'clock'>,
  p: UserPrincipal,
  id: string,
  scopes: string[],
): Promise<ServiceTokenView> {
  const r = await findVisible(deps, p, id, 'service_token.update');
  const now = deps.clock.now();
  const sorted = [...new Set(scopes)].sort();
  // The new scopes and the revocation of the leases they no longer cover commit together.
  const row = await revoking(deps, async (tx, revoke) => {
    // Another user's (an admin's doing): the admin's row first, its role asked again (owner-lock.ts).
    await recheckAdminUnderLock(tx, p, 'service_token.update', r.t);
    const [cur] = await tx.select().from(serviceTokens).where(eq(serviceTokens.id, id)).limit(1).for('no key update');
    // Deleted since findVisible read it (a dead token pruned meanwhile): as if it never was.
    if (!cur) throw notFound(`service token ${id}`);
    // A dead token (revoked, or expired) can never be used again: its scopes are not to change,
    // and no `service_token.updated` is audited for it. It still exists (listed, `revoked`
    // shown; DELETE answers it), so CONFLICT, not NOT_FOUND. Checked under the row lock: a
    // revocation committed meanwhile is seen.
    if (cur.revokedAt || (cur.expiresAt && cur.expiresAt <= now)) {
      throw new AppError('CONFLICT', `service token ${id} is ${cur.revokedAt ? 'revoked' : 'expired'}; its scopes cannot change (create a new one)`);
    }
    const [row] = await tx.update(serviceTokens).set({ scopes: sorted }).where(eq(serviceTokens.id, id)).returning();
    if (!row) throw notFound(`service token ${id}`);
    await audit(tx, now, { type: 'service_token.updated', actor: p.userId, subject: id, data: { scopes: sorted } });
    const targets = await tx.select().from(egressTargets);
    // An egress lease stays if every host:port it reaches is a target on its node the token could
    // get it through now: one its scopes name and whose allow list the user is on (the policy's
    // question, as a demotion asks it). Two targets may reach one host:port: the scope of one
    // whose allow list lacks the user kept a lease the token could never get again.
    const covered = (p: UserPrincipal, l: typeof leases.$inferSelect) =>
      l.kind === 'egress'
        ? (l.targets ?? []).every((h) => targets.some((t) => t.nodeId === l.nodeId && t.host === h.host && t.port === h.port && can(p, 'lease.issue.egress', t)))
        : scopeAllows(p, l.kind, l.exposure ?? '');
    await revoke.noLongerAllowed({ serviceTokenId: id }, covered, p.userId, 'service_token_scopes_changed');
    return row;
  });
  return view(row, r.user);
}
