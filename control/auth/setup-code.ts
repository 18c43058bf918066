import { and, count, eq, like, lt, or } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { settings, users } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';

/**
 * One-time setup codes, shared by every replica through the database. Each replica that starts
 * while no user exists adds its own code (only its SHA-256 is stored, under `setup_code:HASH`,
 * with its expiry as the value), so the code any replica printed works on every replica, and
 * replicas starting at the same moment on a fresh database each get a valid one. The first
 * admin created by any code consumes all of them: `setup_done` is inserted in the same
 * transaction, and its primary key lets exactly one concurrent setup win.
 */
const CODE_PREFIX = 'setup_code:';
const DONE_KEY = 'setup_done';
/** Written by earlier versions (one code, overwritten by each start). */
const LEGACY_KEY = 'setup_code_hash';
export const SETUP_CODE_TTL_SECONDS = 24 * 3600;

/**
 * When no user exists yet, makes a fresh one-time setup code, stores its hash and returns it
 * (for `tunnel-control` to print once). Returns null when users exist. Codes other replicas
 * made stay valid.
 */
export async function prepareSetupCode(deps: Pick<Deps, 'db' | 'ids' | 'clock'>): Promise<string | null> {
  const [row] = await deps.db.select({ n: count() }).from(users);
  if ((row?.n ?? 0) > 0) return null;
  const now = deps.clock.now();
  const code = deps.ids.secret('setup');
  const expires = new Date(now.getTime() + SETUP_CODE_TTL_SECONDS * 1000).toISOString();
  // Expired codes go; ISO timestamps in UTC compare as text.
  await deps.db.delete(settings).where(and(like(settings.key, `${CODE_PREFIX}%`), lt(settings.value, now.toISOString())));
  await deps.db.insert(settings).values({ key: `${CODE_PREFIX}${hashSecret(code)}`, value: expires }).onConflictDoNothing();
  return code;
}

/**
 * Whether `code` names a setup code that has not expired, before any setup succeeded: a check
 * without locks (consumeSetupCode decides, in the transaction), so that a wrong code is refused
 * before the request hashes its password (0.2-1 s of CPU: every wrong code, and every POST
 * /v1/setup long after setup, cost that much).
 */
export async function setupCodeUsable(db: Pick<Db, 'select'>, code: string, now: Date): Promise<boolean> {
  const rows = await db
    .select({ key: settings.key, value: settings.value })
    .from(settings)
    .where(or(eq(settings.key, DONE_KEY), eq(settings.key, `${CODE_PREFIX}${hashSecret(code)}`)));
  return rows.length === 1 && rows[0]!.key !== DONE_KEY && rows[0]!.value >= now.toISOString();
}

/**
 * Checks and consumes a setup code; call it inside the transaction that creates the admin.
 * False when the code is unknown, expired or already used, or a user exists already.
 */
export async function consumeSetupCode(tx: Pick<Db, 'delete' | 'insert' | 'select'>, code: string, now: Date): Promise<boolean> {
  // Exactly one setup wins, even on two replicas at once: the second blocks on this key and then
  // conflicts. This comes first: taking a code's row lock before it would deadlock with the
  // winner, which deletes every code (a false here rolls the caller's transaction back).
  const [won] = await tx.insert(settings).values({ key: DONE_KEY, value: now.toISOString() }).onConflictDoNothing().returning({ key: settings.key });
  if (!won) return false;
  const [mine] = await tx
    .delete(settings)
    .where(eq(settings.key, `${CODE_PREFIX}${hashSecret(code)}`))
    .returning({ expires: settings.value });
  if (!mine || mine.expires < now.toISOString()) return false;
  const [row] = await tx.select({ n: count() }).from(users);
  if ((row?.n ?? 0) > 0) return false;
  await tx.delete(settings).where(or(like(settings.key, `${CODE_PREFIX}%`), eq(settings.key, LEGACY_KEY)));
  return true;
}
