import { and, eq, isNull } from 'drizzle-orm';
import type { z } from '@hono/zod-openapi';
import type { ServiceTokenCreateSchema, ServiceTokenSchema } from '../../protocol/api-types.js';
import type { Deps } from '../deps.js';
import { egressTargets, serviceTokens, users, type leases } from '../db/schema/index.js';
import { notFound } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from './audit.js';
import { assertAllowed, can, scopeAllows, type UserPrincipal } from './authz.js';
import { revokeLeases, revokeNoLongerAllowed } from './lease-revocation.js';

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

/** Creates a scoped service token for the caller (or, for admins, another user); the secret is returned once. */
export async function createServiceToken(
  deps: Pick<Deps, 'db' | 'clock' | 'ids'>,
  p: UserPrincipal,
  body: z.infer<typeof ServiceTokenCreateSchema>,
): Promise<ServiceTokenView & { token: string }> {
  let owner = { id: p.userId, name: p.name };
  if (body.user && body.user !== p.name) {
    const [u] = await deps.db.select().from(users).where(eq(users.name, body.user)).limit(1);
    assertAllowed(p, 'service_token.create', { userId: u?.id ?? '' });
    if (!u || u.disabled) throw notFound(`user "${body.user}"`);
    owner = u;
  } else {
    assertAllowed(p, 'service_token.create', { userId: p.userId });
  }
  const now = deps.clock.now();
  const token = deps.ids.secret('tnl_st');
  const [row] = await deps.db
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
  await audit(deps.db, now, { type: 'service_token.created', actor: p.userId, subject: row!.id, data: { user: owner.name, scopes: row!.scopes } });
  return { ...view(row!, owner.name), token };
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

/** Revokes a service token and every lease issued through it. */
export async function revokeServiceToken(deps: Pick<Deps, 'db' | 'clock'>, p: UserPrincipal, id: string): Promise<ServiceTokenView> {
  const r = await findVisible(deps, p, id, 'service_token.revoke');
  const now = deps.clock.now();
  const [row] = await deps.db
    .update(serviceTokens)
    .set({ revokedAt: now })
    .where(and(eq(serviceTokens.id, id), isNull(serviceTokens.revokedAt)))
    .returning();
  if (row) await audit(deps.db, now, { type: 'service_token.revoked', actor: p.userId, subject: id });
  await revokeLeases(deps, { serviceTokenId: id }, p.userId, 'service_token_revoked');
  return view(row ?? r.t, r.user);
}

/**
 * Replaces a service token's scopes. Access tokens minted from it follow at once (the guard reads
 * the scopes from here), and the leases it issued that the new scopes do not cover are revoked.
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
  const [row] = await deps.db.update(serviceTokens).set({ scopes: sorted }).where(eq(serviceTokens.id, id)).returning();
  await audit(deps.db, now, { type: 'service_token.updated', actor: p.userId, subject: id, data: { scopes: sorted } });
  const targets = await deps.db.select().from(egressTargets);
  // An egress lease stays if every host:port it reaches is a target on its node the scopes name.
  const covered = (p: UserPrincipal, l: typeof leases.$inferSelect) =>
    l.kind === 'egress'
      ? (l.targets ?? []).every((h) => targets.some((t) => t.nodeId === l.nodeId && t.host === h.host && t.port === h.port && scopeAllows(p, 'egress', t.name)))
      : scopeAllows(p, l.kind, l.exposure ?? '');
  await revokeNoLongerAllowed(deps, { serviceTokenId: id }, covered, p.userId, 'service_token_scopes_changed');
  return view(row!, r.user);
}
