import { eq } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { users } from '../db/schema/index.js';

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
