import { eq, or } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { users } from '../db/schema/index.js';
import { callerGone } from '../lib/errors.js';
import { assertAllowed, can, isAdmin, type Action, type ResourceOf, type UserPrincipal } from './authz.js';

type UserRow = typeof users.$inferSelect;

/**
 * Locks the row of the user a new grant (login session, service token, exposure) will belong to,
 * in the transaction that inserts it, and returns it, or undefined if that user is gone or
 * disabled (the caller refuses as authentication would). Without it a grant committed just after
 * a disable read its set (services/users.ts `disableUser`) escaped it: refused while the user was
 * disabled, alive again once an admin enabled them. `no key update` is what the disable's UPDATE
 * takes, so the two wait for each other; it also queues concurrent creators of one user (so the
 * member caps, checked after it, hold), and leaves the row free for inserts' key-share locks.
 */
export async function lockLiveOwner(tx: Pick<Db, 'select'>, where: { id: string } | { name: string }): Promise<UserRow | undefined> {
  const [row] = await tx
    .select()
    .from(users)
    .where('id' in where ? eq(users.id, where.id) : eq(users.name, where.name))
    .limit(1)
    .for('no key update');
  return row && !row.disabled ? row : undefined;
}

/**
 * For what an admin does to or for another user (change them, disable them, create a service
 * token for them), or makes that outlives the request (a user, a node enrollment token; `target`
 * null): locks the acting user's row and the target's, in id order, and returns the
 * actor as its row says now (throws callerGone if gone or disabled), for the caller to ask the
 * policy again, and the target's row (undefined: no such user; disabled ones are returned).
 * The role read at authentication alone let an admin demoted or disabled meanwhile still act:
 * two admins demoting each other at once both committed and no admin was left, and a token made
 * for another user by an admin being demoted outlived the demotion. Now the action waits for the
 * demotion and is refused. The locks are lockLiveOwner's (`no key update`).
 */
export async function lockActorAndTarget(
  tx: Pick<Db, 'select'>,
  p: UserPrincipal,
  target: { name: string } | null,
): Promise<{ actor: UserPrincipal; target: UserRow | undefined }> {
  const rows = await tx
    .select()
    .from(users)
    .where(target ? or(eq(users.id, p.userId), eq(users.name, target.name)) : eq(users.id, p.userId))
    .orderBy(users.id)
    .for('no key update');
  const actor = rows.find((r) => r.id === p.userId);
  if (!actor || actor.disabled) throw callerGone();
  return { actor: { ...p, role: actor.role }, target: target ? rows.find((r) => r.name === target.name) : undefined };
}

/**
 * For a change the policy allows `p` only because `p` is an admin (to another user's service
 * token, exposure or lease; to an egress target): locks the acting admin's row
 * (`lockActorAndTarget`, no target) and asks the policy again with its role now, throwing its
 * refusal (callerGone if gone or disabled). Call it first in the change's transaction, before
 * the rows it changes. A change a member would be allowed too (to their own) takes no lock and
 * stays as it was. The check at authentication alone let an admin demoted or disabled while the
 * request ran still delete or revoke what is not theirs; now the change waits for the demotion
 * and is refused.
 */
export async function recheckAdminUnderLock<A extends Action>(
  tx: Pick<Db, 'select'>,
  p: UserPrincipal,
  action: A,
  ...resource: ResourceOf<A> extends void ? [] : [ResourceOf<A>]
): Promise<void> {
  if (!isAdmin(p) || can({ ...p, role: 'member' }, action, ...resource)) return;
  assertAllowed((await lockActorAndTarget(tx, p, null)).actor, action, ...resource);
}
