import { createRoute, z } from '@hono/zod-openapi';
import { and, desc, eq, gt, isNull, type SQL } from 'drizzle-orm';
import { LeaseCreateSchema, LeaseIssuedSchema, LeaseListSchema, LeaseSchema } from '../../protocol/api-types.js';
import { leases, nodes, users } from '../db/schema/index.js';
import type { Context } from 'hono';
import type { App, AppEnv } from '../http/env.js';
import { requireUser } from '../http/authenticate.js';
import { limitLeaseIssuance } from '../http/lease-rate-limit.js';
import { AppError, notFound } from '../lib/errors.js';
import { createLease, leaseView, revokeLeases } from '../services/leases.js';
import { bearerSecurity, errorResponses, json, jsonBody, problem } from './common.js';

const IdParam = z.object({ id: z.string().regex(/^lse_[a-f0-9]{32}$/, 'must be a lease id (lse_...)') });
const ListQuery = z.strictObject({
  active: z.enum(['true', 'false']).optional(),
  all: z.enum(['true', 'false']).optional().describe('admins: every user\'s leases'),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

export function registerLeases(app: App): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/leases',
      tags: ['leases'],
      summary: 'Issue a lease: token, OpenSSH certificate for your public key, and the relay to use',
      security: bearerSecurity,
      middleware: [requireUser, limitLeaseIssuance] as const,
      request: { body: jsonBody(LeaseCreateSchema) },
      responses: {
        201: json(LeaseIssuedSchema, 'Lease issued'),
        ...errorResponses,
        503: problem('No relay node is online to carry it (NO_NODE_AVAILABLE); retryable'),
      },
    }),
    async (c) => {
      const issued = await createLease(c.get('deps'), c.get('principal'), c.req.valid('json'));
      c.header('cache-control', 'no-store');
      return c.json(issued, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/leases',
      tags: ['leases'],
      summary: 'List your leases (admins: `all=true` for everyone\'s)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { query: ListQuery },
      responses: { 200: json(LeaseListSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      const q = c.req.valid('query');
      const conds: SQL[] = [];
      if (!(q.all === 'true' && p.role === 'admin')) conds.push(eq(leases.userId, p.userId));
      if (q.all === 'true' && p.role !== 'admin') throw new AppError('FORBIDDEN', 'all=true needs the admin role');
      if (q.active === 'true') conds.push(isNull(leases.revokedAt), gt(leases.expiresAt, deps.clock.now()));
      const rows = await deps.db
        .select({ lease: leases, user: users.name, node: nodes.name })
        .from(leases)
        .innerJoin(users, eq(users.id, leases.userId))
        .innerJoin(nodes, eq(nodes.id, leases.nodeId))
        .where(conds.length ? and(...conds) : undefined)
        .orderBy(desc(leases.createdAt))
        .limit(q.limit);
      return c.json({ leases: rows.map((r) => leaseView(r.lease, r.user, r.node)) }, 200);
    },
  );

  const getOwned = async (c: Context<AppEnv>, id: string) => {
    const deps = c.get('deps');
    const p = c.get('principal');
    const [r] = await deps.db
      .select({ lease: leases, user: users.name, node: nodes.name })
      .from(leases)
      .innerJoin(users, eq(users.id, leases.userId))
      .innerJoin(nodes, eq(nodes.id, leases.nodeId))
      .where(eq(leases.id, id))
      .limit(1);
    // Other users' leases look absent to non-admins.
    if (!r || (r.lease.userId !== p.userId && p.role !== 'admin')) throw notFound(`lease ${id}`);
    return r;
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/leases/{id}',
      tags: ['leases'],
      summary: 'One lease',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: IdParam },
      responses: { 200: json(LeaseSchema), ...errorResponses },
    }),
    async (c) => {
      const r = await getOwned(c, c.req.valid('param').id);
      return c.json(leaseView(r.lease, r.user, r.node), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/leases/{id}',
      tags: ['leases'],
      summary: 'Revoke a lease; every relay closes its connections within 5 seconds',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { params: IdParam },
      responses: { 200: json(LeaseSchema, 'Revoked (or already ended)'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const id = c.req.valid('param').id;
      await getOwned(c, id);
      await revokeLeases(deps, { ids: [id] }, c.get('principal').userId);
      const r = await getOwned(c, id);
      return c.json(leaseView(r.lease, r.user, r.node), 200);
    },
  );
}
