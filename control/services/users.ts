import { eq, isNull, and, sql } from 'drizzle-orm';
import type { z } from '@hono/zod-openapi';
import type { UserSchema } from '../../protocol/api-types.js';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import { egressTargets, exposures, serviceTokens, users } from '../db/schema/index.js';
import { revokeAllSessions } from '../auth/sessions.js';
import { denyApprovedDeviceCodes } from '../auth/device-codes.js';
import { AppError, notFound } from '../lib/errors.js';
import { audit, type AuditType } from './audit.js';
import { assertAllowed, can, type Role, type UserPrincipal } from './authz.js';
import { exposureResource } from './exposures.js';
import { lockActorAndTarget } from './owner-lock.js';
import { withdrawEnrollmentTokens } from './enrollment.js';
import { revoking, type Revocations } from './lease-revocation.js';

type UserRow = typeof users.$inferSelect;
export type UserView = z.infer<typeof UserSchema>;

export const userView = (u: UserRow): UserView => ({
  id: u.id,
  name: u.name,
  role: u.role,
  disabled: u.disabled,
  created_at: u.createdAt.toISOString(),
});

/**
 * Inserts a user: the one place users are made (`POST /v1/users`, `/v1/setup`, and the
 * `create-user` command). `db` may be a transaction; `actor` is who made it (null: the operator
 * at the console). Throws ALREADY_EXISTS for a taken name. Pass `passwordHash` (hashed before a
 * transaction) instead of `password` to keep a transaction short.
 */
export async function createUser(
  deps: Pick<Deps, 'clock' | 'ids' | 'passwords'>,
  db: Pick<Db, 'insert'>,
  u: { name: string; role: Role; password?: string | undefined; passwordHash?: string },
  by: { actor: string | null; event?: AuditType },
): Promise<UserRow> {
  const now = deps.clock.now();
  const passwordHash = u.passwordHash ?? (u.password ? await deps.passwords.hash(u.password) : null);
  const id = deps.ids.id('usr');
  const [row] = await db
    .insert(users)
    .values({ id, name: u.name, role: u.role, passwordHash, createdAt: now })
    .onConflictDoNothing()
    .returning();
  if (!row) throw new AppError('ALREADY_EXISTS', `user "${u.name}" already exists`);
  await audit(db, now, { type: by.event ?? 'user.created', actor: by.actor ?? row.id, subject: row.name, data: { role: row.role } });
  return row;
}

/**
 * `POST /v1/users`: creates a user as `p`, in one transaction with the acting admin's row locked
 * and the policy asked again with its role now (owner-lock.ts `lockActorAndTarget`): an admin
 * demoted or disabled meanwhile is refused, not left an account (an admin one, say) made on the
 * role it had when the request began.
 */
export async function createUserAs(
  deps: Pick<Deps, 'db' | 'clock' | 'ids' | 'passwords'>,
  p: UserPrincipal,
  u: { name: string; role: Role; password?: string | undefined },
): Promise<UserRow> {
  assertAllowed(p, 'user.create');
  // Hashed before the transaction, so it holds its lock only for the insert.
  const passwordHash = u.password ? await deps.passwords.hash(u.password) : undefined;
  return deps.db.transaction(async (tx) => {
    const { actor } = await lockActorAndTarget(tx, p, null);
    assertAllowed(actor, 'user.create');
    return createUser(deps, tx, { name: u.name, role: u.role, ...(passwordHash ? { passwordHash } : {}) }, { actor: p.userId });
  });
}

export async function listUsers(deps: Pick<Deps, 'db'>): Promise<UserView[]> {
  return (await deps.db.select().from(users).orderBy(users.name)).map(userView);
}

/**
 * Disables a user and takes back everything they were granted: sessions (and device sign-ins
 * approved but not yet exchanged for one, and the approval forms they signed in to: a new
 * users.generation), service tokens, leases, the relay enrollment tokens they made and nobody
 * used (services/enrollment.ts), in one transaction (services/lease-revocation.ts `revoking`).
 */
