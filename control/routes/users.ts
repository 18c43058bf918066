import { createRoute, z } from '@hono/zod-openapi';
import { eq } from 'drizzle-orm';
import { UserCreateSchema, UserListSchema, UserNameSchema, UserPatchSchema, UserSchema } from '../../protocol/api-types.js';
import { serviceTokens, users } from '../db/schema/index.js';
import type { App, AppEnv } from '../http/env.js';
import type { Context } from 'hono';
import { requireAdmin, requireUser } from '../http/authenticate.js';
import { AppError, notFound } from '../lib/errors.js';
import { audit } from '../services/audit.js';
import { revokeLeases } from '../services/leases.js';
import { revokeAllSessions } from '../auth/sessions.js';
import { bearerSecurity, errorResponses, json, jsonBody } from './common.js';

type UserRow = typeof users.$inferSelect;
const view = (u: UserRow) => ({ id: u.id, name: u.name, role: u.role, disabled: u.disabled, created_at: u.createdAt.toISOString() });

export function registerUsers(app: App): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/users',
      tags: ['admin'],
      summary: 'Create a user (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { body: jsonBody(UserCreateSchema) },
      responses: { 201: json(UserSchema, 'Created'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const body = c.req.valid('json');
      const now = deps.clock.now();
      const passwordHash = body.password ? await deps.passwords.hash(body.password) : null;
      const [row] = await deps.db
        .insert(users)
        .values({ id: deps.ids.id('usr'), name: body.name, role: body.role, passwordHash, createdAt: now })
        .onConflictDoNothing()
        .returning();
      if (!row) throw new AppError('ALREADY_EXISTS', `user "${body.name}" already exists`);
      await audit(deps.db, now, { type: 'user.created', actor: c.get('principal').userId, subject: row.name, data: { role: row.role } });
      return c.json(view(row), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/users',
      tags: ['admin'],
      summary: 'List users (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      responses: { 200: json(UserListSchema), ...errorResponses },
    }),
    async (c) => {
      const rows = await c.get('deps').db.select().from(users).orderBy(users.name);
      return c.json({ users: rows.map(view) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/users/{name}',
      tags: ['admin'],
      summary: 'Disable a user: revokes their sessions, service tokens and leases (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { params: z.object({ name: UserNameSchema }) },
      responses: { 200: json(UserSchema, 'Disabled'), ...errorResponses },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      return c.json(view(await disable(c, name)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/v1/users/{name}',
      tags: ['admin'],
      summary: 'Enable or disable a user, or change their role (admin); takes effect on their next request',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { params: z.object({ name: UserNameSchema }), body: jsonBody(UserPatchSchema) },
      responses: { 200: json(UserSchema, 'Updated'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const { name } = c.req.valid('param');
      const body = c.req.valid('json');
      if (name === p.name) throw new AppError('CONFLICT', 'you cannot change your own role or state');
      let row: UserRow | undefined;
      if (body.disabled === true) row = await disable(c, name);
      const now = deps.clock.now();
      const set: Partial<UserRow> = {};
      if (body.disabled === false) set.disabled = false;
      if (body.role) set.role = body.role;
      if (Object.keys(set).length > 0) {
        [row] = await deps.db.update(users).set(set).where(eq(users.name, name)).returning();
        if (!row) throw notFound(`user "${name}"`);
        if (body.disabled === false) await audit(deps.db, now, { type: 'user.enabled', actor: p.userId, subject: row.name });
        if (body.role) await audit(deps.db, now, { type: 'user.role_changed', actor: p.userId, subject: row.name, data: { role: body.role } });
      }
      return c.json(view(row!), 200);
    },
  );
}

/** Disables a user and ends everything they hold: sessions, service tokens, leases. */
async function disable(c: Context<AppEnv>, name: string): Promise<UserRow> {
  const deps = c.get('deps');
  const p = c.get('principal');
  if (name === p.name) throw new AppError('CONFLICT', 'you cannot disable yourself');
  const now = deps.clock.now();
  const [row] = await deps.db.update(users).set({ disabled: true }).where(eq(users.name, name)).returning();
  if (!row) throw notFound(`user "${name}"`);
  await revokeAllSessions(deps, row.id, now);
  await deps.db.update(serviceTokens).set({ revokedAt: now }).where(eq(serviceTokens.userId, row.id));
  await revokeLeases(deps, { userId: row.id }, p.userId);
  await audit(deps.db, now, { type: 'user.disabled', actor: p.userId, subject: row.name });
  return row;
}
