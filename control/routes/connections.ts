import { createRoute, z } from '@hono/zod-openapi';
import { ConnectionListSchema, NodeNameSchema, UserNameSchema } from '../../protocol/api-types.js';
import { ExposureNameSchema, LeaseKindSchema } from '../../protocol/lease-claims.js';
import type { App } from '../http/env.js';
import { requireUser } from '../http/authenticate.js';
import { AppError } from '../lib/errors.js';
import { listConnections } from '../services/connections.js';
import { bearerSecurity, errorResponses, json } from './common.js';

const ListQuery = z.strictObject({
  state: z.enum(['open', 'all']).default('open').describe('open: not closed as last reported; all: also recently closed'),
  user: UserNameSchema.optional(),
  exposure: ExposureNameSchema.optional(),
  node: NodeNameSchema.optional(),
  kind: LeaseKindSchema.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

export function registerConnections(app: App): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/connections',
      tags: ['leases'],
      summary: 'SSH connections to relays as the relays report them, newest first (yours; admins: everyone\'s)',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      request: { query: ListQuery },
      responses: { 200: json(ConnectionListSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('principal');
      if (p.scopes) throw new AppError('SCOPE_DENIED', 'service tokens may not list connections');
      const q = c.req.valid('query');
      const list = await listConnections(
        deps.db,
        { ...q, ...(p.role === 'admin' ? {} : { userId: p.userId }) },
        deps.clock.now(),
        deps.settings.nodeOnlineWindow,
      );
      return c.json({ connections: list }, 200);
    },
  );
}