export async function disableUser(deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>, p: UserPrincipal, name: string): Promise<UserView> {
  assertAllowed(p, 'user.disable', { name });
  const now = deps.clock.now();
  const row = await revoking(deps, async (tx, revoke) => {
    const { actor, target } = await lockActorAndTarget(tx, p, { name });
    assertAllowed(actor, 'user.disable', { name });
    if (!target) throw notFound(`user "${name}"`);
    // A new generation voids what the user's sign-ins issued that no row here holds (the device
    // approval page's ticket: auth/device-codes.ts decideDeviceCode).
    const [row] = await tx
      .update(users)
      .set({ disabled: true, generation: sql`${users.generation} + 1` })
      .where(eq(users.id, target.id))
      .returning();
    if (!row) throw notFound(`user "${name}"`);
    await revokeAllSessions(tx, row.id, now);
    await denyApprovedDeviceCodes(tx, row.id);
    await tx.update(serviceTokens).set({ revokedAt: now }).where(and(eq(serviceTokens.userId, row.id), isNull(serviceTokens.revokedAt)));
    await revoke.leases({ userId: row.id }, p.userId, 'user_disabled');
    await withdrawEnrollmentTokens(tx, row, p.userId, now);
    await audit(tx, now, { type: 'user.disabled', actor: p.userId, subject: row.name });
    return row;
  });
  return userView(row);
}

/**
 * Enables or disables a user, or changes their role (`PATCH /v1/users/{name}`). A demoted admin
 * loses at once the leases only the admin role granted (open and expose leases on exposures that
 * are not theirs and whose allow list lacks them, egress leases to targets not listing them) and
 * the relay enrollment tokens they made that nobody used, in the transaction that demotes them.
 */
export async function updateUser(
  deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>,
  p: UserPrincipal,
  name: string,
  body: { disabled?: boolean | undefined; role?: Role | undefined },
): Promise<UserView> {
  assertAllowed(p, 'user.update', { name });
  let view: UserView | undefined;
  if (body.disabled === true) view = await disableUser(deps, p, name);
  const now = deps.clock.now();
  const set: Partial<UserRow> = {};
  if (body.disabled === false) set.disabled = false;
  if (body.role) set.role = body.role;
  if (Object.keys(set).length > 0) {
    const row = await revoking(deps, async (tx, revoke) => {
      const { actor, target: before } = await lockActorAndTarget(tx, p, { name });
      assertAllowed(actor, 'user.update', { name });
      if (!before) throw notFound(`user "${name}"`);
      const [row] = await tx.update(users).set(set).where(eq(users.id, before.id)).returning();
      if (!row) throw notFound(`user "${name}"`);
      if (body.disabled === false) await audit(tx, now, { type: 'user.enabled', actor: p.userId, subject: row.name });
      if (body.role) await audit(tx, now, { type: 'user.role_changed', actor: p.userId, subject: row.name, data: { role: body.role } });
      if (before.role === 'admin' && row.role === 'member') {
        await revokeAdminOnlyLeases(tx, revoke, row.id, p.userId);
        await withdrawEnrollmentTokens(tx, row, p.userId, now);
      }
      return row;
    });
    view = userView(row);
  }
  if (!view) throw notFound(`user "${name}"`);
  return view;
}

/** Asks the policy again, with the user's new role, about each of their active leases. */
async function revokeAdminOnlyLeases(tx: Db, revoke: Revocations, userId: string, actor: string): Promise<void> {
  const [exps, targets] = await Promise.all([tx.select().from(exposures), tx.select().from(egressTargets)]);
  const byName = new Map(exps.map((e) => [e.name, e]));
  await revoke.noLongerAllowed(
    { userId },
    (u, l) => {
      if (l.kind === 'egress') {
        return (l.targets ?? []).every((h) =>
          targets.some((t) => t.nodeId === l.nodeId && t.host === h.host && t.port === h.port && can(u, 'lease.issue.egress', t)),
        );
      }
      const res = exposureResource(l.exposure ?? '', byName.get(l.exposure ?? ''));
      return can(u, l.kind === 'expose' ? 'lease.issue.expose' : 'lease.issue.open', res);
    },
    actor,
    'role_changed',
  );
}
