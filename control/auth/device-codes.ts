import { and, eq, gt } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { deviceCodes, users } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { lockLiveOwner } from '../services/owner-lock.js';

type User = typeof users.$inferSelect;

const oauth = (code: 'AUTHORIZATION_PENDING' | 'SLOW_DOWN' | 'ACCESS_DENIED' | 'EXPIRED_TOKEN' | 'INVALID_GRANT', msg: string) =>
  new AppError(code, msg, { oauthError: code.toLowerCase() });

/**
 * One poll of the token endpoint with a device code (RFC 8628 §3.4/3.5). Returns the approving
 * user exactly once; afterwards the code is consumed.
 */
export async function pollDeviceCode(deps: Deps, deviceCode: string): Promise<User> {
  const now = deps.clock.now();
  const [row] = await deps.db
    .select()
    .from(deviceCodes)
    .where(eq(deviceCodes.deviceCodeHash, hashSecret(deviceCode)))
    .limit(1);
  if (!row || row.status === 'consumed') throw oauth('INVALID_GRANT', 'unknown or already used device code');
  if (row.expiresAt <= now) throw oauth('EXPIRED_TOKEN', 'the device code expired; run `tunnel login` again');
  if (row.status === 'denied') throw oauth('ACCESS_DENIED', 'the sign-in was denied');

  // slow_down: polled faster than the interval. Record this poll either way.
  const tooSoon = row.lastPolledAt !== null && now.getTime() - row.lastPolledAt.getTime() < row.intervalSeconds * 1000;
  // RFC 8628 §3.5: after slow_down the client adds 5 s to its interval, and so does the server.
  await deps.db
    .update(deviceCodes)
    .set({ lastPolledAt: now, ...(tooSoon && row.status === 'pending' ? { intervalSeconds: row.intervalSeconds + 5 } : {}) })
    .where(eq(deviceCodes.id, row.id));
  if (row.status === 'pending') {
    if (tooSoon) throw oauth('SLOW_DOWN', 'polling too fast; add 5 seconds to the interval');
    throw oauth('AUTHORIZATION_PENDING', 'waiting for the user to approve');
  }
  // approved: consume exactly once, even with concurrent polls on several replicas.
  const [claimed] = await deps.db
    .update(deviceCodes)
    .set({ status: 'consumed' })
    .where(and(eq(deviceCodes.id, row.id), eq(deviceCodes.status, 'approved')))
    .returning({ userId: deviceCodes.userId });
  if (!claimed?.userId) throw oauth('INVALID_GRANT', 'device code already used');
  const [user] = await deps.db.select().from(users).where(eq(users.id, claimed.userId)).limit(1);
  if (!user || user.disabled) throw oauth('ACCESS_DENIED', 'the approving user is disabled');
  return user;
}

export function normalizeUserCode(input: string): string {
  const s = input.toUpperCase().replace(/[^A-Z]/g, '');
  return s.length === 8 ? `${s.slice(0, 4)}-${s.slice(4)}` : s;
}

/** A pending, unexpired device authorization by its user code. */
export async function findPendingByUserCode(deps: Pick<Deps, 'db' | 'clock'>, userCode: string) {
  const [row] = await deps.db
    .select()
    .from(deviceCodes)
    .where(
      and(
        eq(deviceCodes.userCode, normalizeUserCode(userCode)),
        eq(deviceCodes.status, 'pending'),
        gt(deviceCodes.expiresAt, deps.clock.now()),
      ),
    )
    .limit(1);
  return row;
}

/** What became of a decision on the approval page (routes/device-page.ts). */
export type Decision = 'decided' | 'not_pending' | 'signed_out';

/**
 * Records the user's decision: `not_pending` when the code is no longer pending; `signed_out`,
 * when approving, for a user who is disabled, or was disabled after the sign-in that decides
 * (`signer.generation`, read with the password check, is not the row's: users.generation). An
 * approval is a login session not yet started (the device's next poll starts it): it is written
 * with the user's row locked, as every grant of theirs is (services/owner-lock.ts), so that one
 * made while the user is being disabled waits for the disable and is refused, one made before it
 * is denied by it (`denyApprovedDeviceCodes`), and one from a sign-in before it is refused also
 * once the user is enabled again: none survives the disable to start a session.
 */
export async function decideDeviceCode(
  deps: Pick<Deps, 'db' | 'clock'>,
  userCode: string,
  signer: { id: string; generation: number },
  approve: boolean,
): Promise<Decision> {
  return deps.db.transaction(async (tx) => {
    if (approve) {
      const live = await lockLiveOwner(tx, { id: signer.id });
      if (!live || live.generation !== signer.generation) return 'signed_out';
    }
    const updated = await tx
      .update(deviceCodes)
      .set({ status: approve ? 'approved' : 'denied', userId: signer.id })
      .where(
        and(
          eq(deviceCodes.userCode, normalizeUserCode(userCode)),
          eq(deviceCodes.status, 'pending'),
          gt(deviceCodes.expiresAt, deps.clock.now()),
        ),
      )
      .returning({ id: deviceCodes.id });
    return updated.length === 1 ? 'decided' : 'not_pending';
  });
}

/**
 * Denies `userId`'s device authorizations that were approved and not yet exchanged for a session,
 * in the transaction that disables the user (services/users.ts `disableUser`, which holds the
 * user's row): the device's poll is then refused, also after the user is enabled again.
 */
export async function denyApprovedDeviceCodes(tx: Pick<Db, 'update'>, userId: string): Promise<void> {
  await tx
    .update(deviceCodes)
    .set({ status: 'denied' })
    .where(and(eq(deviceCodes.userId, userId), eq(deviceCodes.status, 'approved')));
}
