import { inArray } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { users } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';

/** How many unknown names a refusal's detail names. */
const UNKNOWN_NAMED = 5;

/**
 * Refuses an allow list (an exposure's, an egress target's) that adds a name no user has: the
 * policy matches names, so a typo would be stored and silently grant nothing. UNKNOWN_USER names
 * the first few, in the list's order. Names `held` already (the list before this change, which
 * may predate this check) are not asked again, so such a list can still be edited around them.
 * Users are never deleted, only disabled: a disabled user's name is known.
 */
export async function assertUsersExist(db: Db, allow: readonly string[], held: readonly string[] = []): Promise<void> {
  const added = allow.filter((n) => !held.includes(n));
  if (added.length === 0) return;
  const found = new Set((await db.select({ name: users.name }).from(users).where(inArray(users.name, added))).map((r) => r.name));
  const unknown = added.filter((n) => !found.has(n));
  if (unknown.length === 0) return;
  const named = unknown.slice(0, UNKNOWN_NAMED).map((n) => `"${n}"`);
  const more = unknown.length > UNKNOWN_NAMED ? ` and ${unknown.length - UNKNOWN_NAMED} more` : '';
  throw new AppError('UNKNOWN_USER', `no user is named ${named.join(', ')}${more}; an allow list takes the names of existing users`);
}
