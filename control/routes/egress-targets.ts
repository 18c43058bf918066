import { createRoute, z } from '@hono/zod-openapi';
import { eq } from 'drizzle-orm';
import { EgressTargetListSchema, EgressTargetPutSchema, EgressTargetSchema, TargetNameSchema } from '../../protocol/api-types.js';
import { egressTargets, nodes } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireAdmin, requireUser } from '../http/authenticate.js';
import { notFound } from '../lib/errors.js';
import { audit } from '../services/audit.js';
import { bearerSecurity, errorResponses, json, jsonBody } from './common.js';

const NameParam = z.object({ name: TargetNameSchema });
type Row = typeof egressTargets.$inferSelect;
const view = (t: Row, node: string) => ({
  name: t.name,
  node,
  host: t.host,
  port: t.port,
  allow: t.allow,
  created_at: t.createdAt.toISOString(),
});

export function registerEgressTargets(app: App): void {
  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/egress-targets/{name}',
      tags: ['admin'],
      summary: 'Define a host:port on a relay\'s own network that egress leases may reach (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { params: NameParam, body: jsonBody(EgressTargetPutSchema) },
      responses: { 200: json(EgressTargetSchema, 'Saved'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const { name } = c.req.valid('param');
      const body = c.req.valid('json');
      const [node] = await deps.db.select().from(nodes).where(eq(nodes.name, body.node)).limit(1);
      if (!node) throw notFound(`node "${body.node}"`);
      const now = deps.clock.now();
      const values = { nodeId: node.id, host: body.host, port: body.port, allow: [...new Set(body.allow)].sort() };
      const [row] = await deps.db
        .insert(egressTargets)
        .values({ name, ...values, createdAt: now })
        .onConflictDoUpdate({ target: egressTargets.name, set: values })
        .returning();
      await audit(deps.db, now, { type: 'egress_target.put', actor: c.get('principal').userId, subject: name, data: { ...values } });
      return c.json(view(row!, node.name), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/egress-targets',
      tags: ['admin'],
      summary: 'Egress targets you may use (admins: all)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      responses: { 200: json(EgressTargetListSchema), ...errorResponses },
    }),
    async (c) => {
      const p = c.get('principal');
      const rows = await c
        .get('deps')
        .db.select({ t: egressTargets, node: nodes.name })
        .from(egressTargets)
        .innerJoin(nodes, eq(nodes.id, egressTargets.nodeId))
        .orderBy(egressTargets.name);
      const visible = rows.filter((r) => p.role === 'admin' || r.t.allow.includes(p.name));
      return c.json({ targets: visible.map((r) => view(r.t, r.node)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/egress-targets/{name}',
      tags: ['admin'],
      summary: 'Delete an egress target (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { params: NameParam },
      responses: { 204: { description: 'Deleted' }, ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const { name } = c.req.valid('param');
      const deleted = await deps.db.delete(egressTargets).where(eq(egressTargets.name, name)).returning();
      if (!deleted.length) throw notFound(`egress target "${name}"`);
      await audit(deps.db, deps.clock.now(), { type: 'egress_target.deleted', actor: c.get('principal').userId, subject: name });
      return c.body(null, 204);
    },
  );
}
