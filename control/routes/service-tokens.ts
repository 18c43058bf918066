import { createRoute, z } from '@hono/zod-openapi';
import { and, eq, isNull } from 'drizzle-orm';
import { ServiceTokenCreateSchema, ServiceTokenCreatedSchema, ServiceTokenListSchema, ServiceTokenSchema } from '../../protocol/api-types.js';
import { serviceTokens, users } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireUser } from '../http/authenticate.js';
import { AppError, notFound } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from '../services/audit.js';
import { bearerSecurity, errorResponses, json, jsonBody } from './common.js';

type Row = typeof serviceTokens.$inferSelect;
const view = (t: Row, user: string) => ({
  id: t.id,
  name: t.name,
  user,
  scopes: t.scopes,
  created_at: t.createdAt.toISOString(),
  expires_at: t.expiresAt ? t.expiresAt.toISOString() : null,
  revoked: t.revokedAt !== null,
});

export function registerServiceTokens(app: App): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/service-tokens',
      tags: ['auth'],
      summary: 'Create a scoped service token for a headless host (e.g. scopes ["expose:hostx-ssh"])',
      description: 'Members create tokens for themselves; admins may name another user. The token is shown once.',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { body: jsonBody(ServiceTokenCreateSchema) },
      responses: { 201: json(ServiceTokenCreatedSchema, 'Created'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      if (p.scopes) throw new AppError('SCOPE_DENIED', 'a service token cannot create service tokens');
      const body = c.req.valid('json');
      let userId = p.userId;
      let userName = p.name;
      if (body.user && body.user !== p.name) {
        if (p.role !== 'admin') throw new AppError('FORBIDDEN', 'only admins create service tokens for other users');
        const [u] = await deps.db.select().from(users).where(eq(users.name, body.user)).limit(1);
        if (!u || u.disabled) throw notFound(`user "${body.user}"`);
        userId = u.id;
        userName = u.name;
      }
      const now = deps.clock.now();
      const token = deps.ids.secret('tnl_st');
      const [row] = await deps.db
        .insert(serviceTokens)
        .values({
          id: deps.ids.id('st'),
          name: body.name,
          userId,
          tokenHash: hashSecret(token),
          scopes: [...new Set(body.scopes)].sort(),
          createdAt: now,
          expiresAt: body.ttl_seconds ? new Date(now.getTime() + body.ttl_seconds * 1000) : null,
        })
        .returning();
      await audit(deps.db, now, { type: 'service_token.created', actor: p.userId, subject: row!.id, data: { user: userName, scopes: row!.scopes } });
      return c.json({ ...view(row!, userName), token }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/service-tokens',
      tags: ['auth'],
      summary: 'Your service tokens (admins: everyone\'s)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      responses: { 200: json(ServiceTokenListSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const rows = await deps.db
        .select({ t: serviceTokens, user: users.name })
        .from(serviceTokens)
        .innerJoin(users, eq(users.id, serviceTokens.userId))
        .where(p.role === 'admin' && !p.scopes ? undefined : eq(serviceTokens.userId, p.userId))
        .orderBy(serviceTokens.createdAt);
      return c.json({ service_tokens: rows.map((r) => view(r.t, r.user)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/service-tokens/{id}',
      tags: ['auth'],
      summary: 'Revoke a service token',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: z.object({ id: z.string().regex(/^st_[a-f0-9]{32}$/, 'must be a service token id (st_...)') }) },
      responses: { 200: json(ServiceTokenSchema, 'Revoked'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const { id } = c.req.valid('param');
      const [r] = await deps.db
        .select({ t: serviceTokens, user: users.name })
        .from(serviceTokens)
        .innerJoin(users, eq(users.id, serviceTokens.userId))
        .where(eq(serviceTokens.id, id))
        .limit(1);
      if (!r || (r.t.userId !== p.userId && p.role !== 'admin')) throw notFound(`service token ${id}`);
      const now = deps.clock.now();
      const [row] = await deps.db
        .update(serviceTokens)
        .set({ revokedAt: now })
        .where(and(eq(serviceTokens.id, id), isNull(serviceTokens.revokedAt)))
        .returning();
      if (row) await audit(deps.db, now, { type: 'service_token.revoked', actor: p.userId, subject: id });
      return c.json(view(row ?? r.t, r.user), 200);
    },
  );
}
