import { and, count, eq } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import { settings, users } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';

const SETUP_KEY = 'setup_code_hash';

/**
 * When no user exists yet, makes a fresh one-time setup code, stores its hash and returns it
 * (for `tunnel-control` to print once). Returns null when users exist.
 */
export async function prepareSetupCode(deps: Pick<Deps, 'db' | 'ids'>): Promise<string | null> {
  const [row] = await deps.db.select({ n: count() }).from(users);
  if ((row?.n ?? 0) > 0) return null;
  const code = deps.ids.secret('setup');
  await deps.db
    .insert(settings)
    .values({ key: SETUP_KEY, value: hashSecret(code) })
    .onConflictDoUpdate({ target: settings.key, set: { value: hashSecret(code) } });
  return code;
}

/** Checks and consumes the setup code (the caller creates the admin in the same transaction). */
export async function consumeSetupCode(db: Pick<Deps['db'], 'delete'>, code: string): Promise<boolean> {
  const deleted = await db
    .delete(settings)
    .where(and(eq(settings.key, SETUP_KEY), eq(settings.value, hashSecret(code))))
    .returning({ key: settings.key });
  return deleted.some((d) => d.key === SETUP_KEY);
}
