import { createRoute, z } from '@hono/zod-openapi';
import { eq, inArray } from 'drizzle-orm';
import { ExposureListSchema, ExposurePutSchema, ExposureSchema } from '../../protocol/api-types.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { exposures, nodes, users } from '../db/schema/index.js';
import type { App, Principal } from '../http/env.js';
import { assertScope, requireUser } from '../http/authenticate.js';
import { AppError, notFound } from '../lib/errors.js';
import type { Db } from '../db/client.js';
import { audit } from '../services/audit.js';
import { canManage, canOpen } from '../services/exposure-access.js';
import { revokeLeases } from '../services/leases.js';
import { bearerSecurity, errorResponses, json, jsonBody } from './common.js';

const NameParam = z.object({ name: z.string().regex(EXPOSURE_NAME_RE, 'must match [a-z0-9-]{1,63}') });
type ExposureRow = typeof exposures.$inferSelect;

async function views(db: Db, rows: ExposureRow[]) {
  const userIds = [...new Set(rows.map((r) => r.ownerId))];
  const nodeIds = [...new Set(rows.flatMap((r) => [r.pinnedNodeId, r.currentNodeId]).filter((x): x is string => !!x))];
  const owners = userIds.length ? await db.select({ id: users.id, name: users.name }).from(users).where(inArray(users.id, userIds)) : [];
  const ns = nodeIds.length ? await db.select({ id: nodes.id, name: nodes.name }).from(nodes).where(inArray(nodes.id, nodeIds)) : [];
  const uname = new Map(owners.map((u) => [u.id, u.name]));
  const nname = new Map(ns.map((n) => [n.id, n.name]));
  return rows.map((r) => ({
    name: r.name,
    owner: uname.get(r.ownerId) ?? 'unknown',
    allow: r.allow,
    pinned_node: r.pinnedNodeId ? (nname.get(r.pinnedNodeId) ?? null) : null,
    node: r.online && r.currentNodeId ? (nname.get(r.currentNodeId) ?? null) : null,
    online: r.online,
    port: r.online ? r.onlinePort : null,
    created_at: r.createdAt.toISOString(),
  }));
}

async function findVisible(db: Db, name: string, p: Principal): Promise<ExposureRow> {
  const [row] = await db.select().from(exposures).where(eq(exposures.name, name)).limit(1);
  if (!row || !canOpen(row, p)) throw notFound(`exposure "${name}"`);
  return row;
}

export function registerExposures(app: App): void {
  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/exposures/{name}',
      tags: ['exposures'],
      summary: 'Create or update an exposure (owner or admin)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: NameParam, body: jsonBody(ExposurePutSchema) },
      responses: { 200: json(ExposureSchema, 'Updated'), 201: json(ExposureSchema, 'Created'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const { name } = c.req.valid('param');
      const body = c.req.valid('json');
      assertScope(p, 'expose', name);
      const now = deps.clock.now();
      let pinnedNodeId: string | null | undefined;
      if (body.node !== undefined) {
        // Pinning is an operator decision: unpinning (node: null) is one too.
        if (p.role !== 'admin') throw new AppError('FORBIDDEN', 'only admins may pin or unpin an exposure');
        if (body.node === null) pinnedNodeId = null;
        else {
          const [n] = await deps.db.select().from(nodes).where(eq(nodes.name, body.node)).limit(1);
          if (!n) throw notFound(`node "${body.node}"`);
          pinnedNodeId = n.id;
        }
      }
      const allow = [...new Set(body.allow)].sort();
      const { row, created } = await deps.db.transaction(async (tx) => {
        const [existing] = await tx.select().from(exposures).where(eq(exposures.name, name)).limit(1).for('update');
        if (existing) {
          if (!canManage(existing, p)) throw new AppError('FORBIDDEN', `"${name}" belongs to another user`);
          const [u] = await tx
            .update(exposures)
            .set({ allow, updatedAt: now, ...(pinnedNodeId !== undefined ? { pinnedNodeId } : {}) })
            .where(eq(exposures.name, name))
            .returning();
          return { row: u!, created: false };
        }
        const [ins] = await tx
          .insert(exposures)
          .values({ name, ownerId: p.userId, allow, pinnedNodeId: pinnedNodeId ?? null, createdAt: now, updatedAt: now })
          .onConflictDoNothing()
          .returning();
        if (!ins) throw new AppError('CONFLICT', `"${name}" was created concurrently; retry`, { retryable: true });
        return { row: ins, created: true };
      });
      await audit(deps.db, now, { type: 'exposure.put', actor: p.userId, subject: name, data: { allow, created } });
      const [view] = await views(deps.db, [row]);
      return created ? c.json(view!, 201) : c.json(view!, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/exposures',
      tags: ['exposures'],
      summary: 'Exposures you own or may open',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      responses: { 200: json(ExposureListSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const rows = (await deps.db.select().from(exposures).orderBy(exposures.name)).filter((r) => canOpen(r, p));
      return c.json({ exposures: await views(deps.db, rows) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/exposures/{name}',
      tags: ['exposures'],
      summary: 'One exposure',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: NameParam },
      responses: { 200: json(ExposureSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const row = await findVisible(deps.db, c.req.valid('param').name, c.get('principal'));
      const [view] = await views(deps.db, [row]);
      return c.json(view!, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/exposures/{name}',
      tags: ['exposures'],
      summary: 'Delete an exposure and revoke its leases (owner or admin)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: NameParam },
      responses: { 204: { description: 'Deleted' }, ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const { name } = c.req.valid('param');
      const row = await findVisible(deps.db, name, p);
      if (!canManage(row, p)) throw new AppError('FORBIDDEN', `only the owner of "${name}" or an admin may delete it`);
      assertScope(p, 'expose', name);
      await revokeLeases(deps, { exposure: name }, p.userId);
      await deps.db.delete(exposures).where(eq(exposures.name, name));
      await audit(deps.db, deps.clock.now(), { type: 'exposure.deleted', actor: p.userId, subject: name });
      return c.body(null, 204);
    },
  );
}
