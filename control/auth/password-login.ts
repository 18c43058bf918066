import { eq } from 'drizzle-orm';
import { UserNameSchema } from '../../protocol/api-types.js';
import type { Deps } from '../deps.js';
import { users } from '../db/schema/index.js';
import { audit } from '../services/audit.js';
import { rateLimit } from '../services/rate-limit.js';

type User = typeof users.$inferSelect;

export interface PasswordAttempt {
  /** The caller's source (http/client-address.ts clientSource: its IPv4 address or IPv6 /64), for the per-source limit. */
  source: string;
  username: string;
  password: string;
  /** Which path asked, for the audit log: the token endpoint or the /device form. */
  method: 'password' | 'device-page';
}

/**
 * The one place a password is checked (issue 9, finding 4). Every path that takes a password
 * gets the same two limits, per source address and per account, counted before the check, so
 * no path is an oracle that bypasses the other's limit. Returns the user, or null for every
 * kind of failure (unknown user, wrong password, disabled user, a name that cannot exist);
 * throws RATE_LIMITED when a limit is hit. Unknown users cost a hash too (see passwords.ts).
 */
export async function checkPassword(deps: Deps, attempt: PasswordAttempt): Promise<User | null> {
  const now = deps.clock.now();
  const limit = deps.settings.authRateLimit;
  const name = UserNameSchema.safeParse(attempt.username);
  await rateLimit(deps.db, now, `login:${attempt.source}`, limit);
  if (name.success) await rateLimit(deps.db, now, `login-user:${name.data}`, limit);
  const [user] = name.success ? await deps.db.select().from(users).where(eq(users.name, name.data)).limit(1) : [];
  const ok = await deps.passwords.verify(attempt.password, user?.passwordHash ?? null);
  if (!user || !ok || user.disabled) {
    await audit(deps.db, now, {
      type: 'auth.login_failed',
      subject: name.success ? name.data : null,
      data: { method: attempt.method },
    });
    return null;
  }
  return user;
}
