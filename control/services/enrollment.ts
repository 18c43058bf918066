import type { Deps } from '../deps.js';
import { enrollmentTokens } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from './audit.js';

/** Makes a one-time node enrollment token (only its hash is stored). */
export async function createEnrollmentToken(
  deps: Pick<Deps, 'db' | 'clock' | 'ids'>,
  name: string,
  ttlSeconds: number,
  createdBy: string | null,
): Promise<{ token: string; expiresAt: Date }> {
  const now = deps.clock.now();
  const token = deps.ids.secret('tnl_enr');
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  await deps.db.insert(enrollmentTokens).values({
    id: deps.ids.id('enr'),
    name,
    tokenHash: hashSecret(token),
    createdBy,
    createdAt: now,
    expiresAt,
  });
  await audit(deps.db, now, { type: 'node.enrollment_token_created', actor: createdBy, subject: name });
  return { token, expiresAt };
}
